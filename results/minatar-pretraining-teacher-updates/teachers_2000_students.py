import json
import os
import sys
from dataclasses import replace
from pathlib import Path

from xtra import pipeline as P

pre = ["minatar/asterix", "minatar/space_invaders"]
b = replace(P.Budget(), teacher_updates=2000, student_updates=int(sys.argv[1]))
root = Path(f"runs/pretraining/t2000s{sys.argv[1]}")
base, si = Path("runs/pretraining/base"), Path("runs/pretraining/t2000")
seed_stages = []
for s in (0, 1, 2):
    out = root / f"seed{s}"
    links = {
        "datasets": base,
        "runs/dataset-asterix": base,
        "runs/dataset-space_invaders": base,
        "teachers/space_invaders.ckpt": si,
        "runs/teacher-space_invaders": si,
    }
    if sys.argv[1] != "250":
        links.update(
            {
                "teachers/asterix.ckpt": Path("runs/pretraining/t2000s250"),
                "runs/teacher-asterix": Path("runs/pretraining/t2000s250"),
            }
        )
    for sub, src in links.items():
        dst = out / sub
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(src / f"seed{s}" / sub, dst)
    seed_stages.append(P.stage_jobs(out, Path("configs/minatar"), "minatar/breakout", pre, b, s, ("xtra",)))
P.run_stage(2, "teachers", [j for p in seed_stages for j in p[1]], 2)
P.run_stage(3, "student", [j for p in seed_stages for j in p[2]], 2)
for s in (0, 1, 2):
    print("QUALITY", s, json.dumps(P.pretraining_quality(root / f"seed{s}", pre)), flush=True)
