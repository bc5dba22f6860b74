"""Students of the same 4 000-update teachers (runs/fw4k, seeds 0–2) against their teachers, every model scored
with 16 simulations per move on the same 32 evaluation games.

    python results/minatar-student-fidelity/summarise.py

Rows: the two-game student of ``runs/fw4k`` (visit-count targets, 2 000 updates, re-scored at 16 with
``xtra-eval``), a space_invaders-only student with the same rows per game and updates (``runs/sistu``), the two-game
student with completed-Q policy targets (``runs/cq``), and ``runs/fw4k``'s students resumed to 4 000 updates
(``runs/s4k``).
"""

import json
import sys
from pathlib import Path

import numpy as np

from xtra.pipeline import BAR, final_evaluation, format_ratio
from xtra.scores import hierarchical_bootstrap_ci, ratio_ci

SEEDS = (0, 1, 2)


def posthoc(path: Path, game: str) -> np.ndarray:
    return np.asarray(json.loads(path.read_text())["games"][game]["returns"], dtype=float)


def students(game: str, seed: int) -> dict[str, np.ndarray | None]:
    name = game.split("/")[1]
    found = {"two games, visit counts (runs/fw4k)": Path(f"runs/fw4k/seed{seed}/eval16/student-{name}.json"),
             "space_invaders alone, visit counts (runs/sistu)": Path(f"runs/sistu/seed{seed}/run"),
             "two games, completed Q (runs/cq)": Path(f"runs/cq/seed{seed}/run"),
             "two games, visit counts, 4 000 updates (runs/s4k)": Path(f"runs/s4k/seed{seed}/run")}  # fmt: skip
    out = {}
    for label, path in found.items():
        if path.suffix == ".json":
            out[label] = posthoc(path, game) if path.is_file() else None
        else:
            try:
                final = final_evaluation(path, game)
            except (RuntimeError, FileNotFoundError, KeyError, ValueError):
                out[label] = None
                continue
            assert final["simulations"] == 16, path
            out[label] = final["returns"]
    return out


def main() -> None:
    print("| game | student | seed | teacher | student | student ÷ teacher | bar |")
    print("|---|---|---|---|---|---|---|")
    for game in ("minatar/space_invaders", "minatar/freeway"):
        pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for seed in SEEDS:
            teacher = posthoc(Path(f"runs/fw4k/seed{seed}/eval16/teacher-{game.split('/')[1]}.json"), game)
            for label, returns in students(game, seed).items():
                if returns is None:
                    continue
                pooled.setdefault(label, []).append((teacher, returns))
                ok = "ok" if returns.mean() >= BAR * teacher.mean() else "**missed**"
                print(f"| {game} | {label} | {seed} | {teacher.mean():.2f} | {returns.mean():.2f} | "
                      f"{format_ratio(*ratio_ci(returns, teacher))} | {ok} |")  # fmt: skip
        for label, pairs in pooled.items():
            lo, hi = hierarchical_bootstrap_ci([s for _, s in pairs])
            mean_s = np.mean([s.mean() for _, s in pairs])
            mean_t = np.mean([t.mean() for t, _ in pairs])
            print(f"| {game} | {label} | mean of {len(pairs)} | {mean_t:.2f} | {mean_s:.2f} [{lo:.2f}, {hi:.2f}] | "
                  f"{mean_s / mean_t:.2f} | |")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
