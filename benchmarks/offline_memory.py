"""Peak resident memory while streaming batches from several memory-mapped offline datasets.

Writes ``--games`` synthetic Atari-sized datasets (96×96 RGB frames, random content, ``--rows`` rows each) to a
temporary directory, then samples ``--batches`` steps of one batch per game through OfflineReplayDataModule and
prints one JSON line: total dataset bytes, baseline RSS (after setup), peak RSS while streaming, and the growth.
Run it twice with different ``--rows`` or ``--games`` to see that the growth does not follow the dataset size.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from xtra.datamodules.common import resident_megabytes
from xtra.datamodules.offline import OfflineReplayDataModule
from xtra.replay import Replay

GAMES = ["atari/Alien", "atari/Amidar", "atari/BankHeist", "atari/MsPacman", "atari/WizardOfWor", "atari/Assault"]


def write_dataset(path: Path, task: str, rows: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    replay = Replay(rows, (3, 96, 96), 18, 4)
    segment = 500
    step = 0
    while replay.head + segment + 1 <= rows:
        frames = rng.integers(0, 256, size=(segment + 1, 3, 96, 96), dtype=np.uint8)
        replay.add_segment(
            frames, rng.integers(0, 18, segment), rng.random(segment, dtype=np.float32),
            np.zeros(segment, np.float32), np.full((segment, 18), 1 / 18, np.float32),
            np.arange(step, step + segment), terminal=True,
        )  # fmt: skip
        step += segment
    replay.save(path, task, source={"kind": "benchmark"}, action_ids=list(range(18)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--games", type=int, default=4)
    parser.add_argument("--rows", type=int, default=25_000)
    parser.add_argument("--batches", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--release-every", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        paths = []
        for i, task in enumerate(GAMES[: args.games]):
            path = Path(tmp) / task.split("/")[1]
            write_dataset(path, task, args.rows, i)
            paths.append(str(path))
        dm = OfflineReplayDataModule(paths, batch_size=args.batch_size, verify_checksums=False,
                                     release_every=args.release_every)  # fmt: skip
        dm.setup("fit")
        total = sum(ds.nbytes for ds in dm.datasets.values())
        base = resident_megabytes()
        peak = base
        start = time.perf_counter()
        for _ in range(args.batches):
            batch = dm.sample(5, 5)
            del batch
            peak = max(peak, resident_megabytes())
        seconds = time.perf_counter() - start
    print(json.dumps({
        "games": args.games, "rows_per_game": args.rows, "dataset_mb": round(total / 2**20, 1),
        "rss_after_setup_mb": round(base, 1), "peak_rss_streaming_mb": round(peak, 1),
        "growth_mb": round(peak - base, 1), "growth_share_of_data": round((peak - base) * 2**20 / total, 4),
        "release_every": args.release_every, "batches_per_s": round(args.batches / seconds, 1),
        "ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
