"""What both datamodules share: windows as tensors, the importance-sampling schedule, memory figures."""

from __future__ import annotations

import os
from collections.abc import Callable

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


class _Endless(IterableDataset):
    def __init__(self, next_batch: Callable[[], object]) -> None:
        self.next_batch = next_batch

    def __iter__(self):
        while True:
            yield self.next_batch()


def endless_loader(next_batch: Callable[[], object]) -> DataLoader:
    """A loader that asks ``next_batch`` for every batch, in this process: sampling and collection need the
    datamodule's own state (replay, environments, priorities), so there are no worker processes."""
    return DataLoader(_Endless(next_batch), batch_size=None, num_workers=0)
