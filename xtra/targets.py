"""Learning targets from raw replay windows: n-step values, value prefixes, masks, observation stacks.

Pure tensor functions; the LightningModule calls them on the device after the batch arrives and supplies the
model-dependent parts (bootstrap values from the target network, reanalysed policies from its MCTS).

Index conventions for a window sampled at step t with K unroll steps and at most N TD steps: position k is
t + k; ``steps_left`` L is the number of actions stored from t to the segment end, so the observation at k
exists for k ≤ L and the action (reward, stored policy) at k exists for k < L. The segment end is a game end
when ``terminal`` is set; otherwise data simply stops there and values bootstrap from the last observation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import torch


class Bootstrap(str, Enum):
    """Where the tail γⁿ·v of an n-step value target comes from (member names are the config values)."""

    network = "network"  # the target network's value of the bootstrap observation (EfficientZero)
    search = "search"  # the root value of a search of the target network from it
    stored = "stored"  # the search value recorded with the data at the bootstrap step (offline, no network)
    stored_as_coded = "stored_as_coded"  # the authors' offline target: the stored value of the *same* state + rewards

    @property
    def reads_stored_values(self) -> bool:
        """Whether the data's recorded search values stand in for a network (a cut segment's end has none)."""
        return self in (Bootstrap.stored, Bootstrap.stored_as_coded)

    @property
    def needs_observations(self) -> bool:
        """Whether the bootstrap observations are stacked and evaluated by a network."""
        return self in (Bootstrap.network, Bootstrap.search)


def td_steps(age: torch.Tensor, max_steps: int, decay_env_steps: int | None) -> torch.Tensor:
    """EfficientZero's off-policy correction: the horizon shrinks by one per ``decay_env_steps`` of data age."""
    if not decay_env_steps:
        return torch.full_like(age, max_steps)
    return (max_steps - torch.div(age, decay_env_steps, rounding_mode="floor")).clamp(1, max_steps)


def stack_frames(frames: torch.Tensor, positions: torch.Tensor, stack: int) -> torch.Tensor:
    """Observations at window ``positions`` ``[B, P]`` from frames ``[B, W, C, H, W']`` → ``[B, P, stack·C, H, W']``.

    Window frame j holds row t − stack + 1 + j, so the observation at position p spans frames p … p + stack − 1.
    """
    b, _, c, h, w = frames.shape
    idx = positions[:, :, None] + torch.arange(stack, device=frames.device)[None, None]  # [B, P, stack]
    rows = torch.arange(b, device=frames.device)[:, None, None]
    return frames[rows, idx].reshape(b, positions.shape[1], stack * c, h, w)


@dataclass
class ValuePlan:
    """Where each value target bootstraps from and what it sums before that."""

    bootstrap_positions: torch.Tensor  # [B, K+1] window positions k + n_k of the bootstrap observations
    bootstrap_mask: torch.Tensor  # [B, K+1] 1 where γ^{n_k} v(o_{t+k+n_k}) enters the target
    discounted_rewards: torch.Tensor  # [B, K+1] Σ_{i<n_k} γ^i r_{t+k+i}
    bootstrap_discount: torch.Tensor  # [B, K+1] γ^{n_k}
    mask: torch.Tensor  # [B, K+1] 1 where the observation at k exists


def plan_values(
    rewards: torch.Tensor,
    steps_left: torch.Tensor,
    terminal: torch.Tensor,
    n: torch.Tensor,
    unroll_steps: int,
    discount: float,
    end_has_value: bool = True,
) -> ValuePlan:
    """n-step returns for positions k = 0…K, each cut at the segment end.

    n_k = min(n, L − k) rewards are summed; the bootstrap term is dropped only where the cut lands on a game end.
    ``end_has_value=False`` is for bootstrap values *stored* with the data: a segment cut mid-episode stores no
    search value for its last observation (that search ran in the next segment), so there the horizon stops one
    step earlier, at the last searched state, and the last observation itself gets no value target (``mask`` 0).
    """
    device = rewards.device
    k = torch.arange(unroll_steps + 1, device=device)[None]  # [1, K+1]
    left = steps_left[:, None] - k  # actions stored from position k
    horizon = left
    if not end_has_value:
        horizon = torch.where(terminal[:, None], left, left - 1)
    n_k = torch.minimum(n[:, None].expand_as(left), horizon.clamp(min=0))  # [B, K+1]
    i = torch.arange(rewards.shape[1], device=device)[None, None]  # reward index
    kk = k[..., None]
    within = (i >= kk) & (i < kk + n_k[..., None])
    powers = discount ** (i - kk).clamp(min=0).to(rewards.dtype)
    summed = (rewards[:, None, :] * powers * within).sum(-1)
    exists = horizon >= 0
    ends_game = terminal[:, None] & (n_k == left)
    boot = exists & ~ends_game
    return ValuePlan(
        bootstrap_positions=(k + n_k).clamp(max=rewards.shape[1]),
        bootstrap_mask=boot.to(rewards.dtype),
        discounted_rewards=summed * exists,
        bootstrap_discount=discount ** n_k.to(rewards.dtype),
        mask=exists.to(rewards.dtype),
    )


def value_targets(plan: ValuePlan, bootstrap_values: torch.Tensor) -> torch.Tensor:
    """z_k = Σ_{i<n_k} γ^i r + γ^{n_k} v · bootstrap_mask (0 where the observation does not exist)."""
    return plan.discounted_rewards + plan.bootstrap_discount * bootstrap_values * plan.bootstrap_mask


def bootstrapped_value_targets(
    mode: Bootstrap, plan: ValuePlan, bootstrap_values: torch.Tensor, root_values: torch.Tensor
) -> torch.Tensor:
    """The value targets of ``mode``: :func:`value_targets`, except the authors' ``stored_as_coded``, which adds the
    stored value of the state itself to its n-step reward sum (a double count reproduced on purpose only)."""
    if mode is Bootstrap.stored_as_coded:
        k = plan.mask.shape[1]
        return (plan.discounted_rewards + root_values[:, :k]) * plan.mask
    return value_targets(plan, bootstrap_values)


def value_prefix_targets(
    rewards: torch.Tensor, steps_left: torch.Tensor, unroll_steps: int, horizon: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Undiscounted reward sums since the last LSTM reset, for unroll steps k = 1…K, and their mask (k ≤ L)."""
    r = rewards[:, :unroll_steps]
    k = torch.arange(1, unroll_steps + 1, device=rewards.device)
    segment = (k - 1) // horizon  # which reset window step k−1 belongs to
    same = segment[:, None] == segment[None, :]  # [K, K] step j and step k−1 share a window
    upto = torch.arange(unroll_steps, device=rewards.device)[:, None] <= (k - 1)[None, :]
    weights = (same & upto).to(r.dtype)  # [j, k]
    prefix = r @ weights
    mask = (k[None] <= steps_left[:, None]).to(r.dtype)
    return prefix * mask, mask


def position_masks(steps_left: torch.Tensor, unroll_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(observation exists at k, action/policy exists at k) for k = 0…K."""
    k = torch.arange(unroll_steps + 1, device=steps_left.device)[None]
    left = steps_left[:, None]
    return (k <= left).float(), (k < left).float()
