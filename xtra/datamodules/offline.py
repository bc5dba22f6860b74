"""OfflineReplayDataModule: fixed datasets of several games, one batch per game per step, memory-mapped.

Each dataset directory (written by ``save_dataset`` or ``xtra-data import-minari``) is checked against its
manifest and memory-mapped read-only; only its priorities (4 bytes a row) live in RAM. Pages of the mapped
arrays that sampling touches are handed back to the kernel every ``release_every`` batches (``MADV_DONTNEED``),
so resident memory stays bounded however many and however large the datasets are: the page cache, which the
kernel shrinks under pressure, keeps hot pages cheap to fault in again.

Every game's actions and stored policies are mapped into its family's full action space (18 on Atari, 6 on
MinAtar), so one network with one policy head serves all games.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xtra.datamodules.common import StepBatchDataModule, importance_beta, resident_megabytes, windows_to_tensors
from xtra.distributed import gather_from_ranks
from xtra.envs import FULL_ATARI_ACTIONS, FULL_MINATAR_ACTIONS, EnvOptions, parse_task_id
from xtra.replay import FIELDS, DatasetError, Replay, SampledWindows, read_manifest, require_steps

SHARED_ACTIONS = {"atari": FULL_ATARI_ACTIONS, "minatar": FULL_MINATAR_ACTIONS}


class OfflineDataset:
    """One memory-mapped dataset with writable priorities, sampled in its family's shared action space."""

    def __init__(self, path: str | Path, verify: bool = True, reset_priorities: bool = True) -> None:
        self.path = Path(path)
        self.replay, self.manifest = Replay.load(self.path, mmap=True, verify=verify)
        require_steps(self.path, self.manifest)
        self.task_id: str = self.manifest["task_id"]
        family, _ = parse_task_id(self.task_id)
        self.shared_actions = SHARED_ACTIONS[family]
        self.action_ids = np.asarray(self.manifest["action_ids"], dtype=np.int64)
        if len(self.action_ids) != self.replay.num_actions or self.action_ids.max() >= self.shared_actions:
            raise DatasetError(
                f"{self.path / 'manifest.json'}: action_ids {self.action_ids.tolist()} do not fit "
                f"{self.replay.num_actions} actions of a {family} game; the manifest is inconsistent, write it again"
            )
        steps = np.asarray(self.replay.actions) >= 0
        if not steps.any():
            raise DatasetError(f"{self.path} holds no steps; record data before training on it")
        stored = np.asarray(self.replay.priorities, dtype=np.float32)
        self.replay.priorities = np.where(steps, 1.0 if reset_priorities else stored, 0.0).astype(np.float32)
        self.replay.max_priority = 1.0 if reset_priorities else float(stored.max())
        self.nbytes = sum((self.path / f"{name}.npy").stat().st_size for name in FIELDS)
        self._advise(mmap.MADV_RANDOM)  # sampling is random: no readahead around each touched row

    def _advise(self, advice: int) -> None:
        for name in FIELDS:
            handle = getattr(getattr(self.replay, name), "_mmap", None)
            if handle is not None:
                handle.madvise(advice)

    def sample(
        self, batch_size: int, unroll_steps: int, td_steps: int, rng: np.random.Generator, beta: float
    ) -> SampledWindows:
        """Prioritised windows in the shared action space. Age is 0: a fixed dataset has no "newer" data."""
        w = self.replay.sample(batch_size, unroll_steps, td_steps, rng, beta)
        w.age = np.zeros_like(w.age)
        return w.in_action_space(self.action_ids, self.shared_actions)

    def release(self) -> None:
        """Drop this process's mapping of every page touched so far (the data stays in the page cache)."""
        self._advise(mmap.MADV_DONTNEED)


def read_dataset_specs(paths: list[str]) -> list[dict]:
    """Manifests of every dataset (no checksums yet), checked to fit one network: same frames, stack, family."""
    if not paths:
        raise ValueError("data.datasets is empty: give one dataset directory per pretraining game")
    manifests = [read_manifest(p, verify=False) for p in paths]
    tasks = [m["task_id"] for m in manifests]
    duplicated = sorted({t for t in tasks if tasks.count(t) > 1})
    if duplicated:
        raise ValueError(f"more than one dataset for {duplicated}: give one dataset directory per game")
    first = manifests[0]
    for path, m in zip(paths, manifests, strict=True):
        same = (m["frame_shape"], m["frame_stack"]) == (first["frame_shape"], first["frame_stack"])
        family = parse_task_id(m["task_id"])[0]
        if not same or family != parse_task_id(first["task_id"])[0]:
            raise DatasetError(
                f"{path} ({m['task_id']}: frames {m['frame_shape']}, stack {m['frame_stack']}) does not match "
                f"{paths[0]} ({first['task_id']}: frames {first['frame_shape']}, stack {first['frame_stack']}); "
                "one network needs one observation format: record every dataset with the same env options"
            )
    return manifests


class OfflineReplayDataModule(StepBatchDataModule):
    """Batches ``{task_id: raw window batch}`` with one batch of ``batch_size`` rows from every dataset per step.

    Args:
        datasets: one dataset directory per game.
        batch_size: rows per game per step.
        verify_checksums: hash every file on setup (minutes for tens of GB; off skips only the hashing —
            manifests, shapes and dtypes are always checked).
        reset_priorities: start every row at priority 1 (the authors' choice) instead of the stored priorities.
        priority_beta: importance-sampling exponent at the start, linear to 1 at ``max_steps``.
        release_every: batches between returning the mapped pages to the kernel (bounds resident memory).
        env_options: the environment protocol the data was recorded with, for evaluation episodes.
        seed: sampling seed; each DDP rank derives its own stream from (seed, rank).
    """

    def __init__(
        self,
        datasets: list[str],
        batch_size: int = 64,
        verify_checksums: bool = True,
        reset_priorities: bool = True,
        priority_beta: float = 0.4,
        release_every: int = 1,
        env_options: EnvOptions | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.paths = [str(p) for p in datasets]
        self.manifests = read_dataset_specs(self.paths)
        self.batch_size = batch_size
        self.verify_checksums = verify_checksums
        self.reset_priorities = reset_priorities
        self.priority_beta = priority_beta
        self.release_every = release_every
        self.env_options = env_options
        self.seed = seed
        self.datasets: dict[str, OfflineDataset] = {}
        self.rng: np.random.Generator | None = None
        self._batches = 0
        self._stats: dict[str, float] = {}

    @property
    def task_ids(self) -> list[str]:
        return [m["task_id"] for m in self.manifests]

    @property
    def frame_stack(self) -> int:
        return int(self.manifests[0]["frame_stack"])

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        c, h, w = self.manifests[0]["frame_shape"]
        return (c * self.frame_stack, h, w)

    @property
    def num_actions(self) -> int:
        return SHARED_ACTIONS[parse_task_id(self.task_ids[0])[0]]

    def game_action_ids(self, task_id: str) -> tuple[int, ...]:
        return tuple(self.manifests[self.task_ids.index(task_id)]["action_ids"])

    @property
    def target_task_id(self) -> None:
        return None  # offline data has no game played online

    @property
    def env_steps(self) -> None:
        return None  # nothing is played

    def setup(self, stage: str) -> None:
        if self.datasets:
            return
        for path in self.paths:
            ds = OfflineDataset(path, verify=self.verify_checksums, reset_priorities=self.reset_priorities)
            self.datasets[ds.task_id] = ds
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, rank, 3]))

    def sample(
        self, unroll_steps: int, td_steps: int, beta: float = 1.0, pin: bool = False, rows: int | None = None
    ) -> dict[str, dict[str, torch.Tensor]]:
        """One batch of ``rows`` (default ``batch_size``) per game; mapped pages are released every
        ``release_every`` calls."""
        n = rows or self.batch_size
        out = {
            task: windows_to_tensors(ds.sample(n, unroll_steps, td_steps, self.rng, beta), pin=pin)
            for task, ds in self.datasets.items()
        }
        self._batches += 1
        if self.release_every and self._batches % self.release_every == 0:
            for ds in self.datasets.values():
                ds.release()
        return out

    def next_batch(self, rows: int | None = None) -> dict[str, dict[str, torch.Tensor]]:
        module = self.trainer.lightning_module
        beta = importance_beta(self.priority_beta, module.global_step, self.trainer.max_steps)
        rss = resident_megabytes()
        if rss is not None:
            self._stats["sys/rss_mb"] = rss
        sampling = module.sampling
        pin = self.trainer.strategy.root_device.type == "cuda"
        return self.sample(sampling["unroll_steps"], sampling["td_steps"], beta, pin, rows)

    def update_priorities(self, rows: np.ndarray, priorities: np.ndarray, task_id: str | None = None) -> None:
        if task_id is None:
            raise ValueError("an offline batch's priorities need its task id")
        self.datasets[task_id].replay.update_priorities(rows, priorities)

    def pop_stats(self) -> dict[str, float]:
        stats, self._stats = self._stats, {}
        return stats

    def _rank_state(self) -> dict[str, Any]:
        return {
            "sampler_rng": self.rng.bit_generator.state,
            "priorities": {t: torch.from_numpy(ds.replay.priorities.copy()) for t, ds in self.datasets.items()},
            "max_priority": {t: ds.replay.max_priority for t, ds in self.datasets.items()},
        }

    def save_snapshot(self) -> None:
        """Nothing to write: the datasets do not change and the samplers' state fits in the checkpoint dict."""

    def state_dict(self) -> dict[str, Any]:
        """Every rank's sampler and priorities (each rank samples its own stream), gathered into the one dict
        Lightning writes."""
        if not self.datasets:
            return {}
        return {"task_ids": self.task_ids, "ranks": gather_from_ranks(self._rank_state())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if list(state["task_ids"]) != self.task_ids:
            raise ValueError(f"checkpoint was trained on datasets of {state['task_ids']}, this run has {self.task_ids}")
        if "ranks" not in state:
            raise ValueError("this checkpoint was written by an older xtra (offline sampler of rank 0 only); resume "
                             "it with that version or start the run again")  # fmt: skip
        rank = self.trainer.global_rank if self.trainer is not None else 0
        if len(state["ranks"]) != (self.trainer.world_size if self.trainer is not None else 1):
            raise ValueError(f"the checkpoint holds the offline state of {len(state['ranks'])} rank(s); resume with as "
                             "many ranks")  # fmt: skip
        mine = state["ranks"][rank]
        self.setup("fit")
        self.rng.bit_generator.state = mine["sampler_rng"]
        for task, ds in self.datasets.items():
            prios = mine["priorities"][task].numpy()
            if prios.shape != ds.replay.priorities.shape:
                raise ValueError(f"the checkpoint's priorities of {task} do not fit {ds.path}: a different dataset")
            ds.replay.priorities[:] = prios
            ds.replay.max_priority = float(mine["max_priority"][task])
