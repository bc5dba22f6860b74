from dataclasses import replace

import numpy as np
import pytest
import torch
from reference_mcts import search_one

from xtra.mcts import BatchedMCTS, MCTSConfig, completed_q_policy, run_mcts, select_actions
from xtra.network import EfficientZeroNet, network_config

PRIME = 1_000_003
TABLE = 97


class TableModel:
    """A deterministic stand-in dynamics: state codes hash forward; outputs are read from random tables."""

    def __init__(self, num_actions: int, seed: int, tie_heavy: bool) -> None:
        g = np.random.default_rng(seed)
        self.rewards = np.round(g.normal(size=TABLE), 1 if tie_heavy else 6)
        self.values = np.round(g.normal(size=TABLE), 1 if tie_heavy else 6)
        self.logits = np.zeros((TABLE, num_actions)) if tie_heavy else g.normal(size=(TABLE, num_actions))

    def next_code(self, code, action):
        return (code * 31 + action + 1) % PRIME

    def torch_fn(self, latent, hidden, actions):
        code = self.next_code(latent[:, 0].long(), actions)
        idx = (code % TABLE).numpy()
        prefix = hidden[0][0, :, 0].numpy() + self.rewards[idx]
        new_hidden = torch.from_numpy(prefix).view(1, -1, 1)
        return code.double().view(-1, 1), (new_hidden, new_hidden.clone()), prefix, self.values[idx], self.logits[idx]

    def reference_fn(self, horizon):
        def model(latent, action, depth, parent_is_reset):
            code, h = latent
            nxt = self.next_code(code, action)
            prefix = h + self.rewards[nxt % TABLE]
            return (
                (nxt, 0.0 if depth % horizon == 0 else prefix),
                prefix,
                self.values[nxt % TABLE],
                self.logits[nxt % TABLE],
            )

        return model


@pytest.mark.parametrize("batch", [1, 8, 256])
@pytest.mark.parametrize("num_actions", [6, 18])
@pytest.mark.parametrize("tie_heavy", [False, True])
def test_matches_reference(batch, num_actions, tie_heavy):
    """Both drivers (numba gather on the host, torch gather on the device) against the plain-Python reference."""
    if batch == 256 and tie_heavy and num_actions == 18:
        batch = 64  # the slow reference dominates; 64 roots already cover every branch
    cfg = MCTSConfig(num_simulations=30 if batch > 8 else 50, discount=0.97, value_prefix_horizon=3)
    model = TableModel(num_actions, seed=batch + num_actions, tie_heavy=tie_heavy)
    g = np.random.default_rng(1)
    codes = g.integers(0, PRIME, size=batch)
    root_logits = np.zeros((batch, num_actions)) if tie_heavy else g.normal(size=(batch, num_actions))
    seed = 12345
    results = {
        host: BatchedMCTS(replace(cfg, host_gather=host)).search(
            model.torch_fn,
            torch.from_numpy(codes).double().view(-1, 1),
            (torch.zeros(1, batch, 1, dtype=torch.float64), torch.zeros(1, batch, 1, dtype=torch.float64)),
            root_logits,
            None,
            seed,
        )
        for host in (True, False)
    }
    ref = model.reference_fn(cfg.value_prefix_horizon)
    for b in range(batch):
        counts, value = search_one(root_logits[b], None, ref, (int(codes[b]), 0.0), b, cfg, seed)
        for host, result in results.items():
            np.testing.assert_array_equal(result.visit_counts[b], counts, err_msg=f"root {b}, host_gather={host}")
            assert result.root_values[b] == pytest.approx(value, rel=1e-9, abs=1e-12)
    for result in results.values():
        assert (result.visit_counts.sum(1) == cfg.num_simulations).all()


def test_host_and_device_drivers_agree_on_a_real_network():
    """The numba gather/store must feed the network exactly what the torch gather does (legal subset included)."""
    torch.manual_seed(0)
    net = EfficientZeroNet((10, 10, 10), 6, network_config("minatar")).eval()
    obs = torch.randint(0, 2, (8, 10, 10, 10), dtype=torch.uint8)
    legal = torch.tensor([0, 1, 3, 5])
    outs = [
        run_mcts(net, obs, BatchedMCTS(MCTSConfig(num_simulations=12, host_gather=host)),
                 np.random.default_rng(3), action_ids=legal)[0]
        for host in (True, False)
    ]  # fmt: skip
    np.testing.assert_array_equal(outs[0].visit_counts, outs[1].visit_counts)
    np.testing.assert_array_equal(outs[0].root_values, outs[1].root_values)


def test_host_gather_refuses_states_numba_cannot_read():
    with pytest.raises(ValueError, match="set it to null"):
        BatchedMCTS(MCTSConfig(num_simulations=2, host_gather=True)).search(
            lambda *a: None, torch.zeros(1, 4, dtype=torch.bfloat16),
            (torch.zeros(1, 1, 4, dtype=torch.bfloat16),) * 2, np.zeros((1, 3)),
        )  # fmt: skip


def test_noise_enters_root_priors_like_reference():
    cfg = MCTSConfig(num_simulations=40)
    model = TableModel(6, seed=3, tie_heavy=False)
    g = np.random.default_rng(7)
    mcts = BatchedMCTS(cfg)
    noise = mcts.dirichlet_noise(g, 4, 6)
    logits = g.normal(size=(4, 6))
    codes = g.integers(0, PRIME, size=4)
    zeros = torch.zeros(1, 4, 1, dtype=torch.float64)
    result = mcts.search(model.torch_fn, torch.from_numpy(codes).double().view(-1, 1), (zeros, zeros), logits, noise, 5)
    for b in range(4):
        counts, _ = search_one(logits[b], noise[b], model.reference_fn(5), (int(codes[b]), 0.0), b, cfg, 5)
        np.testing.assert_array_equal(result.visit_counts[b], counts)


class DelayedRewardChain:
    """Action 0 pays 0.5 at once and then nothing; action 1 pays 0 now and 2.0 one step later; action 2 never pays.

    The network knows no values (all zero) and has uniform priors, so only planning finds action 1.
    """

    def __call__(self, latent, hidden, actions):
        branch, steps = latent[:, 0].clone(), latent[:, 1] + 1
        at_root = latent[:, 1] == 0
        branch[at_root] = actions[at_root].double()
        reward = torch.zeros_like(steps)
        reward[(branch == 0) & (steps == 1)] = 0.5
        reward[(branch == 1) & (steps == 2)] = 2.0
        prefix = hidden[0][0, :, 0] + reward
        h = prefix.view(1, -1, 1)
        n = latent.shape[0]
        return torch.stack([branch, steps], 1), (h, h.clone()), prefix.numpy(), np.zeros(n), np.zeros((n, 3))


def test_plans_for_delayed_reward():
    cfg = MCTSConfig(num_simulations=100, discount=0.99)
    zeros = torch.zeros(1, 2, 1, dtype=torch.float64)
    result = BatchedMCTS(cfg).search(
        DelayedRewardChain(), torch.zeros(2, 2, dtype=torch.float64), (zeros, zeros), np.zeros((2, 3))
    )
    assert (result.visit_counts.argmax(1) == 1).all(), result.visit_counts
    assert result.root_values.min() > 0.5  # better than the greedy 0.5


def test_network_search_shapes_and_legal_subset():
    torch.manual_seed(0)
    net = EfficientZeroNet((10, 10, 10), 6, network_config("minatar")).eval()
    obs = torch.randint(0, 2, (5, 10, 10, 10), dtype=torch.uint8)
    mcts = BatchedMCTS(MCTSConfig(num_simulations=8))
    legal = torch.tensor([0, 1, 3])
    result, values = run_mcts(net, obs, mcts, np.random.default_rng(0), action_ids=legal)
    assert result.visit_counts.shape == (5, 3) and values.shape == (5,)
    assert (result.visit_counts.sum(1) == 8).all()
    np.testing.assert_allclose(result.policy.sum(1), 1.0, rtol=1e-6)


def test_select_actions():
    counts = np.array([[0, 10, 2], [5, 5, 0]])
    assert select_actions(counts, 1.0, None).tolist() == [1, 0]
    g = np.random.default_rng(0)
    draws = np.stack([select_actions(counts, 1.0, g) for _ in range(3000)])
    assert abs((draws[:, 0] == 2).mean() - 2 / 12) < 0.03
    assert set(np.unique(draws[:, 1])) == {0, 1}


def test_greedy_ties_go_to_the_highest_search_q():
    """A small search often ends in tied visit counts; first-id ties would always pick action 0 (MinAtar's no-op)."""
    counts = np.array([[2, 2, 2, 2], [1, 3, 3, 1], [5, 0, 0, 0], [2, 2, 0, 0]])
    q = np.array([[0.1, 0.5, 0.3, 0.4], [9.0, 0.2, 0.4, 9.0], [0.0, -np.inf, -np.inf, -np.inf], [0.3, 0.3, 0, 0]])
    assert select_actions(counts, 0.0, None, q).tolist() == [1, 2, 0, 0]  # equal Q too: the lowest id
    assert select_actions(counts, 0.0, None).tolist() == [0, 1, 0, 0]
    g = np.random.default_rng(0)
    assert select_actions(counts, 0.0, g, q).tolist() == [1, 2, 0, 0]  # T = 0 is greedy with an rng too


def test_search_reports_each_root_childs_q():
    """Q of a root edge = r + γ·mean backed-up value; unvisited edges are -inf."""
    cfg = MCTSConfig(num_simulations=100, discount=0.99)
    zeros = torch.zeros(1, 2, 1, dtype=torch.float64)
    result = BatchedMCTS(cfg).search(
        DelayedRewardChain(), torch.zeros(2, 2, dtype=torch.float64), (zeros, zeros), np.zeros((2, 3))
    )
    assert result.child_q.shape == (2, 3)
    assert (result.child_q[:, 1] > result.child_q[:, 0]).all()  # 2.0 one step later beats 0.5 now
    assert (result.child_q[:, 1] < 0.99 * 2.0).all()  # the mean includes the child's own zero-value expansion
    one = BatchedMCTS(MCTSConfig(num_simulations=1)).search(
        DelayedRewardChain(), torch.zeros(2, 2, dtype=torch.float64), (zeros, zeros), np.zeros((2, 3))
    )
    assert np.isinf(one.child_q).sum(1).tolist() == [2, 2]


def test_host_driver_takes_half_precision_network_outputs():
    """A network under autocast returns bfloat16 states from float32 inputs; the host driver widens them."""
    torch.manual_seed(0)
    net = EfficientZeroNet((10, 10, 10), 6, network_config("minatar")).eval()
    obs = torch.randint(0, 2, (3, 10, 10, 10), dtype=torch.uint8)

    def recurrent(latent, hidden, actions):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net.recurrent_inference(latent, hidden, actions)
        n = latent.shape[0]
        return out.latent, out.hidden, np.zeros(n), np.zeros(n), out.policy_logits.float().detach().numpy()

    with torch.inference_mode():
        init = net.initial_inference(obs)
        result = BatchedMCTS(MCTSConfig(num_simulations=6, host_gather=True)).search(
            recurrent, init.latent, init.hidden, np.zeros((3, 6))
        )
    assert (result.visit_counts.sum(1) == 6).all()


def test_completed_q_policy_by_hand():
    """softmax(logits + (c_visit + max N)·c_scale·minmax(completed Q)); unvisited children get the mixed value."""
    logits = np.log(np.array([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    counts = np.array([[2, 1, 0], [0, 0, 0]])
    q = np.array([[1.0, 0.0, -np.inf], [-np.inf, -np.inf, -np.inf]])
    value = np.array([0.4, 2.0])
    p = completed_q_policy(logits, counts, q, value)
    # row 0: prior-weighted Q of the visited = (0.5·1 + 0.25·0) / 0.75 = 2/3; mixed = (0.4 + 3·2/3) / 4 = 0.6
    scaled = (np.array([1.0, 0.0, 0.6]) - 0.0) / 1.0
    z = logits[0] + (50 + 2) * 0.1 * scaled
    assert p[0] == pytest.approx(np.exp(z) / np.exp(z).sum(), rel=1e-5)
    assert p[1] == pytest.approx([1 / 3] * 3, rel=1e-5)  # nothing visited: every Q is the value, the prior stays
    assert p.dtype == np.float32 and np.allclose(p.sum(1), 1.0)


def test_completed_q_targets_keep_the_searchs_ranking_where_visits_are_flat():
    """8 simulations over the 3 actions of the delayed-reward chain: the improved policy puts most mass on the
    visited action whose Q is highest, more than the visit distribution puts on its most visited one."""
    cfg = MCTSConfig(num_simulations=8, discount=0.99)
    zeros = torch.zeros(1, 2, 1, dtype=torch.float64)
    logits = np.zeros((2, 3))
    result = BatchedMCTS(cfg).search(DelayedRewardChain(), torch.zeros(2, 2, dtype=torch.float64), (zeros, zeros),
                                     logits)  # fmt: skip
    improved = completed_q_policy(logits, result.visit_counts, result.child_q, np.zeros(2))
    best = np.where(result.visit_counts > 0, result.child_q, -np.inf).argmax(1)
    assert (improved.argmax(1) == best).all()
    assert (improved.max(1) > result.policy.max(1)).all()
