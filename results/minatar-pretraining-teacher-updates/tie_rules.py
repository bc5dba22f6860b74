"""A/B: greedy ties by first id (old) vs by search Q (new), same checkpoints, same evaluation games."""

import json
import sys

from xtra import mcts as M
from xtra.evaluate_cli import evaluate_checkpoint
from xtra.modules import efficientzero as E

orig = M.select_actions
for path, tasks in [(a.split("=")[0], a.split("=")[1].split(",")) for a in sys.argv[1:]]:
    out = {}
    for mode in ("first-id", "q"):
        E.select_actions = orig if mode == "q" else (lambda c, t, r, q=None: orig(c, t, r))
        res = evaluate_checkpoint(path, tasks, 32, 0)
        out[mode] = {t: (round(g["mean"], 3), round(g["top_action_share"], 2)) for t, g in res["games"].items()}
    print(path, json.dumps(out), flush=True)
