"""``xtra-sweep SWEEP.yaml``: targets × methods × seeds, each an ``xtra fit`` run, launched through submitit.

A sweep file names where the runs go, the seeds, the target games and the methods (each a list of stage configs
plus an optional overlay); ``{target}``, ``{game}`` and a target's own variables are filled into the overlay's
strings (a string that is exactly ``"{name}"`` takes the variable's value, a list included). Each run is
``xtra fit -c <configs…> -c <run>/sweep-overlay.yaml`` with ``seed_everything`` set to the run's seed (which sets
every seed of the run: module, data, environments), its own ``trainer.default_root_dir``
(``<out>/<game>/<method>/seed<N>``) and the target game placed where its config keeps the online data.

A run with ``results.json`` is finished and skipped; a run with a checkpoint resumes from it (``--ckpt_path
last``); any other run starts. The local executor runs at most ``max_parallel`` runs at once on this machine;
the Slurm executor submits one job array (``max_parallel`` at once) and, each run being an ``xtra fit``, a run's
config may itself ask for several GPUs (DDP). Progress over the whole sweep is printed as runs advance.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from xtra.callbacks.run_record import RESULTS
from xtra.envs import game_name, valid_task_ids
from xtra.resume import run_checkpoint
from xtra.shipped import composed_yaml, merged, nested, online_data_path, resolve_config

SWEEP_KEYS = {"out", "seeds", "targets", "methods", "executor"}
METHOD_KEYS = {"configs", "overlay", "label", "target_in_data"}
EXECUTOR_KEYS = {"cluster", "max_parallel", "timeout_min", "threads_per_run", "slurm"}
PROGRESS = "progress.json"
OVERLAY = "sweep-overlay.yaml"
PLACEHOLDER = re.compile(r"\{(\w+)\}")


class SweepError(ValueError):
    """A sweep file that cannot run; the message names the key and the fix."""


@dataclass(frozen=True)
class Method:
    name: str
    configs: tuple[str, ...]
    overlay: dict = field(default_factory=dict)
    label: str = ""
    target_in_data: bool = True  # false: offline stages (BC) whose overlay uses {target} itself (evaluation)


@dataclass
class Executor:
    cluster: str = "local"  # local (subprocesses on this machine) | slurm
    max_parallel: int = 2
    timeout_min: int = 24 * 60
    threads_per_run: int = 1  # OMP_NUM_THREADS of each run: float sums depend on it, so it is fixed per sweep
    slurm: dict = field(default_factory=dict)  # submitit's slurm_* parameters, without the prefix


@dataclass
class Sweep:
    out: Path
    seeds: list[int]
    targets: dict[str, dict]
    methods: dict[str, Method]
    executor: Executor


@dataclass(frozen=True)
class Run:
    target: str
    method: Method
    seed: int
    overlay: dict
    dir: Path

    @property
    def name(self) -> str:
        return f"{game_name(self.target)}/{self.method.name}/seed{self.seed}"

    @property
    def results(self) -> Path | None:
        """The run's record (in its log folder), or None while it has not finished (a fit stopped before its
        ``max_steps`` writes a record marked incomplete)."""
        found = sorted(self.dir.glob(f"**/{RESULTS}"), key=lambda p: p.stat().st_mtime)
        return found[-1] if found and json.loads(found[-1].read_text()).get("complete", True) else None

    def checkpoint(self) -> Path | None:
        """The newest intact checkpoint of an unfinished earlier attempt, if any."""
        return run_checkpoint(self.dir)

    def state(self) -> str:
        if self.results is not None:
            return "done"
        return "resume" if self.checkpoint() is not None else "new"

    def command(self) -> list[str]:
        configs = [arg for c in self.method.configs for arg in ("-c", c)]
        progress = json.dumps({"class_path": "xtra.callbacks.progress.ProgressFile",
                               "init_args": {"path": str(self.dir / PROGRESS)}})  # fmt: skip
        cmd = [sys.executable, "-m", "xtra.cli", "fit", *configs, "-c", str(self.dir / OVERLAY),
               f"--trainer.callbacks+={progress}"]  # fmt: skip
        return cmd + (["--ckpt_path", "last"] if self.state() == "resume" else [])

    def write_overlay(self) -> None:
        import yaml

        self.dir.mkdir(parents=True, exist_ok=True)
        path = self.dir / OVERLAY
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"# written by xtra-sweep: run {self.name} over its method's configs\n"
                       + yaml.safe_dump(self.overlay, sort_keys=False))  # fmt: skip
        os.replace(tmp, path)


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise SweepError(message)


def load_sweep(path: str | Path) -> Sweep:
    """Read and check a sweep file; relative ``out`` is relative to the working directory, as ``xtra fit``'s."""
    import yaml

    path = Path(path)
    _require(path.is_file(), f"{path}: no such sweep file")
    raw = yaml.safe_load(path.read_text()) or {}
    _require(isinstance(raw, dict), f"{path}: a sweep file is a mapping with keys {sorted(SWEEP_KEYS)}")
    unknown = set(raw) - SWEEP_KEYS
    _require(not unknown, f"{path}: unknown key(s) {sorted(unknown)}; a sweep file has {sorted(SWEEP_KEYS)}")
    for key in ("out", "seeds", "targets", "methods"):
        _require(key in raw, f"{path}: '{key}' is missing")
    seeds = raw["seeds"]
    _require(isinstance(seeds, list) and seeds and all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
             and len(set(seeds)) == len(seeds), f"{path}: 'seeds' must be a list of distinct integers")  # fmt: skip
    targets = raw["targets"]
    if isinstance(targets, list):
        targets = {t: {} for t in targets}
    _require(isinstance(targets, dict) and targets, f"{path}: 'targets' must be a list of task ids or a mapping "
             "task id -> its variables")  # fmt: skip
    known = set(valid_task_ids())
    for task, variables in targets.items():
        _require(task in known, f"{path}: unknown target {task!r}; `xtra --list-tasks` lists the task ids")
        _require(isinstance(variables, dict | None), f"{path}: target {task}: its variables must be a mapping")
    targets = {t: dict(v or {}) for t, v in targets.items()}
    methods = {}
    _require(isinstance(raw["methods"], dict) and raw["methods"], f"{path}: 'methods' must map names to methods")
    for name, spec in raw["methods"].items():
        _require(isinstance(spec, dict) and "configs" in spec, f"{path}: method {name}: give its 'configs' (a list)")
        unknown = set(spec) - METHOD_KEYS
        _require(not unknown, f"{path}: method {name}: unknown key(s) {sorted(unknown)}; allowed {sorted(METHOD_KEYS)}")
        configs = [spec["configs"]] if isinstance(spec["configs"], str) else list(spec["configs"])
        resolved = []
        for c in configs:
            r = resolve_config(c)
            _require(Path(r).is_file(), f"{path}: method {name}: config {c} does not exist")
            resolved.append(str(Path(r).resolve()))
        overlay = spec.get("overlay") or {}
        _require(isinstance(overlay, dict), f"{path}: method {name}: 'overlay' must be a mapping")
        in_data = spec.get("target_in_data", True)
        _require(isinstance(in_data, bool), f"{path}: method {name}: 'target_in_data' is true or false")
        methods[name] = Method(name, tuple(resolved), overlay, str(spec.get("label", name)), in_data)
    ex = raw.get("executor") or {}
    unknown = set(ex) - EXECUTOR_KEYS
    _require(not unknown, f"{path}: executor: unknown key(s) {sorted(unknown)}; allowed {sorted(EXECUTOR_KEYS)}")
    executor = Executor(**ex)
    _require(executor.cluster in ("local", "slurm"), f"{path}: executor.cluster is local or slurm")
    _require(executor.max_parallel >= 1, f"{path}: executor.max_parallel must be at least 1")
    return Sweep(Path(raw["out"]), seeds, targets, methods, executor)


def fill(value: Any, variables: dict[str, Any], depth: int = 0) -> Any:
    """``value`` with ``{name}`` placeholders filled; a string that is exactly one placeholder takes the value
    (a list too), itself filled in turn (a target's variable may use ``{seed}``)."""
    if depth > 8:
        raise SweepError(f"placeholders nested more than 8 deep at {value!r}: does a variable name itself?")
    if isinstance(value, dict):
        return {k: fill(v, variables, depth) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, variables, depth) for v in value]
    if not isinstance(value, str):
        return value
    for name in PLACEHOLDER.findall(value):
        if name not in variables:
            raise SweepError(f"placeholder {{{name}}} in {value!r} is not a variable of this target; "
                             f"known: {sorted(variables)}")  # fmt: skip
    whole = PLACEHOLDER.fullmatch(value)
    if whole:
        return fill(variables[whole.group(1)], variables, depth + 1)
    return PLACEHOLDER.sub(lambda m: str(fill(variables[m.group(1)], variables, depth + 1)), value)


def expand(sweep: Sweep) -> list[Run]:
    """Every run of the sweep, targets outermost, then methods, then seeds."""
    runs = []
    for target, variables in sweep.targets.items():
        values = {"target": target, "game": game_name(target), **variables}
        for method in sweep.methods.values():
            composed = merged(*(composed_yaml(c) for c in method.configs))
            run_dir = sweep.out / game_name(target) / method.name
            for seed in sweep.seeds:
                d = run_dir / f"seed{seed}"
                overlay = merged(
                    fill(method.overlay, {**values, "seed": seed}),
                    {"seed_everything": seed,
                     "trainer": {"default_root_dir": str(d), "enable_progress_bar": False}},
                    nested(online_data_path(composed), {"task_id": target}) if method.target_in_data else {},
                )  # fmt: skip
                runs.append(Run(target, method, seed, overlay, d))
    return runs


def progress(run: Run) -> str:
    try:
        state = json.loads((run.dir / PROGRESS).read_text())
    except (OSError, ValueError):
        return "starting"
    return f"{state['step']}/{state['max_steps']}"


def make_executor(sweep: Sweep):
    import submitit

    ex = sweep.executor
    folder = sweep.out / ".submitit"
    executor = submitit.AutoExecutor(folder=folder, cluster=ex.cluster)
    params: dict[str, Any] = {"timeout_min": ex.timeout_min, "name": "xtra-sweep"}
    if ex.cluster == "slurm":
        params.update({f"slurm_{k}": v for k, v in ex.slurm.items()})
        params["slurm_array_parallelism"] = ex.max_parallel
    executor.update_parameters(**params)
    return executor


@dataclass(frozen=True)
class LoggedCommand:
    """What a submitit job runs: one command, its output appended to a log file (the run's ``sweep.log``)."""

    cmd: tuple[str, ...]
    log: str
    threads: int

    def __call__(self) -> int:
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        with open(self.log, "a") as log:
            log.write("$ " + " ".join(self.cmd) + "\n")
            log.flush()
            code = subprocess.run(list(self.cmd), stdout=log, stderr=subprocess.STDOUT, env=env).returncode
        if code != 0:
            tail = Path(self.log).read_text().strip().splitlines()[-1:] or [""]
            raise RuntimeError(f"exit {code}: {tail[0]}")
        return code


def submit(executor, run: Run, threads: int):
    """One run as a submitit job (its overlay written first)."""
    run.write_overlay()
    return executor.submit(LoggedCommand(tuple(run.command()), str(run.dir / "sweep.log"), threads))


def run_sweep(sweep: Sweep, poll_s: float = 15.0, wait: bool = True) -> dict[str, str]:
    """Launch every unfinished run; return each run's outcome (``done``, ``failed: …`` or ``submitted``)."""
    runs = expand(sweep)
    outcome = {r.name: "done" for r in runs if r.state() == "done"}
    todo = [r for r in runs if r.name not in outcome]
    print(f"xtra-sweep: {len(runs)} runs, {len(outcome)} finished (skipped), {len(todo)} to run "
          f"({sum(r.state() == 'resume' for r in todo)} resume from a checkpoint); runs under {sweep.out}",
          flush=True)  # fmt: skip
    if not todo:
        return outcome
    executor = make_executor(sweep)
    threads = sweep.executor.threads_per_run
    slots = len(todo) if sweep.executor.cluster == "slurm" else sweep.executor.max_parallel
    running: list[tuple[Run, Any]] = []
    waiting = list(todo)
    if sweep.executor.cluster == "slurm":
        with executor.batch():
            jobs = [submit(executor, r, threads) for r in waiting]
        running, waiting = list(zip(waiting, jobs, strict=True)), []
        print("xtra-sweep: submitted " + ", ".join(f"{r.name} ({j.job_id})" for r, j in running), flush=True)
        if not wait:
            return {**outcome, **{r.name: "submitted" for r, _ in running}}
    try:
        watch(running, waiting, slots, outcome, len(runs), executor, threads, poll_s)
    except BaseException:  # Ctrl-C, SIGTERM: local runs must not outlive the sweep (Slurm jobs stay queued)
        if sweep.executor.cluster == "local":
            for _, job in running:
                job.cancel(check=False)
        raise
    return outcome


def watch(running, waiting, slots, outcome, total, executor, threads, poll_s) -> None:
    """Start waiting runs as slots free up, record each run's outcome, print progress every ``poll_s``."""
    last = 0.0
    while waiting or running:
        while waiting and len(running) < slots:
            run = waiting.pop(0)
            running.append((run, submit(executor, run, threads)))
        for run, job in list(running):
            if not job.done():
                continue
            running.remove((run, job))
            try:
                job.result()
                outcome[run.name] = "done" if run.results is not None else "failed: no results.json written"
            except Exception as err:  # the run's own log says why; the sweep goes on with the others
                lines = str(err).strip().splitlines()
                outcome[run.name] = f"failed: {lines[-1] if lines else repr(err)}"
            print(f"xtra-sweep: {run.name} {outcome[run.name]} ({len(outcome)}/{total})", flush=True)
        if running and time.time() - last >= poll_s:
            status = ", ".join(f"{r.name} {progress(r)}" for r, _ in running)
            print(f"xtra-sweep: {len(outcome)}/{total} ended; running {status}; {len(waiting)} waiting", flush=True)
            last = time.time()
        time.sleep(min(1.0, poll_s))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xtra-sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep", help="the sweep file (YAML)")
    parser.add_argument("--dry-run", action="store_true", help="print each run's state and command, run nothing")
    parser.add_argument("--no-wait", action="store_true", help="Slurm: submit and return without watching")
    parser.add_argument("--max-parallel", type=int, default=None, help="override the file's executor.max_parallel")
    args = parser.parse_args(argv)
    try:
        sweep = load_sweep(args.sweep)
        if args.max_parallel is not None:
            sweep.executor.max_parallel = args.max_parallel
        runs = expand(sweep)
    except SweepError as err:
        parser.error(str(err))
    if args.dry_run:
        for run in runs:
            print(f"{run.name} [{run.state()}]: {' '.join(run.command())}")
        return 0
    outcome = run_sweep(sweep, wait=not args.no_wait)
    failed = {k: v for k, v in outcome.items() if v.startswith("failed")}
    for name, why in failed.items():
        print(f"xtra-sweep: {name} {why}; see {sweep.out / name / 'sweep.log'} and the submitit logs", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
