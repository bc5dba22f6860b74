import json

import numpy as np
import pytest

from xtra.data_cli import main
from xtra.replay import Replay


def make_dataset(path):
    replay = Replay(50, (1, 2, 2), num_actions=2, frame_stack=1)
    replay.add_segment(
        np.zeros((4, 1, 2, 2), np.uint8), np.array([0, 1, 0]), np.array([1.0, 0.0, 1.0], np.float32),
        np.zeros(3, np.float32), np.full((3, 2), 0.5, np.float32), np.arange(3), terminal=True,
    )  # fmt: skip
    return replay.save(path, "minatar/breakout", source={"kind": "test"})


def test_info_and_validate(tmp_path, capsys):
    path = make_dataset(tmp_path / "ds")
    assert main(["info", str(path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["task_id"] == "minatar/breakout" and out["counts"]["steps"] == 3 and out["reward_sum"] == 2.0
    assert main(["validate", str(path)]) == 0
    (path / "actions.npy").write_bytes((path / "actions.npy").read_bytes()[:-1])
    assert main(["validate", str(path)]) == 1
    assert "actions.npy" in capsys.readouterr().err


def test_import_minari_round_trip(tmp_path, monkeypatch, capsys):
    pytest.importorskip("minari")
    import ale_py
    import gymnasium as gym
    import minari

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    gym.register_envs(ale_py)
    env = gym.make("ALE/Breakout-v5", repeat_action_probability=0.0, max_episode_steps=30)
    from minari.data_collector.episode_buffer import EpisodeBuffer

    rng = np.random.default_rng(0)
    recorded, buffers = [], []
    for episode in range(2):
        obs, _ = env.reset(seed=episode)
        observations, actions, rewards, terms, truncs, done = [obs], [], [], [], [], False
        while not done:
            a = int(rng.integers(env.action_space.n))
            obs, r, term, trunc, _ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(float(r))
            terms.append(term)
            truncs.append(trunc)
            done = term or trunc
        recorded.append(actions)
        buffers.append(EpisodeBuffer(id=episode, observations=observations, actions=actions, rewards=rewards,
                                     terminations=terms, truncations=truncs, infos={}))  # fmt: skip
    minari.create_dataset_from_buffers("xtra-test/breakout-random-v0", buffers, env=env,
                                       algorithm_name="uniform random", jpeg_encoding=False)  # fmt: skip
    out = tmp_path / "breakout"
    assert main(["import-minari", "xtra-test/breakout-random-v0", "--task-id", "atari/Breakout",
                 "--out", str(out)]) == 0  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert summary["counts"]["steps"] == sum(map(len, recorded)) and summary["source"]["kind"] == "minari"
    replay, manifest = Replay.load(out)
    steps = replay.actions[: replay.head] >= 0
    np.testing.assert_array_equal(replay.actions[: replay.head][steps], np.concatenate(recorded))
    assert replay.frames.shape[1:] == (3, 96, 96) and replay.frames.max() > 0
    assert manifest["action_ids"] == [0, 1, 3, 4] and manifest["source"]["search_targets"] is False
    # the recorded action is the policy target; nothing is overwritten without --overwrite
    np.testing.assert_array_equal(replay.policies[: replay.head][steps].argmax(1), np.concatenate(recorded))
    assert main(["import-minari", "xtra-test/breakout-random-v0", "--task-id", "atari/Breakout",
                 "--out", str(out)]) == 1  # fmt: skip
    assert "exists" in capsys.readouterr().err
    # the action set must match the game's
    assert main(["import-minari", "xtra-test/breakout-random-v0", "--task-id", "atari/Alien",
                 "--out", str(tmp_path / "alien")]) == 1  # fmt: skip
    assert "actions" in capsys.readouterr().err and not (tmp_path / "alien").exists()
