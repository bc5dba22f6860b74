import numpy as np
import pytest

from xtra.envs import (
    MINATAR_CHANNELS,
    MINATAR_GAMES,
    EnvOptions,
    VectorEnv,
    area_resize_matrix,
    env_seeds,
    env_spec,
    make_game,
    parse_task_id,
    valid_task_ids,
)


@pytest.mark.parametrize("game", MINATAR_GAMES)
def test_minatar_games_reset_and_step(game):
    env = VectorEnv(f"minatar/{game}", num_envs=2, seed=0)
    obs = env.reset()
    assert obs.shape == (2, MINATAR_CHANNELS, 10, 10) and obs.dtype == np.uint8
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(300):
        step = env.step(rng.integers(0, env.spec.num_actions, size=2))
        assert step.obs.shape == obs.shape
        seen |= set(np.unique(step.obs).tolist())
    assert seen == {0, 1}


@pytest.mark.parametrize("game", ["Pong", "MsPacman"])
def test_atari_protocol(game):
    env = VectorEnv(f"atari/{game}", num_envs=2, seed=3)
    obs = env.reset()
    assert obs.shape == (2, 12, 96, 96) and obs.dtype == np.uint8
    # The first stack of an episode is the reset frame repeated.
    np.testing.assert_array_equal(obs[:, :3], obs[:, 9:])
    rng = np.random.default_rng(0)
    for _ in range(40):
        step = env.step(rng.integers(0, env.spec.num_actions, size=2))
    assert step.obs.shape == (2, 12, 96, 96)
    np.testing.assert_array_equal(step.obs[:, 9:], step.frame)
    assert step.obs.std() > 0
    # Different seeds per env: the two games' frames diverge.
    assert not np.array_equal(step.obs[0], step.obs[1])


def test_atari_full_action_space_and_gray():
    spec = env_spec("atari/Breakout", EnvOptions(full_action_space=True, gray_scale=True))
    assert spec.num_actions == 18 and spec.action_ids == tuple(range(18))
    assert spec.frame_shape == (1, 96, 96) and spec.obs_shape == (4, 96, 96)
    minimal = env_spec("atari/Breakout")
    assert minimal.num_actions == 4 and minimal.action_ids == (0, 1, 3, 4)


def test_minatar_action_sets():
    assert env_spec("minatar/breakout").action_ids == (0, 1, 3)
    assert env_spec("minatar/breakout", EnvOptions(full_action_space=True)).num_actions == 6


def test_episodic_life_only_in_training():
    def lives_lost_before_game_over(training):
        game = make_game("atari/Breakout", seed=1, training=training)
        game.reset()
        terminations = 0
        for t in range(20_000):
            _, _, terminated, _, game_over = game.step(1 if t % 2 else 3)
            terminations += terminated
            if game_over:
                return terminations
        raise AssertionError("no game over")

    assert lives_lost_before_game_over(training=True) == 5
    assert lives_lost_before_game_over(training=False) == 1


def test_truncation_at_max_episode_steps():
    env = VectorEnv("minatar/freeway", 1, options=EnvOptions(max_episode_steps=7))
    env.reset()
    steps = [env.step(np.zeros(1, dtype=int)) for _ in range(7)]
    assert not any(s.truncated[0] for s in steps[:-1]) and steps[-1].truncated[0]
    assert steps[-1].game_length[0] == 7


def test_same_seed_same_games_and_ranks_differ():
    def rollout(seed, rank):
        env = VectorEnv("minatar/asterix", 2, seed=seed, rank=rank)
        env.reset()
        return np.stack([env.step(np.array([1, 2])).obs for _ in range(50)])

    np.testing.assert_array_equal(rollout(0, 0), rollout(0, 0))
    assert not np.array_equal(rollout(0, 0), rollout(0, 1))
    assert len(set(env_seeds(0, 0, 8) + env_seeds(0, 1, 8))) == 16


def test_unknown_task_ids_fail_with_the_valid_list():
    with pytest.raises(ValueError, match="minatar/breakout"):
        parse_task_id("minatar/pacman")
    with pytest.raises(ValueError, match="did you mean 'atari/MsPacman'"):
        parse_task_id("atari/ms_pacman")
    with pytest.raises(ValueError, match="Valid ids"):
        VectorEnv("gym/CartPole", 1)
    assert "atari/MsPacman" in valid_task_ids() and "minatar/seaquest" in valid_task_ids()


def test_area_resize_is_a_proper_average():
    m = area_resize_matrix(210, 96)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(area_resize_matrix(8, 4) @ np.arange(8.0), [0.5, 2.5, 4.5, 6.5])


def _saved_and_loaded(state):
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # nothing but tensors and built-in types


@pytest.mark.parametrize(
    ("task", "options"),
    [(f"minatar/{g}", None) for g in MINATAR_GAMES] + [("atari/Pong", EnvOptions(sticky_action_prob=0.25))],
)
def test_a_restored_vector_env_plays_on_exactly_as_the_original(task, options):
    """Mid-game state (every game's fields and RNGs, the emulator with its sticky-action RNG, frame stacks, running
    scores) goes through a weights-only checkpoint into envs built with another seed: the same actions give the same
    observations, rewards and episode ends from there on."""
    rng = np.random.default_rng(0)
    a = VectorEnv(task, 3, seed=1, options=options)
    a.reset()
    for _ in range(120):
        a.step(rng.integers(0, a.spec.num_actions, 3))
    b = VectorEnv(task, 3, seed=99, options=options)
    b.reset()
    b.load_state_dict(_saved_and_loaded(a.state_dict()))
    for actions in rng.integers(0, a.spec.num_actions, (300, 3)):
        sa, sb = a.step(actions), b.step(actions)
        np.testing.assert_array_equal(sa.obs, sb.obs)
        np.testing.assert_array_equal(sa.reward, sb.reward)
        np.testing.assert_array_equal(sa.done, sb.done)
        np.testing.assert_array_equal(sa.game_return, sb.game_return)
