"""``xtra-pipeline``: the whole XTRA pipeline at MinAtar scale, end to end, on a CPU.

Stages (each one ``xtra fit -c configs/minatar/<stage>.yaml`` with the budget's overrides, run as a subprocess
whose log goes to ``<out>/logs/``; independent jobs run side by side):

1. datasets   — a short online EfficientZero run per pretraining game, its replay saved as an offline dataset
2. teachers   — an offline EfficientZero teacher per pretraining game
3. student    — one multi-task student distilled from the teachers
4. finetune   — XTRA on the held-out target, and EfficientZero from scratch with the same env-step budget
5. report     — ``results.md``, ``results.csv`` and ``learning_curves.png`` comparing the two

A stage whose output already exists is reused (and says so); delete the output to recompute it.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from xtra.envs import game_name


@dataclass
class Job:
    name: str
    config: str
    overrides: list[str]
    output: Path  # exists once the job is done
    log: Path
    total_steps: int
    process: subprocess.Popen | None = None
    started: float = 0.0


@dataclass
class Budget:
    """Sizes of every stage; ``scale`` multiplies all step counts."""

    dataset_env_steps: int = 2500
    dataset_updates: int = 600
    teacher_updates: int = 250
    student_updates: int = 250
    finetune_env_steps: int = 4000
    warmup_steps: int = 500
    update_to_data: float = 0.5
    eval_episodes: int = 16
    evaluations: int = 4
    simulations: int = 50

    STEP_FIELDS = ("dataset_env_steps", "dataset_updates", "teacher_updates", "student_updates",
                   "finetune_env_steps", "warmup_steps")  # fmt: skip

    def scaled(self, scale: float) -> Budget:
        return replace(self, **{f: max(int(getattr(self, f) * scale), 1) for f in self.STEP_FIELDS})

    @property
    def finetune_updates(self) -> int:
        """Updates that the env-step budget allows, rounded down to whole evaluation intervals."""
        updates = max(int((self.finetune_env_steps - self.warmup_steps) * self.update_to_data), self.evaluations)
        return updates - updates % self.evaluations


PROGRESS = "xtra.callbacks.progress.ProgressFile"
COMPLETE = "complete.json"  # written into a run directory once its job exits cleanly


def callbacks_json(*callbacks: tuple[str, dict]) -> str:
    return json.dumps([{"class_path": c, "init_args": a} for c, a in callbacks])


def eval_callback(every: int, episodes: int) -> tuple[str, dict]:
    return ("xtra.callbacks.evaluation.Evaluation", {"every_n_steps": every, "episodes": episodes, "at_start": True})


def export_callback(path: Path) -> tuple[str, dict]:
    return ("xtra.callbacks.export.ExportCheckpoint", {"path": str(path)})


def plan(out: Path, configs: Path, target: str, pretrain: list[str], b: Budget, seed: int) -> list[list[Job]]:
    """The stages, each a list of jobs that may run side by side."""
    game = game_name
    common = [f"--seed_everything={seed}", "--trainer.enable_progress_bar=false", "--trainer.log_every_n_steps=25"]
    datasets = {t: out / "datasets" / game(t) for t in pretrain}
    teachers = {t: out / "teachers" / f"{game(t)}.ckpt" for t in pretrain}
    student = out / "student.ckpt"
    stage1 = [
        Job(f"dataset {game(t)}", "dataset.yaml", [
            f"--data.init_args.task_id={t}", f"--data.init_args.save_dataset={datasets[t]}",
            f"--data.init_args.env_steps={b.dataset_env_steps}", f"--data.init_args.warmup_steps={b.warmup_steps}",
            f"--trainer.max_steps={b.dataset_updates}",
            f"--trainer.default_root_dir={out / 'runs' / ('dataset-' + game(t))}",
        ], datasets[t] / "manifest.json", out / "logs" / f"dataset-{game(t)}.log", b.dataset_updates)
        for t in pretrain
    ]  # fmt: skip
    stage2 = [
        Job(f"teacher {game(t)}", "teacher.yaml", [
            f"--data.init_args.datasets=[{datasets[t]}]", f"--trainer.max_steps={b.teacher_updates}",
            f"--trainer.callbacks={callbacks_json(export_callback(teachers[t]))}",
            f"--trainer.default_root_dir={out / 'runs' / ('teacher-' + game(t))}",
        ], teachers[t], out / "logs" / f"teacher-{game(t)}.log", b.teacher_updates)
        for t in pretrain
    ]  # fmt: skip
    stage3 = [
        Job("student", "distill.yaml", [
            f"--model.init_args.teachers=[{','.join(str(teachers[t]) for t in pretrain)}]",
            f"--data.init_args.datasets=[{','.join(str(datasets[t]) for t in pretrain)}]",
            f"--trainer.max_steps={b.student_updates}",
            f"--trainer.callbacks={callbacks_json(export_callback(student))}",
            f"--trainer.default_root_dir={out / 'runs' / 'student'}",
        ], student, out / "logs" / "student.log", b.student_updates)
    ]  # fmt: skip
    every = b.finetune_updates // b.evaluations
    cycle = max(b.finetune_updates // 8, 10)
    weights = ("xtra.callbacks.task_weights.GradientCosineTaskWeights",
               {"cycle": cycle, "measure": max(cycle // 10, 1), "start": cycle})  # fmt: skip
    shared = [f"--trainer.max_steps={b.finetune_updates}", f"--model.init_args.mcts.num_simulations={b.simulations}"]
    stage4 = [
        Job("finetune (XTRA)", "xtra.yaml", [
            *shared, f"--model.init_args.pretrained={student}",
            f"--data.init_args.target.init_args.task_id={target}",
            f"--data.init_args.target.init_args.env_steps={b.finetune_env_steps}",
            f"--data.init_args.target.init_args.warmup_steps={b.warmup_steps}",
            f"--data.init_args.target.init_args.update_to_data={b.update_to_data}",
            f"--data.init_args.offline.init_args.datasets=[{','.join(str(datasets[t]) for t in pretrain)}]",
            f"--trainer.callbacks={callbacks_json(eval_callback(every, b.eval_episodes), weights)}",
            f"--trainer.default_root_dir={out / 'runs' / 'xtra'}",
        ], out / "runs" / "xtra" / COMPLETE, out / "logs" / "xtra.log", b.finetune_updates),
        Job("from scratch (EfficientZero)", "efficientzero.yaml", [
            *shared, f"--data.init_args.task_id={target}", f"--data.init_args.env_steps={b.finetune_env_steps}",
            f"--data.init_args.warmup_steps={b.warmup_steps}", f"--data.init_args.update_to_data={b.update_to_data}",
            f"--trainer.callbacks={callbacks_json(eval_callback(every, b.eval_episodes))}",
            f"--trainer.default_root_dir={out / 'runs' / 'efficientzero'}",
        ], out / "runs" / "efficientzero" / COMPLETE, out / "logs" / "efficientzero.log", b.finetune_updates),
    ]  # fmt: skip
    for stage in (stage1, stage2, stage3, stage4):
        for job in stage:
            job.config = str(configs / job.config)
            job.overrides = [*common, *job.overrides, f"--trainer.callbacks+={PROGRESS}",
                             f"--trainer.callbacks.init_args.path={progress_path(job)}"]  # fmt: skip
    return [stage1, stage2, stage3, stage4]


def progress_path(job: Job) -> Path:
    return job.log.with_suffix(".progress.json")


def progress(job: Job) -> str:
    """The job's latest step, from the progress file its ProgressFile callback writes."""
    try:
        state = json.loads(progress_path(job).read_text())
    except (OSError, ValueError):
        return "starting"
    return f"{state['step']}/{job.total_steps} steps"


def run_stage(number: int, name: str, jobs: list[Job], jobs_at_once: int) -> None:
    todo = []
    for job in jobs:
        if job.output.exists():
            print(f"[{number}/4] {name}: reusing {job.output} (delete it to recompute)", flush=True)
        else:
            todo.append(job)
    if not todo:
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if min(jobs_at_once, len(todo)) > 1 else dict(os.environ)
    start, running, waiting, last = time.time(), [], list(todo), 0.0
    while waiting or running:
        while waiting and len(running) < jobs_at_once:
            job = waiting.pop(0)
            if job.output.name == COMPLETE:  # a run that stopped half-way: its evaluations must not mix in
                shutil.rmtree(job.output.parent, ignore_errors=True)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "xtra.cli", "fit", "-c", job.config, *job.overrides]
            job.log.write_text("$ " + " ".join(cmd) + "\n")
            with open(job.log, "a") as log:
                job.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            job.started = time.time()
            running.append(job)
        for job in list(running):
            code = job.process.poll()
            if code is None:
                continue
            running.remove(job)
            if code != 0:
                for other in running:
                    other.process.terminate()
                raise RuntimeError(f"{job.name} failed (exit {code}); see {job.log}")
            if job.output.name == COMPLETE:
                tmp = job.output.with_name(f".{COMPLETE}.tmp")
                tmp.write_text(json.dumps({"finished": time.time()}))
                os.replace(tmp, job.output)
            print(f"[{number}/4] {name}: {job.name} done in {time.time() - job.started:.0f} s", flush=True)
        if running and time.time() - last >= 15:
            status = ", ".join(f"{j.name}: {progress(j)}" for j in running)
            print(f"[{number}/4] {name} ({time.time() - start:.0f} s): {status}", flush=True)
            last = time.time()
        time.sleep(1.0)


def learning_curve(run_dir: Path, task: str) -> list[tuple[int, float, float]]:
    """(env steps, mean return, standard error) of every evaluation of a run, in order."""
    points = []
    for path in run_dir.rglob("eval/step*.json"):
        record = json.loads(path.read_text())
        returns = np.asarray(record["returns"][task], dtype=float)
        stderr = float(returns.std(ddof=1) / np.sqrt(len(returns))) if len(returns) > 1 else 0.0
        points.append((int(record.get("env_steps") or 0), float(returns.mean()), stderr))
    return sorted(points)


def report(out: Path, target: str, pretrain: list[str], budget: Budget) -> dict:
    runs = {
        "XTRA (finetuned student)": out / "runs" / "xtra",
        "EfficientZero (from scratch)": out / "runs" / "efficientzero",
    }
    curves = {name: learning_curve(path, target) for name, path in runs.items()}
    rows = []
    for name, curve in curves.items():
        if not curve:
            raise RuntimeError(f"no evaluations found for {name} under {runs[name]}")
        env_steps, mean, stderr = curve[-1]
        overall = round(float(np.mean([c[1] for c in curve])), 3)
        rows.append({"method": name, "target": target, "env_steps": env_steps, "final_return": round(mean, 3),
                     "stderr": round(stderr, 3), "mean_over_evaluations": overall,
                     "evaluations": len(curve)})  # fmt: skip
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        f"# XTRA on MinAtar: target {target}, pretrained on {', '.join(pretrain)}",
        "",
        f"Same env-step budget for both ({budget.finetune_env_steps} steps, {budget.eval_episodes} evaluation "
        "episodes per point). Returns are raw game scores.",
        "",
        "| method | env steps | final return ± s.e. | mean over evaluations |",
        "|---|---|---|---|",
    ]
    lines += [f"| {r['method']} | {r['env_steps']} | {r['final_return']} ± {r['stderr']} | "
              f"{r['mean_over_evaluations']} |" for r in rows]  # fmt: skip
    (out / "results.md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, curve in curves.items():
        x, y, e = (np.asarray(v) for v in zip(*curve, strict=True))
        ax.plot(x, y, marker="o", label=name)
        ax.fill_between(x, y - e, y + e, alpha=0.2)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"evaluation return ({target})")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=120)
    plt.close(fig)
    return {"rows": rows, "curves": curves}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xtra-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="runs/pipeline", help="where every stage writes (and is reused from)")
    parser.add_argument("--configs", default="configs/minatar", help="the MinAtar stage configs")
    parser.add_argument("--target", default="minatar/breakout")
    parser.add_argument("--pretrain", nargs="+", default=["minatar/asterix", "minatar/space_invaders"])
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step budget (0.05 for a smoke run)")
    parser.add_argument("--simulations", type=int, default=None, help="MCTS simulations when finetuning")
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=2, help="jobs run side by side (one per CPU core)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    configs = Path(args.configs)
    if not (configs / "xtra.yaml").is_file():
        print(f"xtra-pipeline: no stage configs in {configs}; run from the repository root or pass --configs",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.target in args.pretrain:
        print("xtra-pipeline: the target must not be a pretraining game", file=sys.stderr)
        return 2
    budget = Budget().scaled(args.scale)
    budget.simulations = args.simulations or budget.simulations
    budget.eval_episodes = args.eval_episodes or budget.eval_episodes
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stages = plan(out, configs, args.target, args.pretrain, budget, args.seed)
    names = ["offline datasets", "teachers", "student (distillation)", "finetune vs from scratch"]
    start = time.time()
    for i, (name, jobs) in enumerate(zip(names, stages, strict=True), 1):
        t0 = time.time()
        print(f"[{i}/4] {name}: {len(jobs)} job(s)", flush=True)
        run_stage(i, name, jobs, args.jobs)
        print(f"[{i}/4] {name}: finished in {time.time() - t0:.0f} s (total {time.time() - start:.0f} s)", flush=True)
    result = report(out, args.target, args.pretrain, budget)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'learning_curves.png'} "
          f"in {time.time() - start:.0f} s", flush=True)  # fmt: skip
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
