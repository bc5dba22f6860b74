"""What a module and its callbacks may ask of the data they train on — the one interface between the two.

Every xtra datamodule provides it (checked in ``tests/datamodules``); a module reads the attached datamodule
through :func:`task_data` only, so a new datamodule knows what it must offer.
"""

from __future__ import annotations

import weakref
from typing import Protocol, runtime_checkable

import numpy as np

from xtra.envs import EnvOptions


@runtime_checkable
class TaskData(Protocol):
    """The games a batch holds and how their actions sit in the network's action space."""

    @property
    def task_ids(self) -> list[str]:
        """Every game of a batch (the keys of a multi-game batch)."""

    @property
    def target_task_id(self) -> str | None:
        """The game played online — acting, the task weights' reference — or None for offline data."""

    @property
    def frame_stack(self) -> int: ...

    @property
    def num_actions(self) -> int:
        """The network's action count (a shared space when games of a family are mixed)."""

    @property
    def env_options(self) -> EnvOptions | None: ...

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        """The stacked observation the network takes."""

    @property
    def env_steps(self) -> int | None:
        """Env steps played on this rank so far (None for offline data)."""

    def game_action_ids(self, task_id: str) -> tuple[int, ...]:
        """The game's own actions, as indices into the network's ``num_actions`` outputs."""

    def update_priorities(self, rows: np.ndarray, priorities: np.ndarray, task_id: str | None = None) -> None:
        """New priorities for the replay rows a batch came from (``task_id`` names the game of a multi-game batch)."""

    def pop_stats(self) -> dict[str, float]:
        """The data's own figures since the last call (logged with the step's losses)."""

    def save_snapshot(self) -> None:
        """Write, on this rank, what a checkpoint at this step needs beside its dict (the online replay and the
        play in progress); called when a checkpoint is saved."""


_CHECKED: weakref.WeakSet = weakref.WeakSet()  # datamodules already checked (the check reads every member)


def task_data(trainer) -> TaskData | None:
    """The trainer's datamodule as :class:`TaskData` (None without a trainer or a datamodule); checked once per
    datamodule, since modules ask at every step."""
    dm = getattr(trainer, "datamodule", None) if trainer is not None else None
    if dm is None:
        return None
    if dm not in _CHECKED:
        if not isinstance(dm, TaskData):
            raise TypeError(f"{type(dm).__name__} does not provide xtra.datamodules.contract.TaskData")
        _CHECKED.add(dm)
    return dm
