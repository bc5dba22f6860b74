"""Seeds 0–2 (results/minatar-breakout-3seeds-reset-values/, run folders under runs/final) and seeds 3–4 (this
folder's run, runs/seeds34) side by side, and pooled: mean over seeds, 95 % bootstrap CI over seeds and episodes.

    python results/minatar-breakout-seeds-3-4/pool.py runs/final runs/seeds34
"""

import sys
from pathlib import Path

import numpy as np

from xtra.pipeline import final_evaluation
from xtra.scores import hierarchical_bootstrap_ci

TARGET = "minatar/breakout"


def finals(root: Path, method: str) -> dict[str, dict]:
    return {d.name: final_evaluation(d / "runs" / method, TARGET) for d in sorted(root.glob("seed*"))}


def line(label: str, runs: dict[str, dict]) -> str:
    returns = [f["returns"] for f in runs.values()]
    lo, hi = hierarchical_bootstrap_ci(returns)
    per_seed = " / ".join(f"{f['returns'].mean():.2f}{' (collapsed)' if f['collapsed'] else ''}" for f in runs.values())
    return f"| {label} | {len(runs)} | {np.mean([r.mean() for r in returns]):.2f} | [{lo:.2f}, {hi:.2f}] | {per_seed} |"


if __name__ == "__main__":
    first, second = Path(sys.argv[1]), Path(sys.argv[2])
    print("| rows | seeds | final return | 95 % CI | per seed |\n|---|---|---|---|---|")
    for method in ("xtra", "efficientzero-l"):
        a, b = finals(first, method), finals(second, method)
        print(line(f"{method}, seeds 0–2", a))
        print(line(f"{method}, seeds 3–4", b))
        print(line(f"{method}, seeds 0–4 pooled", {**a, **b}))
