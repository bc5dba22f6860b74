"""A slow, independent pure-Python MCTS with the semantics that ``xtra.mcts`` documents.

Written object by object (nodes with dicts of children, explicit search paths), so that it shares no code and no
array layout with the numba kernels it checks.
"""

from __future__ import annotations

import math

MASK = (1 << 64) - 1


def mix(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def tie_key(seed: int, root: int, node: int, action: int) -> int:
    h = mix(seed ^ mix(root))
    h = mix(h ^ node)
    return mix(h ^ action)


def softmax(logits: list[float]) -> list[float]:
    m = max(logits)
    e = [math.exp(x - m) for x in logits]
    s = sum(e)
    return [x / s for x in e]


class Node:
    def __init__(self, index: int, prior: list[float], value_prefix: float, is_reset: bool, depth: int):
        self.index = index
        self.prior = prior
        self.value_prefix = value_prefix
        self.is_reset = is_reset
        self.depth = depth
        self.children: dict[int, Node] = {}
        self.visits = 0
        self.value_sum = 0.0
        self.latent = None

    def value(self) -> float:
        return self.value_sum / self.visits if self.visits else 0.0


def edge_reward(parent: Node, child: Node) -> float:
    return child.value_prefix if parent.is_reset else child.value_prefix - parent.value_prefix


def q_value(parent: Node, child: Node, discount: float) -> float:
    return edge_reward(parent, child) + discount * child.value()


def search_one(root_logits, noise, model, root_latent, root_index, cfg, seed) -> tuple[list[int], float]:
    """One root. ``model(latent, action, depth) -> (latent, value_prefix, value, logits)``."""
    prior = softmax(list(root_logits))
    if noise is not None:
        f = cfg.exploration_fraction
        prior = [(1 - f) * p + f * n for p, n in zip(prior, noise, strict=True)]
    root = Node(0, prior, 0.0, False, 0)
    root.visits = 1
    root.latent = root_latent
    parents: dict[int, Node] = {}
    nodes = [root]
    lo, hi = math.inf, -math.inf
    num_actions = len(prior)
    for sim in range(cfg.num_simulations):
        node, parent_q, is_root, path = root, 0.0, True, [root]
        while True:
            visited = [node.children[a] for a in range(num_actions) if a in node.children]
            total = sum(q_value(node, c, cfg.discount) for c in visited)
            if is_root and visited:
                mean_q = total / len(visited)
            else:
                mean_q = (parent_q + total) / (len(visited) + 1)
            parent_q, is_root = mean_q, False
            n_parent = node.visits - 1
            scores = []
            for a in range(num_actions):
                c = node.children.get(a)
                n_child = c.visits if c else 0
                pb_c = math.log((n_parent + cfg.pb_c_base + 1) / cfg.pb_c_base) + cfg.pb_c_init
                pb_c *= math.sqrt(n_parent) / (n_child + 1)
                q = q_value(node, c, cfg.discount) if c else mean_q
                if hi > lo:
                    q = (q - lo) / max(hi - lo, cfg.value_delta_max)
                q = min(max(q, 0.0), 1.0)
                scores.append(pb_c * node.prior[a] + q)
            best = max(scores)
            tied = [a for a in range(num_actions) if scores[a] >= best - 1e-6]
            action = max(tied, key=lambda a, n=node: tie_key(seed, root_index, n.index, a))
            if action not in node.children:
                break
            node = node.children[action]
            path.append(node)
        depth = node.depth + 1
        latent, prefix, value, logits = model(node.latent, action, depth, node.is_reset)
        leaf = Node(sim + 1, softmax(list(logits)), float(prefix), depth % cfg.value_prefix_horizon == 0, depth)
        leaf.latent = latent
        node.children[action] = leaf
        parents[leaf.index] = node
        nodes.append(leaf)
        path.append(leaf)
        g = float(value)
        for i in range(len(path) - 1, -1, -1):
            n = path[i]
            n.value_sum += g
            n.visits += 1
            if i > 0:
                g = edge_reward(path[i - 1], n) + cfg.discount * g
        lo, hi = math.inf, -math.inf
        for n in nodes[1:]:
            q = q_value(parents[n.index], n, cfg.discount)
            lo, hi = min(lo, q), max(hi, q)
    counts = [root.children[a].visits if a in root.children else 0 for a in range(num_actions)]
    return counts, root.value_sum / (root.visits - 1)
