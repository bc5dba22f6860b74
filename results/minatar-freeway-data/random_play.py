"""Rewarded steps that uniformly random play finds on freeway in the data producer's setting (16 environments
from the start of their episodes, training-mode environments), per seed, by env step.

python results/minatar-freeway-data/random_play.py --seeds 10 --env-steps 12000
"""

import argparse
import json

import numpy as np

from xtra.collector import Collector
from xtra.replay import Replay

parser = argparse.ArgumentParser()
parser.add_argument("--seeds", type=int, default=10)
parser.add_argument("--env-steps", type=int, default=12000)
parser.add_argument("--envs", type=int, default=16)
args = parser.parse_args()
found = []
for seed in range(args.seeds):
    replay = Replay(args.env_steps + 64 * args.envs, (10, 10, 10), 3, 1)
    collector = Collector("minatar/freeway", replay, num_envs=args.envs, seed=seed)
    marks = {}
    for n in range(args.env_steps // 3000):
        collector.collect(3000, None)
        marks[(n + 1) * 3000] = collector.rewarded_steps
    found.append(marks)
    print(json.dumps({"seed": seed, "rewarded_steps_by_env_step": marks}), flush=True)
for n in found[0]:
    counts = np.array([m[n] for m in found])
    print(f"{n} env steps: mean {counts.mean():.2f} rewarded steps, none in {np.mean(counts == 0):.0%} of seeds")
