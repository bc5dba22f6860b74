"""Networks out of xtra checkpoints: teachers for distillation, the student for finetuning, any model for evaluation.

Checkpoints are read with ``weights_only=True`` (no code runs on load). The network is rebuilt from the
checkpoint's own hyperparameters and checked against the description saved beside its weights, so a file from
another network size, task family or a foreign program is refused with a message instead of half-loading.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from xtra.network import EfficientZeroNet, network_config, saved_description


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or does not fit where it is used."""


@dataclass
class LoadedNetwork:
    net: EfficientZeroNet
    task_ids: list[str]  # the games it was trained on
    acting: str  # "mcts" or "policy" (behaviour cloning acts from the policy head alone)
    hparams: dict[str, Any]
    path: Path


def load_network(path: str | Path) -> LoadedNetwork:
    """The trained ``net`` of an xtra checkpoint, on the CPU, in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train the stage that writes it first")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as e:
        raise CheckpointError(
            f"{path} cannot be read as a weights-only checkpoint ({type(e).__name__}: {str(e).splitlines()[0]}); "
            "it is truncated, corrupt or not written by xtra"
        ) from e
    hp, meta = ckpt.get("hyper_parameters"), ckpt.get("xtra")
    if not isinstance(hp, dict) or not isinstance(meta, dict) or "state_dict" not in ckpt:
        raise CheckpointError(f"{path} is not an xtra checkpoint (no hyper_parameters / xtra metadata)")
    net = EfficientZeroNet(
        tuple(hp["obs_shape"]), int(hp["num_actions"]), network_config(hp["network"], **(hp["network_overrides"] or {}))
    )
    if saved_description(meta.get("network")) != net.describe():
        raise CheckpointError(f"{path}: its weights describe {meta.get('network')}, its hyperparameters build another")
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{path}: the weights do not fit the network ({str(e).splitlines()[0]})") from e
    net.eval()
    return LoadedNetwork(net, list(meta.get("task_ids", [])), str(meta.get("acting", "mcts")), hp, path)


def require_same_network(loaded: LoadedNetwork, net: EfficientZeroNet, role: str) -> None:
    """Refuse a checkpoint whose network differs from ``net`` (size, observation shape or action space)."""
    if loaded.net.describe() != net.describe():
        raise CheckpointError(
            f"the {role} {loaded.path} has network {loaded.net.describe()}, this model has {net.describe()}: "
            "use the network preset / overrides and data the checkpoint was trained with"
        )
