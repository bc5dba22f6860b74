"""Per-rank state in the one checkpoint dict Lightning writes (rank 0's)."""

from __future__ import annotations

from typing import Any

import torch


def gather_from_ranks(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` outside a process group).

    Lightning builds the checkpoint dict on every rank but writes rank 0's only: state that differs per rank (RNGs,
    priorities) must be gathered into it, and each rank picks its own entry on resume.
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        ranks: list[Any] = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(ranks, obj)
        return ranks
    return [obj]
