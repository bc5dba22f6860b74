"""Categorical value supports: the invertible value transform h and two-hot encodings (MuZero appendix F).

Values and value prefixes are learned as distributions over the integers −S…S of the transformed scalar
h(x) = sign(x)(√(|x|+1) − 1) + εx, which squashes large returns so that a fixed support covers them.
"""

from __future__ import annotations

import torch

EPS = 1e-3


def value_transform(x: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """h(x) = sign(x)·(√(|x|+1) − 1) + ε·x (EfficientZero's current form, ε outside the sign product)."""
    return torch.sign(x) * (torch.sqrt(torch.abs(x) + 1.0) - 1.0) + eps * x


def inverse_value_transform(y: torch.Tensor, eps: float = EPS) -> torch.Tensor:
    """The exact inverse of :func:`value_transform`."""
    root = (torch.sqrt(1.0 + 4.0 * eps * (torch.abs(y) + 1.0 + eps)) - 1.0) / (2.0 * eps)
    return torch.sign(y) * (root * root - 1.0)


def scalar_to_support(x: torch.Tensor, support_size: int) -> torch.Tensor:
    """Two-hot distribution over −S…S of h(x): weight on the two neighbouring integers, linear in between."""
    y = value_transform(x.float()).clamp(-support_size, support_size)
    low = y.floor()
    upper_weight = y - low
    out = torch.zeros(*x.shape, 2 * support_size + 1, dtype=torch.float32, device=x.device)
    low_idx = (low + support_size).long()
    out.scatter_(-1, low_idx.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    high_idx = (low_idx + 1).clamp(max=2 * support_size)
    out.scatter_add_(-1, high_idx.unsqueeze(-1), (upper_weight * (low_idx < 2 * support_size)).unsqueeze(-1))
    return out


def support_to_scalar(logits: torch.Tensor, support_size: int) -> torch.Tensor:
    """Expected h-value under softmax(logits), mapped back through h⁻¹ (a float32 scalar per row).

    The expectation is summed in float64: over 601 bins float32 rounding alone would move a uniform
    distribution's value off zero.
    """
    probs = torch.softmax(logits.double(), dim=-1)
    support = torch.arange(-support_size, support_size + 1, device=logits.device, dtype=torch.float64)
    return inverse_value_transform((probs * support).sum(-1)).float()
