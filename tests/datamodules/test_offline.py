import numpy as np
import pytest

from xtra.datamodules.offline import OfflineReplayDataModule
from xtra.replay import DatasetError, Replay


def write(path, task="minatar/breakout", frame_shape=(10, 10, 10), actions=3, action_ids=(0, 1, 3), rows=60):
    replay = Replay(rows, frame_shape, actions, 1)
    rng = np.random.default_rng(0)
    steps = rows - 1
    replay.add_segment(
        rng.integers(0, 2, (rows, *frame_shape), dtype=np.uint8), rng.integers(0, actions, steps),
        rng.random(steps, dtype=np.float32), np.zeros(steps, np.float32),
        np.full((steps, actions), 1 / actions, np.float32), np.arange(steps), terminal=True,
    )  # fmt: skip
    return str(replay.save(path, task, source={"kind": "test"}, action_ids=list(action_ids)))


def test_batches_per_game_priorities_and_state_round_trip(tmp_path):
    paths = [write(tmp_path / "a"), write(tmp_path / "b", "minatar/asterix", actions=5, action_ids=(0, 1, 2, 3, 4))]
    dm = OfflineReplayDataModule(paths, batch_size=6, seed=1)
    dm.setup("fit")
    batch = dm.sample(2, 2)
    assert set(batch) == {"minatar/breakout", "minatar/asterix"}
    assert batch["minatar/breakout"]["policies"].shape == (6, 3, 6)
    assert set(batch["minatar/breakout"]["actions"].unique().tolist()) <= {0, 1, 3}
    rows = batch["minatar/asterix"]["rows"].numpy()
    dm.update_priorities(rows, np.full(len(rows), 7.0), "minatar/asterix")
    state = dm.state_dict()
    again = OfflineReplayDataModule(paths, batch_size=6, seed=1)
    again.load_state_dict(state)
    np.testing.assert_array_equal(
        again.datasets["minatar/asterix"].replay.priorities, dm.datasets["minatar/asterix"].replay.priorities
    )
    assert again.datasets["minatar/asterix"].replay.priorities[rows].min() == 7.0
    with pytest.raises(ValueError, match="update_priorities|task id"):
        dm.update_priorities(rows, np.ones(len(rows)))


def test_bad_datasets_are_refused_with_the_file_named(tmp_path):
    good = write(tmp_path / "good")
    with pytest.raises(DatasetError, match="same env options"):
        OfflineReplayDataModule([good, write(tmp_path / "atari", "atari/Pong", (3, 8, 8), 6, (0, 1, 3, 4, 11, 12))])
    with pytest.raises(ValueError, match="one dataset directory per game"):
        OfflineReplayDataModule([good, write(tmp_path / "again")])
    with pytest.raises(DatasetError, match="no dataset at"):
        OfflineReplayDataModule([str(tmp_path / "missing")])
    truncated = write(tmp_path / "truncated")
    frames = tmp_path / "truncated" / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:-100])
    dm = OfflineReplayDataModule([truncated])
    with pytest.raises((DatasetError, ValueError), match="frames.npy"):
        dm.setup("fit")
    corrupt = write(tmp_path / "corrupt")
    rewards = tmp_path / "corrupt" / "rewards.npy"
    data = bytearray(rewards.read_bytes())
    data[-1] ^= 0xFF
    rewards.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="checksum"):
        OfflineReplayDataModule([corrupt]).setup("fit")
    (tmp_path / "good" / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="manifest.json is missing"):
        OfflineReplayDataModule([good])
