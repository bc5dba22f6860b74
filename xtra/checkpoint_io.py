"""Checkpoint files that are either the old one or the new one, never half of one.

Lightning's local save goes through an fsspec transaction whose temporary file may live on another filesystem
(``TMPDIR``); the final move is then a copy, and a kill during it leaves a truncated or empty ``last.ckpt``. Here
the bytes are written and synced beside the target and renamed over it, which is atomic on a local filesystem.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from xtra.atomic import write_bytes_atomic


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into ``.<name>.tmp-<pid>`` in the target's folder, fsync, then ``os.replace``."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None or not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        buffer = io.BytesIO()
        torch.save(checkpoint, buffer)
        write_bytes_atomic(Path(path), buffer.getbuffer())
