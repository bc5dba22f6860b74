"""Per-task gradients as flat vectors: cosine similarities (for task weights) and PCGrad projection.

Pure tensor functions; the finetuner collects one flat gradient per task over all shared parameters.
"""

from __future__ import annotations

import torch


def flat_gradient(loss: torch.Tensor, params: list[torch.Tensor], retain_graph: bool = False) -> torch.Tensor:
    """∂loss/∂params as one vector (zeros for parameters the loss does not reach)."""
    grads = torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True)
    pairs = zip(params, grads, strict=True)
    return torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in pairs])


def assign_flat_gradient(params: list[torch.Tensor], flat: torch.Tensor) -> None:
    """Write a flat vector into the parameters' ``.grad`` (the inverse of :func:`flat_gradient`)."""
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


def cosine_to_first(grads: torch.Tensor, clamp: float | None = None) -> torch.Tensor:
    """Cosine similarity of rows 1… of ``grads`` ``[T, P]`` with row 0, after an element-wise clamp to ±clamp.

    The clamp is the authors' (their ``max_grad_norm`` reused element-wise, not a norm clip).
    """
    g = grads.float()
    if clamp is not None:
        g = g.clamp(-clamp, clamp)
    return torch.nn.functional.cosine_similarity(g[1:], g[:1].expand_as(g[1:]), dim=1, eps=1e-12)


def pcgrad(grads: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """PCGrad (Yu et al., 2020): project each task's gradient off every other task's gradient it conflicts with
    (negative inner product), in a random order per task, then sum."""
    t = grads.shape[0]
    out = torch.zeros_like(grads[0])
    norms = (grads * grads).sum(1).clamp_min(1e-20)
    for i in range(t):
        g = grads[i].clone()
        for j in torch.randperm(t, generator=generator).tolist():
            if j == i:
                continue
            dot = torch.dot(g, grads[j])
            if dot < 0:
                g -= dot / norms[j] * grads[j]
        out += g
    return out
