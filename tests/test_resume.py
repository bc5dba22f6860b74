"""Which checkpoint ``--ckpt_path last`` resumes: the newest intact one, also after a write cut short."""

import pytest
import torch

from xtra.resume import is_intact, newest_intact


def _save(path, step):
    torch.save({"global_step": step, "state_dict": {"w": torch.arange(1000.0)}}, path)


def test_last_is_preferred_while_it_is_intact(tmp_path):
    _save(tmp_path / "epoch=0-step=10.ckpt", 10)
    _save(tmp_path / "last.ckpt", 12)
    assert newest_intact(tmp_path) == tmp_path / "last.ckpt"


@pytest.mark.parametrize("keep", [0, 100, -1])
def test_a_cut_last_checkpoint_falls_back_to_the_newest_intact_step(tmp_path, keep):
    _save(tmp_path / "epoch=0-step=5.ckpt", 5)
    _save(tmp_path / "epoch=0-step=10.ckpt", 10)
    _save(tmp_path / "last.ckpt", 10)
    data = (tmp_path / "last.ckpt").read_bytes()
    (tmp_path / "last.ckpt").write_bytes(data[: keep if keep >= 0 else len(data) - 30])  # a kill mid-write
    assert not is_intact(tmp_path / "last.ckpt")
    with pytest.warns(UserWarning, match="damaged"):
        chosen = newest_intact(tmp_path)
    assert chosen == tmp_path / "epoch=0-step=10.ckpt"
    assert torch.load(chosen, weights_only=True)["global_step"] == 10


def test_nothing_intact_means_nothing_to_resume(tmp_path):
    assert newest_intact(tmp_path / "missing") is None
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert newest_intact(tmp_path) is None


@pytest.mark.slow
def test_a_checkpoint_write_killed_midway_leaves_the_previous_checkpoint_whole(tmp_path):
    """A real process saving through AtomicCheckpointIO is killed (SIGKILL) while its temporary file is being
    written: last.ckpt is still the previous, loadable checkpoint, and the resolver picks it."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from xtra.checkpoint_io import AtomicCheckpointIO

    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 1, "w": torch.zeros(10)}, target)
    writer = (
        "import sys, torch\n"
        "from xtra.checkpoint_io import AtomicCheckpointIO\n"
        "io = AtomicCheckpointIO()\n"
        "big = {'global_step': 2, 'w': torch.randn(64, 1024, 1024)}\n"  # 256 MiB: the write takes a while
        "print('ready', flush=True)\n"
        "io.save_checkpoint(big, sys.argv[1])\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", writer, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    deadline = time.time() + 120
    while not list(tmp_path.glob(".last.ckpt.tmp-*")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.001)
    os.kill(proc.pid, signal.SIGKILL)  # the controlled point: the new checkpoint is half written
    proc.wait()
    assert list(tmp_path.glob(".last.ckpt.tmp-*")), "the kill came before or after the write; nothing was tested"
    assert is_intact(target) and torch.load(target, weights_only=True)["global_step"] == 1
    assert newest_intact(tmp_path) == target
    AtomicCheckpointIO().save_checkpoint({"global_step": 3}, target)  # the next save clears the leftover
    assert not list(tmp_path.glob(".last.ckpt.tmp-*"))
