"""Students with and without cached teacher policies, on the same datasets and teachers (runs/default/seed0),
student seeds 0-2, every model scored with 16 simulations per move on the same 32 evaluation games.

    python results/minatar-student-cache/summarise.py

The uncached student of seed 0 is the default pipeline's own (``runs/default/seed0/runs/student``: the same
overlay); the others are ``runs/student-cache/<fresh|cached>-seed<N>``.
"""

import json
from pathlib import Path

import numpy as np

from xtra.pipeline import BAR, final_evaluation, format_ratio
from xtra.scores import hierarchical_bootstrap_ci, ratio_ci

SEEDS = (0, 1, 2)
GAMES = ("minatar/space_invaders", "minatar/freeway")
PRE = Path("runs/default/seed0")


def run_dir(kind: str, seed: int) -> Path:
    if kind == "fresh" and seed == 0:
        return PRE / "runs" / "student"
    return Path(f"runs/student-cache/{kind}-seed{seed}/runs/student")


def wall_minutes(run: Path) -> float | None:
    records = sorted(run.rglob("results.json"))
    return json.loads(records[-1].read_text())["wall_s"] / 60 if records else None


def main() -> None:
    print("| game | teacher policies | seed | teacher | student | student ÷ teacher | bar | wall (min) |")
    print("|---|---|---|---|---|---|---|---|")
    for game in GAMES:
        teacher = final_evaluation(PRE / "runs" / f"teacher-{game.split('/')[1]}", game)["returns"]
        for kind in ("fresh", "cached"):
            found = []
            for seed in SEEDS:
                run = run_dir(kind, seed)
                try:
                    final = final_evaluation(run, game)
                except (RuntimeError, FileNotFoundError, KeyError, ValueError):
                    continue
                assert final["simulations"] == 16, run
                returns = final["returns"]
                found.append(returns)
                ok = "ok" if returns.mean() >= BAR * teacher.mean() else "**missed**"
                wall = wall_minutes(run)
                print(f"| {game} | {kind} | {seed} | {teacher.mean():.2f} | {returns.mean():.2f} | "
                      f"{format_ratio(*ratio_ci(returns, teacher))} | {ok} | "
                      f"{'' if wall is None else f'{wall:.1f}'} |")  # fmt: skip
            if len(found) > 1:
                low, high = hierarchical_bootstrap_ci(found)
                mean = float(np.mean([r.mean() for r in found]))
                print(f"| {game} | {kind} | mean of {len(found)} | {teacher.mean():.2f} | "
                      f"{mean:.2f} [{low:.2f}, {high:.2f}] | {mean / teacher.mean():.2f} | | |")  # fmt: skip


if __name__ == "__main__":
    main()
