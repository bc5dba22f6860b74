"""TeacherModule: offline EfficientZero on one game's fixed dataset (MuZero-Reanalyse style, XTRA stage 1).

The environment is never stepped for learning: every policy target is a fresh search of the teacher's own target
network and every value target bootstraps from it, over the dataset's trajectories, whatever policy recorded
them. The step is the shared multi-task one with a single game.
"""

from __future__ import annotations

from typing import Any

from xtra.modules.efficientzero import EfficientZeroModule


class TeacherModule(EfficientZeroModule):
    """Offline EfficientZero on exactly one dataset.

    Args:
        reanalyse_fraction: share of rows whose policy targets are searched afresh (default: all of them).
        td_decay_env_steps: off by default; a fixed dataset has no age to correct for.
        **kwargs: everything else as :class:`~xtra.modules.efficientzero.EfficientZeroModule`.
    """

    def __init__(self, reanalyse_fraction: float = 1.0, td_decay_env_steps: int | None = None, **kwargs: Any) -> None:
        super().__init__(reanalyse_fraction=reanalyse_fraction, td_decay_env_steps=td_decay_env_steps, **kwargs)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        tasks = self.data_task_ids()
        if len(tasks) != 1:
            raise ValueError(
                f"a teacher learns one game, the data holds {tasks}: give data.datasets a single dataset "
                "(train one teacher per pretraining game, then distil them with DistillationModule)"
            )
