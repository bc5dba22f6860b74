"""ExportCheckpoint: write the final checkpoint to a fixed path, where the next stage's config expects it."""

from __future__ import annotations

from pathlib import Path

import lightning as L


class ExportCheckpoint(L.Callback):
    """Save a full checkpoint to ``path`` when training ends (teachers → student → finetuner hand-offs).

    Lightning writes it through a temporary file, so an interrupted save never leaves a file that looks whole.
    """

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole state, said so: no log line
