"""``results.json``: what a finished run says about itself, in one file a sweep or a report can read without
TensorBoard — the final evaluation, the learning curve, and what is needed to reproduce or group the run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from dataclasses import asdict
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

import xtra
from xtra.atomic import write_bytes_atomic
from xtra.collector import Evaluated
from xtra.datamodules.contract import task_data
from xtra.envs import resolve_options

RESULTS = "results.json"


def source_commit() -> str | None:
    """The git commit of the xtra source that runs (``+dirty`` when it has uncommitted changes), or None when the
    package is not a git checkout (an installed wheel: its version says what ran)."""
    root = Path(xtra.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "xtra"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


class RunRecord(L.Callback):
    """Write ``results.json`` into the run's log folder (``<default_root_dir>/lightning_logs/version_N/``, or the
    root without a logger) when a fit ends (rank 0), atomically. A new fit in the same root gets a new version
    folder, so no record is overwritten; a resumed fit continues its version and rewrites its own record.

    It holds the last evaluation (per game: episode returns, greedy-move counts, whether the greedy policy
    collapsed onto one action), the curve of every evaluation of the run, the config's SHA-256 (of the resolved
    config the CLI prints), the source commit, the seed, the environment options (sticky actions and the rest),
    the wall time (summed over resumes) and the xtra version. ``xtra fit`` adds it to every fit; the evaluations come
    from the run's :class:`~xtra.callbacks.evaluation.Evaluation` callback (a run without one records no scores).
    """

    def __init__(self, config_yaml: str = "", seed: int | None = None) -> None:
        self.config_hash = hashlib.sha256(config_yaml.encode()).hexdigest() if config_yaml else None
        self.seed = seed
        self.wall_before = 0.0  # wall time of the run's earlier attempts (restored from the checkpoint)
        self._started = time.time()

    def wall_s(self) -> float:
        return self.wall_before + time.time() - self._started

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._started = time.time()  # building the environments and loading data count too

    def state_dict(self) -> dict:
        return {"wall_s": self.wall_s()}

    def load_state_dict(self, state_dict: dict) -> None:
        self.wall_before = float(state_dict.get("wall_s", 0.0))

    @rank_zero_only
    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        from xtra.callbacks.evaluation import Evaluation, log_folder

        folder = log_folder(trainer)

        history = next((c.history for c in trainer.callbacks if isinstance(c, Evaluation)), [])
        data = task_data(trainer)
        target = data.target_task_id if data is not None else None
        options = resolve_options(target, data.env_options) if target else None  # the defaults filled in
        record = run_record(
            Path(trainer.default_root_dir), history, seed=self.seed, config_sha256=self.config_hash,
            global_step=trainer.global_step,
            # a fit stopped early (SIGTERM, early stopping) also ends here: such a record is not a finished run
            complete=trainer.max_steps is None or trainer.max_steps < 0 or trainer.global_step >= trainer.max_steps,
            env_steps=data.env_steps if data is not None else None, target=target,
            games=list(data.task_ids) if data is not None else [],
            env_options=asdict(options) if options is not None else None, wall_s=round(self.wall_s(), 1),
            starts_as_pretrained=bool(getattr(pl_module, "starts_as_pretrained", False)),
        )  # fmt: skip
        write_run_record(folder, record)


def write_run_record(folder: Path, record: dict) -> Path:
    """``record`` as ``<folder>/results.json``, atomically (reports read whatever is there)."""
    write_bytes_atomic(folder / RESULTS, json.dumps(record, indent=1).encode())
    return folder / RESULTS


def run_record(run_dir: Path, history: list[dict], **fields: object) -> dict:
    """A run's ``results.json`` content: who ran it (version, folder, commit), ``fields`` (seed, config hash, steps,
    target, games, environment options, wall time, ``starts_as_pretrained`` — the curve's step-0 point is the
    pretrained model's zero-shot score only when it is true) and its evaluations: the last as ``final``, every one
    as a point of ``curve``. One builder for ``xtra fit`` and ``xtra-eval --run-dir``."""
    return {"xtra_version": xtra.__version__, "run_dir": str(run_dir.resolve()), "commit": source_commit(), **fields,
            "final": final_scores(history[-1]) if history else None,
            "curve": [curve_point(r) for r in history]}  # fmt: skip


def final_scores(evaluation: dict) -> dict:
    """Per game of one evaluation record: returns, mean, greedy-move counts, top action share, collapsed."""
    games = {}
    for task, returns in evaluation["returns"].items():
        counts = evaluation.get("actions", {}).get(task, [])
        played = Evaluated(np.asarray(returns, dtype=float), np.asarray(counts, dtype=np.int64), float("nan"))
        games[task] = {"mean": float(sum(returns) / len(returns)), "returns": list(returns),
                       "action_counts": list(counts), "top_action_share": played.top_action_share,
                       "collapsed": played.collapsed}  # fmt: skip
    return {"global_step": evaluation["global_step"], "env_steps": evaluation.get("env_steps"), "games": games}


def curve_point(evaluation: dict) -> dict:
    """One evaluation as a point of the learning curve: step, env steps, each game's mean return, its episodes'
    returns (so a report can put an interval over seeds *and* episodes on every point, not only the last) and
    whether the greedy policy had collapsed there (the step-0 point of a pretrained model is its zero-shot score)."""
    scores = final_scores(evaluation)["games"]
    return {"global_step": evaluation["global_step"], "env_steps": evaluation.get("env_steps"),
            "returns": {t: g["mean"] for t, g in scores.items()},
            "episode_returns": {t: g["returns"] for t, g in scores.items()},
            "collapsed": {t: g["collapsed"] for t, g in scores.items()}}  # fmt: skip
