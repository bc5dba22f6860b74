"""Space-invaders teachers on the base datasets (seeds 0 1 2) with extra overrides; prints each final evaluation."""

import os
import sys
from dataclasses import replace
from pathlib import Path

from xtra import pipeline as P

name, updates, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
base = Path("runs/pretraining/base").resolve()
root = Path("runs/pretraining") / name
b = replace(P.Budget(), teacher_updates=updates)
jobs = []
for s in (0, 1, 2):
    out = root / f"seed{s}"
    out.mkdir(parents=True, exist_ok=True)
    if not (out / "datasets").exists():
        os.symlink(base / f"seed{s}" / "datasets", out / "datasets")
    stages = P.stage_jobs(out, Path("configs/minatar"), "minatar/breakout", ["minatar/space_invaders"], b, s, ("xtra",))
    job = stages[1][0]
    job.overrides = [*job.overrides, *extra]
    jobs.append(job)
P.run_stage(2, "teachers", jobs, int(os.environ.get("JOBS", "2")))
for s in (0, 1, 2):
    run = root / f"seed{s}" / "runs" / "teacher-space_invaders"
    r = P.final_evaluation(run, "minatar/space_invaders")
    print(name, s, round(float(r["returns"].mean()), 3), round(float(r["top_action_share"]), 2), flush=True)
