import torch

from xtra.gradients import assign_flat_gradient, cosine_to_first, flat_gradient, pcgrad


def test_pcgrad_projects_only_conflicting_pairs():
    a, b = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # orthogonal gradients pass unchanged
    torch.testing.assert_close(pcgrad(torch.stack([a, b])), a + b)
    # a conflict: each keeps only its component orthogonal to the other
    g1, g2 = torch.tensor([1.0, 1.0]), torch.tensor([-1.0, 0.0])
    expected = torch.tensor([0.0, 1.0]) + torch.tensor([-0.5, 0.5])  # g1 ⊥ g2 part, g2 ⊥ g1 part
    torch.testing.assert_close(pcgrad(torch.stack([g1, g2])), expected)
    # after projection no pair conflicts with the other's original gradient
    out = pcgrad(torch.stack([g1, g2]) * 3.0)
    assert torch.dot(out, g1) >= -1e-6


def test_cosines_use_the_element_wise_clamp_and_flat_gradients_round_trip():
    grads = torch.tensor([[10.0, 1.0], [10.0, 1.0], [1.0, 10.0], [-10.0, -1.0]])
    cos = cosine_to_first(grads, clamp=1.0)  # everything clamps to ±1 except the small entries
    torch.testing.assert_close(cos, torch.tensor([1.0, 1.0, -1.0]))
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    v = torch.nn.Parameter(torch.tensor([3.0]))
    flat = flat_gradient((w * w).sum() + 0 * v.sum(), [w, v])
    torch.testing.assert_close(flat, torch.tensor([2.0, 4.0, 0.0]))
    assign_flat_gradient([w, v], flat * 2)
    torch.testing.assert_close(w.grad, torch.tensor([4.0, 8.0]))
    torch.testing.assert_close(v.grad, torch.tensor([0.0]))
