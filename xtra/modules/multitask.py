"""MultiTaskModule: the EfficientZero step over batches of several games at once.

A batch is a mapping ``{task_id: raw windows}``. Each game's targets are made by :meth:`task_targets` (by default
reanalysed with this model's target network, searching only that game's actions); then all games go through
*one* joint forward pass (batch-norm statistics over the whole batch, as in the authors' finetuning code) and the
loss is the mean over all rows of ω_task · w_PER · ℓ. Subclasses change only where targets come from (teacher,
student, finetuner) and the task weights ω.
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch

from xtra.envs import game_name
from xtra.losses import LossOutput, UnrollTargets
from xtra.modules.efficientzero import EfficientZeroModule


def task_slices(batches: dict[str, dict[str, Any]]) -> dict[str, slice]:
    """Where each game's rows sit once the games' batches are concatenated in order."""
    slices, start = {}, 0
    for task, batch in batches.items():
        n = len(batch["rows"])
        slices[task], start = slice(start, start + n), start + n
    return slices


def concat_prepared(parts: list[dict[str, Any]], weights: list[torch.Tensor]) -> dict[str, Any]:
    """One batch out of several prepared ones, rows in the given order, with the given per-row weights."""
    targets = UnrollTargets(*[torch.cat([getattr(p["targets"], f.name) for p in parts]) for f in fields(UnrollTargets)])
    return {
        "obs": torch.cat([p["obs"] for p in parts]),
        "actions": torch.cat([p["actions"] for p in parts]),
        "targets": targets,
        "weights": torch.cat(weights),
    }


class MultiTaskModule(EfficientZeroModule):
    """EfficientZero on ``{task: batch}`` mappings (see the module docstring); arguments as the base module."""

    task_weights: dict[str, float]

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task_weights = {}

    def task_weight(self, task_id: str) -> float:
        return float(self.task_weights.get(task_id, 1.0))

    # ---------------------------------------------------------------- targets
    def task_targets(self, task_id: str, raw: dict[str, torch.Tensor]) -> dict[str, Any]:
        """Targets of one game's rows (reanalysed with this model's own target network)."""
        return self.prepare_batch(raw, self.target_net, self.action_ids_for(task_id))

    @torch.no_grad()
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict) and batch and "frames" not in batch:
            return {task: self.task_targets(task, raw) for task, raw in batch.items()}
        return super().on_after_batch_transfer(batch, dataloader_idx)

    # ---------------------------------------------------------------- training
    def joint_loss(self, prepared: dict[str, dict[str, Any]]) -> tuple[LossOutput, dict[str, slice]]:
        """One forward over all games' rows; returns the loss and each game's rows in it."""
        weights = [b["weights"] * self.task_weight(t) for t, b in prepared.items()]
        return self.compute_loss(concat_prepared(list(prepared.values()), weights)), task_slices(prepared)

    def training_step(self, batch: dict[str, dict[str, Any]], batch_idx: int) -> torch.Tensor:
        out, slices = self.joint_loss(batch)
        self.optimize(out.loss, out.terms)
        self.after_tasks_update(batch, out, slices)
        return out.loss.detach()

    def task_metrics(self, task_id: str, prepared: dict[str, Any], out: LossOutput, rows: slice) -> dict[str, float]:
        """Extra per-game figures for TensorBoard (subclasses add theirs)."""
        return {}

    def after_tasks_update(self, prepared: dict[str, dict[str, Any]], out: LossOutput, slices: dict[str, slice]):
        logs: dict[str, Any] = {f"loss/{k}": v for k, v in out.terms.items()}
        for task, rows in slices.items():
            game = game_name(task)
            priorities = self.send_priorities(prepared[task], out.predicted_values[rows], task)
            logs[f"train/priority_mean/{game}"] = float(priorities.mean())
            logs[f"train/task_weight/{game}"] = self.task_weight(task)
            for name, values in out.sample_terms.items():
                logs[f"loss/{name}/{game}"] = values[rows].mean()
            logs.update({f"{k}/{game}": v for k, v in prepared[task]["stats"].items()})
            logs.update(self.task_metrics(task, prepared[task], out, rows))
        self.refresh_target()
        self.log_common(logs, sum(s.stop - s.start for s in slices.values()))
