"""Batched MCTS: numba kernels over preallocated ``[batch, node, action]`` arrays and a thin torch driver.

Semantics are EfficientZero's tree (``efficientzero-spec.md`` §5): pUCT with c1 = 1.25 and c2 = 19 652, Dirichlet
noise at the roots, min-max normalisation of Q over the current tree with a floor of 0.01, edge rewards read
off the value prefix (reset every ``horizon`` steps along a path, as the LSTM is), discounting, and the EZ "mean Q"
for unvisited children. Three deliberate differences, each a fix:

* min-max statistics use each node's true parent prefix (the C++ tree's DFS uses the previously popped node);
* the root value is the mean of the S backed-up returns (the C++ tree divides by S + 1);
* ties (scores within 1e-6) are broken by a hash of (seed, root, node, action) instead of the clock-seeded
  ``rand()``, so that searches are reproducible.

Node ``i`` of a root is created by simulation ``i`` (the root is node 0), so the driver keeps the latent of node
``i`` in slot ``i`` of a device-side pool and nothing per node ever happens in Python.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields

import numba
import numpy as np
import torch

Hidden = tuple[torch.Tensor, torch.Tensor]
TIE_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SearchOptions:
    """The search's own settings: what a module's ``mcts`` argument holds.

    The discount and the value-prefix horizon are not here: they are properties of the task and the model (the
    targets use them too), so the module owns them and passes them into :class:`MCTSConfig`.
    """

    num_simulations: int = 50
    pb_c_init: float = 1.25
    pb_c_base: float = 19_652.0
    dirichlet_alpha: float = 0.3
    exploration_fraction: float = 0.25
    value_delta_max: float = 0.01
    # the CPU driver (numba gather on numpy views of the pools): None = whenever the states are float32/float64 on
    # the CPU; False = the torch-gather driver (GPUs; 13-25 % faster at >= 256 roots with two torch threads)
    host_gather: bool | None = None


@dataclass(frozen=True)
class MCTSConfig(SearchOptions):
    """Everything one search runs with: its options plus the model's discount and value-prefix horizon."""

    discount: float = 0.997**4
    value_prefix_horizon: int = 5

    @classmethod
    def of(cls, options: SearchOptions, discount: float, value_prefix_horizon: int) -> MCTSConfig:
        own = {f.name: getattr(options, f.name) for f in fields(SearchOptions)}
        return cls(**own, discount=discount, value_prefix_horizon=value_prefix_horizon)


class Tree:
    """Preallocated arrays for ``batch`` roots of ``num_simulations + 1`` nodes over ``num_actions`` actions.

    Arrays of one dtype and shape share one block (``stats``, ``links``, ``leaf``) so that the fused host kernel
    takes few arguments: numba's dispatch cost grows with every array passed.
    """

    def __init__(self, batch: int, num_simulations: int, num_actions: int) -> None:
        m = num_simulations + 1
        self.prior = np.zeros((batch, m, num_actions), dtype=np.float32)
        self.child = np.full((batch, m, num_actions), -1, dtype=np.int32)
        self.stats = np.zeros((3, batch, m), dtype=np.float64)
        self.value_sum, self.value_prefix, self.reward = self.stats
        self.links = np.zeros((2, batch, m), dtype=np.int32)
        self.visits, self.parent = self.links
        self.parent[:] = -1
        self.is_reset = np.zeros((batch, m), dtype=np.bool_)
        self.num_nodes = np.zeros(batch, dtype=np.int32)
        self.minmax = np.zeros((batch, 2), dtype=np.float64)
        self.leaf = np.zeros((3, batch), dtype=np.int64)
        self.leaf_parent, self.leaf_action, self.leaf_depth = self.leaf

    def arrays(self) -> tuple:
        return (
            self.prior, self.child, self.visits, self.value_sum, self.value_prefix, self.reward,
            self.is_reset, self.parent, self.num_nodes, self.minmax,
        )  # fmt: skip

    def packed(self) -> tuple:
        return self.prior, self.child, self.stats, self.links, self.is_reset, self.num_nodes, self.minmax, self.leaf


_JIT = {"nogil": True, "cache": True, "fastmath": False}


@numba.njit(**_JIT)
def _mix(x: np.uint64) -> np.uint64:
    """splitmix64 finaliser: a well-spread 64-bit hash."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


@numba.njit(**_JIT)
def tie_key(seed: np.uint64, root: int, node: int, action: int) -> np.uint64:
    h = _mix(seed ^ _mix(np.uint64(root)))
    h = _mix(h ^ np.uint64(node))
    return _mix(h ^ np.uint64(action))


@numba.njit(**_JIT)
def _softmax_into(logits: np.ndarray, out: np.ndarray) -> None:
    m = logits.max()
    total = 0.0
    for a in range(logits.shape[0]):
        e = np.exp(np.float64(logits[a]) - m)
        out[a] = e
        total += e
    for a in range(logits.shape[0]):
        out[a] = out[a] / total


@numba.njit(**_JIT)
def prepare_roots(
    prior, child, visits, value_sum, value_prefix, reward, is_reset, parent, num_nodes, minmax,
    root_logits: np.ndarray, noise: np.ndarray, exploration_fraction: float,
) -> None:  # fmt: skip
    """Reset every root's tree to one expanded node with (noised) priors; N(root) starts at 1 as in EZ."""
    batch, m, num_actions = prior.shape
    for b in range(batch):
        child[b, :, :] = -1
        visits[b, :] = 0
        value_sum[b, :] = 0.0
        _softmax_into(root_logits[b], prior[b, 0])
        if noise.shape[0] > 0:
            for a in range(num_actions):
                prior[b, 0, a] = (1.0 - exploration_fraction) * prior[b, 0, a] + exploration_fraction * noise[b, a]
        visits[b, 0] = 1
        value_prefix[b, 0] = 0.0
        reward[b, 0] = 0.0
        is_reset[b, 0] = False
        parent[b, 0] = -1
        num_nodes[b] = 1
        minmax[b, 0] = np.inf
        minmax[b, 1] = -np.inf


@numba.njit(**_JIT)
def _normalise(q: float, lo: float, hi: float, delta: float) -> float:
    if hi > lo:
        q = (q - lo) / max(hi - lo, delta)
    return min(max(q, 0.0), 1.0)


@numba.njit(**_JIT)
def select_leaves(
    prior, child, visits, value_sum, value_prefix, reward, is_reset, parent, num_nodes, minmax,
    leaf_parent, leaf_action, leaf_depth,
    pb_c_init: float, pb_c_base: float, discount: float, value_delta_max: float, seed: np.uint64,
) -> None:  # fmt: skip
    """Descend every root by pUCT to an unexpanded edge; writes (parent node, action, depth) per root."""
    batch, m, num_actions = prior.shape
    scores = np.empty(num_actions, dtype=np.float64)
    for b in range(batch):
        node = 0
        parent_q = 0.0
        is_root = True
        d = 0
        lo, hi = minmax[b, 0], minmax[b, 1]
        while True:
            total_q = 0.0
            visited = 0
            for a in range(num_actions):
                c = child[b, node, a]
                if c >= 0:
                    total_q += reward[b, c] + discount * value_sum[b, c] / visits[b, c]
                    visited += 1
            if is_root and visited > 0:
                mean_q = total_q / visited
            else:
                mean_q = (parent_q + total_q) / (visited + 1)
            parent_q = mean_q
            is_root = False
            n_parent = visits[b, node] - 1
            explore = (np.log((n_parent + pb_c_base + 1.0) / pb_c_base) + pb_c_init) * np.sqrt(np.float64(n_parent))
            best = -np.inf
            for a in range(num_actions):
                c = child[b, node, a]
                n_child = visits[b, c] if c >= 0 else 0
                pb_c = explore / (n_child + 1)
                if c >= 0:
                    q = reward[b, c] + discount * value_sum[b, c] / visits[b, c]
                else:
                    q = mean_q
                s = pb_c * np.float64(prior[b, node, a]) + _normalise(q, lo, hi, value_delta_max)
                scores[a] = s
                if s > best:
                    best = s
            chosen = -1
            chosen_key = np.uint64(0)
            for a in range(num_actions):
                if scores[a] >= best - TIE_TOLERANCE:
                    k = tie_key(seed, b, node, a)
                    if chosen < 0 or k > chosen_key:
                        chosen, chosen_key = a, k
            d += 1
            c = child[b, node, chosen]
            if c < 0:
                leaf_parent[b] = node
                leaf_action[b] = chosen
                leaf_depth[b] = d
                break
            node = c


@numba.njit(**_JIT)
def expand_and_backup(
    prior, child, visits, value_sum, value_prefix, reward, is_reset, parent, num_nodes, minmax,
    leaf_parent, leaf_action, leaf_depth,
    leaf_value_prefix: np.ndarray, leaf_value: np.ndarray, leaf_logits: np.ndarray,
    discount: float, horizon: int,
) -> None:  # fmt: skip
    """Create each root's new leaf from the network outputs, back its value up, refresh min-max stats."""
    batch = prior.shape[0]
    for b in range(batch):
        n = num_nodes[b]
        p = leaf_parent[b]
        child[b, p, leaf_action[b]] = n
        parent[b, n] = p
        value_prefix[b, n] = leaf_value_prefix[b]
        is_reset[b, n] = leaf_depth[b] % horizon == 0
        if is_reset[b, p]:
            reward[b, n] = value_prefix[b, n]
        else:
            reward[b, n] = value_prefix[b, n] - value_prefix[b, p]
        _softmax_into(leaf_logits[b], prior[b, n])
        num_nodes[b] = n + 1
        g = np.float64(leaf_value[b])
        node = n
        while node >= 0:
            value_sum[b, node] += g
            visits[b, node] += 1
            g = reward[b, node] + discount * g
            node = parent[b, node]
        lo, hi = np.inf, -np.inf
        for j in range(1, n + 1):
            q = reward[b, j] + discount * value_sum[b, j] / visits[b, j]
            lo = min(lo, q)
            hi = max(hi, q)
        minmax[b, 0] = lo
        minmax[b, 1] = hi


@numba.njit(**_JIT)
def _copy_row(src: np.ndarray, dst: np.ndarray) -> None:
    """An element loop: numba compiles it to a vectorised copy, about 3x faster than slice assignment."""
    for j in range(src.shape[0]):
        dst[j] = src[j]


@numba.njit(**_JIT)
def host_simulation_step(
    prior, child, stats, links, is_reset, num_nodes, minmax, leaf,
    params: np.ndarray, seed: np.uint64, horizon: int, action_ids: np.ndarray,
    latent_pool: np.ndarray, hidden_pool: np.ndarray, latent_in: np.ndarray, hidden_in: np.ndarray,
    actions_in: np.ndarray, new_latent: np.ndarray, new_h: np.ndarray, new_c: np.ndarray,
    leaf_value_prefix: np.ndarray, leaf_value: np.ndarray, leaf_logits: np.ndarray, store: bool, select: bool,
) -> None:  # fmt: skip
    """The host driver's one kernel per simulation, between two network calls.

    ``store``: put the previous call's outputs into each new node's pool slot ``[node, root]`` (the LSTM state
    zeroed where the value prefix resets, as the LSTM's is), expand and back up. ``select``: descend to the next
    leaves and copy their parents' latent and LSTM state into the network's input buffers, the action mapped to
    the network's ids (``action_ids`` empty: the identity). ``params``: (c1, c2, discount, value_delta_max).
    """
    value_sum, value_prefix, reward = stats[0], stats[1], stats[2]
    visits, parent = links[0], links[1]
    leaf_parent, leaf_action, leaf_depth = leaf[0], leaf[1], leaf[2]
    batch = prior.shape[0]
    if store:
        latent = np.ascontiguousarray(new_latent).reshape(batch, new_latent.size // batch)
        h = np.ascontiguousarray(new_h).reshape(batch, new_h.size // batch)
        c = np.ascontiguousarray(new_c).reshape(batch, new_c.size // batch)
        for b in range(batch):
            n = num_nodes[b]
            _copy_row(latent[b], latent_pool[n, b])
            keep = leaf_depth[b] % horizon != 0
            for j in range(h.shape[1]):
                hidden_pool[n, 0, b, j] = h[b, j] if keep else 0.0
                hidden_pool[n, 1, b, j] = c[b, j] if keep else 0.0
        expand_and_backup(
            prior, child, visits, value_sum, value_prefix, reward, is_reset, parent, num_nodes, minmax,
            leaf_parent, leaf_action, leaf_depth, leaf_value_prefix, leaf_value, leaf_logits, params[2], horizon,
        )  # fmt: skip
    if select:
        select_leaves(
            prior, child, visits, value_sum, value_prefix, reward, is_reset, parent, num_nodes, minmax,
            leaf_parent, leaf_action, leaf_depth, params[0], params[1], params[2], params[3], seed,
        )  # fmt: skip
        for b in range(batch):
            p = leaf_parent[b]
            _copy_row(latent_pool[p, b], latent_in[b])
            _copy_row(hidden_pool[p, 0, b], hidden_in[0, b])
            _copy_row(hidden_pool[p, 1, b], hidden_in[1, b])
            a = leaf_action[b]
            actions_in[b] = action_ids[a] if action_ids.shape[0] > 0 else a


@numba.njit(**_JIT)
def root_statistics(
    child, visits, value_sum, reward, discount: float, out_counts: np.ndarray, out_values: np.ndarray,
    out_q: np.ndarray,
) -> None:  # fmt: skip
    """Visit counts and Q of each root's children (-inf where unvisited) and the root value (mean of the
    backed-up returns)."""
    batch, _, num_actions = child.shape
    for b in range(batch):
        for a in range(num_actions):
            c = child[b, 0, a]
            out_counts[b, a] = visits[b, c] if c >= 0 else 0
            out_q[b, a] = reward[b, c] + discount * value_sum[b, c] / visits[b, c] if c >= 0 else -np.inf
        n = visits[b, 0] - 1
        out_values[b] = value_sum[b, 0] / n if n > 0 else 0.0


RecurrentFn = Callable[
    [torch.Tensor, Hidden, torch.Tensor], tuple[torch.Tensor, Hidden, np.ndarray, np.ndarray, np.ndarray]
]


@dataclass
class SearchResult:
    visit_counts: np.ndarray  # [B, A] int32
    root_values: np.ndarray  # [B] float64
    child_q: np.ndarray | None = None  # [B, A] float64, -inf where unvisited
    root_logits: np.ndarray | None = None  # [B, A] the network's prior logits at the roots (before noise)

    @property
    def policy(self) -> np.ndarray:
        """Visit distribution over the root's actions (the policy target)."""
        counts = self.visit_counts.astype(np.float32)
        return counts / np.maximum(counts.sum(1, keepdims=True), 1.0)


class BatchedMCTS:
    """Runs S simulations for a batch of roots; one call of ``recurrent`` per simulation for the whole batch.

    Two drivers, one tree: on the CPU (float32/float64 states) each network call is followed by one numba call
    that stores its outputs, backs up, selects and gathers the next inputs on numpy views of the torch pools, so
    no torch operation runs per simulation besides the network's own. On other devices (or
    ``MCTSConfig.host_gather=False``) the gather and store are torch ops on the device pools.
    """

    HOST_DTYPES = (torch.float32, torch.float64)

    def __init__(self, config: MCTSConfig | None = None) -> None:
        self.config = config or MCTSConfig()
        self._trees: dict[tuple[int, int, int], Tree] = {}
        self._pools: dict[str, torch.Tensor] = {}

    def _tree(self, batch: int, num_actions: int) -> Tree:
        key = (batch, self.config.num_simulations, num_actions)
        if key not in self._trees:
            self._trees = {key: Tree(*key)}
        return self._trees[key]

    def _pool(self, name: str, like: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
        """A reused buffer: fresh allocations of this size cost more than the whole tree search."""
        pool = self._pools.get(name)
        if pool is None or pool.shape != shape or pool.dtype != like.dtype or pool.device != like.device:
            pool = self._pools[name] = like.new_empty(shape)
        return pool

    def dirichlet_noise(self, rng: np.random.Generator, batch: int, num_actions: int) -> np.ndarray:
        alpha = np.full(num_actions, self.config.dirichlet_alpha)
        return rng.dirichlet(alpha, size=batch).astype(np.float32)

    def _on_host(self, latent: torch.Tensor, hidden: Hidden) -> bool:
        usable = all(t.device.type == "cpu" and t.dtype in self.HOST_DTYPES for t in (latent, *hidden))
        wanted = self.config.host_gather
        if wanted and not usable:
            raise ValueError("mcts.host_gather=true needs CPU states in float32 or float64; set it to null (auto)")
        return usable if wanted is None else wanted

    def search(
        self,
        recurrent: RecurrentFn,
        latent: torch.Tensor,
        hidden: Hidden,
        root_logits: np.ndarray,
        noise: np.ndarray | None = None,
        seed: int = 0,
        action_ids: torch.Tensor | None = None,
    ) -> SearchResult:
        """Search from root latents.

        ``root_logits`` are the roots' policy logits over the tree's actions; ``noise`` (``[B, A]``, or None for
        none) is mixed into the root priors; ``action_ids`` maps tree actions to the network's action ids
        (a game's legal subset of a shared action space).
        """
        cfg = self.config
        root_logits = np.ascontiguousarray(root_logits, dtype=np.float32)
        batch, num_actions = root_logits.shape
        tree = self._tree(batch, num_actions)
        empty = np.zeros((0, num_actions), dtype=np.float32)
        noise_arr = empty if noise is None else np.ascontiguousarray(noise, dtype=np.float32)
        prepare_roots(*tree.arrays(), root_logits, noise_arr, cfg.exploration_fraction)
        seed64 = np.uint64(seed % 2**64)
        simulate = self._simulate_on_host if self._on_host(latent, hidden) else self._simulate_on_device
        simulate(tree, recurrent, latent, hidden, seed64, action_ids)
        counts = np.zeros((batch, num_actions), dtype=np.int32)
        values = np.zeros(batch, dtype=np.float64)
        q = np.zeros((batch, num_actions), dtype=np.float64)
        root_statistics(tree.child, tree.visits, tree.value_sum, tree.reward, cfg.discount, counts, values, q)
        return SearchResult(counts, values, q)

    def _simulate_on_host(
        self, tree: Tree, recurrent: RecurrentFn, latent: torch.Tensor, hidden: Hidden, seed64: np.uint64,
        action_ids: torch.Tensor | None,
    ) -> None:  # fmt: skip
        """One numba call per simulation (store the last outputs, back up, select, gather the next inputs).

        Node ``i`` of root ``b`` lives in slot ``[i, b]`` of the pools, which are torch tensors read and written
        by the kernel through numpy views.
        """
        cfg = self.config
        sims, batch, width = cfg.num_simulations, latent.shape[0], hidden[0].shape[-1]
        latent_pool = self._pool("latent", latent, (sims + 1, *latent.shape))
        hidden_pool = self._pool("hidden", hidden[0], (sims + 1, 2, batch, width))
        latent_in = self._pool("latent_in", latent, tuple(latent.shape))
        hidden_in = self._pool("hidden_in", hidden[0], (2, 1, batch, width))
        actions_in = self._pool("actions_in", torch.empty(0, dtype=torch.int64), (batch,))
        latent_pool[0] = latent
        hidden_pool[0, 0], hidden_pool[0, 1] = hidden[0][0], hidden[1][0]
        ids = np.zeros(0, np.int64) if action_ids is None else action_ids.cpu().numpy().astype(np.int64)
        params = np.array([cfg.pb_c_init, cfg.pb_c_base, cfg.discount, cfg.value_delta_max])
        fixed = (
            *tree.packed(), params, seed64, cfg.value_prefix_horizon, ids,
            _host(latent_pool).reshape(sims + 1, batch, -1), _host(hidden_pool),
            _host(latent_in).reshape(batch, -1), _host(hidden_in).reshape(2, batch, width), _host(actions_in),
        )  # fmt: skip
        h_in, c_in = hidden_in[0], hidden_in[1]
        none_f, none_v = np.zeros((batch, 1), np.float32), np.zeros(batch)
        host_simulation_step(*fixed, none_f, none_f, none_f, none_v, none_v, none_f, False, True)
        for sim in range(sims):
            new_latent, (h, c), prefix, value, logits = recurrent(latent_in, (h_in, c_in), actions_in)
            host_simulation_step(
                *fixed, _host(new_latent), _host(h), _host(c), prefix, value,
                np.ascontiguousarray(logits, dtype=np.float32), True, sim + 1 < sims,
            )  # fmt: skip

    def _simulate_on_device(
        self, tree: Tree, recurrent: RecurrentFn, latent: torch.Tensor, hidden: Hidden, seed64: np.uint64,
        action_ids: torch.Tensor | None,
    ) -> None:  # fmt: skip
        """Device pools: per simulation only the leaf indices go to the device and the network outputs back."""
        cfg = self.config
        arrays = tree.arrays()
        device = latent.device
        sims, batch = cfg.num_simulations, latent.shape[0]
        latent_pool = self._pool("latent", latent, (sims + 1, *latent.shape))
        h_pool = self._pool("h", hidden[0], (sims + 1, *hidden[0].shape[1:]))
        c_pool = self._pool("c", hidden[1], (sims + 1, *hidden[1].shape[1:]))
        latent_pool[0], h_pool[0], c_pool[0] = latent, hidden[0][0], hidden[1][0]
        flat_latent = latent_pool.view((sims + 1) * batch, *latent.shape[1:])
        flat_h, flat_c = h_pool.view((sims + 1) * batch, -1), c_pool.view((sims + 1) * batch, -1)
        rows = np.arange(batch, dtype=np.int64)
        pin = device.type == "cuda"
        for sim in range(sims):
            select_leaves(
                *arrays, tree.leaf_parent, tree.leaf_action, tree.leaf_depth,
                cfg.pb_c_init, cfg.pb_c_base, cfg.discount, cfg.value_delta_max, seed64,
            )  # fmt: skip
            host = np.stack(
                [tree.leaf_parent * batch + rows, tree.leaf_action, tree.leaf_depth % cfg.value_prefix_horizon != 0]
            )
            index = torch.from_numpy(host)
            index = (index.pin_memory() if pin else index).to(device, non_blocking=True)
            slots, actions, keep = index[0], index[1], index[2].to(h_pool.dtype).view(-1, 1)
            if action_ids is not None:
                actions = action_ids[actions]
            h_in = flat_h.index_select(0, slots).unsqueeze(0)
            c_in = flat_c.index_select(0, slots).unsqueeze(0)
            new_latent, (h, c), prefix, value, logits = recurrent(
                flat_latent.index_select(0, slots), (h_in, c_in), actions
            )
            latent_pool[sim + 1] = new_latent
            torch.mul(h[0], keep, out=h_pool[sim + 1])
            torch.mul(c[0], keep, out=c_pool[sim + 1])
            expand_and_backup(
                *arrays, tree.leaf_parent, tree.leaf_action, tree.leaf_depth,
                np.ascontiguousarray(prefix, dtype=np.float64), np.ascontiguousarray(value, dtype=np.float64),
                np.ascontiguousarray(logits, dtype=np.float32), cfg.discount, cfg.value_prefix_horizon,
            )  # fmt: skip


def _host(t: torch.Tensor) -> np.ndarray:
    """A numpy view of a CPU tensor (the kernel makes a strided one contiguous); half-precision outputs (a network
    under autocast) are widened, since numpy has no bfloat16."""
    t = t.detach() if t.requires_grad else t
    return (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()  # others: a view, no copy


def network_recurrent_fn(net: torch.nn.Module, action_ids: torch.Tensor | None = None) -> RecurrentFn:
    """Wrap an :class:`~xtra.network.EfficientZeroNet` as the driver's ``recurrent`` callable.

    Value prefix, value and the (sliced) policy logits leave the device as one packed array per simulation.
    """

    def recurrent(latent: torch.Tensor, hidden: Hidden, actions: torch.Tensor):
        out = net.recurrent_inference(latent, hidden, actions)
        logits = out.policy_logits if action_ids is None else out.policy_logits[:, action_ids]
        packed = torch.cat(
            [net.scalar(out.value_prefix_logits)[:, None], net.scalar(out.value_logits)[:, None], logits.float()], 1
        ).cpu().numpy()  # fmt: skip
        return out.latent, out.hidden, packed[:, 0], packed[:, 1], packed[:, 2:]

    return recurrent


@torch.inference_mode()
def run_mcts(
    net: torch.nn.Module,
    obs: torch.Tensor,
    mcts: BatchedMCTS,
    rng: np.random.Generator | None = None,
    action_ids: torch.Tensor | None = None,
) -> tuple[SearchResult, np.ndarray]:
    """Initial inference + search on a batch of observations (noise at the roots when ``rng`` is given).

    Returns the search result and the network's own value estimate of each root. The caller puts the network
    in eval mode (batch norm uses running statistics during search).
    """
    init = net.initial_inference(obs)
    logits = init.policy_logits if action_ids is None else init.policy_logits[:, action_ids]
    packed = torch.cat([net.scalar(init.value_logits)[:, None], logits.float()], 1).cpu().numpy()
    batch, num_actions = packed.shape[0], packed.shape[1] - 1
    noise = mcts.dirichlet_noise(rng, batch, num_actions) if rng is not None else None
    seed = int(rng.integers(2**63)) if rng is not None else 0
    result = mcts.search(
        network_recurrent_fn(net, action_ids), init.latent, init.hidden, packed[:, 1:], noise, seed, action_ids
    )
    result.root_logits = packed[:, 1:]
    return result, packed[:, 0]


def completed_q_policy(
    logits: np.ndarray, counts: np.ndarray, q: np.ndarray, value: np.ndarray, c_visit: float = 50.0,
    c_scale: float = 0.1,
) -> np.ndarray:  # fmt: skip
    """The search's improved policy ``softmax(logits + σ(completed Q))`` (Gumbel MuZero's policy target).

    Why: with a handful of simulations the visit counts say little (8 simulations over 4 actions end near 2-2-2-2,
    and root noise decides which action got the third), while the children's Q values already rank the actions.
    Unvisited children's Q is completed with the mixed value (the network's value blended with the prior-weighted
    Q of the visited children); the completed Q are min-max scaled per root, then weighted by
    ``(c_visit + max visits) · c_scale``, so the more the search looked, the more its Q counts against the prior.

    ``logits`` [B, A] prior logits (no noise), ``counts`` [B, A] visits, ``q`` [B, A] children's Q (-inf where
    unvisited), ``value`` [B] the network's value of each root.
    """
    logits = np.asarray(logits, dtype=np.float64)
    counts = np.asarray(counts, dtype=np.float64)
    visited = counts > 0
    q = np.where(visited, q, 0.0)
    prior = np.exp(logits - logits.max(1, keepdims=True))
    prior /= prior.sum(1, keepdims=True)
    n = counts.sum(1)
    seen = (prior * visited).sum(1)
    prior_weighted_q = (prior * q).sum(1) / np.maximum(seen, 1e-12)
    mixed = np.where(seen > 0, (value + n * prior_weighted_q) / (1.0 + n), value)
    completed = np.where(visited, q, mixed[:, None])
    lo, hi = completed.min(1, keepdims=True), completed.max(1, keepdims=True)
    scaled = (completed - lo) / np.maximum(hi - lo, 1e-8)
    z = logits + (c_visit + counts.max(1, keepdims=True)) * c_scale * scaled
    z = np.exp(z - z.max(1, keepdims=True))
    return (z / z.sum(1, keepdims=True)).astype(np.float32)


def select_actions(
    visit_counts: np.ndarray, temperature: float, rng: np.random.Generator | None, child_q: np.ndarray | None = None
) -> np.ndarray:
    """Sample ∝ N^(1/T); with ``rng=None`` or T = 0 the most visited action, as in evaluation.

    Greedy ties go to the highest search Q (``child_q``), then to the lowest id. First-id ties alone bias small
    searches: 8 simulations over 4 actions often end 2-2-2-2, and the first action (MinAtar's no-op) would win
    every such state.
    """
    if rng is None or temperature == 0.0:
        if child_q is None:
            return visit_counts.argmax(1)
        most = visit_counts == visit_counts.max(1, keepdims=True)
        return np.where(most, child_q, -np.inf).argmax(1)
    counts = visit_counts.astype(np.float64) ** (1.0 / temperature)
    probs = counts / counts.sum(1, keepdims=True)
    u = rng.random((probs.shape[0], 1))
    return np.minimum((probs.cumsum(1) < u).sum(1), probs.shape[1] - 1)
