"""Student (distillation) throughput: where a student's update goes, with and without cached teacher policies.

Every row of a student's batch gets its policy target from a search of its game's frozen teacher at each of the
K+1 unrolled positions; ``cache_teacher_policies`` searches each dataset state once and reads it afterwards.
Random frames and untrained networks (a search costs the same whatever the weights say). Prints one JSON line:
seconds per update for the targets without the cache, with a full cache (a long run's steady state: every state
searched), the update itself, and the one-off cost of searching every state of the datasets.

    OMP_NUM_THREADS=1 python benchmarks/distill.py --games 2 --batch 32 --rows 6000
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from xtra.datamodules.common import windows_to_tensors
from xtra.mcts import SearchOptions
from xtra.modules.student import DistillationModule
from xtra.network import EfficientZeroNet, network_config
from xtra.replay import Replay

GAMES = ("minatar/space_invaders", "minatar/freeway", "minatar/asterix", "minatar/seaquest", "minatar/breakout")
FRAME, ACTIONS = (10, 10, 10), 6  # MinAtar's shared observation and action space


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--games", type=int, default=2, choices=range(1, len(GAMES) + 1))
    parser.add_argument("--batch", type=int, default=32, help="rows per game per update (configs/minatar/distill.yaml)")
    parser.add_argument("--rows", type=int, default=6000, help="dataset steps per game")
    parser.add_argument("--network", default="minatar-l", help="the student's preset")
    parser.add_argument("--teacher-network", default="minatar")
    parser.add_argument(
        "--simulations", type=int, default=8, help="the teachers' search (configs/minatar/teacher.yaml)"
    )
    parser.add_argument("--unroll", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    if args.rows < 500:
        parser.error(f"--rows must be at least 500 (datasets are built of 500-step episodes), got {args.rows}")

    rng = np.random.default_rng(0)
    games = GAMES[: args.games]
    replays = {}
    for game in games:
        replay = Replay(args.rows + 64, FRAME, ACTIONS, 1)
        for _ in range(args.rows // 500):
            n = 500
            replay.add_segment(
                rng.integers(0, 2, size=(n + 1, *FRAME), dtype=np.uint8), rng.integers(0, ACTIONS, n),
                rng.normal(size=n).astype(np.float32), np.zeros(n, np.float32),
                np.full((n, ACTIONS), 1 / ACTIONS, np.float32), np.arange(n), terminal=True,
            )  # fmt: skip
        replays[game] = replay

    def student(cache: bool) -> DistillationModule:
        torch.manual_seed(0)
        module = DistillationModule(
            obs_shape=FRAME, num_actions=ACTIONS, network=args.network, unroll_steps=args.unroll,
            mcts=SearchOptions(num_simulations=args.simulations), cache_teacher_policies=cache,
        )  # fmt: skip
        for game in games:
            module.teachers[game] = EfficientZeroNet(FRAME, ACTIONS, network_config(args.teacher_network)).eval()
        return module

    def batch(game: str) -> dict[str, torch.Tensor]:
        return windows_to_tensors(replays[game].sample(args.batch, args.unroll, 5, rng))

    def step(module: DistillationModule, opt: torch.optim.Optimizer) -> tuple[float, float]:
        t0 = time.perf_counter()
        with torch.no_grad():
            prepared = {game: module.task_targets(game, batch(game)) for game in games}
        t1 = time.perf_counter()
        out, _ = module.joint_loss(prepared)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        return t1 - t0, time.perf_counter() - t1

    def timed(module: DistillationModule) -> tuple[float, float]:
        opt = torch.optim.Adam(module.net.parameters(), lr=1e-3)
        step(module, opt)
        times = [step(module, opt) for _ in range(args.repeat)]
        return statistics.median(t[0] for t in times), statistics.median(t[1] for t in times)

    fresh_targets, update = timed(student(cache=False))
    cached = student(cache=True)
    t0 = time.perf_counter()
    with torch.no_grad():  # a long run's steady state: every state of every dataset searched once
        for game, replay in replays.items():
            for chunk in np.array_split(replay.sampleable_rows(), max(args.rows // 256, 1)):
                frames = torch.from_numpy(replay.gather(chunk, 0, 0, rng).frames)  # [n, 1, C, H, W]: each row's state
                states = torch.from_numpy(chunk)[:, None]
                cached.cached_policies(game, frames, states, torch.ones_like(states, dtype=torch.bool))
    fill = time.perf_counter() - t0
    cached_targets, cached_update = timed(cached)
    print(json.dumps({
        "games": args.games, "batch_per_game": args.batch, "rows_per_game": args.rows, "network": args.network,
        "teacher_network": args.teacher_network, "simulations": args.simulations,
        "targets_s": round(fresh_targets, 4), "targets_cached_s": round(cached_targets, 4),
        "update_s": round(statistics.mean([update, cached_update]), 4),
        "step_s": round(fresh_targets + update, 4), "step_cached_s": round(cached_targets + cached_update, 4),
        "speedup": round((fresh_targets + update) / (cached_targets + cached_update), 2),
        "fill_all_states_s": round(fill, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
