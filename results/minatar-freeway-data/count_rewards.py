"""Rewarded steps in freeway datasets, by env step: how often the data producer's play found a reward.

python results/minatar-freeway-data/count_rewards.py DATASET [DATASET ...]
"""

import json
import sys
from pathlib import Path

import numpy as np

for path in map(Path, sys.argv[1:]):
    rewards = np.load(path / "rewards.npy", allow_pickle=False)
    steps = np.load(path / "step_index.npy", allow_pickle=False)
    actions = np.load(path / "actions.npy", allow_pickle=False)
    played = actions >= 0
    hit = played & (rewards != 0)
    source = json.loads((path / "manifest.json").read_text())["source"]
    cuts = {n: int(np.count_nonzero(hit & (steps < n))) for n in (3000, 6000, 9000, 12000)}
    first = int(steps[hit].min()) if hit.any() else None
    print(
        json.dumps(
            {
                "dataset": str(path),
                "seed": source.get("seed"),
                "env_steps": source.get("env_steps"),
                "stored_steps": int(played.sum()),
                "rewarded_steps": int(hit.sum()),
                "rewarded_before": cuts,
                "first_reward_at": first,
            }
        )
    )
