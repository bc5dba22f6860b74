"""CrossTaskDataModule: the target game's online replay plus the offline games, one mapping per step.

Each step yields ``{target: batch, offline_1: batch, …}`` (target first). By default half of the rows come from
the target and the other half is split evenly across the offline games (the authors' finetuning batch); the
target's windows are mapped into the family's full action space like the offline ones, so one network serves all.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch

from xtra.datamodules.common import StepBatchDataModule
from xtra.datamodules.offline import SHARED_ACTIONS, OfflineReplayDataModule
from xtra.datamodules.online import OnlineReplayDataModule
from xtra.envs import parse_task_id


class CrossTaskDataModule(StepBatchDataModule):
    """Online target data plus (optionally) offline games.

    Args:
        target: the target game's online datamodule (its own ``batch_size`` is unused when ``batch_size`` is set).
        offline: the offline games (``None``: finetune on the target alone — the "w/o cross-task" ablation).
        batch_size: rows per step over all games; ``None`` keeps the two datamodules' own batch sizes.
        offline_share: share of ``batch_size`` given to the offline games, split evenly among them. Without
            offline games those rows are not drawn, so the target trains on as many rows as beside them (the
            "w/o cross-task" ablation is then the same config with ``offline: null``).
    """

    def __init__(
        self,
        target: OnlineReplayDataModule,
        offline: OfflineReplayDataModule | None = None,
        batch_size: int | None = 512,
        offline_share: float = 0.5,
    ) -> None:
        super().__init__()
        self.target = target
        self.offline = offline
        family = parse_task_id(target.task_id)[0]
        self.shared_actions = SHARED_ACTIONS[family]
        if offline is not None:
            if target.task_id in offline.task_ids:
                raise ValueError(f"the target {target.task_id} is also an offline game; leave it out of the datasets")
            if tuple(offline.obs_shape) != tuple(target.obs_shape) or offline.num_actions != self.shared_actions:
                raise ValueError(
                    f"offline data ({offline.task_ids}: observations {offline.obs_shape}) does not fit the target "
                    f"{target.task_id} ({target.obs_shape}); record all games with the same env options"
                )
        # the split is passed to the children at every batch; their own settings are left as configured
        self.target_rows, self.offline_rows = target.batch_size, offline.batch_size if offline is not None else 0
        if batch_size is not None:
            m = len(offline.task_ids) if offline is not None else 0
            offline_total = int(batch_size * offline_share)
            self.offline_rows = offline_total // m if m else 0
            self.target_rows = batch_size - (self.offline_rows * m if m else offline_total)
            if offline is not None and self.offline_rows < 1:
                raise ValueError(f"batch_size {batch_size} leaves no rows for {m} offline games")
            if self.target_rows < 1:
                raise ValueError(f"offline_share {offline_share} leaves no rows of batch_size {batch_size} for the "
                                 "target; lower offline_share")  # fmt: skip

    # what the model is built from (linked by the CLI)
    @property
    def obs_shape(self) -> tuple[int, int, int]:
        return self.target.obs_shape

    @property
    def num_actions(self) -> int:
        return self.shared_actions

    @property
    def frame_stack(self) -> int:
        return self.target.frame_stack

    @property
    def env_steps(self) -> int | None:
        return self.target.env_steps

    @property
    def task_id(self) -> str:
        return self.target.task_id

    @property
    def target_task_id(self) -> str:
        return self.target.task_id

    def game_action_ids(self, task_id: str) -> tuple[int, ...]:
        if task_id == self.target.task_id:
            return tuple(int(a) for a in self.target.spec.action_ids)  # the game's ids in the family's full space
        return self.offline.game_action_ids(task_id)

    @property
    def task_ids(self) -> list[str]:
        return [self.target.task_id, *(self.offline.task_ids if self.offline is not None else [])]

    @property
    def env_options(self):
        return self.target.env_options

    @property
    def offline_sources(self) -> dict[str, dict]:
        if self.offline is None:
            return {}
        return {m["task_id"]: m.get("source", {}) for m in self.offline.manifests}

    def _parts(self) -> list[L.LightningDataModule]:
        return [self.target] + ([self.offline] if self.offline is not None else [])

    def setup(self, stage: str) -> None:
        for part in self._parts():
            part.trainer = self.trainer
            part.setup(stage)

    def next_batch(self) -> dict[str, dict[str, torch.Tensor]]:
        batch = {self.target.task_id: self.target.next_batch(self.target_rows, self.shared_actions)}
        if self.offline is not None:
            batch.update(self.offline.next_batch(self.offline_rows))
        return batch

    def update_priorities(self, rows: np.ndarray, priorities: np.ndarray, task_id: str | None = None) -> None:
        if task_id in (None, self.target.task_id):
            self.target.update_priorities(rows, priorities)
        else:
            self.offline.update_priorities(rows, priorities, task_id)

    def pop_stats(self) -> dict[str, float]:
        stats: dict[str, float] = {}
        for part in self._parts():
            stats.update(part.pop_stats())
        return stats

    def save_snapshot(self) -> None:
        self.target.save_snapshot()  # the offline games' sampling state fits in the checkpoint dict

    def state_dict(self) -> dict[str, Any]:
        return {"target": self.target.state_dict(), "offline": self.offline.state_dict() if self.offline else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for part in self._parts():
            part.trainer = self.trainer
        self.target.load_state_dict(state.get("target", {}))
        if self.offline is not None:
            self.offline.load_state_dict(state.get("offline", {}))

    def teardown(self, stage: str) -> None:
        for part in self._parts():
            part.teardown(stage)
