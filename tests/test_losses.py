"""EfficientZero's unrolled loss pinned on a two-step unroll of a network whose outputs are closed forms.

The network below is linear in two parameters (θ scales the observation into the latent, w the dynamics), so
every term, mask, the 1/K scale, the ½ gradient on each unrolled latent and the stop-gradient on the consistency
target can be written out by hand and compared with :func:`xtra.losses.efficientzero_loss`.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from xtra.losses import LossWeights, UnrollTargets, efficientzero_loss
from xtra.supports import scalar_to_support

SUPPORT = 1  # 3 bins
B, K, D = 2, 2, 4


class ClosedFormNet(torch.nn.Module):
    """latent₀ = θ·obs + θ²; latentₖ = w·latentₖ₋₁ + aₖ; every head reads slices of the latent (θ² keeps the
    cosine of the consistency term from being scale-invariant in θ)."""

    support_size = SUPPORT

    def __init__(self) -> None:
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor(0.7))
        self.w = torch.nn.Parameter(torch.tensor(1.3))

    def represent(self, obs):
        return obs * self.theta + self.theta**2

    def initial_inference(self, obs):
        latent = self.represent(obs)
        zeros = torch.zeros(1, obs.shape[0], 1)
        return SimpleNamespace(latent=latent, hidden=(zeros, zeros), value_logits=latent[:, :3],
                               policy_logits=latent[:, :2])  # fmt: skip

    def recurrent_inference(self, latent, hidden, actions):
        nxt = latent * self.w + actions[:, None].float()
        return SimpleNamespace(latent=nxt, hidden=hidden, value_logits=2 * nxt[:, :3], policy_logits=nxt[:, :2],
                               value_prefix_logits=nxt[:, 1:])  # fmt: skip

    def project(self, latent, with_predictor):
        return latent * (1.5 if with_predictor else 1.0)

    def scalar(self, logits):
        return logits.sum(-1)


def ce(logits, target):
    return -(target * F.log_softmax(logits, -1)).sum(-1)


def batch():
    g = torch.Generator().manual_seed(0)
    obs = torch.randn(B, K + 1, D, generator=g)
    actions = torch.tensor([[1, 0], [0, 1]])
    targets = UnrollTargets(
        values=torch.tensor([[0.5, -0.2, 1.0], [0.1, 0.3, -0.4]]),
        policies=torch.tensor([[[0.7, 0.3]] * 3, [[0.2, 0.8]] * 3]),
        value_prefixes=torch.tensor([[0.3, 0.6], [-0.5, 0.2]]),
        obs_mask=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),  # row 1: the data ended after step 1
        policy_mask=torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]]),
        prefix_mask=torch.tensor([[1.0, 1.0], [1.0, 0.0]]),
    )
    return obs, actions, targets, torch.tensor([1.0, 0.5])


def test_two_step_unroll_by_hand():
    net = ClosedFormNet()
    obs, actions, t, weights = batch()
    out = efficientzero_loss(net, obs, actions, t, weights, value_prefix_horizon=5)
    with torch.no_grad():
        th, w = net.theta, net.w
        l0 = obs[:, 0] * th + th**2
        l1 = l0 * w + actions[:, 0, None]
        l2 = l1 * w + actions[:, 1, None]
        vt, rt = scalar_to_support(t.values, SUPPORT), scalar_to_support(t.value_prefixes, SUPPORT)
        value = ce(l0[:, :3], vt[:, 0]) + ce(2 * l1[:, :3], vt[:, 1]) + ce(2 * l2[:, :3], vt[:, 2]) * t.obs_mask[:, 2]
        policy = sum(ce(lk[:, :2], t.policies[:, k]) * t.policy_mask[:, k] for k, lk in enumerate((l0, l1, l2)))
        prefix = ce(l1[:, 1:], rt[:, 0]) + ce(l2[:, 1:], rt[:, 1]) * t.prefix_mask[:, 1]
        cos = [
            -F.cosine_similarity(1.5 * lk, (obs[:, k] * th + th**2), dim=-1, eps=1e-5) for k, lk in ((1, l1), (2, l2))
        ]
        consistency = cos[0] + cos[1] * t.obs_mask[:, 2]
        per_sample = 0.25 * value + policy + prefix + 2.0 * consistency
    torch.testing.assert_close(out.sample_terms["value"], value)
    torch.testing.assert_close(out.sample_terms["policy"], policy)
    torch.testing.assert_close(out.sample_terms["value_prefix"], prefix)
    torch.testing.assert_close(out.sample_terms["consistency"], consistency)
    torch.testing.assert_close(out.per_sample.detach(), per_sample)
    torch.testing.assert_close(out.loss.detach(), (weights * per_sample).mean() / K)  # importance weights, then 1/K


def test_each_unrolled_latent_passes_half_its_gradient():
    """Only step 2's value prefix counts: θ reaches it through two halved latents (×¼); w through latent₁
    directly and through latent₀ once halved."""
    net = ClosedFormNet()
    obs, actions, t, weights = batch()
    t.prefix_mask = torch.tensor([[0.0, 1.0], [0.0, 1.0]])
    only_prefix = LossWeights(value=0.0, policy=0.0, value_prefix=1.0, consistency=0.0)
    efficientzero_loss(net, obs, actions, t, weights, 5, only_prefix).loss.backward()

    th = net.theta.detach().clone().requires_grad_()
    w = net.w.detach().clone().requires_grad_()
    l0 = obs[:, 0] * th + th**2
    l1 = l0 * w + actions[:, 0, None]
    l2 = l1 * w + actions[:, 1, None]
    plain = (weights * ce(l2[:, 1:], scalar_to_support(t.value_prefixes, SUPPORT)[:, 1])).mean() / K
    g2 = torch.autograd.grad(plain, l2, retain_graph=True)[0]  # ∂loss/∂latent₂, the same with or without halving
    g_theta = torch.autograd.grad(plain, th)[0]
    assert net.theta.grad.item() == pytest.approx(0.25 * g_theta.item(), rel=1e-5)
    expected_w = (g2 * (l1 + 0.5 * w * l0)).sum()
    assert net.w.grad.item() == pytest.approx(expected_w.item(), rel=1e-5)


def test_consistency_target_is_a_stop_gradient():
    """With only the consistency term, θ's gradient is the online branch's alone: the target projection of
    obs[:, k] contributes nothing."""
    net = ClosedFormNet()
    obs, actions, t, weights = batch()
    only_consistency = LossWeights(value=0.0, policy=0.0, value_prefix=0.0, consistency=2.0)
    efficientzero_loss(net, obs, actions, t, weights, 5, only_consistency).loss.backward()

    th = net.theta.detach().clone().requires_grad_()
    w = net.w.detach()

    def half(x):  # identity forward, half the gradient backward
        return 0.5 * x + 0.5 * x.detach()

    def loss(target_theta):
        l0 = obs[:, 0] * th + th**2
        l1 = half(l0) * w + actions[:, 0, None]
        l2 = half(l1) * w + actions[:, 1, None]
        target = [obs[:, k] * target_theta + target_theta**2 for k in (1, 2)]
        cos = [-F.cosine_similarity(1.5 * lk, tk, dim=-1, eps=1e-5) for lk, tk in zip((l1, l2), target, strict=True)]
        return (weights * 2.0 * (cos[0] + cos[1] * t.obs_mask[:, 2])).mean() / K

    online_only = torch.autograd.grad(loss(th.detach()), th)[0]
    through_target = torch.autograd.grad(loss(th), th)[0]
    assert abs(online_only.item() - through_target.item()) > 1e-4  # the check can tell the two apart
    assert net.theta.grad.item() == pytest.approx(online_only.item(), rel=1e-5)
