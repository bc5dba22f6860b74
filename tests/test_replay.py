import json

import numpy as np
import pytest

from xtra.replay import DatasetError, Replay, read_manifest


def frames_of(values, shape=(1, 2, 2)):
    return np.stack([np.full(shape, v, dtype=np.uint8) for v in values])


def add_episode(replay, first_frame, steps, terminal=True, context_frames=(), start_index=0):
    frames = frames_of([*context_frames, *range(first_frame, first_frame + steps + 1)])
    replay.add_segment(
        frames=frames,
        actions=np.arange(steps) % replay.num_actions,
        rewards=np.arange(1, steps + 1, dtype=np.float32),
        root_values=np.full(steps, 0.5, dtype=np.float32),
        policies=np.tile(np.eye(replay.num_actions, dtype=np.float32)[0], (steps, 1)),
        step_index=np.arange(start_index, start_index + steps),
        terminal=terminal,
        context=len(context_frames),
    )


def test_windows_stack_frames_and_mask_past_the_end():
    replay = Replay(100, (1, 2, 2), num_actions=3, frame_stack=3)
    add_episode(replay, first_frame=10, steps=4)  # rows 0..4: frames 10..14, actions at 0..3
    w = replay.gather(np.array([0, 2]), unroll_steps=2, td_steps=2, rng=np.random.default_rng(0))
    # Window frames for t = 0: rows -2..4 clamped to the segment start → the reset frame repeats.
    assert w.frames[0, :, 0, 0, 0].tolist() == [10, 10, 10, 11, 12, 13, 14]
    # t = 2: rows 0..6 clamped to the final row 4.
    assert w.frames[1, :, 0, 0, 0].tolist() == [10, 11, 12, 13, 14, 14, 14]
    assert w.steps_left.tolist() == [4, 2]
    assert w.rewards[1].tolist() == [3.0, 4.0, 0.0, 0.0]
    assert w.actions[1].tolist() == [2, 0]
    assert w.policies[1, 2].sum() == 0.0 and w.policies[1, 1].sum() == 1.0
    assert w.terminal.tolist() == [True, True]


def test_continued_segment_uses_its_context_frames():
    replay = Replay(100, (1, 2, 2), num_actions=2, frame_stack=3)
    add_episode(replay, 10, 3, terminal=False)  # frames 10..13
    add_episode(replay, 13, 2, terminal=True, context_frames=(11, 12))  # continues from frame 13
    t = np.array([replay.head - 3])  # first step row of the continuation (frame 13)
    w = replay.gather(t, unroll_steps=1, td_steps=1, rng=np.random.default_rng(0))
    assert w.frames[0, :, 0, 0, 0].tolist() == [11, 12, 13, 14, 15]
    assert len(replay) == 5


def test_ring_overwrites_oldest_and_skips_stale_priority_updates():
    replay = Replay(10, (1, 2, 2), num_actions=2, frame_stack=1)
    add_episode(replay, 0, 4)  # 5 rows
    add_episode(replay, 10, 4)  # 5 rows
    add_episode(replay, 20, 4)  # overwrites the first episode
    assert replay.tail == 5 and len(replay) == 8
    replay.update_priorities(np.array([0, 6]), np.array([9.0, 3.0]))
    assert replay.priorities[6 % 10] == pytest.approx(3.0)
    w = replay.sample(64, 1, 1, np.random.default_rng(0))
    assert (w.rows >= replay.tail).all()


def test_prioritised_sampling_and_importance_weights():
    replay = Replay(100, (1, 2, 2), num_actions=2, frame_stack=1, alpha=1.0)
    add_episode(replay, 0, 2)
    replay.update_priorities(np.array([0, 1]), np.array([1.0, 3.0]))
    w = replay.sample(4000, 1, 1, np.random.default_rng(0), beta=1.0)
    assert abs((w.rows == 1).mean() - 0.75) < 0.03
    # (N·p)^-β normalised by the max: the rare row weighs 3× the frequent one.
    assert w.weights[w.rows == 0][0] == pytest.approx(1.0)
    assert w.weights[w.rows == 1][0] == pytest.approx(1 / 3, rel=1e-5)


def test_new_data_gets_the_max_priority():
    replay = Replay(100, (1, 2, 2), num_actions=2, frame_stack=1)
    add_episode(replay, 0, 2)
    replay.update_priorities(np.array([0]), np.array([7.0]))
    add_episode(replay, 5, 2)
    assert replay.priorities[3] == pytest.approx(7.0) and replay.priorities[4] == pytest.approx(7.0)


def test_dataset_round_trip(tmp_path):
    replay = Replay(100, (1, 2, 2), num_actions=3, frame_stack=2)
    add_episode(replay, 0, 5)
    add_episode(replay, 20, 3, terminal=False)
    replay.update_priorities(np.array([1]), np.array([2.5]))
    path = replay.save(tmp_path / "ds", "minatar/breakout", source={"kind": "test"})
    manifest = read_manifest(path)
    assert manifest["counts"] == {"rows": 10, "steps": 8, "episodes": 1, "steps_added": 8}
    for mmap in (False, True):
        loaded, _ = Replay.load(path, mmap=mmap)
        for name in ("frames", "actions", "rewards", "policies", "priorities", "segment_end", "terminal"):
            np.testing.assert_array_equal(getattr(loaded, name)[:10], getattr(replay, name)[:10])
        a = loaded.gather(np.array([1, 7]), 2, 2, np.random.default_rng(0))
        b = replay.gather(np.array([1, 7]), 2, 2, np.random.default_rng(0))
        np.testing.assert_array_equal(a.frames, b.frames)
        np.testing.assert_array_equal(a.rewards, b.rewards)
    # Nothing but .npy arrays and the manifest; arrays load without pickle.
    assert sorted(p.suffix for p in path.iterdir()) == [".json"] + [".npy"] * 10


def test_tampered_truncated_and_mismatched_datasets_are_refused(tmp_path):
    replay = Replay(100, (1, 2, 2), num_actions=2, frame_stack=1)
    add_episode(replay, 0, 5)
    path = replay.save(tmp_path / "ds", "minatar/breakout")
    rewards = path / "rewards.npy"
    data = bytearray(rewards.read_bytes())
    data[-1] ^= 0xFF
    rewards.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="rewards.npy does not match its checksum"):
        Replay.load(path)
    path = replay.save(tmp_path / "ds2", "minatar/breakout")
    frames = path / "frames.npy"
    frames.write_bytes(frames.read_bytes()[:-7])
    with pytest.raises(DatasetError, match="frames.npy"):
        Replay.load(path)
    path = replay.save(tmp_path / "ds3", "minatar/breakout")
    (path / "manifest.json").unlink()
    with pytest.raises(DatasetError, match="manifest.json is missing"):
        Replay.load(path)
    path = replay.save(tmp_path / "ds4", "minatar/breakout")
    manifest = json.loads((path / "manifest.json").read_text())
    manifest["format_version"] = 99
    (path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match="format version 99"):
        Replay.load(path)
    with pytest.raises(DatasetError, match="no dataset"):
        Replay.load(tmp_path / "nothing-here")


def test_save_replaces_an_existing_dataset_atomically(tmp_path):
    replay = Replay(100, (1, 2, 2), num_actions=2, frame_stack=1)
    add_episode(replay, 0, 3)
    replay.save(tmp_path / "ds", "minatar/breakout")
    add_episode(replay, 9, 3)
    replay.save(tmp_path / "ds", "minatar/breakout")
    assert read_manifest(tmp_path / "ds")["counts"]["steps"] == 6
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]
