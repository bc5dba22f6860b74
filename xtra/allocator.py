"""glibc malloc settings for CPU training: keep freed activation memory instead of returning it to the kernel.

PyTorch on the CPU has no caching allocator: every update frees and reallocates the same activations. With
glibc's defaults a block above the mmap threshold (dynamic, at most 32 MiB) is mapped fresh and unmapped when freed,
and freed memory at the top of the heap is trimmed, so each update touches its activations' pages for the first
time again and pays a page fault per 4 KiB. The Atari update at batch 32 allocates 47 MB activations (160 future
frames of 32×48×48 in the consistency targets); raising both thresholds made it 1.4× (batch 32) to 1.6× (batch 64)
faster on a 2-core CPU, and its targets 1.8–1.9× (README, "Speed"). This is what PyTorch's CPU tuning guides get
from jemalloc or tcmalloc, with glibc's own knobs.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import platform
import sys

# mallopt(3) parameter ids
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's own environment variables for the same settings; a user who sets them keeps theirs
GLIBC_ENV = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Serve blocks up to ``mmap_threshold`` bytes from the heap and keep up to ``trim_threshold`` free bytes.

    Returns whether the settings were applied: not on a non-glibc platform, nor when the user set glibc's
    ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` (theirs win). The cost is resident memory: a process
    keeps up to ``trim_threshold`` of freed heap instead of returning it.
    """
    if sys.platform != "linux" or platform.libc_ver()[0] != "glibc" or any(k in os.environ for k in GLIBC_ENV):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))


def add_malloc_argument(parser: argparse.ArgumentParser) -> None:
    """The benchmarks' ``--malloc``: ``tuned`` (the default, as every ``xtra`` command runs) or glibc's ``glibc``."""
    parser.add_argument("--malloc", choices=("tuned", "glibc"), default="tuned",
                        help="glibc malloc as `xtra fit` sets it (xtra.allocator) or glibc's own defaults")  # fmt: skip


def apply_malloc_argument(args: argparse.Namespace) -> None:
    if args.malloc == "tuned":
        keep_freed_memory()
