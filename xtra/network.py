"""EfficientZeroNet: representation, dynamics with an LSTM value-prefix head, prediction, SimSiam heads.

The architecture follows EfficientZero's Atari network (``efficientzero-spec.md`` §2): post-activation residual
blocks, bias-free 3×3 convolutions, BN momentum 0.1, the action given to the dynamics as one plane filled
with a / A (or, as an option, one one-hot plane per action), and zero-initialised last layers so that a new
network predicts uniform policies and zero values.
Parameters that the reference allocates but never uses are not built here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from xtra.supports import support_to_scalar

Hidden = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class NetworkConfig:
    """Sizes of an :class:`EfficientZeroNet`; presets live in :data:`PRESETS`.

    ``blocks`` is the number of residual blocks wherever EfficientZero has one in the representation
    (EfficientZero-L uses 4). ``downsample`` selects the strided Atari trunk (96×96 → 6×6); without it the
    latent keeps the frame's resolution (MinAtar's 10×10).

    ``action_encoding`` is how the dynamics sees the action: ``plane`` (EfficientZero: one plane filled with a / A)
    or ``one_hot`` (A planes, the action's set to 1). The scalar plane orders actions by their id, which a
    multi-game network in a shared action space turns into a prior for the largest id whatever it means in
    the game; one-hot planes have no order.
    """

    channels: int = 64
    blocks: int = 1
    downsample: bool = True
    dynamics_blocks: int = 1
    prediction_blocks: int = 1
    reduced_channels: int = 16
    lstm_hidden: int = 512
    head_hidden: int = 32
    support_size: int = 300
    projection_hidden: int = 1024
    projection_out: int = 1024
    predictor_hidden: int = 512
    action_encoding: str = "plane"

    def __post_init__(self) -> None:
        if self.action_encoding not in ACTION_ENCODINGS:
            raise ValueError(
                f"unknown action_encoding {self.action_encoding!r}; choose one of {list(ACTION_ENCODINGS)}"
            )


ACTION_ENCODINGS = ("plane", "one_hot")


PRESETS: dict[str, NetworkConfig] = {
    "efficientzero": NetworkConfig(),
    # The authors' EfficientZero-L: 4 residual blocks wherever EfficientZero has 1 in the representation
    # (1 039 552 vs 318 016 parameters, i.e. 3.3×; the paper rounds this to "4 times").
    "efficientzero-l": NetworkConfig(blocks=4),
    # Sized for CPU training on 10×10 MinAtar grids (MinAtar's own DQN uses one 16-channel conv layer).
    "minatar": NetworkConfig(
        channels=16,
        downsample=False,
        prediction_blocks=0,
        reduced_channels=8,
        lstm_hidden=128,
        head_hidden=64,
        support_size=25,
        projection_hidden=256,
        projection_out=256,
        predictor_hidden=128,
        # Every MinAtar stage shares one action space across games (teachers, student, finetuner); one-hot
        # planes keep the dynamics from ordering actions by id (see NetworkConfig).
        action_encoding="one_hot",
    ),
}
# MinAtar's counterpart of EfficientZero-L (students and finetuners on the CPU).
PRESETS["minatar-l"] = replace(PRESETS["minatar"], blocks=4)


def network_config(preset: str = "efficientzero", **overrides: int | bool) -> NetworkConfig:
    """A preset's config with optional field overrides; unknown presets list the valid ones."""
    if preset not in PRESETS:
        raise ValueError(f"unknown network preset {preset!r}; choose one of {sorted(PRESETS)}")
    return replace(PRESETS[preset], **overrides)


def conv3x3(c_in: int, c_out: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False)


def batch_norm(channels: int, dims: int = 2) -> nn.Module:
    return nn.BatchNorm2d(channels, momentum=0.1) if dims == 2 else nn.BatchNorm1d(channels, momentum=0.1)


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN, plus the skip, then ReLU; a strided block's skip is a bare 3×3 strided conv."""

    def __init__(self, c_in: int, c_out: int | None = None, stride: int = 1) -> None:
        super().__init__()
        c_out = c_out or c_in
        self.conv1, self.bn1 = conv3x3(c_in, c_out, stride), batch_norm(c_out)
        self.conv2, self.bn2 = conv3x3(c_out, c_out), batch_norm(c_out)
        self.skip = conv3x3(c_in, c_out, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # in place where autograd allows it (batch norm's backward reads its input, ReLU's its output): on a CPU
        # each fresh activation is memory traffic and page faults, not arithmetic
        out = torch.relu_(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu_(out + (x if self.skip is None else self.skip(x)))


def mlp(n_in: int, hidden: list[int], n_out: int, zero_last: bool = True) -> nn.Sequential:
    """Linear-BN-ReLU per hidden layer, then a Linear (zero-initialised for value and policy outputs)."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(n_in, h), batch_norm(h, dims=1), nn.ReLU()]
        n_in = h
    last = nn.Linear(n_in, n_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class Representation(nn.Module):
    """Observation stack (uint8 scaled to [0, 1]) → latent state."""

    def __init__(self, in_channels: int, cfg: NetworkConfig) -> None:
        super().__init__()
        c, b = cfg.channels, cfg.blocks
        if cfg.downsample:
            half = c // 2
            self.trunk = nn.Sequential(
                nn.Conv2d(in_channels, half, 3, stride=2, padding=1, bias=False),
                batch_norm(half),
                nn.ReLU(),
                *[ResidualBlock(half) for _ in range(b)],
                ResidualBlock(half, c, stride=2),
                *[ResidualBlock(c) for _ in range(b)],
                nn.AvgPool2d(3, stride=2, padding=1),
                *[ResidualBlock(c) for _ in range(b)],
                nn.AvgPool2d(3, stride=2, padding=1),
            )
        else:
            self.trunk = nn.Sequential(conv3x3(in_channels, c), batch_norm(c), nn.ReLU())
        self.blocks = nn.Sequential(*[ResidualBlock(c) for _ in range(b)])

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.trunk(obs))


class Dynamics(nn.Module):
    """(latent, action) → next latent and value-prefix logits, the prefix read by an LSTM across steps."""

    def __init__(self, cfg: NetworkConfig, latent_hw: tuple[int, int], num_actions: int) -> None:
        super().__init__()
        c = cfg.channels
        self.num_actions = num_actions
        self.one_hot = cfg.action_encoding == "one_hot"
        self.conv = conv3x3(c + (num_actions if self.one_hot else 1), c)
        self.bn = batch_norm(c)
        self.blocks = nn.Sequential(*[ResidualBlock(c) for _ in range(cfg.dynamics_blocks)])
        self.prefix_conv = nn.Conv2d(c, cfg.reduced_channels, 1)
        self.prefix_bn = batch_norm(cfg.reduced_channels)
        self.lstm = nn.LSTM(cfg.reduced_channels * latent_hw[0] * latent_hw[1], cfg.lstm_hidden)
        self.prefix_lstm_bn = batch_norm(cfg.lstm_hidden, dims=1)
        self.prefix_head = mlp(cfg.lstm_hidden, [cfg.head_hidden], 2 * cfg.support_size + 1)

    def forward(
        self, latent: torch.Tensor, hidden: Hidden, action: torch.Tensor
    ) -> tuple[torch.Tensor, Hidden, torch.Tensor]:
        x = self.bn(self.conv(torch.cat([latent, self.encode_action(action, latent)], dim=1)))
        nxt = self.blocks(torch.relu(x + latent))
        p = torch.relu(self.prefix_bn(self.prefix_conv(nxt))).flatten(1).unsqueeze(0)
        out, hidden = self.lstm(p, hidden)
        prefix = self.prefix_head(torch.relu(self.prefix_lstm_bn(out.squeeze(0))))
        return nxt, hidden, prefix

    def encode_action(self, action: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        """``[B]`` action ids → ``[B, 1 or A, H, W]`` planes."""
        hw = latent.shape[2:]
        if self.one_hot:
            planes = torch.nn.functional.one_hot(action.long(), self.num_actions).to(latent.dtype)
            return planes.view(-1, self.num_actions, 1, 1).expand(-1, -1, *hw)
        return (action.to(latent.dtype) / self.num_actions).view(-1, 1, 1, 1).expand(-1, 1, *hw)


class Prediction(nn.Module):
    """latent → (value logits, policy logits)."""

    def __init__(self, cfg: NetworkConfig, latent_hw: tuple[int, int], num_actions: int) -> None:
        super().__init__()
        c, r = cfg.channels, cfg.reduced_channels
        flat = r * latent_hw[0] * latent_hw[1]
        self.blocks = nn.Sequential(*[ResidualBlock(c) for _ in range(cfg.prediction_blocks)])
        self.value_conv, self.value_bn = nn.Conv2d(c, r, 1), batch_norm(r)
        self.policy_conv, self.policy_bn = nn.Conv2d(c, r, 1), batch_norm(r)
        self.value_head = mlp(flat, [cfg.head_hidden], 2 * cfg.support_size + 1)
        self.policy_head = mlp(flat, [cfg.head_hidden], num_actions)

    def forward(self, latent: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.blocks(latent)
        v = torch.relu(self.value_bn(self.value_conv(x))).flatten(1)
        p = torch.relu(self.policy_bn(self.policy_conv(x))).flatten(1)
        return self.value_head(v), self.policy_head(p)


class InitialOutput(NamedTuple):
    latent: torch.Tensor
    hidden: Hidden
    value_logits: torch.Tensor
    policy_logits: torch.Tensor


class RecurrentOutput(NamedTuple):
    latent: torch.Tensor
    hidden: Hidden
    value_prefix_logits: torch.Tensor
    value_logits: torch.Tensor
    policy_logits: torch.Tensor


class EfficientZeroNet(nn.Module):
    """The shared network of every stage. ``obs_shape`` is the stacked observation ``(stack·C, H, W)``."""

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, config: NetworkConfig | None = None) -> None:
        super().__init__()
        cfg = config or NetworkConfig()
        self.config, self.obs_shape, self.num_actions = cfg, tuple(obs_shape), num_actions
        c_in, h, w = obs_shape
        self.latent_hw = (-(-h // 16), -(-w // 16)) if cfg.downsample else (h, w)
        self.representation = Representation(c_in, cfg)
        self.dynamics = Dynamics(cfg, self.latent_hw, num_actions)
        self.prediction = Prediction(cfg, self.latent_hw, num_actions)
        flat = cfg.channels * self.latent_hw[0] * self.latent_hw[1]
        ph, po = cfg.projection_hidden, cfg.projection_out
        self.projector = nn.Sequential(
            nn.Linear(flat, ph), batch_norm(ph, 1), nn.ReLU(),
            nn.Linear(ph, ph), batch_norm(ph, 1), nn.ReLU(),
            nn.Linear(ph, po), batch_norm(po, 1),
        )  # fmt: skip
        self.predictor = nn.Sequential(
            nn.Linear(po, cfg.predictor_hidden), batch_norm(cfg.predictor_hidden, 1), nn.ReLU(),
            nn.Linear(cfg.predictor_hidden, po),
        )  # fmt: skip

    @property
    def support_size(self) -> int:
        return self.config.support_size

    def describe(self) -> dict:
        """Everything needed to rebuild this network (stored in checkpoints and compared on load)."""
        return {"obs_shape": list(self.obs_shape), "num_actions": self.num_actions, **asdict(self.config)}

    def initial_hidden(self, batch: int, device: torch.device | None = None) -> Hidden:
        shape = (1, batch, self.config.lstm_hidden)
        device = device or next(self.parameters()).device
        return torch.zeros(shape, device=device), torch.zeros(shape, device=device)

    def represent(self, obs: torch.Tensor) -> torch.Tensor:
        """uint8 (or already scaled float) observations → latent."""
        x = obs.float() / 255.0 if obs.dtype == torch.uint8 else obs
        return self.representation(x)

    def initial_inference(self, obs: torch.Tensor) -> InitialOutput:
        latent = self.represent(obs)
        value, policy = self.prediction(latent)
        return InitialOutput(latent, self.initial_hidden(obs.shape[0], obs.device), value, policy)

    def recurrent_inference(self, latent: torch.Tensor, hidden: Hidden, action: torch.Tensor) -> RecurrentOutput:
        nxt, hidden, prefix = self.dynamics(latent, hidden, action)
        value, policy = self.prediction(nxt)
        return RecurrentOutput(nxt, hidden, prefix, value, policy)

    def project(self, latent: torch.Tensor, with_predictor: bool) -> torch.Tensor:
        """SimSiam branch: the predictor only on the online (dynamics) side; targets are detached by the loss."""
        z = self.projector(latent.flatten(1))
        return self.predictor(z) if with_predictor else z

    def scalar(self, logits: torch.Tensor) -> torch.Tensor:
        """Value / value-prefix logits → scalars."""
        return support_to_scalar(logits, self.config.support_size)


def saved_description(described: dict | None) -> dict | None:
    """A checkpoint's network description, with fields added since it was written at their old behaviour."""
    return None if described is None else {"action_encoding": "plane", **described}


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
