"""glibc malloc settings: freed activations stay in the process (no page faults to reuse them), unless the user set
glibc's own variables. Each case runs in a fresh interpreter: the settings are process-wide."""

import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt is Linux/glibc only"
)

# allocate and touch 64 MB, free it, report (applied, resident MB kept after the free)
PROBE = """
import torch
from xtra.allocator import keep_freed_memory

def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

applied = keep_freed_memory() if {tune} else False
before = rss_mb()
x = torch.ones(16 << 20)
del x
print(applied, round(rss_mb() - before))
"""


def probe(tune: bool, **env: str) -> tuple[bool, int]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")} | env
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(tune=tune)], env=environ, capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", int(out[1])


def test_freed_activations_stay_in_the_process_once_tuned():
    assert probe(tune=False) == (False, pytest.approx(0, abs=8))  # glibc's default: a 64 MB block is unmapped
    applied, kept = probe(tune=True)
    assert applied and kept >= 56  # served from the heap and kept for the next update


def test_the_users_own_glibc_settings_win():
    applied, kept = probe(tune=True, MALLOC_MMAP_THRESHOLD_="131072")
    assert not applied and kept == pytest.approx(0, abs=8)
