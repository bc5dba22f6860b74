import json
import sys

from xtra.evaluate_cli import evaluate_checkpoint

sims = [int(x) for x in sys.argv[1].split(",")]
for a in sys.argv[2:]:
    path, tasks = a.split("=")[0], a.split("=")[1].split(",")
    out = {}
    for s in sims:
        res = evaluate_checkpoint(path, tasks, 32, 0, simulations=s)
        out[s] = {
            t: (round(g["mean"], 3), round(g["top_action_share"], 2), g["action_counts"])
            for t, g in res["games"].items()
        }
    print(path, json.dumps(out), flush=True)
