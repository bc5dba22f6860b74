"""ReplaySnapshots: whenever a checkpoint is saved, every rank writes what the checkpoint's dict cannot hold."""

from __future__ import annotations

from typing import Any

import lightning as L

from xtra.datamodules.contract import task_data


class ReplaySnapshots(L.Callback):
    """Calls the data's ``save_snapshot()`` (the online replay and the play in progress, on every rank) as a
    checkpoint is saved, so that a checkpoint always comes with the replay it resumes from.

    Every xtra module adds it itself (``configure_callbacks``): without it a checkpoint would point at a snapshot
    that was never written.
    """

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        data = task_data(trainer)
        if data is not None:
            data.save_snapshot()
