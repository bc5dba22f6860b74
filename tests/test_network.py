import pytest
import torch

from xtra.network import EfficientZeroNet, ResidualBlock, network_config, parameter_count
from xtra.supports import inverse_value_transform, scalar_to_support, support_to_scalar, value_transform

# EfficientZero's official Atari network, counted by instantiating it (efficientzero-spec.md §2): 8 431 270 (A = 4)
# and 8 431 732 (A = 18), of which 81 024 are allocated but never used in a forward pass and not built here.
OFFICIAL_UNUSED = 81_024


@pytest.mark.parametrize("num_actions, official", [(4, 8_431_270), (18, 8_431_732)])
def test_efficientzero_parameter_count_matches_official(num_actions, official):
    net = EfficientZeroNet((12, 96, 96), num_actions, network_config("efficientzero"))
    assert parameter_count(net) == official - OFFICIAL_UNUSED
    assert parameter_count(net.representation) == 318_016
    assert parameter_count(net.dynamics) == 2_382_281
    assert parameter_count(net.dynamics.lstm) == 2_232_320
    assert parameter_count(net.projector) + parameter_count(net.predictor) == 4_465_664 + 1_051_136


def test_efficientzero_l_has_four_blocks_per_stage():
    net = EfficientZeroNet((12, 96, 96), 18, network_config("efficientzero-l"))
    assert parameter_count(net.representation) == 1_039_552
    assert parameter_count(net) == 9_146_228 - 73_984  # the authors' allocation minus the unused dynamics block


@pytest.mark.parametrize(
    "preset, obs_shape, latent",
    [
        ("efficientzero", (12, 96, 96), (64, 6, 6)),
        ("efficientzero-l", (12, 96, 96), (64, 6, 6)),
        ("minatar", (10, 10, 10), (16, 10, 10)),
    ],
)
def test_output_shapes(preset, obs_shape, latent):
    cfg = network_config(preset)
    net = EfficientZeroNet(obs_shape, 18, cfg)
    obs = torch.randint(0, 256, (3, *obs_shape), dtype=torch.uint8)
    init = net.initial_inference(obs)
    bins = 2 * cfg.support_size + 1
    assert init.latent.shape == (3, *latent)
    assert init.value_logits.shape == (3, bins) and init.policy_logits.shape == (3, 18)
    assert init.hidden[0].shape == (1, 3, cfg.lstm_hidden)
    rec = net.recurrent_inference(init.latent, init.hidden, torch.tensor([0, 5, 17]))
    assert rec.latent.shape == init.latent.shape
    assert rec.value_prefix_logits.shape == (3, bins) and rec.value_logits.shape == (3, bins)
    assert rec.policy_logits.shape == (3, 18)
    assert net.project(rec.latent, with_predictor=True).shape == (3, cfg.projection_out)
    assert net.project(init.latent, with_predictor=False).shape == (3, cfg.projection_out)


def test_new_network_predicts_uniform_policy_and_zero_value():
    net = EfficientZeroNet((10, 10, 10), 6, network_config("minatar")).eval()
    init = net.initial_inference(torch.ones(2, 10, 10, 10, dtype=torch.uint8))
    torch.testing.assert_close(torch.softmax(init.policy_logits, -1), torch.full((2, 6), 1 / 6))
    torch.testing.assert_close(net.scalar(init.value_logits), torch.zeros(2))


def test_eval_mode_is_batch_independent_and_train_mode_updates_running_stats():
    torch.manual_seed(0)
    net = EfficientZeroNet((10, 10, 10), 6, network_config("minatar"))
    obs = torch.randint(0, 2, (8, 10, 10, 10), dtype=torch.uint8)
    before = net.representation.trunk[1].running_mean.clone()
    net.train()
    net.initial_inference(obs)
    assert not torch.equal(before, net.representation.trunk[1].running_mean)
    net.eval()
    with torch.inference_mode():
        full = net.initial_inference(obs).latent
        single = net.initial_inference(obs[:1]).latent
    torch.testing.assert_close(full[:1], single)


def test_value_transform_round_trip():
    x = torch.cat([torch.linspace(-1000, 1000, 2001), torch.tensor([0.0, 1e-4, -3.5, 12345.0])])
    torch.testing.assert_close(inverse_value_transform(value_transform(x)), x, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("support", [25, 300])
def test_two_hot_round_trip_and_mass(support):
    x = torch.tensor([0.0, 0.3, -2.7, 10.0, -55.5, 84.0])
    dist = scalar_to_support(x, support)
    torch.testing.assert_close(dist.sum(-1), torch.ones(6))
    assert (dist > 0).sum(-1).max() <= 2
    torch.testing.assert_close(support_to_scalar(torch.log(dist + 1e-12), support), x, rtol=1e-3, atol=1e-3)


def test_two_hot_clamps_out_of_range():
    dist = scalar_to_support(torch.tensor([1e9, -1e9]), 5)
    assert dist[0, -1] == 1.0 and dist[1, 0] == 1.0


def test_unknown_preset_lists_valid_ones():
    with pytest.raises(ValueError, match="efficientzero-l"):
        network_config("huge")


def test_one_hot_action_planes_do_not_order_actions():
    """The scalar plane feeds a / A (an ordered number); one-hot planes give every action its own input."""
    import pytest

    for encoding, channels in (("plane", 1), ("one_hot", 6)):
        net = EfficientZeroNet((10, 10, 10), 6, network_config("minatar", action_encoding=encoding))
        latent = torch.zeros(3, 16, 10, 10)
        planes = net.dynamics.encode_action(torch.tensor([0, 2, 5]), latent)
        assert planes.shape == (3, channels, 10, 10)
        assert net.describe()["action_encoding"] == encoding
    assert planes[:, :, 0, 0].tolist() == [[1, 0, 0, 0, 0, 0], [0, 0, 1, 0, 0, 0], [0, 0, 0, 0, 0, 1]]
    with pytest.raises(ValueError, match="one_hot"):
        network_config("minatar", action_encoding="embedding")
    # checkpoints written before the option existed describe the scalar plane
    from xtra.network import saved_description

    old = {k: v for k, v in EfficientZeroNet((10, 10, 10), 6, network_config("minatar-l", action_encoding="plane"))
           .describe().items() if k != "action_encoding"}  # fmt: skip
    assert saved_description(old)["action_encoding"] == "plane"


@pytest.mark.parametrize("stride, c_out", [(1, None), (2, 8)])
def test_residual_blocks_in_place_activations_change_no_number(stride, c_out):
    """The block applies its ReLUs in place (no fresh activation to allocate on a CPU): output, input gradient and
    weight gradients equal the out-of-place formula bit for bit, and autograd accepts it (no saved tensor is
    overwritten)."""
    torch.manual_seed(0)
    block = ResidualBlock(4, c_out, stride=stride)
    x = torch.randn(6, 4, 8, 8, requires_grad=True)
    out = block(x)
    out.square().sum().backward()
    got = (out.detach(), x.grad.clone(), [p.grad.clone() for p in block.parameters()])

    x.grad = None
    block.zero_grad()
    skip = x if block.skip is None else block.skip(x)
    ref = torch.relu(block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x))))) + skip)
    ref.square().sum().backward()
    assert torch.equal(got[0], ref.detach()) and torch.equal(got[1], x.grad)
    assert all(torch.equal(a, p.grad) for a, p in zip(got[2], block.parameters(), strict=True))
