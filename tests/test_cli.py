import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ALL_YAML = sorted(str(p) for p in (Path(__file__).parents[1] / "configs").rglob("*.yaml"))
CONFIGS = [c for c in ALL_YAML if "sweeps" not in Path(c).parts]  # stage configs (sweep files: test_sweep.py)
CONFIGS_RESOLVED = sorted(Path(c).resolve() for c in ALL_YAML)  # configs/ links to xtra/configs


def xtra(*args):
    return subprocess.run([sys.executable, "-m", "xtra.cli", *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda p: "/".join(Path(p).parts[-2:]))
def test_every_config_prints_a_complete_config(config, capsys):
    from xtra.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--print_config", "-c", config])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("xtra.")
    if not printed["model"]["class_path"].endswith("BehaviourCloningModule"):  # BC has no search
        assert "mcts" in printed["model"]["init_args"]
    data = printed["data"]["init_args"]
    assert data.get("task_id") or data.get("datasets") or data["target"]["init_args"]["task_id"]


@pytest.mark.slow
def test_print_config_without_a_file_is_complete():
    run = xtra("fit", "--print_config")
    assert run.returncode == 0, run.stderr[-2000:]
    printed = yaml.safe_load(run.stdout)
    assert printed["model"]["class_path"] == "xtra.modules.efficientzero.EfficientZeroModule"
    assert printed["data"]["init_args"]["task_id"] == "minatar/breakout"
    assert printed["model"]["init_args"]["mcts"]["num_simulations"] == 50


@pytest.mark.slow
def test_version_and_task_list():
    assert xtra("--version").stdout.startswith("xtra ")
    tasks = xtra("--list-tasks").stdout.split()
    assert "atari/MsPacman" in tasks and "minatar/breakout" in tasks


@pytest.mark.slow
def test_unknown_task_fails_early_with_the_valid_ids():
    config = [c for c in CONFIGS if c.endswith("minatar/efficientzero.yaml")][0]
    run = xtra("fit", "-c", config, "--data.init_args.task_id=minatar/pacman", "--trainer.max_steps=1")
    assert run.returncode != 0
    assert "minatar/breakout" in run.stderr and "unknown task id" in run.stderr


def instantiate(*args):
    import lightning as L

    from xtra.cli import XtraCLI
    from xtra.modules.efficientzero import EfficientZeroModule

    return XtraCLI(EfficientZeroModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                   run=False, args=list(args))  # fmt: skip


def test_seed_everything_reaches_the_model_data_and_nested_datamodules():
    """Two runs that differ in seed_everything differ in every stream: search noise, environments, sampling."""
    config = [c for c in CONFIGS if c.endswith("minatar/no-cross-task.yaml")][0]
    cli = instantiate("-c", config, "--seed_everything=5", "--model.init_args.pretrained=null")
    assert cli.model.hparams.seed == 5 and cli.datamodule.target.seed == 5
    other = instantiate("-c", config, "--seed_everything=6", "--model.init_args.pretrained=null")
    from xtra.envs import env_seeds

    for dm in (cli.datamodule.target, other.datamodule.target):
        dm.setup("fit")
    a, b = cli.datamodule.target, other.datamodule.target
    assert a.collector.rng.random() != b.collector.rng.random() and a.rng.random() != b.rng.random()
    assert set(env_seeds(a.seed, 0, a.num_envs)).isdisjoint(env_seeds(b.seed, 0, b.num_envs))
    assert cli.model.rng.random() != other.model.rng.random()


def test_a_seed_set_apart_from_seed_everything_is_refused():
    config = [c for c in CONFIGS if c.endswith("minatar/efficientzero.yaml")][0]
    with pytest.raises(ValueError, match="seed_everything sets every seed"):
        instantiate("-c", config, "--seed_everything=5", "--model.init_args.seed=3")


def test_a_fit_prints_no_tips_and_none_of_the_known_harmless_warnings(tmp_path, capfd):
    import warnings

    from xtra.cli import run

    config = [c for c in CONFIGS if c.endswith("minatar/efficientzero.yaml")][0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        run(["fit", "-c", config, "--trainer.max_steps=2", "--data.init_args.env_steps=300",
             "--data.init_args.warmup_steps=64", "--data.init_args.num_envs=2", "--data.init_args.batch_size=8",
             "--model.init_args.mcts.num_simulations=2", CHECKPOINT_EVERY_STEP,
             "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])  # fmt: skip
    printed = capfd.readouterr()
    assert "Tip" not in printed.out + printed.err
    messages = [str(w.message) for w in caught]
    known = ("LightningCLI's args", "on_after_batch_transfer", "ModelCheckpoint with manual optimization")
    assert not [m for m in messages if any(k in m for k in known)], messages


CHECKPOINT_EVERY_STEP = (
    '--trainer.callbacks=[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", '
    '"init_args": {"save_last": true, "every_n_train_steps": 1}}]'
)


def test_an_overlay_reads_its_base_first_once_and_keeps_what_came_between(tmp_path, capsys):
    """`# extends:` puts the base before the overlay; a base given earlier is not read again (so a file between
    them keeps its changes); chains resolve outermost first; a cycle is refused; the composed config is the
    base with the overlay's changes (an ablation overlay on another game set included)."""
    from xtra.cli import main
    from xtra.shipped import composed_yaml, config_chain, with_shipped_configs

    (tmp_path / "base.yaml").write_text("seed_everything: 1\ntrainer:\n  max_steps: 10\n  log_every_n_steps: 2\n")
    (tmp_path / "mid.yaml").write_text("# a comment\n# extends: base.yaml\ntrainer:\n  max_steps: 20\n")
    (tmp_path / "top.yaml").write_text("# extends: mid.yaml\nseed_everything: 3\n")
    (tmp_path / "mine.yaml").write_text("trainer:\n  log_every_n_steps: 7\n")
    b, m, t, mine = (str(tmp_path / f"{n}.yaml") for n in ("base", "mid", "top", "mine"))
    assert config_chain(t) == [b, m, t]
    assert composed_yaml(t) == {"seed_everything": 3, "trainer": {"max_steps": 20, "log_every_n_steps": 2}}
    assert with_shipped_configs(["fit", "-c", t, "--x=1"]) == ["fit", "-c", b, "-c", m, "-c", t, "--x=1"]
    assert with_shipped_configs(["-c", b, "-c", mine, "-c", m]) == ["-c", b, "-c", mine, "-c", m]
    (tmp_path / "a.yaml").write_text("# extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("# extends: a.yaml\n")
    with pytest.raises(ValueError, match="cycle"):
        config_chain(str(tmp_path / "a.yaml"))
    (tmp_path / "lost.yaml").write_text("# extends: nowhere.yaml\n")
    with pytest.raises(ValueError, match="lost.yaml extends .*nowhere.yaml, which does not exist"):
        config_chain(str(tmp_path / "lost.yaml"))
    with pytest.raises(SystemExit):
        main(["fit", "--print_config", "-c", str(tmp_path / "lost.yaml")])
    assert "which does not exist" in capsys.readouterr().err

    def printed(*configs):
        with pytest.raises(SystemExit):
            main(["fit", "--print_config", *[a for c in configs for a in ("-c", c)]])
        return yaml.safe_load(capsys.readouterr().out)

    alone, composed = printed("configs/minatar/xtra.yaml"), printed("configs/minatar/no-task-weights.yaml")
    assert [c["class_path"].rsplit(".", 1)[1] for c in composed["trainer"]["callbacks"]] == [
        "Evaluation", "ModelCheckpoint"]  # fmt: skip
    assert composed["trainer"]["default_root_dir"] == "runs/minatar/no-task-weights"
    for section in ("model", "data"):
        assert composed[section] == alone[section]
    diverse = printed("configs/atari100k/diverse/xtra.yaml", "configs/atari100k/ablations/no-cross-task.yaml")
    assert diverse["data"]["init_args"]["target"]["init_args"]["task_id"] == "atari/Assault"
    assert diverse["data"]["init_args"]["offline"] is None
    assert diverse["model"]["init_args"]["pretrained"] == "runs/atari100k/students/diverse-Assault.ckpt"


def test_shipped_configs_are_found_outside_the_repository(tmp_path, monkeypatch, capsys):
    """A plain install has no repository around it: `-c configs/...` falls back to the package's own copy."""
    from xtra.cli import run
    from xtra.shipped import SHIPPED_CONFIGS, with_shipped_configs

    monkeypatch.chdir(tmp_path)
    shipped = str(SHIPPED_CONFIGS / "minatar" / "efficientzero.yaml")
    assert with_shipped_configs(["fit", "-c", "configs/minatar/efficientzero.yaml"]) == ["fit", "-c", shipped]
    assert with_shipped_configs(["--config=configs/minatar/efficientzero.yaml"]) == [f"--config={shipped}"]
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("seed_everything: 3\n")
    untouched = ["-c", "configs/mine.yaml", "-c", "configs/nowhere.yaml", "-c", "other.yaml"]
    assert with_shipped_configs(untouched) == untouched  # a local file wins; unknown paths reach the parser
    with pytest.raises(SystemExit) as done:
        run(["fit", "-c", "configs/minatar/efficientzero.yaml", "--print_config"])
    assert done.value.code in (0, None)
    assert "xtra.modules.efficientzero.EfficientZeroModule" in capsys.readouterr().out
    from xtra.pipeline import main as pipeline

    assert pipeline(["--out", str(tmp_path / "out"), "--teacher-updates", "0"]) == 2  # got past finding its configs
    assert "--teacher-updates" in capsys.readouterr().err


@pytest.mark.slow
def test_the_wheel_ships_every_config_under_a_free_distribution_name(tmp_path):
    """`xtra` on PyPI is another project; the wheel is `xtra-rl` and carries every stage config."""
    import shutil
    import zipfile

    root = Path(__file__).parents[1]
    # built from a copy without build outputs: setuptools reuses a checkout's build/, whose stale files would ship
    source = tmp_path / "source"
    shutil.copytree(root, source, symlinks=True, ignore=shutil.ignore_patterns(
        "build", "dist", "*.egg-info", ".venv", ".git", "runs", "results", "__pycache__"))  # fmt: skip
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(source)],
                           capture_output=True, text=True, timeout=600)  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = tmp_path.glob("xtra_rl-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    shipped = sorted(n.removeprefix("xtra/") for n in names if n.startswith("xtra/configs/") and n.endswith(".yaml"))
    assert shipped == sorted(str(Path(c).relative_to(root / "xtra")) for c in CONFIGS_RESOLVED)
