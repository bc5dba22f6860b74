"""Stages 1-3 of the pipeline (datasets, teachers, student) for seeds 0 1 2 with chosen teacher/student updates,
through the pipeline's own stage_jobs() and run_stage(); a variant reuses the base run's datasets (symlinks).

    python run_stages.py TEACHER_UPDATES STUDENT_UPDATES OUT STAGES   # STAGES: comma list of 0 (datasets),
                                                                       # 1 (teachers), 2 (student)
"""

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from xtra import pipeline as P

teacher_updates = int(sys.argv[1])
student_updates = int(sys.argv[2])
root = Path(sys.argv[3])
seeds = [0, 1, 2]
pre = ["minatar/asterix", "minatar/space_invaders"]
b = replace(P.Budget(), teacher_updates=teacher_updates, student_updates=student_updates)
base = Path("runs/pretraining/base").resolve()  # absolute: the variant links to it
plans = []
for s in seeds:
    out = root / f"seed{s}"
    out.mkdir(parents=True, exist_ok=True)
    for sub in ["datasets"] + [f"runs/dataset-{P.game_name(t)}" for t in pre]:
        src, dst = base / f"seed{s}" / sub, out / sub
        if root.resolve() != base and not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src, dst)
    plans.append(P.stage_jobs(out, Path("configs/minatar"), "minatar/breakout", pre, b, s, ("xtra",)))
stages = sys.argv[4].split(",")
for i, name in enumerate(P.STAGES[:3]):
    if str(i) in stages:
        P.run_stage(i + 1, name, [j for p in plans for j in p[i]], int(os.environ.get("JOBS", "2")))
if "2" in stages:
    for s in seeds:
        print(s, json.dumps(P.pretraining_quality(root / f"seed{s}", pre)))
