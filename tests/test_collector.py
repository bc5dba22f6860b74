import numpy as np

from xtra.collector import COLLAPSE_SHARE, Collector, evaluate
from xtra.collector import random_actor as uniform
from xtra.replay import Replay


def random_actor(num_actions):
    """Uniform moves with a recognisable root value (0.25) to check what the replay stores."""
    act = uniform(num_actions)

    def with_values(obs, rng, t):
        actions, _, visits = act(obs, rng, t)
        return actions, np.full(obs.shape[0], 0.25), visits

    return with_values


def test_collector_writes_aligned_segments():
    replay = Replay(5_000, (10, 10, 10), 3, 1)
    collector = Collector("minatar/breakout", replay, num_envs=3, seed=1, segment_length=7)
    collector.collect(300, random_actor(3))
    assert collector.env_steps == 300
    stored = replay.num_steps_added
    assert 0 < stored <= 300
    rows = np.arange(replay.head)
    steps = rows[replay.actions[rows] >= 0]
    # every step row sits inside its segment, before the segment's final row, with a frame of its own
    assert (replay.segment_start[steps] <= steps).all() and (steps < replay.segment_end[steps]).all()
    assert np.isin(replay.rewards[steps], [0.0, 1.0]).all()
    np.testing.assert_allclose(replay.policies[steps].sum(1), 1.0, rtol=1e-6)
    assert (replay.root_values[steps] == 0.25).all()
    # segments are at most segment_length steps; whole episodes ended in a terminal row
    lengths = replay.segment_end[steps] - replay.segment_start[steps]
    assert lengths.max() <= 7 + 1
    assert replay.num_episodes > 0 and replay.terminal[steps].any()
    returns, lengths = collector.pop_episode_stats()
    assert len(returns) == replay.num_episodes and collector.pop_episode_stats() == ([], [])


def test_evaluation_plays_the_requested_episodes_on_fixed_games():
    a = evaluate(random_actor(3), "minatar/breakout", episodes=5, seed=0, batch=2)
    assert a.returns.shape == (5,) and np.isfinite(a.returns).all()
    b = evaluate(random_actor(3), "minatar/breakout", episodes=5, seed=0, batch=2)
    np.testing.assert_array_equal(a.returns, b.returns)
    # uniform random moves: every action played, no collapse, visit entropy of the uniform distribution
    assert (a.action_counts > 0).all() and a.top_action_share < COLLAPSE_SHARE
    assert abs(a.visit_entropy - np.log(3)) < 1e-5


def test_evaluation_shows_a_constant_policy_as_collapsed():
    def always_right(obs, _rng, _t):
        n = obs.shape[0]
        return np.full(n, 2), np.zeros(n), np.tile([0.0, 0.0, 1.0], (n, 1))

    played = evaluate(always_right, "minatar/breakout", episodes=4, seed=0)
    assert played.action_counts[:2].sum() == 0 and played.action_counts[2] > 0
    assert played.top_action_share == 1.0 and played.visit_entropy == 0.0


def test_flush_in_progress_stores_every_step_played():
    """Saving a dataset flushes the episodes in progress, so it holds the whole budget, not finished segments."""
    replay = Replay(5_000, (10, 10, 10), 3, 1)
    collector = Collector("minatar/breakout", replay, num_envs=4, seed=2, segment_length=50)
    collector.collect(160, random_actor(3))
    assert replay.num_steps_added < 160
    collector.flush_in_progress()
    assert replay.num_steps_added == collector.env_steps == 160
    collector.collect(40, random_actor(3))  # play goes on from the flushed states
    collector.flush_in_progress()
    assert replay.num_steps_added == 200
    # the counter of rewarded steps played (logged as data/rewarded_steps) agrees with what was stored
    assert collector.rewarded_steps == np.count_nonzero(replay.rewards[: replay.head]) > 0


def test_a_restored_collector_plays_and_stores_what_the_original_would(tmp_path):
    """The play in progress (environments mid-game, observations, unfinished trajectories, counters, RNG) goes
    through a weights-only checkpoint into a collector built with another seed, beside a saved and reloaded copy
    of the replay (as a resumed run does): both then store the same rows, including the segments that were
    unfinished at the save."""
    import io

    import torch

    def sampled_actor(obs, rng, t):  # draws from the collector's RNG, as the MCTS actor's root noise does
        n = obs.shape[0]
        return rng.integers(0, 3, n), rng.random(n).astype(np.float32), np.full((n, 3), 1 / 3, np.float32)

    a = Collector("minatar/breakout", Replay(5_000, (10, 10, 10), 3, 1), num_envs=3, seed=1, segment_length=50)
    a.collect(90, sampled_actor)
    assert any(tr.actions for tr in a._traj)  # segments are in progress at the save
    buffer = io.BytesIO()
    torch.save(a.state_dict(), buffer)
    buffer.seek(0)
    a.replay.save(tmp_path / "replay", "minatar/breakout")
    b = Collector("minatar/breakout", Replay(5_000, (10, 10, 10), 3, 1), num_envs=3, seed=7, segment_length=50)
    b.replay = Replay.load(tmp_path / "replay", capacity=5_000)[0]
    b.load_state_dict(torch.load(buffer, weights_only=True))
    for c in (a, b):
        c.collect(210, sampled_actor)
        c.flush_in_progress()
    assert a.env_steps == b.env_steps == 300 and a.replay.head == b.replay.head
    assert a.rewarded_steps == b.rewarded_steps
    for name in ("frames", "actions", "rewards", "root_values", "policies", "segment_start", "segment_end",
                 "terminal", "step_index", "priorities"):  # fmt: skip
        rows = slice(0, a.replay.head)
        np.testing.assert_array_equal(getattr(a.replay, name)[rows], getattr(b.replay, name)[rows])
