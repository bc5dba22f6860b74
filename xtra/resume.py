"""What ``--ckpt_path last`` means for an xtra run: the newest intact checkpoint of the run, whichever version
folder holds it.

Lightning looks for ``last`` only in the checkpoint folder of the run it is starting. Without an explicit
``ModelCheckpoint(dirpath=…)`` that folder lives inside the new logger version (``version_N+1/checkpoints``), so a
plain ``--ckpt_path last`` would find nothing, warn once among many lines and train from step 0. Here the run's
existing versions are searched instead, the logger continues the version that is resumed (one TensorBoard curve,
one checkpoint and replay folder per run), and nothing to resume is an error.
"""

from __future__ import annotations

import re
import warnings
import zipfile
from pathlib import Path

from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint

VERSION = re.compile(r"version_(\d+)")
STEP = re.compile(r"step=(\d+)")


class NothingToResume(FileNotFoundError):
    """``--ckpt_path last`` asked for, no checkpoint of the run found."""


def is_intact(path: Path) -> bool:
    """A checkpoint that torch can open: torch writes a zip archive, whose directory sits at the end, so a file cut
    short by a kill is not a zip any more."""
    try:
        return path.is_file() and path.stat().st_size > 0 and zipfile.is_zipfile(path)
    except OSError:
        return False


def _step(path: Path) -> int:
    match = STEP.search(path.name)
    return int(match.group(1)) if match else -1


def newest_intact(folder: Path) -> Path | None:
    """``last*.ckpt`` if intact, otherwise the step checkpoint with the highest step (a warning says so)."""
    if not folder.is_dir():
        return None
    lasts = sorted(folder.glob("last*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for path in lasts:
        if is_intact(path):
            return path
    steps = sorted((p for p in folder.glob("*.ckpt") if not p.name.startswith("last")),
                   key=lambda p: (_step(p), p.stat().st_mtime), reverse=True)  # fmt: skip
    for path in steps:
        if is_intact(path):
            if lasts:
                warnings.warn(f"{lasts[0]} is damaged (an interrupted write?); resuming from {path} instead",
                              stacklevel=2)  # fmt: skip
            return path
    return None


def run_checkpoint(run_dir: Path) -> Path | None:
    """The newest intact checkpoint of a run folder (``trainer.default_root_dir``), whichever version holds it, or
    None: what an unfinished earlier attempt of the run left to resume from."""
    folders = sorted(Path(run_dir).glob("lightning_logs/version_*/checkpoints"), reverse=True)
    folders.append(Path(run_dir) / "checkpoints")
    return next((p for f in folders if (p := newest_intact(f)) is not None), None)


def version_folders(trainer: Trainer) -> list[tuple[int, Path]]:
    """The logger's ``version_N`` folders of this run, newest first."""
    logger = trainer.logger
    if logger is None or logger.save_dir is None:
        return []
    root = Path(logger.save_dir) / (logger.name or "")
    found = [(int(m.group(1)), p) for p in root.glob("version_*") if (m := VERSION.fullmatch(p.name))]
    return sorted(found, reverse=True)


def resolve_last(trainer: Trainer) -> Path:
    """The checkpoint ``last`` stands for; when it lives in a logger version, the logger is pointed at that version
    so that the resumed run logs and checkpoints where it stopped."""
    explicit = [Path(cb.dirpath) for cb in trainer.checkpoint_callbacks if isinstance(cb, ModelCheckpoint)
                and cb.dirpath]  # fmt: skip
    looked: list[Path] = []
    if explicit:
        for folder in explicit:
            looked.append(folder)
            if path := newest_intact(folder):
                return path
    elif trainer.logger is not None:
        for number, folder in version_folders(trainer):
            looked.append(folder / "checkpoints")
            if path := newest_intact(folder / "checkpoints"):
                if getattr(trainer.logger, "_version", None) is None:
                    trainer.logger._version = number  # continue this version instead of opening a new one
                return path
    else:
        folder = Path(trainer.default_root_dir) / "checkpoints"
        looked.append(folder)
        if path := newest_intact(folder):
            return path
    where = ", ".join(str(p) for p in looked) or f"{trainer.default_root_dir} (no version folders)"
    raise NothingToResume(
        f"--ckpt_path last: this run has no checkpoint to resume (looked in {where}). Start it without "
        "--ckpt_path, or pass a checkpoint file; the run directory is trainer.default_root_dir, so keep it and the "
        "config's ModelCheckpoint (save_last: true) as they were when the run started"
    )
