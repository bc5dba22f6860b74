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
        assert newest_intact(tmp_path) == tmp_path / "epoch=0-step=10.ckpt"
    assert torch.load(newest_intact(tmp_path), weights_only=True)["global_step"] == 10


def test_nothing_intact_means_nothing_to_resume(tmp_path):
    assert newest_intact(tmp_path / "missing") is None
    (tmp_path / "last.ckpt").write_bytes(b"")
    assert newest_intact(tmp_path) is None
