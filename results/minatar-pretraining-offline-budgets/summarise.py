"""Pretraining quality of three offline budgets on the same datasets (freeway + space_invaders, 6 000 env steps
per dataset, seeds 0–2), every teacher and student scored at the producers' 16 simulations per move.

    python results/minatar-pretraining-offline-budgets/summarise.py NAME=RUNS_DIR ...

A run folder's ``seed<N>/eval16/{teacher,student}-<game>.json`` (``xtra-eval --simulations 16 --out``) wins over
its runs' own last evaluation; runs of the pipeline since ``0afb6b6`` record 16 themselves. Producers are scored by
their own run (they search with 16).
"""

import json
import sys
from pathlib import Path

import numpy as np

from xtra.pipeline import BAR, final_evaluation, format_ratio, random_return
from xtra.scores import hierarchical_bootstrap_ci, ratio_ci

GAMES = ("minatar/freeway", "minatar/space_invaders")


def score(seed_dir: Path, kind: str, game: str) -> tuple[np.ndarray, object]:
    """Episode returns and the search budget they were scored with."""
    name = game.split("/")[1]
    posthoc = seed_dir / "eval16" / f"{kind}-{name}.json"
    if posthoc.is_file():
        return np.asarray(json.loads(posthoc.read_text())["games"][game]["returns"], dtype=float), 16
    run = {"producer": f"dataset-{name}", "teacher": f"teacher-{name}", "student": "student"}[kind]
    final = final_evaluation(seed_dir / "runs" / run, game)
    return final["returns"], final["simulations"] or "own"


def main(named: list[str]) -> None:
    print(
        "| offline budget | seed | game | random | producer | teacher | student | teacher bar | student bar | "
        "teacher ÷ producer | student ÷ teacher |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for item in named:
        label, root = item.split("=", 1)
        met = {"teacher": 0, "student": 0, "checks": 0}
        teachers: dict[str, list[np.ndarray]] = {}
        for seed_dir in sorted(Path(root).glob("seed*")):
            for game in GAMES:
                (pr, _), (tr, ts), (sr, ss) = (score(seed_dir, k, game) for k in ("producer", "teacher", "student"))
                p, t, s = pr.mean(), tr.mean(), sr.mean()
                teachers.setdefault(game, []).append(tr)
                ok_t, ok_s = t >= BAR * p, s >= BAR * t
                met["teacher"] += ok_t
                met["student"] += ok_s
                met["checks"] += 1
                mark = {True: "ok", False: "**missed**"}
                print(
                    f"| {label} | {seed_dir.name[4:]} | {game} | {random_return(game):.2f} | {p:.2f} | {t:.2f} "
                    f"({ts}) | {s:.2f} ({ss}) | {mark[ok_t]} | {mark[ok_s]} | {format_ratio(*ratio_ci(tr, pr))} | "
                    f"{format_ratio(*ratio_ci(sr, tr))} |"
                )
        n = met["checks"]
        print(f"| {label} | all | | | | | | {met['teacher']} of {n} | {met['student']} of {n} | | |")
        for game, groups in teachers.items():  # mean over seeds, 95 % CI resampling seeds then episodes
            lo, hi = hierarchical_bootstrap_ci(groups)
            print(
                f"| {label} | teachers, mean | {game} | | | {np.mean([g.mean() for g in groups]):.2f} "
                f"[{lo:.2f}, {hi:.2f}] | | | | | |"
            )


if __name__ == "__main__":
    main(sys.argv[1:])
