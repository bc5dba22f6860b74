"""BehaviourCloningModule: the paper's multi-game behaviour-cloning baseline on the same offline datasets.

The representation and policy head learn to predict the recorded action from the observation (cross-entropy
over the shared action space); dynamics, value heads and search are not used. It acts from its policy head alone.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from xtra.acting import make_policy_actor
from xtra.envs import game_name
from xtra.modules.base import NetworkModule
from xtra.modules.efficientzero import task_slices
from xtra.targets import stack_frames


class BehaviourCloningModule(NetworkModule):
    """Multi-game behaviour cloning on the thin base: a network, its optimiser, augmentation — no target network, no
    search, no EfficientZero targets (arguments: :class:`~xtra.modules.base.NetworkModule`)."""

    def __init__(self, network: str = "efficientzero-l", **kwargs: Any) -> None:
        super().__init__(network=network, **kwargs)

    @torch.no_grad()
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        out = {}
        for task, raw in batch.items():
            frames = raw["frames"]
            positions = torch.zeros(frames.shape[0], 1, dtype=torch.long, device=frames.device)
            obs = stack_frames(frames, positions, self.frame_stack)[:, 0]
            out[task] = {"obs": obs, "actions": raw["actions"][:, 0], "rows": raw["rows"]}
        return out

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], batch_idx: int) -> torch.Tensor:
        obs = torch.cat([b["obs"] for b in batch.values()])
        obs = self.augment(obs) if self.hparams.augmentation else obs
        actions = torch.cat([b["actions"] for b in batch.values()])
        logits = self.net.initial_inference(obs).policy_logits
        per_sample = F.cross_entropy(logits.float(), actions, reduction="none")
        loss = per_sample.mean()
        self.optimize(loss, {"policy": loss.detach()})
        logs: dict[str, Any] = {"loss/policy": loss.detach()}
        for task, rows in task_slices(batch).items():
            game = game_name(task)
            logs[f"loss/policy/{game}"] = per_sample[rows].mean().detach()
            logs[f"bc/accuracy/{game}"] = (logits[rows].argmax(1) == actions[rows]).float().mean()
        self.log_common(logs, len(actions))
        return loss.detach()

    @property
    def sampling(self) -> dict[str, int]:
        return {"unroll_steps": 1, "td_steps": 0}

    def evaluation_actor(self, task_id: str, simulations: int | None = None):
        """The policy head's greedy move; behaviour cloning does not search, so ``simulations`` has no effect."""
        return make_policy_actor(self.net, self.device, self.action_ids_for(task_id), self.inference_context)
