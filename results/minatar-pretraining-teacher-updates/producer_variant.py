"""Space-invaders datasets (seeds 0 1 2) made with extra dataset-stage overrides, then default teachers on them."""

import sys
from pathlib import Path

from xtra import pipeline as P

name, extra = sys.argv[1], sys.argv[2:]
root = Path("runs/pretraining") / name
b = P.Budget()
plans = []
for s in (0, 1, 2):
    stages = P.stage_jobs(
        root / f"seed{s}", Path("configs/minatar"), "minatar/breakout", ["minatar/space_invaders"], b, s, ("xtra",)
    )
    stages[0][0].overrides = [*stages[0][0].overrides, *extra]
    plans.append(stages)
P.run_stage(1, "datasets", [p[0][0] for p in plans], 2)
P.run_stage(2, "teachers", [p[1][0] for p in plans], 2)
for s in (0, 1, 2):
    for run in ("dataset-space_invaders", "teacher-space_invaders"):
        r = P.final_evaluation(root / f"seed{s}" / "runs" / run, "minatar/space_invaders")
        print(name, s, run, round(float(r["returns"].mean()), 3), round(float(r["top_action_share"]), 2), flush=True)
