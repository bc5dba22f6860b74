"""ProgressFile: the run's step count in a small JSON file, for whoever watches a run from outside (the pipeline)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


class ProgressFile(L.Callback):
    """Write ``{"step", "max_steps", "elapsed_s"}`` to ``path`` at most every ``every_s`` seconds (rank 0)."""

    def __init__(self, path: str, every_s: float = 2.0) -> None:
        self.path = Path(path)
        self.every_s = every_s
        self._last = 0.0
        self._start = time.time()

    def _write(self, trainer: L.Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"step": trainer.global_step, "max_steps": trainer.max_steps,
                                   "elapsed_s": round(time.time() - self._start, 1)}))  # fmt: skip
        os.replace(tmp, self.path)
        self._last = time.time()

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if time.time() - self._last >= self.every_s:
            self._write(trainer)

    @rank_zero_only
    def on_train_end(self, trainer, pl_module) -> None:
        self._write(trainer)
