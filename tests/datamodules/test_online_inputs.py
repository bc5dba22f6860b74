"""The online datamodule refuses bad input when it is built or when fit starts, never after training."""

import lightning as L
import numpy as np
import pytest

from xtra.datamodules.online import OnlineReplayDataModule
from xtra.mcts import SearchOptions
from xtra.modules.efficientzero import EfficientZeroModule
from xtra.replay import Replay, read_manifest

TINY = dict(num_envs=2, env_steps=60, warmup_steps=40, batch_size=4, segment_length=10)


@pytest.mark.parametrize("name", ["num_envs", "env_steps", "batch_size", "segment_length"])
def test_non_positive_sizes_are_refused_with_the_option_name(name):
    with pytest.raises(ValueError, match=f"data.init_args.{name} must be at least 1"):
        OnlineReplayDataModule("minatar/breakout", **{**TINY, name: 0})


def _fit(dm, tmp_path):
    module = EfficientZeroModule(dm.obs_shape, dm.num_actions, network="minatar", mcts=SearchOptions(num_simulations=2),
                                 network_overrides={"channels": 4, "blocks": 1, "lstm_hidden": 8}, unroll_steps=2,
                                 td_steps=2)  # fmt: skip
    trainer = L.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(module, dm)


def test_an_existing_dataset_is_never_replaced_without_overwrite(tmp_path):
    path = tmp_path / "ds"
    _fit(OnlineReplayDataModule("minatar/breakout", **TINY, save_dataset=str(path)), tmp_path)
    before = read_manifest(path)
    with pytest.raises(FileExistsError, match="overwrite_dataset=true"):
        _fit(OnlineReplayDataModule("minatar/asterix", **TINY, save_dataset=str(path)), tmp_path)
    assert read_manifest(path) == before  # refused before any step, the dataset untouched
    _fit(OnlineReplayDataModule("minatar/asterix", **TINY, save_dataset=str(path), overwrite_dataset=True), tmp_path)
    assert read_manifest(path)["task_id"] == "minatar/asterix"


def test_a_game_whose_episodes_outlast_the_budget_is_played_to_the_schedule(tmp_path):
    """Freeway's episodes last 2 500 moves: no episode ends and no segment fills within a small budget. The replay
    then stores the play so far as cut segments; it used to play on until a segment filled (num_envs x
    segment_length steps), past the budget, and a replay sized for the budget lost the oldest of them."""
    path = tmp_path / "ds"
    dm = OnlineReplayDataModule("minatar/freeway", num_envs=2, env_steps=30, warmup_steps=20, batch_size=4,
                                segment_length=100, save_dataset=str(path))  # fmt: skip
    _fit(dm, tmp_path)
    manifest = read_manifest(path)
    assert manifest["source"]["env_steps"] == manifest["counts"]["steps"] <= 30 + 2  # whole vector steps


def test_an_unwritable_dataset_path_fails_before_training(tmp_path):
    (tmp_path / "a-file").write_text("")
    dm = OnlineReplayDataModule("minatar/breakout", **TINY, save_dataset=str(tmp_path / "a-file" / "ds"))
    with pytest.raises(PermissionError, match="cannot write into"):
        _fit(dm, tmp_path)
    assert dm.collector is None  # nothing was played


def test_float_frames_and_empty_datasets_are_refused(tmp_path, capsys):
    from xtra.data_cli import main

    empty = Replay(10, (1, 2, 2), num_actions=2, frame_stack=1).save(tmp_path / "empty", "minatar/breakout")
    assert main(["validate", str(empty)]) == 1
    assert "holds no steps" in capsys.readouterr().err
    floats = Replay(10, (1, 2, 2), num_actions=2, frame_stack=1)
    floats.frames = floats.frames.astype(np.float32)  # frames scaled to [0, 1] by another tool
    floats.add_segment(
        np.full((3, 1, 2, 2), 0.5, np.float32),
        np.array([0, 1]),
        np.zeros(2, np.float32),
        np.zeros(2, np.float32),
        np.full((2, 2), 0.5, np.float32),
        np.arange(2),
        terminal=True,
    )
    path = floats.save(tmp_path / "floats", "minatar/breakout")
    assert main(["validate", str(path)]) == 1
    assert "frames as 0-255 integers" in capsys.readouterr().err
