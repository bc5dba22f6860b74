"""``xtra-pipeline``: the whole XTRA pipeline at MinAtar scale, end to end, on a CPU.

Stages (each one ``xtra fit -c configs/minatar/<stage>.yaml -c <out>/overlays/<job>.yaml``: the stage config
and an overlay with the budget and the inputs, written before the job starts, so every job's config is a file;
run as a subprocess whose log goes to ``<out>/logs/``; independent jobs run side by side):

1. datasets   — a short online EfficientZero run per pretraining game, its replay saved as an offline dataset
2. teachers   — an offline EfficientZero teacher per pretraining game
3. student    — one multi-task student distilled from the teachers
4. finetune   — XTRA on the held-out target, and EfficientZero from scratch with the same env-step budget
5. report     — ``results.md``, ``results.csv`` and ``learning_curves.png`` comparing the two

A stage whose output already exists is reused (and says so); delete the output to recompute it. A job that was
stopped half-way resumes from its last checkpoint (each job checkpoints 8 times) if its budget and inputs are the
same, and starts over otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from xtra.collector import COLLAPSE_SHARE, Evaluated, evaluate, random_actor
from xtra.envs import env_spec, game_name
from xtra.network import ACTION_ENCODINGS
from xtra.replay import DatasetError, reward_summary
from xtra.report import write_csv
from xtra.resume import run_checkpoint
from xtra.scores import bootstrap_ci, hierarchical_bootstrap_ci, ratio_ci
from xtra.shipped import composed_yaml, merged, nested, online_data_path, resolve_config


@dataclass
class Job:
    name: str
    config: str
    overlay: dict  # the budget and inputs, over the stage config (written to ``overlay_path`` at the start)
    output: Path  # exists once the job is done
    log: Path
    total_steps: int
    late_overlay: Callable[[], dict] | None = None  # what is known only once earlier stages have run
    overrides: list[str] = field(default_factory=list)  # further command-line overrides (scripts of results/)
    command: list[str] | None = None  # a job that is not an ``xtra fit`` (the zero-shot evaluation): run as it is
    process: subprocess.Popen | None = None
    started: float = 0.0

    @property
    def overlay_path(self) -> Path:
        return self.log.parent.parent / "overlays" / f"{self.log.stem}.yaml"

    @property
    def run_dir(self) -> Path:
        """The job's ``trainer.default_root_dir`` (its logs, evaluations and checkpoints); a command job's output
        folder."""
        return self.output.parent if self.command is not None else Path(self.overlay["trainer"]["default_root_dir"])


@dataclass
class Budget:
    """Sizes of every stage; ``scale`` multiplies all step counts."""

    # 6 000: space_invaders' producers reach 7-15 against random play's 3.8 (results/minatar-history.md)
    dataset_env_steps: int = 6000
    teacher_updates: int = 4000  # 2 000 met 2 of 6 teacher bars on these datasets, 4 000 met 5 of 6 (README)
    # a student of M games needs about M times a one-game student's updates: each update serves M games (README);
    # 2 000 per game left one of three space_invaders students at 0.49 [0.40, 0.60] of its teacher, 4 000 met every
    # bar within its interval (results/minatar-space_invaders-4k-students/)
    student_updates_per_game: int = 4000
    student_updates: int | None = None  # None: student_updates_per_game x the number of pretraining games
    finetune_env_steps: int = 4000
    warmup_steps: int = 500
    update_to_data: float = 0.5
    eval_episodes: int = 32
    # the pretraining stages' evaluation search; None: the data producers' own (dataset.yaml), so that the bars
    # compare like with like
    pretraining_eval_simulations: int | None = None
    # a cap on the pretraining stages' evaluation episodes (None: the game's own length): freeway's last 2 500
    # moves, each a search, and dominate a smoke run; producers, teachers and students are capped alike
    pretraining_eval_max_episode_steps: int | None = None
    evaluations: int = 4
    simulations: int = 50

    STEP_FIELDS = ("dataset_env_steps", "teacher_updates", "student_updates_per_game", "student_updates",
                   "finetune_env_steps", "warmup_steps")  # fmt: skip

    def scaled(self, scale: float) -> Budget:
        return replace(self, **{f: max(int(getattr(self, f) * scale), 1) for f in self.STEP_FIELDS
                                if getattr(self, f) is not None})  # fmt: skip

    def student_steps(self, games: int) -> int:
        """The student's updates when it distils ``games`` teachers."""
        return self.student_updates or self.student_updates_per_game * games

    @property
    def dataset_updates(self) -> int:
        """Updates after which the dataset run has played its whole env-step budget (the last batch plays it)."""
        return math.ceil((self.dataset_env_steps - self.warmup_steps) * self.update_to_data) + 1

    @property
    def finetune_updates(self) -> int:
        """Updates that the env-step budget allows, rounded down to whole evaluation intervals."""
        updates = max(int((self.finetune_env_steps - self.warmup_steps) * self.update_to_data), self.evaluations)
        return updates - updates % self.evaluations


# Pretraining games must give data that teaches: the MinAtar games whose data producers learn at this budget.
# Asterix and seaquest stay at random play at every affordable budget, and freeway's data holds 0-2 rewarded steps
# in 6 000-12 000 env steps (results/minatar-freeway-data/), so its teachers score whatever arbitrary policy they
# fall into. The default pretraining games are these, less the target.
LEARNABLE_AT_CPU_BUDGETS = ("minatar/breakout", "minatar/space_invaders")


def default_pretrain(target: str) -> list[str]:
    return [g for g in LEARNABLE_AT_CPU_BUDGETS if g != target]


PROGRESS = "xtra.callbacks.progress.ProgressFile"
COMPLETE = "complete.json"  # written into a run directory once its job exits cleanly
CHECKPOINTS_PER_JOB = 8  # a stopped pipeline loses at most an eighth of each running job


def checkpoint_callback(max_steps: int) -> tuple[str, dict]:
    """Periodic checkpoints (``last.ckpt``), from which a rerun of the pipeline resumes a job that was stopped."""
    every = max(max_steps // CHECKPOINTS_PER_JOB, 1)
    return ("lightning.pytorch.callbacks.ModelCheckpoint", {"save_last": True, "every_n_train_steps": every})


def callbacks(*callbacks: tuple[str, dict]) -> list[dict]:
    return [{"class_path": c, "init_args": a} for c, a in callbacks]


def eval_callback(
    every: int, episodes: int, at_start: bool = True, simulations: int | None = None,
    max_episode_steps: int | None = None,
) -> tuple[str, dict]:  # fmt: skip
    args = {"every_n_steps": every, "episodes": episodes, "at_start": at_start}
    if simulations is not None:
        args["simulations"] = simulations
    if max_episode_steps is not None:
        args["max_episode_steps"] = max_episode_steps
    return ("xtra.callbacks.evaluation.Evaluation", args)


def producer_simulations(configs: Path) -> int | None:
    """The data producers' search budget (``dataset.yaml``): producers, teachers and student are all evaluated
    with it, so the bars compare networks, not search budgets (a teacher trains with a smaller search)."""
    mcts = ((composed_yaml(str(configs / "dataset.yaml")).get("model") or {}).get("init_args") or {}).get("mcts")
    return (mcts or {}).get("num_simulations")


def export_callback(path: Path) -> tuple[str, dict]:
    return ("xtra.callbacks.export.ExportCheckpoint", {"path": str(path)})


@dataclass(frozen=True)
class Method:
    """One finetuning row of the report: a stage config plus how the pipeline points it at its inputs."""

    label: str
    config: str
    pretrained: bool  # starts from the student
    offline: bool  # trains on the offline games too
    task_weights: bool  # gradient-cosine η (otherwise η = 1)
    model: dict = field(default_factory=dict)  # further model settings (``model.init_args``)
    online: dict = field(default_factory=dict)  # further settings of the online data, wherever it sits
    gated: bool = False  # offline games only where the teacher beats random play (``transferable_games``)


METHODS: dict[str, Method] = {
    "xtra": Method("XTRA", "xtra.yaml", True, True, True),
    "efficientzero-l": Method("EfficientZero, same network (minatar-l)", "efficientzero-l.yaml",
                              False, False, False),
    "efficientzero": Method("EfficientZero, small network (minatar)", "efficientzero.yaml",
                            False, False, False),
    "no-cross-task": Method("XTRA w/o cross-task (student, target only)", "no-cross-task.yaml",
                            True, False, False),
    "no-task-weights": Method("XTRA w/o task weights (η = 1)", "no-task-weights.yaml",
                              True, True, False),
    "no-pretraining": Method("XTRA w/o pretraining (random init, offline games)", "no-pretraining.yaml",
                             False, True, True),
    # the finetuning defaults, one at a time set to another choice (the authors' or an earlier default)
    "xtra-random-warmup": Method("XTRA, 500 random warm-up steps before the student acts", "xtra.yaml", True, True,
                                 True, online={"warmup_actor": "random"}),
    "xtra-reanalyse": Method("XTRA, all target rows reanalysed", "xtra.yaml", True, True, True,
                             model={"reanalyse_fraction": 1.0}),
    "xtra-keep-policy": Method("XTRA, the student's policy head kept", "xtra.yaml", True, True,
                               True, model={"reset_policy_head": False}),
    "xtra-keep-values": Method("XTRA, the student's value and reward output layers kept", "xtra.yaml", True, True,
                               True, model={"reset_value_heads": False}),
    "xtra-task-rows": Method("XTRA, per-task-rows gradient probe", "xtra.yaml", True, True, True,
                             model={"gradient_probe": "task_rows"}),
    # measured on 3 seeds: not better than replaying every game (results/minatar-history.md, xtra-gated), so not
    # the default
    "xtra-gated": Method("XTRA, offline games whose teacher beats random play only", "xtra.yaml", True, True, True,
                         gated=True),
}  # fmt: skip
# rows that finetune nothing: the student scored on the target as it is, and behaviour cloning on the pretraining
# games' data scored there (the paper's baselines; both zero-shot on the target)
OFFLINE_ROWS = {"zero-shot": "Student zero-shot (no finetuning)",
                "bc": "BC on the pretraining games' data (zero-shot)"}  # fmt: skip
DEFAULT_METHODS = ("xtra", "efficientzero-l", "efficientzero")


def row_label(name: str) -> str:
    return OFFLINE_ROWS[name] if name in OFFLINE_ROWS else METHODS[name].label


def stage_jobs(
    out: Path,
    configs: Path,
    target: str,
    pretrain: list[str],
    b: Budget,
    seed: int,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    action_encoding: str | None = None,
    pretraining: Path | None = None,
    cache_teacher_policies: bool = False,
) -> list[list[Job]]:
    """The stages of one seed, each a list of jobs that may run side by side; each job an overlay on its stage's
    config, with the keys where that config keeps them (the online data's settings: ``online_data_path``).

    ``action_encoding`` overrides the presets' encoding in every stage (teachers, student, finetuning, baselines).
    ``pretraining``: where the per-game stages (datasets, teachers, their runs and logs) live, default ``out``; a
    folder shared by pipelines of other targets makes each game's dataset and teacher once per seed.
    ``cache_teacher_policies``: the student searches each dataset state with its teacher once (DistillationModule).
    """
    game = game_name
    pre = pretraining or out
    common: dict = {"seed_everything": seed, "trainer": {"enable_progress_bar": False, "log_every_n_steps": 25}}
    if action_encoding is not None:
        common["model"] = {"init_args": {"network_overrides": {"action_encoding": action_encoding}}}
    datasets = {t: pre / "datasets" / game(t) for t in pretrain}
    teachers = {t: pre / "teachers" / f"{game(t)}.ckpt" for t in pretrain}
    student = out / "student.ckpt"
    ev = eval_callback(0, b.eval_episodes, at_start=False,
                       simulations=b.pretraining_eval_simulations or producer_simulations(configs),
                       max_episode_steps=b.pretraining_eval_max_episode_steps)  # fmt: skip

    def trainer(max_steps: int, run: str, *cbs: tuple[str, dict], root: Path = out) -> dict:
        root = str(root / "runs" / run)
        cbs = (*cbs, checkpoint_callback(max_steps))
        return {"trainer": {"max_steps": max_steps, "default_root_dir": root, "callbacks": callbacks(*cbs)}}

    def online(config: str, values: dict) -> dict:
        return nested(online_data_path(composed_yaml(str(configs / config))), values)

    stage1 = [
        Job(f"dataset {game(t)}", "dataset.yaml", merged(
            trainer(b.dataset_updates, f"dataset-{game(t)}", ev, root=pre),
            online("dataset.yaml", {"task_id": t, "save_dataset": str(datasets[t]), "env_steps": b.dataset_env_steps,
                                    "warmup_steps": b.warmup_steps, "update_to_data": b.update_to_data}),
        ), datasets[t] / "manifest.json", pre / "logs" / f"dataset-{game(t)}.log", b.dataset_updates)
        for t in pretrain
    ]  # fmt: skip
    stage2 = [
        Job(f"teacher {game(t)}", "teacher.yaml", merged(
            trainer(b.teacher_updates, f"teacher-{game(t)}", ev, export_callback(teachers[t]), root=pre),
            {"data": {"init_args": {"datasets": [str(datasets[t])]}}},
        ), teachers[t], pre / "logs" / f"teacher-{game(t)}.log", b.teacher_updates)
        for t in pretrain
    ]  # fmt: skip
    stage3 = [
        Job("student", "distill.yaml", merged(
            trainer(b.student_steps(len(pretrain)), "student", ev, export_callback(student)),
            {"model": {"init_args": {"teachers": [str(teachers[t]) for t in pretrain],
                                     **({"cache_teacher_policies": True} if cache_teacher_policies else {})}},
             "data": {"init_args": {"datasets": [str(datasets[t]) for t in pretrain]}}},
        ), student, out / "logs" / "student.log", b.student_steps(len(pretrain)))
    ]  # fmt: skip
    every = b.finetune_updates // b.evaluations
    cycle = max(b.finetune_updates // 8, 10)
    weights = ("xtra.callbacks.task_weights.GradientCosineTaskWeights",
               {"cycle": cycle, "measure": max(cycle // 10, 1), "start": cycle})  # fmt: skip
    stage4 = []
    for name in methods:
        run = out / "runs" / name
        if name == "zero-shot":  # xtra-eval of the student: a run of one evaluation at env step 0
            command = [sys.executable, "-m", "xtra.evaluate_cli", str(student), "--tasks", target, "--episodes",
                       str(b.eval_episodes), "--simulations", str(b.simulations), "--run-dir", str(run),
                       "--run-seed", str(seed), "--device", "cpu"]  # fmt: skip
            stage4.append(Job(OFFLINE_ROWS[name], "", {}, run / COMPLETE, out / "logs" / f"{name}.log", 1,
                              command=command))  # fmt: skip
            continue
        if name == "bc":  # as many updates on the same data as the student, scored on the target only
            target_eval = (
                "xtra.callbacks.evaluation.Evaluation",
                {"every_n_steps": 0, "episodes": b.eval_episodes, "at_start": False, "task_ids": [target]},
            )
            overlay = merged(
                trainer(b.student_steps(len(pretrain)), name, target_eval),
                {"data": {"init_args": {"datasets": [str(datasets[t]) for t in pretrain]}}},
            )
            stage4.append(Job(OFFLINE_ROWS[name], "bc.yaml", overlay, run / COMPLETE, out / "logs" / f"{name}.log",
                              b.student_steps(len(pretrain))))  # fmt: skip
            continue
        m = METHODS[name]
        model = {"mcts": {"num_simulations": b.simulations}, **m.model}
        if m.pretrained:
            model["pretrained"] = str(student)
        cbs = [eval_callback(every, b.eval_episodes), *([weights] if m.task_weights else [])]
        overlay = merged(
            trainer(b.finetune_updates, name, *cbs),
            {"model": {"init_args": model}},
            online(m.config, {"task_id": target, "env_steps": b.finetune_env_steps, "warmup_steps": b.warmup_steps,
                              "update_to_data": b.update_to_data, **m.online}),
        )  # fmt: skip
        cap = b.pretraining_eval_max_episode_steps
        late = functools.partial(offline_overlay, pre, pretrain, datasets, m.gated, cap) if m.offline else None
        stage4.append(Job(m.label, m.config, overlay, out / "runs" / name / COMPLETE, out / "logs" / f"{name}.log",
                          b.finetune_updates, late))  # fmt: skip
    for stage in (stage1, stage2, stage3, stage4):
        for job in (j for j in stage if j.command is None):
            job.config = str(configs / job.config)
            job.overlay = merged(common, job.overlay)
            job.overlay["trainer"]["callbacks"].append(
                {"class_path": PROGRESS, "init_args": {"path": str(progress_path(job))}}
            )
    return [stage1, stage2, stage3, stage4]


def offline_overlay(
    pre: Path, pretrain: list[str], datasets: dict[str, Path], gated: bool, max_steps: int | None = None
) -> dict:
    """The finetune's offline datasets: the transferable games' (``gated``; their teachers' runs under ``pre``,
    evaluated with ``max_steps`` moves at most) or every pretraining game's."""
    games = transferable_games(pre, pretrain, max_steps) if gated else list(pretrain)
    if gated:
        print(f"offline games for {pre}: {', '.join(games) or 'none'} (teachers clearly above random play)", flush=True)
    if not games:  # nothing learnt offline is worth replaying: the finetune trains on the target alone
        return {"data": {"init_args": {"offline": None}}}
    return {"data": {"init_args": {"offline": {"init_args": {"datasets": [str(datasets[t]) for t in games]}}}}}


def write_overlay(path: Path, overlay: dict) -> None:
    """The job's overlay as YAML, written atomically (a rerun of the job reads exactly this file)."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("# written by xtra-pipeline: the job's budget and inputs over its stage config\n"
                   + yaml.safe_dump(overlay, sort_keys=False))  # fmt: skip
    os.replace(tmp, path)


def resumable(job: Job, overlay: dict) -> tuple[Path | None, str]:
    """The checkpoint an unfinished earlier attempt of ``job`` left, if that attempt ran with the same overlay
    (budget and inputs): resuming under another one would mix two runs' schedules. Otherwise None and the reason,
    which the pipeline prints before it deletes the attempt (a restart nobody can explain costs hours)."""
    import yaml

    if not job.run_dir.exists():
        return None, ""
    checkpoint = run_checkpoint(job.run_dir)
    if checkpoint is None:
        return None, f"no intact checkpoint in {job.run_dir}"
    if not job.overlay_path.is_file():
        return None, f"{job.overlay_path} is missing"
    changed = differing_keys(yaml.safe_load(job.overlay_path.read_text()), overlay)
    if changed:
        return None, f"its overlay changed at {', '.join(changed)}"
    return checkpoint, ""


def differing_keys(old: object, new: object, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested dicts (a list compared as one value)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix or "<root>"]
    keys = [*old, *(k for k in new if k not in old)]
    return [d for k in keys for d in differing_keys(old.get(k), new.get(k), f"{prefix}.{k}" if prefix else str(k))]


def progress_path(job: Job) -> Path:
    return job.log.with_suffix(".progress.json")


def progress(job: Job) -> str:
    """The job's latest step, from the progress file its ProgressFile callback writes."""
    try:
        state = json.loads(progress_path(job).read_text())
    except (OSError, ValueError):
        return "starting"
    return f"{state['step']}/{job.total_steps} steps"


def stop_jobs(running: list[Job], grace_s: float = 30.0) -> None:
    """Terminate the jobs still running (Lightning ends a fit at its next step on SIGTERM), then kill the rest."""
    for job in running:
        if job.process.poll() is None:
            job.process.terminate()
    deadline = time.time() + grace_s
    for job in running:
        try:
            job.process.wait(timeout=max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            job.process.kill()
            job.process.wait()


def job_command(job: Job, stage: str) -> tuple[list[str], Path | None]:
    """The command that runs ``job`` now, and the checkpoint it resumes from (None: from the start, its earlier
    attempt's run folder deleted). Writes the job's overlay."""
    if job.command is not None:  # not a fit: nothing to resume
        shutil.rmtree(job.run_dir, ignore_errors=True)
        return job.command, None
    overlay = merged(job.overlay, job.late_overlay()) if job.late_overlay is not None else job.overlay
    resume, why = resumable(job, overlay)
    if resume is None:  # an attempt stopped half-way with other inputs: its evaluations must not mix in
        if why:
            print(f"{stage}: {job.name} starts over ({why})", flush=True)
        shutil.rmtree(job.run_dir, ignore_errors=True)
    else:
        print(f"{stage}: {job.name} resumes from {resume}", flush=True)
    write_overlay(job.overlay_path, overlay)
    cmd = [sys.executable, "-m", "xtra.cli", "fit", "-c", job.config, "-c", str(job.overlay_path), *job.overrides,
           *(["--ckpt_path", "last"] if resume is not None else [])]  # fmt: skip
    return cmd, resume


def run_stage(number: int, name: str, jobs: list[Job], jobs_at_once: int) -> None:
    todo = []
    for job in jobs:
        if job.output.exists():
            print(f"[{number}/4] {name}: reusing {job.output} (delete it to recompute)", flush=True)
        else:
            todo.append(job)
    if not todo:
        return
    # one thread per job, always: float sums depend on the thread count, so a job rerun alone (or with another
    # --jobs) must use the same count to reproduce its numbers bit for bit
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start, running, waiting, last = time.time(), [], list(todo), 0.0
    try:
        while waiting or running:
            while waiting and len(running) < jobs_at_once:
                job = waiting.pop(0)
                job.log.parent.mkdir(parents=True, exist_ok=True)
                progress_path(job).unlink(missing_ok=True)  # a stopped earlier attempt's progress is not this one's
                cmd, resume = job_command(job, f"[{number}/4] {name}")
                with open(job.log, "a" if resume is not None else "w") as log:  # a resumed job's log goes on
                    log.write("$ " + " ".join(cmd) + "\n")
                    log.flush()
                    job.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                job.started = time.time()
                running.append(job)
            for job in list(running):
                code = job.process.poll()
                if code is None:
                    continue
                running.remove(job)
                if code != 0:
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
    finally:  # stopped (Ctrl-C, SIGTERM) or failed: no job may outlive the pipeline and write on its own
        stop_jobs(running)


def evaluations(run_dir: Path) -> list[dict]:
    """Every evaluation record of a run (``eval/step*.json``), in step order."""
    records = [json.loads(p.read_text()) for p in run_dir.rglob("eval/step*.json")]
    return sorted(records, key=lambda r: int(r["global_step"]))


def learning_curve(run_dir: Path, task: str) -> list[tuple[int, float, tuple[float, ...]]]:
    """(env steps, mean return, episode returns) of every evaluation of a run, in order."""
    points = []
    for record in evaluations(run_dir):
        returns = tuple(float(r) for r in record["returns"][task])
        points.append((int(record.get("env_steps") or 0), float(np.mean(returns)), returns))
    return sorted(points)


def final_evaluation(run_dir: Path, task: str) -> dict:
    """The last evaluation of ``task`` in a run: episode returns, greedy-move counts and whether it collapsed."""
    records = [r for r in evaluations(run_dir) if task in r["returns"]]
    if not records:
        raise RuntimeError(f"no evaluation of {task} under {run_dir}; see the stage's log in logs/")
    last = records[-1]
    played = Evaluated(np.asarray(last["returns"][task], dtype=float),
                       np.asarray(last.get("actions", {}).get(task, []), dtype=np.int64), float("nan"))  # fmt: skip
    return {"returns": played.returns, "env_steps": last.get("env_steps"), "simulations": last.get("simulations"),
            "top_action_share": played.top_action_share, "collapsed": played.collapsed}  # fmt: skip


BAR = 0.7  # teacher ≥ 70 % of its data producer's return; student ≥ 70 % of each teacher's


@functools.lru_cache
def random_return(task_id: str, episodes: int = 32, max_steps: int | None = None) -> float:
    """Mean return of uniformly random play on the evaluation games (the floor any pretraining must clear), its
    episodes cut where the pretraining evaluations' are."""
    actor = random_actor(env_spec(task_id).num_actions)
    return float(evaluate(actor, task_id, episodes, seed=0, max_steps=max_steps).returns.mean())


def beats_random(returns: np.ndarray, random: float) -> bool:
    """Whether the 95 % bootstrap CI of the mean of ``returns`` lies wholly above random play's mean return."""
    low, _ = bootstrap_ci(np.asarray(returns, dtype=np.float64)[:, None], statistic=np.mean)
    return low > random


def transferable_games(pre: Path, pretrain: list[str], max_steps: int | None = None) -> list[str]:
    """The pretraining games whose teacher (run under ``pre``) plays clearly better than random (CI above random
    play's mean).

    A teacher at random play means its dataset holds no skill that offline training can extract; replaying that
    game while finetuning only spends rows and gradient on noise (results/minatar-history.md: asterix).
    The rule reads the pretraining games only, never the target, so it cannot be tuned on the reported game.
    """
    keep = []
    for t in pretrain:
        teacher = final_evaluation(pre / "runs" / f"teacher-{game_name(t)}", t)["returns"]
        if beats_random(teacher, random_return(t, max_steps=max_steps)):
            keep.append(t)
    return keep


def format_ratio(point: float, low: float, high: float) -> str:
    """``0.74 [0.52, 1.01]``; ``inf`` where the denominator scored 0."""
    return f"{point:.2f} [{low:.2f}, {high:.2f}]"


def bar_verdict(ratio: tuple[float, float, float]) -> str:
    """``ok`` when the ratio's point meets the bar; a point below it whose 95 % interval still reaches the bar is
    a miss inside the noise of two 32-episode evaluations, told apart from a miss the interval confirms."""
    point, _, high = ratio
    if point >= BAR:
        return "ok"
    return "missed inside its CI" if high >= BAR else "**missed**"


def pretraining_quality(
    out: Path, pretrain: list[str], pretraining: Path | None = None, max_steps: int | None = None
) -> list[dict]:
    """Per pretraining game: random play's, the data producer's, the teacher's and the student's return, and
    the bars (producers and teachers run under ``pretraining``, default ``out``; ``max_steps``: the evaluations'
    cap, which random play's episodes get too)."""
    pre = pretraining or out
    rows, transferred = [], transferable_games(pre, pretrain, max_steps)
    for t in pretrain:
        g = game_name(t)
        finals = [final_evaluation(d, t) for d in (pre / "runs" / f"dataset-{g}", pre / "runs" / f"teacher-{g}",
                                                    out / "runs" / "student")]  # fmt: skip
        producer, teacher, student = (f["returns"].mean() for f in finals)
        random = random_return(t, max_steps=max_steps)
        teacher_ratio = ratio_ci(finals[1]["returns"], finals[0]["returns"])
        student_ratio = ratio_ci(finals[2]["returns"], finals[1]["returns"])
        try:
            data = reward_summary(pre / "datasets" / g)
            rewarded = f"{data['rewarded_steps']} of {data['steps']}"
        except DatasetError:  # deleted after its teacher was trained
            rewarded = "dataset gone"
        rows.append({
            "game": t, "rewarded_steps": rewarded,
            "random": round(random, 3), "producer": round(float(producer), 3),
            "teacher": round(float(teacher), 3), "student": round(float(student), 3),
            "simulations": "/".join(str(f["simulations"] or "own") for f in finals),
            "producer_ok": bool(producer > random), "transferred": t in transferred,
            "teacher_bar": bar_verdict(teacher_ratio), "student_bar": bar_verdict(student_ratio),
            "teacher_ratio": format_ratio(*teacher_ratio), "student_ratio": format_ratio(*student_ratio),
        })  # fmt: skip
    return rows


def report(out: Path, seed_dirs: dict[int, Path], target: str, pretrain: list[str], budget: Budget,
           methods: tuple[str, ...], pretraining_dirs: dict[int, Path] | None = None) -> dict:  # fmt: skip
    """``results.md``, ``results.csv`` and ``learning_curves.png`` over every seed's runs."""
    rows, per_seed, curves, quality = [], [], {}, {}
    for name in methods:
        finals = {seed: final_evaluation(d / "runs" / name, target) for seed, d in seed_dirs.items()}
        curves[name] = {seed: learning_curve(d / "runs" / name, target) for seed, d in seed_dirs.items()}
        means = [float(f["returns"].mean()) for f in finals.values()]
        lo, hi = hierarchical_bootstrap_ci([f["returns"] for f in finals.values()])
        collapsed = [seed for seed, f in finals.items() if f["collapsed"]]
        rows.append({"method": row_label(name), "key": name, "target": target, "seeds": len(finals),
                     "episodes": int(sum(len(f["returns"]) for f in finals.values())),
                     # an offline row (bc) records no env steps: it played none on the target
                     "env_steps": next(iter(finals.values()))["env_steps"] or 0,
                     "mean": round(float(np.mean(means)), 3),
                     "ci_low": round(lo, 3), "ci_high": round(hi, 3),
                     "collapsed_seeds": " ".join(map(str, collapsed))})  # fmt: skip
        for seed, f in finals.items():
            per_seed.append(
                {
                    "method": name,
                    "seed": seed,
                    "final_return": round(float(f["returns"].mean()), 3),
                    "top_action_share": round(f["top_action_share"], 3),
                    "collapsed": f["collapsed"],
                }
            )
    for seed, d in seed_dirs.items():
        quality[seed] = pretraining_quality(d, pretrain, (pretraining_dirs or {}).get(seed),
                                            budget.pretraining_eval_max_episode_steps)  # fmt: skip
    write_csv(out / "results.csv", rows)
    write_csv(out / "results_per_seed.csv", per_seed)
    (out / "results.md").write_text(results_markdown(rows, per_seed, quality, target, pretrain, budget))
    plot_curves(out / "learning_curves.png", curves, target)
    return {"rows": rows, "per_seed": per_seed, "quality": quality, "curves": curves}


def machine() -> str:
    """The CPU, core count and library versions a report was made with."""
    import platform

    import torch

    cpu = platform.processor() or platform.machine()
    try:
        names = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, Python {platform.python_version()}"


def results_markdown(rows, per_seed, quality, target, pretrain, budget: Budget) -> str:
    seeds = sorted(quality)
    lines = [
        f"# XTRA on MinAtar: target {target}, pretrained on {', '.join(pretrain)}",
        "",
        f"{len(seeds)} seed(s) ({', '.join(map(str, seeds))}; each seed reaches every RNG of every stage), "
        f"{budget.finetune_env_steps} env steps on the target, {budget.eval_episodes} greedy evaluation episodes "
        "per seed. Mean over seeds of each seed's final mean return; 95 % CI by bootstrap over seeds and "
        f"episodes. **collapsed**: the greedy policy put ≥ {COLLAPSE_SHARE:.0%} of its moves on one action.",
        "",
        f"Written on {machine()}, one thread per job. Runs are bitwise repeatable on one machine; float results "
        "differ between CPU models, so another machine reproduces the distribution, not every digit.",
        "",
        "| method | env steps | final return | 95 % CI | collapsed seeds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        ids = r["collapsed_seeds"].split()
        flag = f"**collapsed**: {len(ids)} of {r['seeds']} (seed {', '.join(ids)})" if ids else "none"
        lines.append(f"| {r['method']} | {r['env_steps']} | {r['mean']} | [{r['ci_low']}, {r['ci_high']}] | {flag} |")
    lines += [
        "",
        "Per seed (final mean return; share of greedy moves on the most played action):",
        "",
        "| method | " + " | ".join(f"seed {s}" for s in seeds) + " |",
        "|---|" + "---|" * len(seeds),
    ]
    for r in rows:
        cells = []
        for s in seeds:
            p = next(p for p in per_seed if p["method"] == r["key"] and p["seed"] == s)
            cells.append(f"{p['final_return']} ({p['top_action_share']:.2f}{', collapsed' if p['collapsed'] else ''})")
        lines.append(f"| {r['method']} | " + " | ".join(cells) + " |")
    cap = budget.pretraining_eval_max_episode_steps
    capped = f"; every pretraining evaluation episode cut at {cap} moves" if cap else ""
    lines += ["", f"Pretraining quality (evaluation return on each pretraining game; bars: teacher ≥ {BAR:.0%} of "
              f"its data producer, student ≥ {BAR:.0%} of the teacher; and no pretraining is worth transferring "
              "unless the data producer beats random play; **teacher > random**: the teacher's 95 % CI lies above "
              "random play's mean — the games `xtra-gated` replays; **search**: simulations per evaluation move, "
              "`own` = the model's training search, as runs before the common evaluation budget were scored; "
              "**teacher ÷ producer**, **student ÷ teacher**: the ratio of mean returns with its 95 % bootstrap "
              "interval over both evaluations' episodes — a bar missed or met inside that interval is noise; "
              "**steps with a reward**: a dataset without one teaches no values, and its bars compare arbitrary "
              f"policies){capped}:", "",
              "| seed | game | random play | data producer | teacher | student | producer > random | teacher bar | "
              "student bar | teacher ÷ producer | student ÷ teacher | teacher > random | "
              "search (producer/teacher/student) | steps with a reward in the data |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for s in seeds:
        for q in quality[s]:
            ok = {True: "ok", False: "**missed**"}
            lines.append(f"| {s} | {q['game']} | {q['random']} | {q['producer']} | {q['teacher']} | {q['student']} | "
                         f"{ok[q['producer_ok']]} | {q['teacher_bar']} | {q['student_bar']} | "
                         f"{q['teacher_ratio']} | {q['student_ratio']} | {ok[q['transferred']]} | "
                         f"{q['simulations']} | {q['rewarded_steps']} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def plot_curves(path: Path, curves: dict[str, dict[int, list]], target: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, by_seed in curves.items():
        usable = [c for c in by_seed.values() if c]
        n = min(len(c) for c in usable)
        x = np.asarray([c[i][0] for i in range(n) for c in usable[:1]])
        y = np.asarray([[c[i][1] for i in range(n)] for c in usable])
        mean = y.mean(0)
        ax.plot(x, mean, marker="o", label=row_label(name))
        # the interval xtra-report puts on every curve point: seeds, then each seed's episodes, resampled
        band = np.array([hierarchical_bootstrap_ci([c[i][2] for c in usable], reps=1_000) for i in range(n)])
        ax.fill_between(x, band[:, 0], band[:, 1], alpha=0.15)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"evaluation return ({target}), mean over seeds, 95 % CI")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


STAGES = ("offline datasets", "teachers", "student (distillation)", "finetune vs from scratch")


def run_stages(seed_stages: list[list[list[Job]]], seeds: list[int], jobs_at_once: int) -> None:
    """Each stage's jobs of every seed, side by side, one stage after the other."""
    start = time.time()
    for i, name in enumerate(STAGES):
        jobs = [job for p in seed_stages for job in p[i]]
        if len(seeds) > 1:
            for seed, p in zip(seeds, seed_stages, strict=True):
                for job in p[i]:
                    job.name = f"{job.name} [seed {seed}]"
        t0 = time.time()
        print(f"[{i + 1}/4] {name}: {len(jobs)} job(s)", flush=True)
        run_stage(i + 1, name, jobs, jobs_at_once)
        print(f"[{i + 1}/4] {name}: finished in {time.time() - t0:.0f} s (total {time.time() - start:.0f} s)",
              flush=True)  # fmt: skip
        if i == 0:
            for job in jobs:
                print(dataset_line(job.output.parent), flush=True)


def dataset_line(path: Path) -> str:
    """One line on how much reward a dataset holds; a warning when it holds none (its teacher cannot learn the
    game's values, so that game's bars would compare the scores of arbitrary policies)."""
    r = reward_summary(path)
    line = f"dataset {path}: {r['steps']} steps, {r['rewarded_steps']} with a reward (sum {r['reward_sum']:g})"
    if r["rewarded_steps"] == 0:
        line += ("\nWARNING: no reward in this dataset: its teacher learns no values, and its bars compare "
                 "arbitrary policies; pass a larger --dataset-env-steps or pretrain on another game")  # fmt: skip
    return line


class FolderBusy(RuntimeError):
    """Another pipeline holds the folder."""


@contextlib.contextmanager
def exclusive(folders: list[Path]) -> Iterator[None]:
    """Hold a lock on each folder for the pipeline's lifetime: two pipelines writing one folder (say two targets
    sharing ``--pretraining-dir``) would both start its missing jobs and write the same files."""
    import fcntl

    with contextlib.ExitStack() as stack:
        for folder in folders:
            folder.mkdir(parents=True, exist_ok=True)
            handle = stack.enter_context(open(folder / ".pipeline.lock", "w"))
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise FolderBusy(
                    f"another xtra-pipeline is writing {folder}; wait for it to finish (targets that share "
                    "--pretraining-dir run one after the other)"
                ) from None
        yield


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def budget_from_args(args: argparse.Namespace) -> Budget:
    """The default budget, scaled (``--scale``, ``--quick``), then the explicit sizes on top."""
    budget = Budget().scaled(0.05 if args.quick and args.scale == 1.0 else args.scale)
    budget.simulations = args.simulations or budget.simulations
    for size in ("finetune_env_steps", "dataset_env_steps", "teacher_updates", "student_updates"):
        value = getattr(args, size)
        if value is not None and value < 1:
            raise ValueError(f"--{size.replace('_', '-')} must be at least 1")
        setattr(budget, size, value or getattr(budget, size))
    budget.eval_episodes = args.eval_episodes or (4 if args.quick else budget.eval_episodes)
    if args.quick:  # a smoke run: freeway's episodes last 2 500 moves, each a search; 2 simulations each will do
        budget.pretraining_eval_simulations = 2
    cap = getattr(args, "pretraining_eval_max_episode_steps", None)
    if cap is not None and cap < 1:
        raise ValueError("--pretraining-eval-max-episode-steps must be at least 1")
    budget.pretraining_eval_max_episode_steps = cap or (500 if args.quick else None)
    return budget


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xtra-pipeline", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--out", default="runs/pipeline", help="where every stage writes (and is reused from)")
    parser.add_argument("--configs", default="configs/minatar", help="the MinAtar stage configs")
    parser.add_argument("--target", default="minatar/breakout")
    parser.add_argument("--pretrain", nargs="+", default=None,
                        help="pretraining games (default: breakout and space_invaders, the MinAtar games whose data "
                        "producers learn at this budget, less the target; results/minatar-freeway-data/)")  # fmt: skip
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every step budget (0.05 for a smoke run)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: --scale 0.05, 4 evaluation episodes, pretraining scored at 2 sims and ≤ 500 moves per episode",
    )
    parser.add_argument("--finetune-env-steps", type=int, default=None, help="env steps on the target (after --scale)")
    parser.add_argument("--dataset-env-steps", type=int, default=None, help="env steps per dataset (after --scale)")
    parser.add_argument("--teacher-updates", type=int, default=None, help="updates per teacher (after --scale)")
    parser.add_argument("--student-updates", type=int, default=None,
                        help="distillation updates (after --scale; default 4 000 per pretraining game)")  # fmt: skip
    parser.add_argument("--simulations", type=int, default=None, help="MCTS simulations when finetuning")
    parser.add_argument("--eval-episodes", type=int, default=None)
    parser.add_argument("--pretraining-eval-max-episode-steps", type=int, default=None,
                        help="cap the pretraining stages' evaluation episodes (producers, teachers and the student "
                        "alike; default: each game's own length; 500 with --quick)")  # fmt: skip
    parser.add_argument("--jobs", type=int, default=2, help="jobs run side by side (one per CPU core)")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0],
        help="one whole pipeline per seed (every stage, every RNG), reported together",
    )
    parser.add_argument(
        "--action-encoding",
        choices=ACTION_ENCODINGS,
        default=None,
        help="the dynamics' action input in every stage (default: the presets' one_hot)",
    )
    parser.add_argument("--cache-teacher-policies", action="store_true",
                        help="the student searches each dataset state with its teacher once (2.5x faster)")  # fmt: skip
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS),
                        choices=sorted([*METHODS, *OFFLINE_ROWS]),
                        help="rows of the report: finetunes, and zero-shot (the student) and bc")  # fmt: skip
    parser.add_argument(
        "--pretraining-dir",
        default=None,
        help="where the datasets and teachers go (<dir>/seed<N>/), default --out; pipelines of other targets "
        "pointed at the same folder reuse each game's dataset and teacher (a leave-one-out study makes each once)",
    )
    args = parser.parse_args(argv)
    configs = Path(resolve_config(args.configs))
    if not (configs / "xtra.yaml").is_file():
        print(f"xtra-pipeline: no stage configs in {configs}; run from the repository root or pass --configs",
              file=sys.stderr)  # fmt: skip
        return 2
    args.pretrain = args.pretrain or default_pretrain(args.target)
    if args.target in args.pretrain:
        print("xtra-pipeline: the target must not be a pretraining game", file=sys.stderr)
        return 2
    if len(set(args.seeds)) != len(args.seeds):
        print("xtra-pipeline: --seeds must be distinct", file=sys.stderr)
        return 2
    try:
        budget = budget_from_args(args)
    except ValueError as err:
        print(f"xtra-pipeline: {err}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = tuple(args.methods)
    seed_dirs = {seed: out / f"seed{seed}" for seed in args.seeds}
    pre_dirs = {seed: Path(args.pretraining_dir) / f"seed{seed}" if args.pretraining_dir else d
                for seed, d in seed_dirs.items()}  # fmt: skip
    seed_stages = [stage_jobs(d, configs, args.target, args.pretrain, budget, seed, methods, args.action_encoding,
                              pre_dirs[seed], args.cache_teacher_policies)
                   for seed, d in seed_dirs.items()]  # fmt: skip
    start = time.time()
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)  # a scheduler's stop ends the running jobs too
    try:
        with exclusive(sorted({*seed_dirs.values(), *pre_dirs.values()})):
            run_stages(seed_stages, list(seed_dirs), args.jobs)
    except FolderBusy as err:
        print(f"xtra-pipeline: {err}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    result = report(out, seed_dirs, args.target, args.pretrain, budget, methods, pre_dirs)
    print((out / "results.md").read_text())
    print(f"wrote {out / 'results.md'}, {out / 'results.csv'}, {out / 'learning_curves.png'} "
          f"in {time.time() - start:.0f} s", flush=True)  # fmt: skip
    return 0 if result["rows"] else 1


if __name__ == "__main__":
    sys.exit(main())
