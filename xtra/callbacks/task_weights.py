"""GradientCosineTaskWeights: XTRA's offline-task weights η_i from gradient cosine similarity with the target.

Schedule (the authors' code, each number an argument): cycles of ``cycle`` training steps; during the first
``measure`` steps of each cycle, once ``start`` steps are done, the finetuner computes per-task gradients and the
cosine similarity c_i of each offline game's gradient with the target's; at the end of that window the rule maps
the window's similarities to new weights, which hold until the next window ends. Before the first window ends
every η_i is 1. The rule is a plain function ``(similarities [steps, games], threshold) -> weights [games]``,
replaceable from the config (``rule: xtra.callbacks.task_weights.mean_clipped_cosine``).
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import torch
import torch.distributed as dist

from xtra.envs import game_name

TaskWeightRule = Callable[[np.ndarray, float], np.ndarray]


def fraction_above_threshold(similarities: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """The authors' rule: η_i = round((1 + #{c_i > threshold}) / (1 + #measured), 2) — smoothed, in [0, 1]."""
    sims = np.asarray(similarities, dtype=np.float64).reshape(-1, np.shape(similarities)[-1])
    return np.round((1.0 + (sims > threshold).sum(0)) / (1.0 + sims.shape[0]), 2)


def mean_clipped_cosine(similarities: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """η_i = mean similarity over the window, clipped to [0, 1] (values below ``threshold`` count as 0)."""
    sims = np.asarray(similarities, dtype=np.float64)
    return np.clip(np.where(sims > threshold, sims, 0.0).mean(0), 0.0, 1.0)


def softmax_similarity(similarities: np.ndarray, threshold: float = 0.1) -> np.ndarray:
    """η = m · softmax(mean similarity / threshold): weights sum to the number of games, ordered by similarity."""
    mean = np.asarray(similarities, dtype=np.float64).mean(0) / max(threshold, 1e-6)
    e = np.exp(mean - mean.max())
    return len(mean) * e / e.sum()


def require_same_on_every_rank(weights: np.ndarray) -> None:
    """Under DDP, fail loudly if ranks disagree on η (they must: similarities come from all-reduced gradients)."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return
    backend_gpu = dist.get_backend() == "nccl"
    w = torch.as_tensor(weights, dtype=torch.float64, device="cuda" if backend_gpu else "cpu")
    lo, hi = w.clone(), w.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    if not torch.equal(lo, hi):
        raise RuntimeError(f"task weights differ across ranks ({lo.tolist()} vs {hi.tolist()})")


class GradientCosineTaskWeights(L.Callback):
    """Sets ``module.task_weights`` (η per offline game) for a :class:`~xtra.modules.finetuner.CrossTaskFinetuner`.

    Args:
        cycle: T, training steps per cycle (authors: 5 000).
        measure: N, measured steps at the start of each cycle (authors: 500).
        start: no measurement before this many steps (authors: 10 000).
        threshold: similarity threshold of the rule (authors: 0.1).
        rule: maps a window's similarities ``[N, games]`` and the threshold to the new weights.
        log_thresholds: thresholds whose hit fractions are logged per game at each refresh (the authors count
            0, 0.05 and 0.1 and train with 0.1).
    """

    def __init__(
        self,
        cycle: int = 5_000,
        measure: int = 500,
        start: int = 10_000,
        threshold: float = 0.1,
        rule: TaskWeightRule = fraction_above_threshold,
        log_thresholds: tuple[float, ...] = (0.0, 0.05, 0.1),
    ) -> None:
        if not 0 < measure <= cycle:
            raise ValueError(f"measure ({measure}) must be in 1…cycle ({cycle})")
        self.cycle, self.measure, self.start = cycle, measure, start
        self.threshold = threshold
        self.rule = rule
        self.log_thresholds = tuple(log_thresholds)
        self.weights: dict[str, float] = {}
        self.window: list[list[float]] = []  # similarities of the measured steps of the current window
        self.tasks: list[str] = []

    def measuring(self, step: int) -> bool:
        """Whether the update that follows ``step`` completed updates is measured."""
        return step >= self.start and step % self.cycle < self.measure

    def refreshes_after(self, step: int) -> bool:
        """Whether the window ends once ``step`` updates are complete."""
        return step >= self.start and step % self.cycle == self.measure

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        target = module.target_task_id()
        self.tasks = [t for t in module.data_task_ids() if t != target]  # the offline games, weighted against it
        module.task_weights = {t: self.weights.get(t, 1.0) for t in self.tasks}

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        module.probe_gradients = bool(self.tasks) and self.measuring(trainer.global_step)

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        if module.probe_gradients:
            sims = module.last_similarities
            self.window.append([sims[t] for t in self.tasks])
            module.log_dict(
                {f"task_weights/cosine/{game_name(t)}": sims[t] for t in self.tasks}, on_step=True, batch_size=1
            )
            module.probe_gradients = False
        if self.window and self.refreshes_after(trainer.global_step):
            self.refresh(trainer, module)

    def refresh(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        sims = np.asarray(self.window, dtype=np.float64)
        new = np.asarray(self.rule(sims, self.threshold), dtype=np.float64)
        self.weights = {t: float(w) for t, w in zip(self.tasks, new, strict=True)}
        require_same_on_every_rank(new)
        module.task_weights = dict(self.weights)
        metrics = {f"task_weights/eta/{game_name(t)}": w for t, w in self.weights.items()}
        for thr in self.log_thresholds:
            for t, frac in zip(self.tasks, fraction_above_threshold(sims, thr), strict=True):
                metrics[f"task_weights/frac_above_{thr:g}/{game_name(t)}"] = float(frac)
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        self.window = []

    def state_dict(self) -> dict:
        return {"weights": dict(self.weights), "window": [list(r) for r in self.window]}

    def load_state_dict(self, state_dict: dict) -> None:
        self.weights = dict(state_dict.get("weights", {}))
        self.window = [list(r) for r in state_dict.get("window", [])]
