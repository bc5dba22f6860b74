"""What the datamodules share: batches made at the step, windows as tensors, the importance-sampling schedule,
memory figures."""

from __future__ import annotations

import os
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, IterableDataset

from xtra.replay import SampledWindows


def windows_to_tensors(w: SampledWindows, pin: bool = False) -> dict[str, torch.Tensor]:
    out = {
        "frames": torch.from_numpy(w.frames),
        "actions": torch.from_numpy(w.actions),
        "rewards": torch.from_numpy(w.rewards),
        "policies": torch.from_numpy(w.policies),
        "root_values": torch.from_numpy(w.root_values),
        "steps_left": torch.from_numpy(w.steps_left),
        "terminal": torch.from_numpy(w.terminal),
        "age": torch.from_numpy(w.age),
        "weights": torch.from_numpy(w.weights),
        "rows": torch.from_numpy(w.rows),
    }
    if pin:
        out = {k: v.pin_memory() for k, v in out.items()}
    return out


def available_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


def resident_megabytes() -> float | None:
    """This process's resident memory (Linux), logged so that a growing replay or a leak shows in TensorBoard."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


def importance_beta(start: float, updates: int, max_steps: int) -> float:
    """Prioritised replay's β, linear from ``start`` to 1 over the run (EfficientZero)."""
    return start + (1.0 - start) * min(updates / max(max_steps, 1), 1.0)


class BatchRequest:
    """What the training loader yields: a request that :class:`StepBatchDataModule` turns into the step's batch."""


class _Requests(IterableDataset):
    def __iter__(self):
        while True:
            yield BatchRequest()


class StepBatchDataModule(L.LightningDataModule):
    """A datamodule whose batch is made when the training step takes it, not when Lightning fetches it.

    Lightning's fetcher reads one batch ahead. A batch made at fetch time would move the replay, the samplers' RNGs
    and the environments one batch past the step a checkpoint records, and a resumed run would not be the run that
    was stopped. Here the loader yields :class:`BatchRequest` s (nothing happens ahead of time) and
    ``on_before_batch_transfer`` — called by the training loop for the step about to run — calls ``step_batch``.
    Sampling and collection need this process's state (replay, environments, priorities): no worker processes.
    """

    def next_batch(self) -> Any:
        raise NotImplementedError

    def step_batch(self) -> dict[str, dict[str, torch.Tensor]]:
        """The step's batch: ``{task_id: raw windows}``, the one shape every module trains on."""
        return self.next_batch()

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_Requests(), batch_size=None, num_workers=0)

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, BatchRequest):
            return self.trainer.precision_plugin.convert_input(self.step_batch())
        return batch
