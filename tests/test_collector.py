import numpy as np

from xtra.collector import Collector, evaluate
from xtra.replay import Replay


def random_actor(num_actions):
    rng = np.random.default_rng(0)

    def act(obs, _rng, _t):
        n = obs.shape[0]
        return rng.integers(0, num_actions, n), np.full(n, 0.25), np.full((n, num_actions), 1 / num_actions)

    return act


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
    assert a.shape == (5,) and np.isfinite(a).all()
    b = evaluate(random_actor(3), "minatar/breakout", episodes=5, seed=0, batch=2)
    np.testing.assert_array_equal(a, b)
