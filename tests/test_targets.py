import numpy as np
import pytest
import torch

from xtra.targets import plan_values, position_masks, stack_frames, td_steps, value_prefix_targets, value_targets

G = 0.9


def test_td_steps_shrink_with_age():
    age = torch.tensor([0, 29_999, 30_000, 65_000, 95_000, 10**6])
    assert td_steps(age, 5, 30_000).tolist() == [5, 5, 4, 3, 2, 1]
    assert td_steps(age, 5, None).tolist() == [5] * 6


def test_value_targets_by_hand():
    # One sample t with K = 2 unroll steps, n = 2, rewards r_t.. = 1, 2, 3, 4; the segment has 3 actions left and
    # ends in a game over (terminal): positions k = 0, 1, 2, 3 exist, bootstrapping stops at the end.
    rewards = torch.tensor([[1.0, 2.0, 3.0, 0.0]])  # K + N = 4 entries, zero past the end
    plan = plan_values(rewards, torch.tensor([3]), torch.tensor([True]), torch.tensor([2]), 2, G)
    boot = torch.tensor([[10.0, 20.0, 30.0]])  # v(o_{t+k+n_k}) provided by the target network
    z = value_targets(plan, boot)
    expected = [
        1 + G * 2 + G**2 * 10,  # k=0: two rewards, bootstrap from t+2
        2 + G * 3,  # k=1: n_1 = 2 reaches the terminal end (t+3) → no bootstrap
        3,  # k=2: one reward left, lands on the terminal end
    ]
    torch.testing.assert_close(z[0], torch.tensor(expected))
    assert plan.bootstrap_positions[0].tolist() == [2, 3, 3]
    assert plan.mask[0].tolist() == [1, 1, 1]


def test_value_targets_past_the_end_and_truncated_segments():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    # one action left; not terminal (a cut segment): k=1 is the final observation, bootstraps from itself.
    plan = plan_values(rewards, torch.tensor([1]), torch.tensor([False]), torch.tensor([2]), 2, G)
    z = value_targets(plan, torch.tensor([[5.0, 7.0, 9.0]]))
    torch.testing.assert_close(z[0], torch.tensor([1 + G * 5.0, 7.0, 0.0]))
    assert plan.mask[0].tolist() == [1, 1, 0]
    # the same segment ending in a game over: the final observation is worth 0.
    plan = plan_values(rewards, torch.tensor([1]), torch.tensor([True]), torch.tensor([2]), 2, G)
    torch.testing.assert_close(value_targets(plan, torch.tensor([[5.0, 7.0, 9.0]]))[0], torch.tensor([1.0, 0, 0]))


def test_off_policy_horizon_enters_the_targets():
    rewards = torch.ones(2, 8)
    n = td_steps(torch.tensor([0, 70_000]), 5, 30_000)  # 5 and 3
    plan = plan_values(rewards, torch.tensor([50, 50]), torch.tensor([False, False]), n, 3, G)
    z = value_targets(plan, torch.zeros(2, 4))
    torch.testing.assert_close(z[:, 0], torch.tensor([sum(G**i for i in range(5)), sum(G**i for i in range(3))]))
    assert plan.bootstrap_positions.tolist() == [[5, 6, 7, 8], [3, 4, 5, 6]]
    torch.testing.assert_close(plan.bootstrap_discount[:, 0], torch.tensor([G**5, G**3]))


def test_value_prefix_resets_with_the_lstm_horizon():
    rewards = torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 0.0]])
    prefix, mask = value_prefix_targets(rewards, torch.tensor([4]), 5, horizon=2)
    # steps k = 1..5 sum rewards since the last reset (after every 2 steps); step 5 lies past the end.
    assert prefix[0].tolist() == [1.0, 3.0, 3.0, 7.0, 0.0]
    assert mask[0].tolist() == [1, 1, 1, 1, 0]
    prefix, _ = value_prefix_targets(rewards, torch.tensor([9]), 5, horizon=5)
    assert prefix[0].tolist() == [1.0, 3.0, 6.0, 10.0, 15.0]


def test_position_masks():
    obs, act = position_masks(torch.tensor([2, 9]), 3)
    assert obs.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1]]
    assert act.tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_stack_frames():
    frames = torch.arange(6, dtype=torch.uint8).view(1, 6, 1, 1, 1).expand(2, 6, 1, 1, 1).clone()
    out = stack_frames(frames, torch.tensor([[0, 2], [1, 3]]), 3)
    assert out.shape == (2, 2, 3, 1, 1)
    assert out[0, 1, :, 0, 0].tolist() == [2, 3, 4] and out[1, 1, :, 0, 0].tolist() == [3, 4, 5]


@pytest.mark.parametrize("seed", range(3))
def test_value_targets_match_a_loop(seed):
    g = np.random.default_rng(seed)
    b, k, n_max = 16, 4, 5
    rewards = g.normal(size=(b, k + n_max)).astype(np.float32)
    left = g.integers(1, 12, size=b)
    for i in range(b):
        rewards[i, left[i] :] = 0
    terminal = g.random(b) < 0.5
    n = g.integers(1, n_max + 1, size=b)
    boot = g.normal(size=(b, k + 1)).astype(np.float32)
    plan = plan_values(torch.from_numpy(rewards), torch.from_numpy(left), torch.from_numpy(terminal),
                       torch.from_numpy(n), k, G)  # fmt: skip
    z = value_targets(plan, torch.from_numpy(boot)).numpy()
    for i in range(b):
        for kk in range(k + 1):
            rest = left[i] - kk
            if rest < 0:
                assert z[i, kk] == 0
                continue
            steps = min(n[i], rest)
            ret = sum(G**j * rewards[i, kk + j] for j in range(steps))
            if not (terminal[i] and steps == rest):
                ret += G**steps * boot[i, kk]
            assert z[i, kk] == pytest.approx(ret, rel=1e-5, abs=1e-5)


def test_stored_bootstrap_at_a_cut_segment_end_uses_the_last_searched_state():
    """A segment cut mid-episode stores no search value for its final observation (that search ran in the next
    segment): the stored-value target must stop one step earlier instead of reading the zero-filled slot."""
    from xtra.replay import Replay

    replay = Replay(50, (1, 2, 2), num_actions=3, frame_stack=1)
    frames = np.stack([np.full((1, 2, 2), v, dtype=np.uint8) for v in range(4)])
    replay.add_segment(frames=frames, actions=np.zeros(3, dtype=np.int64), rewards=np.array([1.0, 2.0, 3.0]),
                       root_values=np.array([5.0, 6.0, 7.0], dtype=np.float32),
                       policies=np.full((3, 3), 1 / 3, dtype=np.float32), step_index=np.arange(3),
                       terminal=False)  # fmt: skip
    w = replay.gather(np.array([1]), unroll_steps=2, td_steps=2, rng=np.random.default_rng(0))
    rewards, left, terminal = (torch.from_numpy(a) for a in (w.rewards, w.steps_left, w.terminal))
    plan = plan_values(rewards, left, terminal, torch.tensor([2]), 2, G, end_has_value=False)
    z = value_targets(plan, torch.from_numpy(w.root_values).gather(1, plan.bootstrap_positions))
    # k=0 (row 1): r1 + γ·v(row 2) — row 3, the cut end, has no stored value; k=1 (row 2): its own stored value;
    # k=2 (row 3, the cut end): no target at all
    torch.testing.assert_close(z[0, :2], torch.tensor([2 + G * 7.0, 7.0]))
    assert plan.mask[0].tolist() == [1, 1, 0]
    # a game end keeps the full horizon (nothing to bootstrap from past it)
    term = plan_values(rewards, left, torch.tensor([True]), torch.tensor([2]), 2, G, end_has_value=False)
    torch.testing.assert_close(value_targets(term, torch.zeros(1, 3))[0, :2], torch.tensor([2 + G * 3.0, 3.0]))


@pytest.mark.parametrize("bootstrap", ["stored", "stored_as_coded"])
def test_offline_value_target_variants_by_hand(bootstrap):
    """The finetuner's two stored-value targets on one terminal segment, through ``prepare_batch``:
    ``stored`` is the n-step return bootstrapped from the stored search value n steps on; ``stored_as_coded``
    (the authors' offline target, kept to reproduce them) adds the stored value of the *same* state to the
    n-step reward sum."""
    from xtra.datamodules.common import windows_to_tensors
    from xtra.modules.efficientzero import EfficientZeroModule
    from xtra.replay import Replay

    gamma = 0.9
    replay = Replay(50, (1, 2, 2), num_actions=3, frame_stack=1)
    frames = np.stack([np.full((1, 2, 2), v, dtype=np.uint8) for v in range(6)])
    rewards, stored = np.array([1.0, 2.0, 3.0, 4.0, 5.0]), np.array([10.0, 20.0, 30.0, 40.0, 50.0], dtype=np.float32)
    replay.add_segment(frames=frames, actions=np.zeros(5, dtype=np.int64), rewards=rewards, root_values=stored,
                       policies=np.full((5, 3), 1 / 3, dtype=np.float32), step_index=np.arange(5),
                       terminal=True)  # fmt: skip
    w = replay.gather(np.array([0]), unroll_steps=2, td_steps=2, rng=np.random.default_rng(0))
    module = EfficientZeroModule((1, 2, 2), 3, network="minatar", discount=gamma, unroll_steps=2, td_steps=2,
                                 td_decay_env_steps=None, reanalyse_fraction=0.0)  # fmt: skip
    module.frame_stack = 1
    values = module.prepare_batch(windows_to_tensors(w), None, value_bootstrap=bootstrap)["targets"].values[0]
    nstep = [rewards[t] + gamma * rewards[t + 1] for t in range(3)]  # rows 0, 1, 2 with n = 2
    if bootstrap == "stored":
        expected = [nstep[t] + gamma**2 * stored[t + 2] for t in range(3)]
    else:
        expected = [nstep[t] + stored[t] for t in range(3)]
    torch.testing.assert_close(values, torch.tensor(expected, dtype=torch.float32))
