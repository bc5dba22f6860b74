"""The targets that need a network: bootstrap values and reanalysed search policies.

The pure half (n-step plans, masks, prefixes) is :mod:`xtra.targets`; these two functions add what the target
network, a frozen teacher or a search says. Callers put the network in eval mode first.
"""

from __future__ import annotations

import numpy as np
import torch

from xtra.mcts import BatchedMCTS, completed_q_policy, run_mcts
from xtra.network import EfficientZeroNet
from xtra.targets import Bootstrap, ValuePlan, stack_frames

REANALYSE_POLICIES = ("visits", "completed_q")  # what a reanalysed search's policy target can be


def bootstrap_values(
    mode: Bootstrap,
    plan: ValuePlan,
    frames: torch.Tensor,
    root_values: torch.Tensor,
    frame_stack: int,
    net: EfficientZeroNet | None,
    search: BatchedMCTS,
    action_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """v at every value target's bootstrap position ``[B, K+1]``: read from the data, or from ``net`` (its value
    head, or the root value of a search without noise restricted to ``action_ids``)."""
    b, positions = plan.bootstrap_positions.shape
    if mode.reads_stored_values:
        return root_values.gather(1, plan.bootstrap_positions)
    obs = stack_frames(frames, plan.bootstrap_positions, frame_stack).flatten(0, 1)
    if mode is Bootstrap.search:
        searched, _ = run_mcts(net, obs, search, None, action_ids)
        return torch.from_numpy(searched.root_values).float().to(frames.device).view(b, positions)
    return net.scalar(net.initial_inference(obs).value_logits).view(b, positions)


def reanalysed_policies(
    net: EfficientZeroNet,
    obs: torch.Tensor,
    search: BatchedMCTS,
    rng: np.random.Generator | None,
    num_actions: int,
    action_ids: torch.Tensor | None = None,
    target: str = "visits",
) -> tuple[torch.Tensor, float]:
    """Fresh search policies for observation stacks ``[n, K+1, …]`` (root noise from ``rng``), placed in the
    network's ``num_actions``-wide space when the search ran over one game's ``action_ids``; and their mean root
    value (for logging). ``target``: ``visits`` (the visit distribution, EfficientZero) or ``completed_q``
    (:func:`~xtra.mcts.completed_q_policy`)."""
    n, positions = obs.shape[:2]
    result, network_values = run_mcts(net, obs.flatten(0, 1), search, rng, action_ids)
    if target == "visits":
        policy = result.policy
    elif target == "completed_q":
        policy = completed_q_policy(result.root_logits, result.visit_counts, result.child_q, network_values)
    else:
        raise ValueError(f"unknown search policy target {target!r}; choose one of {', '.join(REANALYSE_POLICIES)}")
    fresh = torch.from_numpy(policy).to(obs.device).view(n, positions, -1)
    if action_ids is not None:  # the game's own actions → the network's shared action space
        shared = torch.zeros(n, positions, num_actions, device=obs.device)
        fresh = shared.index_copy_(2, action_ids.to(obs.device), fresh)
    return fresh, float(result.root_values.mean())
