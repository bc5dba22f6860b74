"""EfficientZero's loss: unrolled value, policy and value-prefix cross-entropies plus the SimSiam consistency term.

Per sample: Σ_k [c_v·CE(value_k) + c_p·CE(policy_k) + c_r·CE(prefix_k) + c_c·(−cos)_k] with the step-k terms of
k ≥ 1 masked where the data ended, then weighted by the prioritised-replay importance weight. The gradient of
every unrolled latent is halved (MuZero) and the whole loss is scaled by 1/K (EfficientZero's backward hook),
which leaves logged loss values unscaled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xtra.network import EfficientZeroNet
from xtra.supports import scalar_to_support


@dataclass(frozen=True)
class LossWeights:
    value: float = 0.25
    policy: float = 1.0
    value_prefix: float = 1.0
    consistency: float = 2.0


@dataclass
class UnrollTargets:
    """Targets for positions k = 0…K (value, policy) and unroll steps k = 1…K (prefix, consistency)."""

    values: torch.Tensor  # [B, K+1]
    policies: torch.Tensor  # [B, K+1, A]
    value_prefixes: torch.Tensor  # [B, K]
    obs_mask: torch.Tensor  # [B, K+1] the observation at k exists
    policy_mask: torch.Tensor  # [B, K+1] a policy target exists at k
    prefix_mask: torch.Tensor  # [B, K]


@dataclass
class LossOutput:
    per_sample: torch.Tensor  # [B] unscaled, unweighted total
    loss: torch.Tensor  # scalar to back-propagate (importance-weighted mean, ×1/K)
    terms: dict[str, torch.Tensor]  # batch means of each term, for logging
    sample_terms: dict[str, torch.Tensor]  # [B] each term per sample (detached), for per-task logging
    predicted_values: torch.Tensor  # [B, K+1] scalar value predictions (detached)


def scale_gradient(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Identity forward, gradient × ``scale`` backward."""
    return x * scale + x.detach() * (1.0 - scale)


def soft_cross_entropy(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -(target * F.log_softmax(logits.float(), dim=-1)).sum(-1)


def negative_cosine(online: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return -F.cosine_similarity(online.float(), target.detach().float(), dim=-1, eps=1e-5)


def reduce_loss(per_sample: torch.Tensor, weights: torch.Tensor, unroll_steps: int) -> torch.Tensor:
    """The batch loss: importance-weighted mean of the per-sample losses, scaled by 1/K (EfficientZero's backward
    hook). The one place this reduction is written: the joint step, each task's probe term and merged per-task
    outputs all use it, so their scales agree."""
    return (weights * per_sample).mean() / max(unroll_steps, 1)


def efficientzero_loss(
    net: EfficientZeroNet,
    obs: torch.Tensor,
    actions: torch.Tensor,
    targets: UnrollTargets,
    weights: torch.Tensor,
    value_prefix_horizon: int = 5,
    coefficients: LossWeights | None = None,
) -> LossOutput:
    """Unroll from ``obs[:, 0]`` along ``actions`` ``[B, K]``; ``obs`` ``[B, K+1, …]`` holds the stacks at t+k.

    ``weights`` multiplies each sample's loss (importance weights, times task weights in multi-task training);
    the scalar loss is their weighted *mean over all rows*, so a task's share of a joint batch sets its share of
    the gradient.

    ``obs`` may be augmented; the consistency targets are the representation of ``obs[:, k]``, projected and
    detached (stop-gradient), computed in train mode as EfficientZero does.
    """
    c = coefficients or LossWeights()
    b, k1 = obs.shape[:2]
    unroll = k1 - 1
    support = net.support_size
    init = net.initial_inference(obs[:, 0])
    latent, hidden = init.latent, init.hidden
    value_logits, policy_logits, prefix_logits, latents = [init.value_logits], [init.policy_logits], [], []
    for k in range(1, k1):
        latent = scale_gradient(latent, 0.5)
        out = net.recurrent_inference(latent, hidden, actions[:, k - 1])
        latent, hidden = out.latent, out.hidden
        if k % value_prefix_horizon == 0:
            hidden = (torch.zeros_like(hidden[0]), torch.zeros_like(hidden[1]))
        value_logits.append(out.value_logits)
        policy_logits.append(out.policy_logits)
        prefix_logits.append(out.value_prefix_logits)
        latents.append(latent)

    v_logits = torch.stack(value_logits, 1)  # [B, K+1, bins]
    p_logits = torch.stack(policy_logits, 1)  # [B, K+1, A]
    value_ce = soft_cross_entropy(v_logits, scalar_to_support(targets.values, support))
    policy_ce = soft_cross_entropy(p_logits, targets.policies)
    step_mask = torch.cat([torch.ones_like(targets.obs_mask[:, :1]), targets.obs_mask[:, 1:]], 1)
    value_loss = (value_ce * step_mask).sum(1)
    policy_loss = (policy_ce * targets.policy_mask).sum(1)

    zero = torch.zeros(b, device=obs.device)
    prefix_loss = consistency_loss = zero
    if unroll > 0:
        r_logits = torch.stack(prefix_logits, 1)
        prefix_ce = soft_cross_entropy(r_logits, scalar_to_support(targets.value_prefixes, support))
        prefix_loss = (prefix_ce * targets.prefix_mask).sum(1)
        if c.consistency:
            with torch.no_grad():
                target_latent = net.represent(obs[:, 1:].flatten(0, 1))
                target_proj = net.project(target_latent, with_predictor=False)
            online = net.project(torch.stack(latents, 1).flatten(0, 1), with_predictor=True)
            cos = negative_cosine(online, target_proj).view(b, unroll)
            consistency_loss = (cos * targets.obs_mask[:, 1:]).sum(1)

    per_sample = (
        c.value * value_loss + c.policy * policy_loss + c.value_prefix * prefix_loss + c.consistency * consistency_loss
    )
    loss = reduce_loss(per_sample, weights, unroll)
    with torch.no_grad():
        predicted = net.scalar(v_logits.detach()).view(b, k1)
    sample_terms = {
        "value": value_loss.detach(),
        "policy": policy_loss.detach(),
        "value_prefix": prefix_loss.detach(),
        "consistency": consistency_loss.detach(),
        "total": per_sample.detach(),
    }
    terms = {name: v.mean() for name, v in sample_terms.items()}
    return LossOutput(per_sample, loss, terms, sample_terms, predicted)
