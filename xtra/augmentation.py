"""EfficientZero's training-time augmentation of observation stacks (Atari): random shift, then intensity."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replicate-pad by ``pad`` pixels and crop back at a random offset per sample (DrQ / EfficientZero).

    Two gathers (rows, then columns) over expanded index views: no index tensor of the output's size is built.
    """
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dx = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])[:, None, :, None]
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])[:, None, None, :]
    return padded.gather(2, rows.expand(n, c, h, w + 2 * pad)).gather(3, cols.expand(n, c, h, w))


def augment(obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random shift (4 px) then intensity ×(1 + 0.05·clip(N(0,1), −2, 2)), per observation stack.

    The shift moves the stored bytes before they become floats: the same result, a quarter of the memory traffic.
    """
    shape = obs.shape
    x = random_shift(obs.reshape(-1, *shape[-3:]), 4, generator).float() / 255.0
    noise = torch.randn(x.shape[0], 1, 1, 1, device=x.device, generator=generator).clamp(-2, 2)
    return (x * (1.0 + 0.05 * noise)).reshape(shape)
