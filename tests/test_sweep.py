import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xtra.sweep import SweepError, expand, fill, load_sweep

ROOT = Path(__file__).parents[1]
SWEEPS = sorted((ROOT / "configs" / "sweeps").glob("*.yaml"))


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.name)
def test_every_sweep_file_expands_and_every_config_it_names_parses(path, tmp_path, capsys):
    """Each method's configs with its overlay (on the first target) print a complete config; every target is a
    known task (load_sweep checks) and every placeholder fills (expand fails otherwise)."""
    from xtra.cli import main

    sweep = load_sweep(path)
    runs = expand(sweep)
    assert len(runs) == len(sweep.targets) * len(sweep.methods) * len(sweep.seeds)
    assert len({r.dir for r in runs}) == len(runs)
    first = next(iter(sweep.targets))
    for method in sweep.methods.values():
        run = next(r for r in runs if r.method is method and r.target == first)
        overlay = tmp_path / f"{method.name}.yaml"
        overlay.write_text(yaml.safe_dump(run.overlay))
        configs = [a for c in method.configs for a in ("-c", c)]
        with pytest.raises(SystemExit) as exit_:
            main(["fit", "--print_config", *configs, "-c", str(overlay)])
        assert exit_.value.code in (0, None), method.name
        printed = yaml.safe_load(capsys.readouterr().out)
        assert printed["seed_everything"] == run.seed
        assert printed["trainer"]["default_root_dir"] == str(run.dir)
        text = json.dumps(printed)
        assert first in text, f"{method.name}: the target {first} appears nowhere in its config"
        assert "{" + "seed}" not in text and "{game}" not in text  # every placeholder filled


def test_placeholders_fill_whole_values_nested_variables_and_fail_on_unknown_names():
    variables = {"game": "Alien", "seed": 3, "dir": "runs/{game}/seed{seed}", "offline": ["{dir}/a", "{dir}/b"]}
    assert fill({"x": "{offline}", "y": "students/{game}.ckpt", "n": 4}, variables) == {
        "x": ["runs/Alien/seed3/a", "runs/Alien/seed3/b"], "y": "students/Alien.ckpt", "n": 4}  # fmt: skip
    with pytest.raises(SweepError, match="not a variable"):
        fill("{nope}", variables)
    with pytest.raises(SweepError, match="nested"):
        fill("{a}", {"a": "{a}"})


def test_a_bad_sweep_file_fails_early_naming_the_fix(tmp_path):
    cases = {
        "unknown key": ({"out": "x", "seeds": [0], "targets": ["minatar/breakout"], "methods": {}, "sedes": 1},
                        "unknown key"),
        "duplicate seeds": ({"out": "x", "seeds": [0, 0], "targets": ["minatar/breakout"],
                             "methods": {"m": {"configs": ["configs/minatar/efficientzero.yaml"]}}}, "distinct"),
        "unknown target": ({"out": "x", "seeds": [0], "targets": ["minatar/pacman"],
                            "methods": {"m": {"configs": ["configs/minatar/efficientzero.yaml"]}}}, "--list-tasks"),
        "missing config": ({"out": "x", "seeds": [0], "targets": ["minatar/breakout"],
                            "methods": {"m": {"configs": ["configs/minatar/nope.yaml"]}}}, "does not exist"),
    }  # fmt: skip
    for name, (raw, message) in cases.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        with pytest.raises(SweepError, match=message):
            load_sweep(path)


TINY_SWEEP = """
out: {out}
seeds: [0, 1]
targets: [minatar/breakout]
methods:
  ez:
    configs: [configs/minatar/efficientzero.yaml]
    overlay:
      trainer:
        max_steps: {steps}
        callbacks:
          - class_path: xtra.callbacks.evaluation.Evaluation
            init_args: {{every_n_steps: 4, episodes: 2, max_episode_steps: 40}}
          - class_path: lightning.pytorch.callbacks.ModelCheckpoint
            init_args: {{save_last: true, every_n_train_steps: 2}}
      model: {{init_args: {{mcts: {{num_simulations: 2}}, network_overrides: {{lstm_hidden: 16}}}}}}
      data: {{init_args: {{env_steps: 400, warmup_steps: 64, num_envs: 2, batch_size: 8}}}}
  ez-small-batch:
    configs: [configs/minatar/efficientzero.yaml]
    overlay:
      trainer:
        max_steps: {steps}
        callbacks:
          - class_path: xtra.callbacks.evaluation.Evaluation
            init_args: {{every_n_steps: 4, episodes: 2, max_episode_steps: 40}}
      model: {{init_args: {{mcts: {{num_simulations: 2}}, network_overrides: {{lstm_hidden: 16}}}}}}
      data: {{init_args: {{env_steps: 400, warmup_steps: 64, num_envs: 2, batch_size: 4}}}}
executor: {{cluster: local, max_parallel: 2}}
"""


def sweep_cmd(path: Path) -> list[str]:
    return [sys.executable, "-m", "xtra.sweep", str(path)]


@pytest.mark.slow
def test_a_sweep_runs_through_submitit_skips_finished_runs_and_resumes_a_killed_one(tmp_path):
    """2 methods × 2 seeds through the local executor: each run writes results.json with its seed; a second
    invocation runs nothing; a run killed after a checkpoint resumes from it and its record keeps the evaluation
    made before the kill."""
    out = tmp_path / "out"
    path = tmp_path / "sweep.yaml"
    path.write_text(TINY_SWEEP.format(out=out, steps=8))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(sweep_cmd(path), capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    records = {
        str(Path(r["run_dir"]).relative_to(out)): r
        for r in map(json.loads, map(Path.read_text, out.rglob("results.json")))
    }
    assert sorted(records) == ["breakout/ez-small-batch/seed0", "breakout/ez-small-batch/seed1",
                               "breakout/ez/seed0", "breakout/ez/seed1"]  # fmt: skip
    for name, record in records.items():
        assert record["seed"] == int(name[-1]) and record["global_step"] == 8 and record["target"] == "minatar/breakout"
        assert record["complete"]
        assert [p["global_step"] for p in record["curve"]] == [4, 8]
        assert record["final"]["games"]["minatar/breakout"]["returns"] and record["config_sha256"]
    assert records["breakout/ez/seed0"]["config_sha256"] != records["breakout/ez/seed1"]["config_sha256"]
    again = subprocess.run(sweep_cmd(path), capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert again.returncode == 0 and "4 finished (skipped), 0 to run" in again.stdout, again.stdout

    # a longer sweep, killed once a run has checkpointed past its first evaluation, then invoked again
    out2 = tmp_path / "out2"
    path.write_text(
        TINY_SWEEP.format(out=out2, steps=40).replace("ez-small-batch", "other").replace("seeds: [0, 1]", "seeds: [0]")
    )
    proc = subprocess.Popen(sweep_cmd(path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env,
                            start_new_session=True)  # fmt: skip
    run_dir = out2 / "breakout" / "ez" / "seed0"
    deadline = time.time() + 300
    while time.time() < deadline:
        steps = [int(p.stem.split("=")[-1]) for p in run_dir.glob("lightning_logs/version_0/checkpoints/*step=*.ckpt")]
        if steps and max(steps) >= 6:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not list(run_dir.rglob("results.json")), "the run finished before it could be killed"
    resumed = subprocess.run(sweep_cmd(path), capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "0 finished (skipped), 2 to run (" in resumed.stdout, resumed.stdout
    commands = [ln for ln in (run_dir / "sweep.log").read_text().splitlines() if ln.startswith("$ ")]
    assert len(commands) == 2 and "--ckpt_path last" not in commands[0] and commands[1].endswith("--ckpt_path last")
    (path,) = run_dir.rglob("results.json")
    assert path.parent.name == "version_0"  # the resumed fit's record sits in the version it continued
    record = json.loads(path.read_text())
    assert record["global_step"] == 40
    assert [p["global_step"] for p in record["curve"]][0] == 4  # the evaluation made before the kill is kept
    assert not list(run_dir.glob("lightning_logs/version_1")), "the resumed run logged into a new version"
