"""The default pipeline's one-game students (space_invaders, ``runs/si3``) at 2 000 updates and resumed to 4 000
(``runs/si-s4k``, overlays ``si-s4k-seedN.yaml``) against their teachers; every model scored with 16 simulations per
move on the same 32 evaluation games.

    python results/minatar-student-fidelity/summarise_default.py
"""

from pathlib import Path

import numpy as np

from xtra.pipeline import BAR, final_evaluation, format_ratio
from xtra.scores import ratio_ci

GAME = "minatar/space_invaders"
SEEDS = (0, 1, 2)


def returns(run: Path) -> np.ndarray | None:
    try:
        final = final_evaluation(run, GAME)
    except (RuntimeError, FileNotFoundError):
        return None
    assert final["simulations"] == 16, run
    return final["returns"]


def main() -> None:
    print("| seed | teacher | student, updates | student | student ÷ teacher | bar |")
    print("|---|---|---|---|---|---|")
    for seed in SEEDS:
        teacher = returns(Path(f"runs/si3/seed{seed}/runs/teacher-space_invaders"))
        students = {2000: Path(f"runs/si3/seed{seed}/runs/student"), 4000: Path(f"runs/si-s4k/seed{seed}/run")}
        for updates, run in students.items():
            student = returns(run)
            if teacher is None or student is None:
                continue
            ok = "ok" if student.mean() >= BAR * teacher.mean() else "**missed**"
            ratio = format_ratio(*ratio_ci(student, teacher))
            print(f"| {seed} | {teacher.mean():.2f} | {updates} | {student.mean():.2f} | {ratio} | {ok} |")


if __name__ == "__main__":
    main()
