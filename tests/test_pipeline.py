"""The one-command MinAtar pipeline at a tiny budget, and every MinAtar stage config run for a few steps on its data."""

import csv
from pathlib import Path

import numpy as np
import pytest

from xtra.cli import run as xtra
from xtra.pipeline import main as pipeline
from xtra.shipped import online_data_key

CONFIGS = Path(__file__).parents[1] / "configs" / "minatar"
# the offline stages' updates as the tests have always run them (the scaled defaults would be 2-4x as many)
# two pretraining games (the default is one), so that the tests distil and replay more than one game; freeway's
# evaluation episodes (2 500 moves, each a search) are cut at 300, or they take most of the suite's time
TINY = ["--scale", "0.04", "--teacher-updates", "80", "--student-updates", "40", "--simulations", "2",
        "--eval-episodes", "2", "--pretrain", "minatar/freeway", "minatar/space_invaders",
        "--pretraining-eval-max-episode-steps", "300"]  # fmt: skip


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pipeline")
    assert pipeline(["--out", str(out), "--configs", str(CONFIGS), *TINY]) == 0
    return out


@pytest.mark.slow
def test_pipeline_writes_table_csv_and_plot_and_reuses_stages(pipeline_run, capsys):
    out = pipeline_run
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["key"] for r in rows] == ["xtra", "efficientzero-l", "efficientzero"]
    assert all(r["target"] == "minatar/breakout" and int(r["episodes"]) == 2 for r in rows)
    md = (out / "results.md").read_text()
    assert "| XTRA |" in md and "| EfficientZero, same network (minatar-l) |" in md and "Pretraining quality" in md
    assert md.count("| 16/16/16 |") == 2  # each pretraining game scored at the producers' search budget
    assert "every pretraining evaluation episode cut at 300 moves" in md
    assert (out / "learning_curves.png").read_bytes()[:4] == b"\x89PNG"
    for path in ("datasets/freeway/manifest.json", "teachers/space_invaders.ckpt", "student.ckpt"):
        assert (out / "seed0" / path).is_file(), path
    capsys.readouterr()
    assert pipeline(["--out", str(out), "--configs", str(CONFIGS), *TINY]) == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 8 and "done in" not in printed


@pytest.mark.slow
def test_datasets_hold_the_whole_env_step_budget(pipeline_run):
    """The dataset run plays its whole budget and the saved dataset holds every step played (episodes in
    progress included)."""
    import json

    from xtra.pipeline import Budget

    budget = Budget().scaled(0.04)
    for game in ("freeway", "space_invaders"):
        manifest = json.loads((pipeline_run / "seed0" / "datasets" / game / "manifest.json").read_text())
        assert manifest["counts"]["steps"] == manifest["source"]["env_steps"] >= budget.dataset_env_steps


def test_report_marks_a_constant_action_run_as_collapsed(tmp_path):
    """Synthetic evaluation files: one seed's greedy policy played a single action, the other did not."""
    import json

    from xtra.pipeline import Budget, report

    target, pretrain = "minatar/breakout", ["minatar/asterix"]

    def write(run, task, returns, actions, env_steps=400):
        (run / "eval").mkdir(parents=True, exist_ok=True)
        record = {"global_step": 10, "env_steps": env_steps, "returns": {task: returns}, "actions": {task: actions}}
        (run / "eval" / "step10.json").write_text(json.dumps(record))

    seeds = {0: tmp_path / "seed0", 1: tmp_path / "seed1"}
    for seed, d in seeds.items():
        write_dataset(d / "datasets" / "asterix", rewards=[0.0, 1.0, 0.0, 2.0] if seed == 0 else [0.0] * 4)
        write(d / "runs" / "xtra", target, [0.0, 0.0, 1.0], [0, 0, 300] if seed == 0 else [50, 120, 130])
        for run in ("dataset-asterix", "teacher-asterix"):
            write(d / "runs" / run, pretrain[0], [1.0, 2.0], [10, 10, 10, 10, 10])
        write(d / "runs" / "student", pretrain[0], [0.5, 1.0], [10, 10, 10, 10, 10])
        write(d / "runs" / "bc", target, [0.0, 1.0], [10, 10, 10], env_steps=None)  # offline: no env steps
    result = report(tmp_path, seeds, target, pretrain, Budget(), ("xtra", "bc"))
    quality = result["quality"][0][0]
    assert (quality["teacher_bar"], quality["student_bar"]) == ("ok", "missed inside its CI")
    # each ratio with its interval: student means {0.5, 0.75, 1} over teacher means {1, 1.5, 2}
    assert quality["teacher_ratio"].startswith("1.00 [") and quality["student_ratio"].startswith("0.50 [0.25, ")
    assert result["rows"][0]["collapsed_seeds"] == "0"
    assert [r["env_steps"] for r in result["rows"]] == [400, 0]  # bc played no env step on the target
    assert [p["collapsed"] for p in result["per_seed"] if p["method"] == "xtra"] == [True, False]
    md = (tmp_path / "results.md").read_text()
    assert "**collapsed**: 1 of 2 (seed 0)" in md and "0.333 (1.00, collapsed)" in md
    # seed 0's student misses on the point (0.50) but its interval reaches 0.70: a miss inside the noise
    assert md.count("| ok | missed inside its CI | 1.00 [0.50, 2.00] | 0.50 [0.25, 1.00] |") == 2
    assert md.count("| own/own/own |") == 2  # records without a search budget: each model's own
    assert [q[0]["rewarded_steps"] for q in result["quality"].values()] == ["2 of 4", "0 of 4"]


def write_dataset(path: Path, rewards: list[float]) -> None:
    """A one-segment MinAtar-shaped dataset with the given rewards."""
    from xtra.replay import Replay

    steps = len(rewards)
    replay = Replay(steps + 1, (10, 10, 10), 3, 1)
    replay.add_segment(np.zeros((steps + 1, 10, 10, 10), np.uint8), np.zeros(steps, np.int64),
                       np.asarray(rewards, np.float32), np.zeros(steps, np.float32),
                       np.full((steps, 3), 1 / 3, np.float32), np.arange(steps), terminal=True)  # fmt: skip
    replay.save(path, "minatar/asterix")


def test_a_dataset_without_rewards_is_reported_with_a_warning(tmp_path, capsys):
    """The pipeline prints each dataset's reward content after the dataset stage; a dataset with no reward gets a
    warning naming the fix (its teacher can learn no values)."""
    from xtra.pipeline import dataset_line
    from xtra.replay import reward_summary

    write_dataset(tmp_path / "some", [0.0, 1.0, -1.0, 0.0, 1.0])
    write_dataset(tmp_path / "none", [0.0] * 5)
    assert reward_summary(tmp_path / "some") == {"steps": 5, "rewarded_steps": 3, "reward_sum": 1.0}
    assert dataset_line(tmp_path / "some").endswith("5 steps, 3 with a reward (sum 1)")
    line = dataset_line(tmp_path / "none")
    assert "0 with a reward" in line and "WARNING: no reward" in line and "--dataset-env-steps" in line


def test_only_games_whose_teacher_beats_random_play_are_replayed_offline(tmp_path):
    """The competence gate reads each teacher's evaluation: a teacher whose 95 % CI reaches random play's mean
    (asterix at random play here) is left out of the finetune's offline games; without any, the finetune trains
    on the target alone."""
    import json

    from xtra.pipeline import beats_random, offline_overlay, random_return, transferable_games

    assert beats_random(np.array([5.0, 6.0, 7.0, 6.0]), 3.8) and not beats_random(np.array([0.0, 1.0, 0.0, 1.0]), 0.5)
    rng = np.random.default_rng(0)
    pretrain = ["minatar/asterix", "minatar/space_invaders"]
    teachers = {"asterix": rng.choice([0.0, 1.0], 32).tolist(), "space_invaders": (rng.poisson(7, 32)).tolist()}
    for game, returns in teachers.items():
        run = tmp_path / "runs" / f"teacher-{game}" / "eval"
        run.mkdir(parents=True)
        record = {"global_step": 5, "returns": {f"minatar/{game}": returns}, "actions": {}}
        (run / "step5.json").write_text(json.dumps(record))
    assert random_return("minatar/asterix") > 0.3  # random play scores, so a 0/1 teacher is not above it
    assert transferable_games(tmp_path, pretrain) == ["minatar/space_invaders"]
    datasets = {t: tmp_path / "datasets" / t.split("/")[1] for t in pretrain}

    def replayed(overlay):
        offline = overlay["data"]["init_args"]["offline"]
        return None if offline is None else offline["init_args"]["datasets"]

    assert replayed(offline_overlay(tmp_path, pretrain, datasets, gated=True)) == [str(datasets[pretrain[1]])]
    assert replayed(offline_overlay(tmp_path, pretrain, datasets, gated=False)) == [str(d) for d in datasets.values()]
    assert replayed(offline_overlay(tmp_path, ["minatar/asterix"], datasets, gated=True)) is None


def composed(config: Path) -> dict:
    """The config as ``xtra fit -c config`` composes it (bases included)."""
    import contextlib
    import io

    import yaml

    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        xtra(["fit", "--print_config", "-c", str(config)])
    return yaml.safe_load(out.getvalue())


def inputs_from(cfg: dict, run: Path, tmp_path: Path) -> list[str]:
    """Overrides that point a composed stage config at the pipeline's outputs, read from what the config holds
    (a student to start from, teachers, offline games, a target to play, a dataset to write): no file names."""
    model, data = cfg["model"]["init_args"], cfg["data"]["init_args"]
    offline = data.get("offline", {}) or {}
    wanted = len((offline.get("init_args") or {}).get("datasets") or data.get("datasets") or [])
    games = ["space_invaders", "freeway"][:wanted]  # as many offline games as the config names
    args = []
    if model.get("pretrained"):
        args.append(f"--model.init_args.pretrained={run / 'student.ckpt'}")
    if model.get("teachers"):  # one per offline game
        args.append(f"--model.init_args.teachers=[{','.join(str(run / 'teachers' / f'{g}.ckpt') for g in games)}]")
    if "mcts" in model:
        args.append("--model.init_args.mcts.num_simulations=2")
    if "target" in data or "env_steps" in data:  # online data, alone or beside offline games
        prefix = online_data_key(cfg)
        args += [f"{prefix}.env_steps=200", f"{prefix}.warmup_steps=64"]
    if data.get("save_dataset"):
        args.append(f"--data.init_args.save_dataset={tmp_path / 'ds'}")
    if offline or "datasets" in data:
        key = "--data.init_args.offline.init_args.datasets" if offline else "--data.init_args.datasets"
        args.append(f"{key}=[{','.join(str(run / 'datasets' / g) for g in games)}]")
    return args


@pytest.mark.slow
@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_every_minatar_config_runs_a_few_steps(pipeline_run, config, tmp_path):
    cfg = composed(CONFIGS / config)
    args = ["fit", "-c", str(CONFIGS / config), "--trainer.max_steps=3", "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={tmp_path}", "--trainer.callbacks=[]", "--trainer.logger=false",
            *inputs_from(cfg, pipeline_run / "seed0", tmp_path)]  # fmt: skip
    cli = xtra(args)
    assert cli.trainer.global_step == 3
    if cfg["data"]["init_args"].get("save_dataset"):
        assert (tmp_path / "ds" / "manifest.json").is_file()


@pytest.mark.slow
def test_finetuner_under_ddp_sets_the_same_task_weights_on_both_ranks(pipeline_run, tmp_path):
    """Two CPU ranks: per-task gradients are all-reduced, so η agree (the callback checks it across ranks)."""
    import subprocess
    import sys

    out = pipeline_run / "seed0"
    datasets = f"[{out / 'datasets' / 'freeway'},{out / 'datasets' / 'space_invaders'}]"
    weights = ('[{"class_path": "xtra.callbacks.task_weights.GradientCosineTaskWeights", '
               '"init_args": {"cycle": 2, "measure": 1, "start": 1}}]')  # fmt: skip
    cmd = [sys.executable, "-m", "xtra.cli", "fit", "-c", str(CONFIGS / "xtra.yaml"), "--trainer.max_steps=4",
           "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
           "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}",
           f"--trainer.callbacks={weights}", "--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={tmp_path}",
           "--trainer.log_every_n_steps=1", "--model.init_args.mcts.num_simulations=2",
           f"--model.init_args.pretrained={out / 'student.ckpt'}",
           f"--data.init_args.offline.init_args.datasets={datasets}",
           "--data.init_args.target.init_args.env_steps=200", "--data.init_args.target.init_args.warmup_steps=64",
           "--data.init_args.batch_size=16"]  # fmt: skip
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    header = next(tmp_path.rglob("metrics.csv")).read_text().splitlines()[0]
    assert "task_weights/eta/freeway" in header and "task_weights/cosine/space_invaders" in header


@pytest.mark.slow
def test_a_stopped_pipeline_leaves_no_job_running(tmp_path):
    """SIGTERM (a scheduler's stop, `kill`) ends the pipeline's running jobs too; an orphaned job would keep
    training and write its outputs beside a restarted pipeline's."""
    import signal
    import subprocess
    import sys
    import time

    cmd = [sys.executable, "-m", "xtra.pipeline", "--out", str(tmp_path / "out"), "--configs", str(CONFIGS), *TINY]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if "starting" in line:  # a job is running
            break
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    assert children, "no job was running when the pipeline was stopped"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    time.sleep(0.5)
    alive = [pid for pid in children if subprocess.run(["kill", "-0", pid], capture_output=True).returncode == 0]
    assert not alive, f"jobs {alive} outlived the pipeline"


def test_budget_flags_size_their_stage_and_refuse_zero(tmp_path, capsys):
    from argparse import Namespace

    from xtra.pipeline import Budget, budget_from_args, default_pretrain, stage_jobs

    assert pipeline(["--out", str(tmp_path), "--configs", str(CONFIGS), "--teacher-updates", "0"]) == 2
    assert "--teacher-updates must be at least 1" in capsys.readouterr().err
    args = Namespace(quick=False, scale=0.5, simulations=None, eval_episodes=None, finetune_env_steps=None,
                     dataset_env_steps=3000, teacher_updates=7, student_updates=None)  # fmt: skip
    budget = budget_from_args(args)
    assert (budget.dataset_env_steps, budget.teacher_updates) == (3000, 7)  # explicit sizes win over --scale
    assert budget.student_steps(2) == 2 * int(Budget().student_updates_per_game * 0.5)  # the rest is scaled
    quick = budget_from_args(Namespace(**{**vars(args), "quick": True, "scale": 1.0, "dataset_env_steps": None}))
    assert quick.dataset_env_steps == int(Budget().dataset_env_steps * 0.05) and quick.eval_episodes == 4
    assert quick.pretraining_eval_simulations == 2  # a smoke run's evaluations of 2 500-move freeway games
    assert quick.pretraining_eval_max_episode_steps == 500 and budget.pretraining_eval_max_episode_steps is None
    capped = budget_from_args(Namespace(**{**vars(args), "pretraining_eval_max_episode_steps": 40}))
    assert capped.pretraining_eval_max_episode_steps == 40
    with pytest.raises(ValueError, match="at least 1"):
        budget_from_args(Namespace(**{**vars(args), "pretraining_eval_max_episode_steps": 0}))
    assert Budget(student_updates=9).student_steps(4) == 9  # an explicit student budget is not per game
    # the default pretraining games: the MinAtar games whose producers learn at these budgets, less the target
    assert default_pretrain("minatar/breakout") == ["minatar/space_invaders"]
    assert default_pretrain("minatar/space_invaders") == ["minatar/breakout"]
    assert default_pretrain("minatar/asterix") == ["minatar/breakout", "minatar/space_invaders"]
    stages = stage_jobs(tmp_path, CONFIGS, "minatar/breakout", ["minatar/asterix"], budget, seed=0,
                        methods=("xtra", "efficientzero", "no-pretraining"))  # fmt: skip
    # w/o pretraining: the offline games and task weights from random weights (its config acts randomly first)
    scratch = stages[3].pop()
    assert scratch.config.endswith("no-pretraining.yaml") and "pretrained" not in scratch.overlay["model"]["init_args"]
    assert any(c["class_path"].endswith("GradientCosineTaskWeights") for c in scratch.overlay["trainer"]["callbacks"])
    assert scratch.late_overlay()["data"]["init_args"]["offline"]["init_args"]["datasets"] == [
        str(tmp_path / "datasets" / "asterix")
    ]
    assert stages[1][0].overlay["trainer"]["max_steps"] == 7
    assert "cache_teacher_policies" not in stages[2][0].overlay["model"]["init_args"]
    cached = stage_jobs(tmp_path, CONFIGS, "minatar/breakout", ["minatar/asterix"], budget, seed=0,
                        cache_teacher_policies=True)  # fmt: skip
    assert cached[2][0].overlay["model"]["init_args"]["cache_teacher_policies"] is True  # the student's job
    assert stages[0][0].overlay["data"]["init_args"]["env_steps"] == 3000
    # each job's overlay puts the online data's settings where its config keeps them
    xtra_job, ez_job = stages[3]
    assert xtra_job.overlay["data"]["init_args"]["target"]["init_args"]["task_id"] == "minatar/breakout"
    assert ez_job.overlay["data"]["init_args"]["task_id"] == "minatar/breakout"
    assert xtra_job.overlay["model"]["init_args"]["pretrained"].endswith("student.ckpt")
    # producers, teachers and student are evaluated at the producers' search budget (dataset.yaml), finetunes at theirs
    for stage in stages[:3]:
        evaluation = next(c for c in stage[0].overlay["trainer"]["callbacks"] if c["class_path"].endswith("Evaluation"))
        assert evaluation["init_args"]["simulations"] == 16
        assert "max_episode_steps" not in evaluation["init_args"]  # each game's own length unless asked
    capped_jobs = stage_jobs(tmp_path, CONFIGS, "minatar/breakout", ["minatar/asterix"], capped, seed=0)
    for stage in capped_jobs[:3]:  # producers, teachers and the student are cut alike; the finetunes are not
        evaluation = next(c for c in stage[0].overlay["trainer"]["callbacks"] if c["class_path"].endswith("Evaluation"))
        assert evaluation["init_args"]["max_episode_steps"] == 40
    evaluation = next(c for c in capped_jobs[3][0].overlay["trainer"]["callbacks"]
                      if c["class_path"].endswith("Evaluation"))  # fmt: skip
    assert "max_episode_steps" not in evaluation["init_args"]
    evaluation = next(c for c in xtra_job.overlay["trainer"]["callbacks"] if c["class_path"].endswith("Evaluation"))
    assert "simulations" not in evaluation["init_args"]


@pytest.mark.slow
def test_a_second_target_reuses_the_datasets_and_teachers_of_a_shared_pretraining_dir(pipeline_run, tmp_path, capsys):
    """Leave-one-out: a pipeline for another target pointed at the first one's folder makes no dataset or teacher;
    its report reads their evaluations from there."""
    out = tmp_path / "asterix"  # a target whose untrained play ends quickly (seaquest's took 80 s per evaluation)
    capsys.readouterr()
    args = ["--out", str(out), "--configs", str(CONFIGS), "--target", "minatar/asterix", "--pretraining-dir",
            str(pipeline_run), "--methods", "no-cross-task", *TINY]  # fmt: skip
    assert pipeline(args) == 0
    printed = capsys.readouterr().out
    assert printed.count("reusing") == 4 and "student (distillation): student done in" in printed
    assert not (out / "seed0" / "datasets").exists() and (out / "seed0" / "student.ckpt").is_file()
    md = (out / "results.md").read_text()
    assert "| 0 | minatar/freeway |" in md and "| 0 | minatar/space_invaders |" in md


@pytest.mark.slow
def test_zero_shot_and_bc_rows_score_the_student_and_a_bc_model_on_the_target(pipeline_run, tmp_path):
    """The paper's baselines as pipeline rows: the student evaluated on the target as it is (its checkpoint through
    xtra-eval, not XTRA's first evaluation after its output layers were reset) and behaviour cloning on the
    pretraining games' data; both reuse the datasets and the student."""
    import json
    import shutil

    shutil.copytree(pipeline_run / "seed0", tmp_path / "seed0")
    assert pipeline(["--out", str(tmp_path), "--configs", str(CONFIGS), *TINY, "--methods", "zero-shot", "bc"]) == 0
    rows = {r["key"]: r for r in csv.DictReader(open(tmp_path / "results.csv"))}
    assert rows.keys() == {"zero-shot", "bc"} and all(int(r["episodes"]) == 2 for r in rows.values())
    record = json.loads(next((tmp_path / "seed0" / "runs" / "zero-shot").rglob("results.json")).read_text())
    assert record["checkpoint"].endswith("student.ckpt") and record["target"] == "minatar/breakout"
    assert record["seed"] == 0 and record["env_steps"] == 0
    xtra_run = json.loads(next((pipeline_run / "seed0" / "runs" / "xtra").rglob("results.json")).read_text())
    assert xtra_run["starts_as_pretrained"] is False  # the MinAtar finetunes reset output layers first
    assert "| Student zero-shot (no finetuning) |" in (tmp_path / "results.md").read_text()


def test_two_pipelines_cannot_write_one_folder(tmp_path, capsys):
    from xtra.pipeline import exclusive

    with exclusive([tmp_path / "shared" / "seed0"]):
        args = ["--out", str(tmp_path / "b"), "--configs", str(CONFIGS), "--pretraining-dir", str(tmp_path / "shared")]
        assert pipeline(args) == 2
    assert "another xtra-pipeline is writing" in capsys.readouterr().err
    assert not (tmp_path / "b" / "seed0" / "logs").exists()  # no job started


@pytest.mark.slow
def test_a_job_stopped_half_way_resumes_where_it_stopped(tmp_path):
    """Every pipeline job checkpoints as it goes; a teacher killed (SIGKILL) after a checkpoint resumes from it when
    the stage runs again, and exports the very weights of a teacher that was never stopped."""
    import shutil
    import signal
    import threading
    import time

    import torch

    from xtra.checkpoints import load_network
    from xtra.pipeline import Budget, run_stage, stage_jobs
    from xtra.resume import run_checkpoint

    budget = Budget(dataset_env_steps=200, teacher_updates=60, student_updates=10, finetune_env_steps=200,
                    warmup_steps=50, eval_episodes=1, simulations=2, pretraining_eval_simulations=2)  # fmt: skip

    def jobs(out):
        return stage_jobs(out, CONFIGS, "minatar/breakout", ["minatar/space_invaders"], budget, 0, ("efficientzero",))

    stopped, whole = jobs(tmp_path / "stopped"), jobs(tmp_path / "whole")
    run_stage(1, "datasets", stopped[0], 1)
    shutil.copytree(tmp_path / "stopped" / "datasets", tmp_path / "whole" / "datasets")
    teacher = stopped[1][0]
    failed = []

    def first_attempt():
        try:
            run_stage(2, "teachers", [teacher], 1)
        except RuntimeError as err:  # the job's exit on SIGKILL
            failed.append(err)

    thread = threading.Thread(target=first_attempt)
    thread.start()
    deadline = time.time() + 300
    while run_checkpoint(teacher.run_dir) is None and time.time() < deadline:
        time.sleep(0.2)
    teacher.process.send_signal(signal.SIGKILL)
    thread.join()
    assert failed and not teacher.output.exists()
    run_stage(2, "teachers", [teacher], 1)
    commands = [line for line in teacher.log.read_text().splitlines() if line.startswith("$ ")]
    assert len(commands) == 2 and commands[1].endswith("--ckpt_path last") and "--ckpt_path" not in commands[0]
    run_stage(2, "teachers", whole[1], 1)
    a, b = (load_network(j[1][0].output).net.state_dict() for j in (stopped, whole))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_job_that_cannot_resume_says_why(tmp_path):
    """An unfinished attempt is resumed only with an intact checkpoint and the same overlay; otherwise the pipeline
    prints why it starts over (the run folder is deleted, so the reason must be on screen)."""
    import torch

    from xtra.pipeline import Budget, differing_keys, resumable, stage_jobs, write_overlay

    budget = Budget(dataset_env_steps=200, teacher_updates=60, student_updates=10, finetune_env_steps=200,
                    warmup_steps=50, eval_episodes=1, simulations=2)  # fmt: skip
    teacher = stage_jobs(tmp_path, CONFIGS, "minatar/breakout", ["minatar/space_invaders"], budget, 0, ())[1][0]
    assert resumable(teacher, teacher.overlay) == (None, "")  # never started: nothing to say
    folder = teacher.run_dir / "lightning_logs" / "version_0" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "last.ckpt").write_bytes(b"cut short")
    assert "no intact checkpoint" in resumable(teacher, teacher.overlay)[1]
    torch.save({"global_step": 30}, folder / "last.ckpt")
    assert "is missing" in resumable(teacher, teacher.overlay)[1]
    write_overlay(teacher.overlay_path, teacher.overlay)
    assert resumable(teacher, teacher.overlay) == (folder / "last.ckpt", "")
    longer = {**teacher.overlay, "trainer": {**teacher.overlay["trainer"], "max_steps": 120}}
    assert resumable(teacher, longer) == (None, "its overlay changed at trainer.max_steps")
    assert differing_keys({"a": {"b": 1, "c": [1]}}, {"a": {"b": 1, "c": [2]}, "d": 0}) == ["a.c", "d"]


def test_a_bar_missed_inside_its_interval_is_told_apart_from_a_confirmed_miss():
    from xtra.pipeline import bar_verdict

    assert bar_verdict((0.80, 0.60, 1.00)) == "ok"
    assert bar_verdict((0.64, 0.50, 0.80)) == "missed inside its CI"  # the default's seed-2 student
    assert bar_verdict((0.49, 0.40, 0.60)) == "**missed**"  # the same student at 2 000 updates
