"""OnlineReplayDataModule: collection interleaved with training at a fixed replay ratio, prioritised sampling.

The schedule is deterministic: after u updates the collector has played ``warmup_steps + u / update_to_data``
env steps (capped at ``env_steps``), whatever the speed of the hardware, so a laptop and a GPU node learn the
same curve from the same seed. The first ``warmup_steps`` are played uniformly at random (EfficientZero).

Checkpoints: each rank's replay, counters, RNG states and play in progress are written next to the checkpoint as
a dataset directory and found again from the checkpoint on resume, so that a resumed run continues exactly where
the stopped one was (batches are made at the step, see :class:`StepBatchDataModule`).
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from xtra.collector import Collector
from xtra.datamodules.common import (
    StepBatchDataModule,
    available_bytes,
    importance_beta,
    resident_megabytes,
    windows_to_tensors,
)
from xtra.envs import EnvOptions, EnvSpec, env_spec
from xtra.replay import Replay

COLLECTOR_FILE = "collector.pt"  # the play in progress, in each rank's replay snapshot (tensors and built-ins only)


class OnlineReplayDataModule(StepBatchDataModule):
    """Owns the environments, the collector and the replay of one task (one of each per DDP rank).

    Args:
        task_id: ``atari/<Game>`` or ``minatar/<game>``.
        env_options: the environment protocol (see :class:`xtra.envs.EnvOptions`).
        num_envs: environments stepped together (one batched search per step).
        env_steps: the interaction budget per rank.
        warmup_steps: random-policy steps before learning starts.
        update_to_data: updates per env step while collecting (EfficientZero ≈ 1).
        batch_size: samples per update.
        segment_length: steps after which an in-progress episode is flushed to the replay.
        replay_capacity: rows kept (default: everything the budget can produce).
        priority_beta: importance-sampling exponent at the start; it grows linearly to 1 at ``max_steps``.
        save_dataset: write the replay as an offline dataset here when fit ends (``<path>-rank<r>`` per rank under
            DDP). The path is checked when fit starts: it must be writable and must not hold a dataset already.
        overwrite_dataset: replace an existing dataset at ``save_dataset``.
        warmup_actor: who plays the warm-up steps: uniformly ``random`` (EfficientZero from scratch) or the
            ``model``'s search (a pretrained model: the authors' finetuning acts with it from the first step).
        seed: base seed; each rank's envs and sampler derive their own streams from (seed, rank).
    """

    def __init__(
        self,
        task_id: str = "minatar/breakout",
        env_options: EnvOptions | None = None,
        num_envs: int = 8,
        env_steps: int = 100_000,
        warmup_steps: int = 2_000,
        update_to_data: float = 1.0,
        batch_size: int = 256,
        segment_length: int = 200,
        replay_capacity: int | None = None,
        clip_rewards: bool = True,
        priority_beta: float = 0.4,
        save_dataset: str | None = None,
        overwrite_dataset: bool = False,
        keep_replay_snapshots: int = 2,
        warmup_actor: Literal["random", "model"] = "random",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if update_to_data <= 0:
            raise ValueError(f"update_to_data must be positive, got {update_to_data}")
        for name, value, least in (("num_envs", num_envs, 1), ("env_steps", env_steps, 1),
                                   ("warmup_steps", warmup_steps, 0), ("batch_size", batch_size, 1),
                                   ("segment_length", segment_length, 1)):  # fmt: skip
            if value < least:
                raise ValueError(f"data.init_args.{name} must be at least {least}, got {value}")
        self.task_id = task_id
        self.env_options = env_options
        self.spec: EnvSpec = env_spec(task_id, env_options)
        self.num_envs = num_envs
        self.env_steps_budget = env_steps
        self.warmup_steps = warmup_steps
        self.update_to_data = update_to_data
        self.batch_size = batch_size
        self.segment_length = segment_length
        self.replay_capacity = replay_capacity or int(env_steps * (1 + 2 / segment_length) + 2 * num_envs * 16) + 64
        self.clip_rewards = clip_rewards
        self.priority_beta = priority_beta
        self.save_dataset = save_dataset
        self.overwrite_dataset = overwrite_dataset
        self.keep_replay_snapshots = keep_replay_snapshots
        self.warmup_actor = warmup_actor
        self.seed = seed
        self.run_id = secrets.token_hex(4)  # names this run's replay snapshots (a resumed run takes the saved one)
        self._written: tuple[Path, int] | None = None
        self.replay: Replay | None = None
        self.collector: Collector | None = None
        self.rng: np.random.Generator | None = None
        self._stats: dict[str, float] = {}

    # the network is built from these (linked by the CLI)
    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return self.spec.obs_shape

    @property
    def num_actions(self) -> int:
        return self.spec.num_actions

    @property
    def frame_stack(self) -> int:
        return self.spec.frame_stack

    @property
    def task_ids(self) -> list[str]:
        return [self.task_id]

    @property
    def target_task_id(self) -> str:
        return self.task_id

    def game_action_ids(self, task_id: str) -> tuple[int, ...]:
        """Its own actions: a network trained on this datamodule alone has exactly the game's action count."""
        if task_id != self.task_id:
            raise KeyError(f"{task_id} is not this datamodule's game ({self.task_id})")
        return tuple(range(self.spec.num_actions))

    @property
    def env_steps(self) -> int | None:
        """Env steps played so far on this rank (None before setup)."""
        return self.collector.env_steps if self.collector is not None else None

    def _rank(self) -> int:
        return self.trainer.global_rank if self.trainer is not None else 0

    def replay_bytes(self) -> int:
        """Memory the replay arrays take at full capacity."""
        c, h, w = self.spec.frame_shape
        per_row = c * h * w + 2 + 4 + 4 + 4 * self.spec.num_actions + 8 + 8 + 1 + 8 + 4
        return self.replay_capacity * per_row

    def dataset_path(self) -> Path | None:
        """Where this rank writes its dataset when fit ends."""
        if not self.save_dataset:
            return None
        path = Path(self.save_dataset)
        world = self.trainer.world_size if self.trainer is not None else 1
        return path.with_name(f"{path.name}-rank{self._rank()}") if world > 1 else path

    def check_dataset_path(self) -> None:
        """Refuse, before any training, a dataset path that holds a dataset or cannot be written."""
        path = self.dataset_path()
        if path is None:
            return
        if path.exists() and not self.overwrite_dataset:
            raise FileExistsError(
                f"data.init_args.save_dataset: {path} exists; choose another path or pass "
                "--data.init_args.overwrite_dataset=true to replace it when this run ends"
            )
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryDirectory(dir=path.parent).cleanup()
        except OSError as e:
            raise PermissionError(f"data.init_args.save_dataset: cannot write into {path.parent} ({e})") from e

    def setup(self, stage: str) -> None:
        if self.replay is not None:
            return
        if stage == "fit":
            self.check_dataset_path()
        if self.trainer is not None and self.trainer.world_size > 1:
            self.run_id = self.trainer.strategy.broadcast(self.run_id, src=0)  # one run name for every rank
        rank = self._rank()
        need, available = self.replay_bytes(), available_bytes()
        rank_zero_info(f"replay of {self.task_id}: {self.replay_capacity} rows, {need / 2**30:.2f} GiB per rank")
        if available is not None and need > 0.9 * available:
            raise MemoryError(
                f"the replay needs {need / 2**30:.1f} GiB but only {available / 2**30:.1f} GiB are available: lower "
                "data.init_args.env_steps or data.init_args.replay_capacity, or use fewer ranks per machine"
            )
        self.replay = Replay(self.replay_capacity, self.spec.frame_shape, self.spec.num_actions, self.spec.frame_stack)
        self.collector = Collector(
            self.task_id, self.replay, self.num_envs, self.seed, rank, self.env_options,
            self.segment_length, self.clip_rewards,
        )  # fmt: skip
        self.rng = np.random.default_rng(np.random.SeedSequence([self.seed, rank, 2]))

    # ---------------------------------------------------------------- schedule
    def _module(self):
        return self.trainer.lightning_module

    def target_env_steps(self, updates: int) -> int:
        return min(self.env_steps_budget, self.warmup_steps + int(updates / self.update_to_data))

    def _collect(self, steps: int) -> None:
        """Play ``steps`` env steps: uniformly at random while warming up (never past its end), then with MCTS."""
        module = self._module()
        left_in_warmup = self.warmup_steps - self.collector.env_steps
        if left_in_warmup > 0 and self.warmup_actor == "random":
            self.collector.collect(min(steps, left_in_warmup), None)
        else:
            self.collector.collect(steps, module.actor(), module.temperature())
        self._stats.update(self.collector.pop_search_stats())
        returns, lengths = self.collector.pop_episode_stats()
        if returns:
            self._stats["data/episode_return"] = float(np.mean(returns))
            self._stats["data/episode_length"] = float(np.mean(lengths))

    def step_batch(self) -> dict[str, dict[str, torch.Tensor]]:
        return {self.task_id: self.next_batch()}

    def next_batch(self, rows: int | None = None, action_space: int | None = None) -> dict[str, torch.Tensor]:
        """Collect up to the schedule, then sample ``rows`` windows (default ``batch_size``); with ``action_space``
        (a family's full action count) the actions and policies are mapped into that space by the game's ids."""
        module = self._module()
        updates = module.global_step
        while self.collector.env_steps < self.target_env_steps(updates):
            self._collect(self.target_env_steps(updates) - self.collector.env_steps)
        while self.replay.num_steps_added == 0:  # no episode ended and no segment is full yet (a long game):
            self.collector.flush_in_progress()  # store the play so far as cut segments rather than play past the
            if self.replay.num_steps_added == 0:  # schedule (freeway: 1 600 steps before the first update)
                self._collect(self.num_envs)
        self._stats["data/env_steps"] = float(self.collector.env_steps)
        self._stats["data/replay_steps"] = float(self.replay.num_steps_added)
        self._stats["data/rewarded_steps"] = float(self.collector.rewarded_steps)
        self._stats["data/updates_per_env_step"] = updates / max(self.collector.env_steps, 1)
        rss = resident_megabytes()
        if rss is not None:
            self._stats["sys/rss_mb"] = rss
        beta = importance_beta(self.priority_beta, updates, self.trainer.max_steps)
        sampling = module.sampling
        windows = self.replay.sample(
            rows or self.batch_size,
            sampling["unroll_steps"],
            sampling["td_steps"],
            self.rng,
            beta,
            self.collector.env_steps,
        )
        if action_space is not None:
            windows = windows.in_action_space(np.asarray(self.spec.action_ids), action_space)
        on_cuda = self.trainer.strategy.root_device.type == "cuda"
        return windows_to_tensors(windows, pin=on_cuda)

    def update_priorities(self, rows: np.ndarray, priorities: np.ndarray, task_id: str | None = None) -> None:
        self.replay.update_priorities(rows, priorities)

    def pop_stats(self) -> dict[str, float]:
        stats, self._stats = self._stats, {}
        return stats

    # ---------------------------------------------------------------- state
    def _snapshot_root(self) -> Path:
        cb = self.trainer.checkpoint_callback
        base = Path(cb.dirpath) if cb is not None and cb.dirpath else Path(self.trainer.default_root_dir)
        return base / "replay"

    def _snapshot_name(self, rank: int, step: int) -> str:
        return f"rank{rank}-step{step}-{self.run_id}"

    def save_snapshot(self) -> None:
        """Write this rank's replay snapshot for a checkpoint at the current step (Lightning keeps only rank 0's
        checkpoint dict, so every rank writes its own): the replay, the sampler's RNG in the manifest, and the
        collector's play in progress — environments mid-game, frame stacks, unfinished trajectories, its RNG — in
        ``collector.pt``. Called by :class:`~xtra.callbacks.replay_snapshots.ReplaySnapshots` whenever a checkpoint
        is saved; a step and ``last.ckpt`` share one write. Snapshots are named by run and pruned only among this
        run's own."""
        if self.replay is None:
            return
        rank, step = self._rank(), self._step()
        root, name = self._snapshot_root(), self._snapshot_name(rank, step)
        if self._written == (root, step) and (root / name).is_dir():
            return
        for stale in root.glob(f".rank{rank}-step*-{self.run_id}.tmp-*"):  # left by a save that was killed
            shutil.rmtree(stale, ignore_errors=True)
        play = io.BytesIO()
        torch.save(self.collector.state_dict(), play)
        self.replay.save(root / name, self.task_id, action_ids=self.spec.action_ids, source={
            "kind": "checkpoint", "rank": rank, "global_step": step, "run": self.run_id,
            "env_steps": self.collector.env_steps, "sampler_rng": self.rng.bit_generator.state,
        }, extra_files={COLLECTOR_FILE: play.getvalue()})  # fmt: skip
        self._written = (root, step)
        pattern = re.compile(rf"rank{rank}-step(\d+)-{self.run_id}")
        own = sorted((int(m.group(1)), p) for p in root.iterdir() if (m := pattern.fullmatch(p.name)))
        for _, old in own[: -self.keep_replay_snapshots]:
            shutil.rmtree(old, ignore_errors=True)

    def _step(self) -> int:
        return self.trainer.global_step if self.trainer is not None else 0

    def state_dict(self) -> dict[str, Any]:
        """Where the checkpoint's replay snapshots are (written by :meth:`save_snapshot`, not here): their root,
        step and run. Resume looks beside the restored checkpoint first, so a moved run still resumes."""
        if self.replay is None:
            return {}
        return {
            "snapshot_root": str(self._snapshot_root().resolve()),
            "global_step": self._step(),
            "run": self.run_id,
            "world_size": self.trainer.world_size if self.trainer is not None else 1,
            "task_id": self.task_id,
        }

    def _find_snapshot(self, state: dict[str, Any], rank: int) -> Path:
        """This rank's snapshot: beside the checkpoint being restored (a moved run), else where it was written."""
        name = self._snapshot_name(rank, int(state["global_step"]))
        places = []
        ckpt = getattr(self.trainer, "ckpt_path", None) if self.trainer is not None else None
        if ckpt:
            places.append(Path(ckpt).parent / "replay" / name)
        places.append(Path(state["snapshot_root"]) / name)
        for place in places:
            if place.is_dir():
                return place
        raise FileNotFoundError(
            f"the replay saved with this checkpoint for rank {rank} is missing (looked for "
            f"{' and '.join(map(str, places))}); it lives next to the checkpoint under replay/ and must be copied "
            "along with it"
        )

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if state.get("task_id") != self.task_id:
            raise ValueError(f"checkpoint was trained on {state.get('task_id')!r}, this run is for {self.task_id!r}")
        if "run" not in state:
            raise ValueError("this checkpoint was written by an older xtra (replay state in rank 0's dict only); "
                             "resume it with that version or start the run again")  # fmt: skip
        world = self.trainer.world_size if self.trainer is not None else 1
        if world != state["world_size"]:
            raise ValueError(
                f"the checkpoint holds the replay of {state['world_size']} rank(s), this run has {world}; resume "
                f"with --trainer.devices (and num_nodes) giving {state['world_size']} ranks"
            )
        self.run_id = state["run"]
        self._written = None
        self.setup("fit")
        path = self._find_snapshot(state, self._rank())
        self.replay, manifest = Replay.load(path, capacity=self.replay_capacity)
        saved = manifest["source"]
        self.collector.replay = self.replay
        if COLLECTOR_FILE in manifest.get("extra_files", []):
            self.collector.load_state_dict(torch.load(path / COLLECTOR_FILE, weights_only=True))
        else:  # a snapshot written before the play in progress was saved: counters and RNG only
            rank_zero_warn(f"{path} holds no play in progress (an older xtra wrote it): the environments start new "
                           "episodes and the steps of the unfinished ones are lost")  # fmt: skip
            self.collector.env_steps = int(saved["env_steps"])
            self.collector.rng.bit_generator.state = saved["collector_rng"]
        self.rng.bit_generator.state = saved["sampler_rng"]

    def teardown(self, stage: str) -> None:
        if stage == "fit" and self.save_dataset and self.replay is not None:
            self.collector.flush_in_progress()  # the dataset holds every step played, not only finished segments
            self.replay.save(
                self.dataset_path(), self.task_id, action_ids=self.spec.action_ids,
                source={"kind": "online", "seed": self.seed, "rank": self._rank(),
                        "env_steps": self.collector.env_steps, "task_id": self.task_id},
            )  # fmt: skip
