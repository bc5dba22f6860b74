import subprocess
import sys
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from tiny import TINY_NET

from xtra.datamodules.online import OnlineReplayDataModule
from xtra.mcts import SearchOptions
from xtra.modules.efficientzero import EfficientZeroModule
from xtra.replay import Replay


def tiny(task="minatar/breakout", **data_kw):
    dm = OnlineReplayDataModule(
        task, num_envs=4, env_steps=data_kw.pop("env_steps", 400), warmup_steps=data_kw.pop("warmup_steps", 64),
        update_to_data=1.0, batch_size=8, segment_length=20, seed=3, **data_kw,
    )  # fmt: skip
    network = "minatar" if task.startswith("minatar") else "efficientzero"
    module = EfficientZeroModule(
        dm.obs_shape, dm.num_actions, network=network, network_overrides=TINY_NET,
        mcts=SearchOptions(num_simulations=4), unroll_steps=3, td_steps=3, reanalyse_fraction=0.5,
        optimizer="adam", lr=1e-3, lr_warmup_steps=5, target_update_interval=5, actor_update_interval=5,
        augmentation=not task.startswith("minatar"), seed=3,
    )  # fmt: skip
    return module, dm


def trainer(tmp_path, max_steps, **kw):
    return L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=CSVLogger(tmp_path, name="log"),
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, default_root_dir=tmp_path, **kw,
    )  # fmt: skip


def test_short_fit_logs_every_loss_term(tmp_path):
    module, dm = tiny()
    trainer(tmp_path, 12, enable_checkpointing=False).fit(module, dm)
    metrics = (tmp_path / "log" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for term in ("loss/value", "loss/policy", "loss/value_prefix", "loss/consistency", "loss/total",
                 "train/lr", "train/priority_mean/breakout", "targets/value_mean/breakout",
                 "mcts/reanalyse_root_value/breakout", "data/env_steps"):  # fmt: skip
        assert term in metrics, term
    assert dm.collector.env_steps >= 64 + 12
    assert module.global_step == 12


def test_atari_smoke_fit_through_the_ale(tmp_path):
    module, dm = tiny("atari/Pong", env_steps=120, warmup_steps=40)
    trainer(tmp_path, 4, enable_checkpointing=False).fit(module, dm)
    assert module.global_step == 4 and dm.collector.env_steps >= 44
    assert dm.replay.frames.shape[1:] == (3, 96, 96)


def test_checkpoint_resume_restores_replay_step_and_optimiser(tmp_path):
    module, dm = tiny()
    t = trainer(tmp_path, 10, enable_checkpointing=False)
    t.fit(module, dm)
    ckpt = tmp_path / "step10.ckpt"
    t.save_checkpoint(ckpt)
    assert (tmp_path / "replay").is_dir()

    module2, dm2 = tiny()
    t2 = trainer(tmp_path / "resumed", 10, enable_checkpointing=False)
    t2.fit(module2, dm2, ckpt_path=ckpt)
    assert t2.global_step == 10
    for name in ("frames", "actions", "rewards", "policies", "priorities", "segment_start", "terminal"):
        np.testing.assert_array_equal(
            getattr(dm2.replay, name)[: dm.replay.head], getattr(dm.replay, name)[: dm.replay.head]
        )
    assert dm2.replay.head == dm.replay.head and dm2.collector.env_steps == dm.collector.env_steps
    s1, s2 = module.optimizers().optimizer.state_dict(), module2.optimizers().optimizer.state_dict()
    for k in s1["state"]:
        for name in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(s1["state"][k][name], s2["state"][k][name])
    for p1, p2 in zip(module.parameters(), module2.parameters(), strict=True):
        torch.testing.assert_close(p1, p2)
    # and training continues from there
    t3 = trainer(tmp_path / "continued", 14, enable_checkpointing=False)
    module3, dm3 = tiny()
    t3.fit(module3, dm3, ckpt_path=ckpt)
    assert t3.global_step == 14


def test_a_moved_run_resumes_and_each_checkpoint_writes_its_replay_once(tmp_path):
    import shutil

    module, dm = tiny()
    t = trainer(tmp_path / "a", 6, enable_checkpointing=False)
    t.fit(module, dm)
    t.save_checkpoint(tmp_path / "a" / "step6.ckpt")
    sampler, collector = dm.rng.bit_generator.state, dm.collector.rng.bit_generator.state
    (snapshot,) = (tmp_path / "a" / "replay").iterdir()
    saved = Replay.load(snapshot)[1]["source"]  # this rank's counters and RNG states travel with its replay
    play = torch.load(snapshot / "collector.pt", weights_only=True)  # and its play in progress
    assert saved["sampler_rng"] == sampler and play["rng"] == collector and play["env_steps"] == saved["env_steps"]
    written = (snapshot / "manifest.json").stat().st_mtime_ns
    t.save_checkpoint(tmp_path / "a" / "last.ckpt")  # the same step again: no second replay write
    assert [p.name for p in (tmp_path / "a" / "replay").iterdir()] == [snapshot.name]
    assert (snapshot / "manifest.json").stat().st_mtime_ns == written
    shutil.move(tmp_path / "a", tmp_path / "b")  # the checkpoint records its replay relative to itself
    module2, dm2 = tiny()
    trainer(tmp_path / "b", 6, enable_checkpointing=False).fit(module2, dm2, ckpt_path=tmp_path / "b" / "step6.ckpt")
    assert dm2.replay.head == dm.replay.head and dm2.collector.env_steps == dm.collector.env_steps
    np.testing.assert_array_equal(dm2.replay.frames[: dm.replay.head], dm.replay.frames[: dm.replay.head])


def test_snapshot_pruning_keeps_other_runs_replays(tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint

    def run(steps):
        module, dm = tiny()
        every_step = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=1)
        trainer(tmp_path, steps, callbacks=[every_step]).fit(module, dm)
        return dm.run_id

    first = run(4)
    second = run(3)  # a new run in a folder that already holds another run's higher steps
    names = sorted(p.name for p in (tmp_path / "ckpt" / "replay").iterdir())
    assert names == sorted([f"rank0-step3-{first}", f"rank0-step4-{first}", f"rank0-step2-{second}",
                            f"rank0-step3-{second}"])  # fmt: skip


def test_a_replay_snapshot_is_written_by_its_callback_not_by_state_dict(tmp_path):
    """Asking the datamodule for its state writes nothing; saving a checkpoint writes the rank's snapshot through
    the ReplaySnapshots callback every module adds (one write per step, however many checkpoints name it)."""
    from xtra.callbacks.replay_snapshots import ReplaySnapshots

    module, dm = tiny()
    assert [type(c) for c in module.configure_callbacks()] == [ReplaySnapshots]
    t = trainer(tmp_path, 3, enable_checkpointing=False)
    t.fit(module, dm)
    replay = tmp_path / "replay"
    state = dm.state_dict()
    assert state["global_step"] == 3 and not replay.exists()
    t.save_checkpoint(tmp_path / "a.ckpt")
    t.save_checkpoint(tmp_path / "b.ckpt")
    assert [p.name for p in replay.iterdir()] == [f"rank0-step3-{dm.run_id}"]
    assert Path(state["snapshot_root"]) == replay.resolve()


def test_checkpoint_of_another_network_size_is_refused(tmp_path):
    module, dm = tiny()
    t = trainer(tmp_path, 2, enable_checkpointing=False)
    t.fit(module, dm)
    t.save_checkpoint(tmp_path / "a.ckpt")
    _, dm2 = tiny()
    other = EfficientZeroModule(dm2.obs_shape, dm2.num_actions, network="minatar",
                                network_overrides={**TINY_NET, "lstm_hidden": 24})  # fmt: skip
    with pytest.raises(ValueError, match="differs from this model"):
        trainer(tmp_path / "b", 4, enable_checkpointing=False).fit(other, dm2, ckpt_path=tmp_path / "a.ckpt")


def test_save_dataset_at_the_end(tmp_path):
    module, dm = tiny(save_dataset=str(tmp_path / "dataset"))
    trainer(tmp_path, 3, enable_checkpointing=False).fit(module, dm)
    replay, manifest = Replay.load(tmp_path / "dataset")
    assert manifest["task_id"] == "minatar/breakout" and manifest["source"]["kind"] == "online"
    assert manifest["counts"]["steps"] == dm.replay.num_steps_added
    assert len(replay) == len(dm.replay)


def _cli_command(*args):
    config = Path(__file__).parents[2] / "configs/minatar/efficientzero.yaml"
    return [sys.executable, "-m", "xtra.cli", "fit", "-c", str(config), "--trainer.enable_progress_bar=false", *args]


def _cli(*args, cwd):
    return subprocess.run(_cli_command(*args), cwd=cwd, capture_output=True, text=True, timeout=600)


SMALL = ["--data.env_steps=300", "--data.warmup_steps=64", "--data.num_envs=4", "--data.batch_size=8",
         "--model.init_args.mcts.num_simulations=4", "--model.init_args.network_overrides.lstm_hidden=16",
         "--trainer.callbacks=[]", "--trainer.log_every_n_steps=1"]  # fmt: skip


# the shipped config's ModelCheckpoint (save_last, no dirpath) with a shorter interval; nothing test-only
SHIPPED_CHECKPOINT = (
    '--trainer.callbacks=[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", '
    '"init_args": {"save_last": true, "every_n_train_steps": 3}}]'
)


@pytest.mark.slow
def test_readme_resume_command_continues_the_run_in_its_own_version(tmp_path):
    """``xtra fit -c <config> --ckpt_path last`` exactly as the README writes it: Lightning alone would look in a new
    version folder, find nothing and train from step 0."""
    small = [a for a in SMALL if not a.startswith("--trainer.callbacks")]
    root = f"--trainer.default_root_dir={tmp_path / 'run'}"
    run = _cli("--trainer.max_steps=6", root, *small, SHIPPED_CHECKPOINT, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    run = _cli("--trainer.max_steps=9", root, *small, SHIPPED_CHECKPOINT, "--ckpt_path=last", cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Restored all states" in run.stderr, run.stderr[-3000:]
    versions = sorted(p.name for p in (tmp_path / "run" / "lightning_logs").iterdir())
    assert versions == ["version_0"]  # logs and checkpoints continue where the run stopped
    last = tmp_path / "run" / "lightning_logs" / "version_0" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 9
    # nothing to resume is an error naming the fix, not a warning and a fresh start
    run = _cli("--trainer.max_steps=3", f"--trainer.default_root_dir={tmp_path / 'empty'}", *small, SHIPPED_CHECKPOINT,
               "--ckpt_path=last", cwd=tmp_path)  # fmt: skip
    assert run.returncode != 0 and "no checkpoint to resume" in run.stderr, run.stderr[-2000:]


@pytest.mark.slow
def test_ddp_two_processes_each_rank_its_own_envs_and_its_own_replay_after_resume(tmp_path):
    """Lightning writes rank 0's checkpoint dict only: each rank must still resume its own replay and RNG states."""
    small = [a for a in SMALL if not a.startswith("--trainer.callbacks")]
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
           f"--trainer.default_root_dir={tmp_path}", *small, SHIPPED_CHECKPOINT]  # fmt: skip
    run = _cli("--trainer.max_steps=3", *ddp, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    snapshots = {}
    for rank in (0, 1):
        (path,) = tmp_path.rglob(f"rank{rank}-step3-*")
        snapshots[rank] = Replay.load(path)
    (r0, m0), (r1, m1) = snapshots[0], snapshots[1]
    n = min(r0.head, r1.head)
    assert not np.array_equal(r0.frames[:n], r1.frames[:n])  # each rank plays its own environments
    assert m0["source"]["sampler_rng"] != m1["source"]["sampler_rng"]
    run = _cli("--trainer.max_steps=4", *ddp, "--ckpt_path=last", f"--data.save_dataset={tmp_path / 'ds'}",
               cwd=tmp_path)  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    for rank, (before, _) in snapshots.items():
        after, _ = Replay.load(tmp_path / f"ds-rank{rank}")
        assert after.head >= before.head
        for name in ("frames", "actions", "rewards", "policies"):  # its own rows, not rank 0's
            np.testing.assert_array_equal(getattr(after, name)[: before.head], getattr(before, name)[: before.head])


def test_reanalysed_share_gets_fresh_search_policies_and_targets_use_the_target_network():
    module, dm = tiny()
    dm.setup("fit")
    dm.collector.collect(200, None)
    module.frame_stack = dm.spec.frame_stack
    windows = dm.replay.sample(8, 3, 3, np.random.default_rng(0))
    from xtra.datamodules.common import windows_to_tensors

    batch = windows_to_tensors(windows)
    out = module.prepare_batch(batch, module.target_net)
    targets = out["targets"]
    n_re = 4  # reanalyse_fraction 0.5 of 8
    stored = batch["policies"]
    # stored (uniform, random-policy) targets are kept for the rest of the batch
    torch.testing.assert_close(targets.policies[n_re:], stored[n_re:])
    # searched targets are visit distributions of 4 simulations where a policy exists, zero elsewhere
    visits = targets.policies[:n_re] * module.hparams.mcts["num_simulations"]
    torch.testing.assert_close(visits, visits.round())
    assert (targets.policies[:n_re].sum(-1) - targets.policy_mask[:n_re]).abs().max() < 1e-5
    # a fresh network predicts values of 0, so the targets are the discounted reward sums alone
    from xtra.targets import plan_values, td_steps

    n = td_steps(batch["age"], 3, module.hparams.td_decay_env_steps)
    plan = plan_values(batch["rewards"], batch["steps_left"], batch["terminal"], n, 3, module.hparams.discount)
    torch.testing.assert_close(targets.values, plan.discounted_rewards, atol=1e-4, rtol=1e-4)
    assert out["obs"].shape == (8, 4, *dm.obs_shape)


def test_search_value_bootstrap_runs(tmp_path):
    module, dm = tiny()
    module.hparams.value_bootstrap = "search"
    trainer(tmp_path, 3, enable_checkpointing=False).fit(module, dm)
    assert module.global_step == 3


def test_bf16_mixed_precision_fit_on_cpu_stays_finite(tmp_path):
    """``--trainer.precision bf16-mixed`` (autocast in the loss's forward and in every search) trains without NaN
    on the CPU; the same code path is the GPU's."""
    module, dm = tiny()
    trainer(tmp_path, 8, enable_checkpointing=False, precision="bf16-mixed").fit(module, dm)
    rows = (tmp_path / "log" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    losses = [
        float(r.split(",")[header.index("loss/total")]) for r in rows[1:] if r.split(",")[header.index("loss/total")]
    ]
    assert module.global_step == 8 and len(losses) == 8 and np.isfinite(losses).all()
    assert all(torch.isfinite(p).all() for p in module.net.parameters())


def test_bf16_mixed_runs_the_searches_under_autocast_too(tmp_path):
    """Targets (the target network's bootstrap values and reanalyse) and acting (the snapshot's searches) follow
    ``--trainer.precision`` as the loss does, as EfficientZero's reanalyse and self-play follow AMP."""
    module, dm = tiny()
    seen: dict[str, set] = {"acting": set(), "targets": set()}

    def record(kind):
        def hook(mod, inputs, out):
            if kind == "targets" or torch.is_inference_mode_enabled():  # the loss's forward is not inference
                seen[kind].add(out.dtype)

        return hook

    module.net.representation.register_forward_hook(record("acting"))  # the acting snapshot is a copy, hook included
    module.target_net.representation.register_forward_hook(record("targets"))
    trainer(tmp_path, 8, enable_checkpointing=False, precision="bf16-mixed").fit(module, dm)
    assert seen["acting"] == {torch.bfloat16} and seen["targets"] == {torch.bfloat16}


def test_half_precision_on_a_cpu_that_emulates_it_warns_with_the_fix(tmp_path):
    """bf16 autocast on an AVX2-only CPU is oneDNN's emulation, several times slower than float32: the fit says so
    and names ``--trainer.precision 32``; on a CPU with native bf16 it says nothing."""
    from xtra.modules.base import native_half_precision

    module, dm = tiny()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer(tmp_path, 1, enable_checkpointing=False, precision="bf16-mixed").fit(module, dm)
    said = [str(w.message) for w in caught if "is emulated" in str(w.message)]
    native = native_half_precision("bf16-mixed")
    assert native == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if native:
        assert said == []
    else:
        assert len(said) == 1 and "--trainer.precision 32" in said[0]
    assert native_half_precision("32-true")


def test_learning_rate_warms_up_linearly_then_decays_stepwise():
    module = EfficientZeroModule((10, 10, 10), 6, network="minatar", network_overrides=TINY_NET, optimizer="sgd",
                                 lr=0.2, lr_warmup_steps=4, lr_decay_steps=10, lr_decay_rate=0.1)  # fmt: skip
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert config["lr_scheduler"]["interval"] == "step"
    lrs = []
    for _ in range(16):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    expected = [0.05, 0.1, 0.15, 0.2] + [0.2] * 10 + [0.02] * 2  # steps 0–3 warm up, 14 on ×0.1
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_cosine_learning_rate_anneals_to_zero_at_the_trainers_last_step(tmp_path):
    """An offline stage trains a fixed number of updates: with ``lr_schedule: cosine`` it ends annealed, whatever
    ``max_steps`` the run is given; without a step budget it refuses to start."""
    from xtra.modules.base import lr_factor

    module, dm = tiny()
    module.hparams.lr_schedule = "cosine"
    trainer(tmp_path, 12, enable_checkpointing=False).fit(module, dm)
    rows = (tmp_path / "log" / "version_0" / "metrics.csv").read_text().splitlines()
    column = rows[0].split(",").index("train/lr")
    lrs = [float(r.split(",")[column]) for r in rows[1:] if r.split(",")[column]]
    expected = [1e-3 * lr_factor(s + 1, 5, "cosine", 0, 0.0, 12) for s in range(12)]  # logged after its update
    np.testing.assert_allclose(lrs, expected, rtol=1e-5, atol=1e-12)
    assert lrs[3] == pytest.approx(1e-3) and lrs[-2] < 0.1 * 1e-3 and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    module, dm = tiny()
    module.hparams.lr_schedule = "cosine"
    with pytest.raises(ValueError, match="cosine anneals to trainer.max_steps"):
        L.Trainer(max_epochs=1, logger=False, enable_progress_bar=False, enable_checkpointing=False).fit(module, dm)


def test_acting_temperature_steps_down_at_half_and_three_quarters():
    from xtra.acting import temperature_at

    schedule = (1.0, 0.5, 0.25)
    got = [temperature_at(f, schedule) for f in (0.0, 0.49, 0.5, 0.74, 0.75, 1.0)]
    assert got == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    module = EfficientZeroModule((10, 10, 10), 6, network="minatar", network_overrides=TINY_NET,
                                 temperature_schedule=(2.0, 1.0, 0.5))  # fmt: skip
    assert module.temperature() == 2.0  # no trainer yet: the start of training


def test_the_search_driver_is_chosen_from_the_config():
    """`model.init_args.mcts.host_gather` reaches the module's search (false: the torch-gather driver)."""
    module = EfficientZeroModule((10, 10, 10), 6, network="minatar", network_overrides=TINY_NET,
                                 mcts=SearchOptions(num_simulations=2, host_gather=False))  # fmt: skip
    latent = torch.zeros(1, 4)
    assert module.search.config.host_gather is False
    assert not module.search._on_host(latent, (torch.zeros(1, 1, 4),) * 2)
    assert EfficientZeroModule((10, 10, 10), 6, network="minatar", network_overrides=TINY_NET).search._on_host(
        latent, (torch.zeros(1, 1, 4),) * 2
    )


def test_the_module_owns_the_discount_and_value_prefix_horizon_its_search_runs_with():
    """One owner each: the search takes the module's discount and horizon; a full MCTSConfig that disagrees is
    refused; a checkpoint's stored search (old ones list both under ``mcts`` too) evaluates with the module's."""
    from xtra.evaluate_cli import search_config
    from xtra.mcts import MCTSConfig

    small = dict(network="minatar", network_overrides=TINY_NET)
    module = EfficientZeroModule((10, 10, 10), 6, **small, discount=0.9, value_prefix_horizon=3,
                                 mcts=SearchOptions(num_simulations=7))  # fmt: skip
    cfg = module.search.config
    assert (cfg.discount, cfg.value_prefix_horizon, cfg.num_simulations) == (0.9, 3, 7)
    assert "discount" not in module.hparams["mcts"] and "value_prefix_horizon" not in module.hparams["mcts"]
    with pytest.raises(ValueError, match="pass SearchOptions"):
        EfficientZeroModule((10, 10, 10), 6, **small, discount=0.9, mcts=MCTSConfig(discount=0.99))
    old = {"discount": 0.9, "value_prefix_horizon": 3, "mcts": {"num_simulations": 7, "discount": 0.5,
                                                                 "value_prefix_horizon": 9}}  # fmt: skip
    assert search_config(old, simulations=4) == MCTSConfig(num_simulations=4, discount=0.9, value_prefix_horizon=3)
    assert search_config(dict(module.hparams)) == cfg


@pytest.mark.slow
def test_a_run_killed_and_resumed_equals_the_uninterrupted_run(tmp_path):
    """Resume equality through the real CLI: a run killed (SIGKILL) after its step-7 checkpoint and resumed from
    it logs the same losses from step 7 on, and ends with bitwise-equal weights and optimiser state, as a run that
    was never stopped. What makes it hold: batches are made at the step (Lightning prefetches one ahead), each
    rank's snapshot keeps the environments mid-game and the unfinished trajectories, and the checkpoint keeps the
    actor's weights and the search and augmentation RNGs. One thread: float sums depend on the thread count."""
    import csv
    import os
    import signal
    import time

    every = ('--trainer.callbacks=[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", '
             '"init_args": {"save_last": true, "every_n_train_steps": 7, "save_top_k": -1}}]')  # fmt: skip
    small = [a for a in SMALL if not a.startswith("--trainer.callbacks")]
    args = [*small, every, "--trainer.max_steps=21", "--data.keep_replay_snapshots=5",
            "--model.init_args.actor_update_interval=5", "--model.init_args.target_update_interval=4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def root(name):
        log = '{"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": "%s"}}'
        return [f"--trainer.default_root_dir={tmp_path / name}", f"--trainer.logger={log % (tmp_path / name)}"]

    def checkpoints(name):
        return tmp_path / name / "lightning_logs" / "version_0" / "checkpoints"

    killed = subprocess.Popen(_cli_command(*args, *root("killed")), cwd=tmp_path, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 300
    while not (checkpoints("killed") / "epoch=0-step=7.ckpt").exists() and killed.poll() is None:
        assert time.time() < deadline
        time.sleep(0.05)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait()
    for name, extra in (("whole", []), ("resumed", [f"--ckpt_path={checkpoints('killed') / 'epoch=0-step=7.ckpt'}"])):
        run = subprocess.run(_cli_command(*args, *root(name), *extra), cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]

    def losses(name):
        with open(tmp_path / name / "lightning_logs" / "version_0" / "metrics.csv") as f:
            rows = [r for r in csv.DictReader(f) if r.get("loss/total")]
        return {int(r["step"]): {k: v for k, v in r.items() if k.startswith("loss/")} for r in rows}

    whole, resumed = losses("whole"), losses("resumed")
    assert sorted(resumed) == list(range(7, 21))
    for step, terms in resumed.items():
        assert terms == whole[step], step
    a = torch.load(checkpoints("whole") / "last.ckpt", weights_only=True)
    b = torch.load(checkpoints("resumed") / "last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 21
    for name, tensor in a["state_dict"].items():
        assert torch.equal(tensor, b["state_dict"][name]), name
    for slot, state in a["optimizer_states"][0]["state"].items():
        for key, value in state.items():
            assert torch.equal(value, b["optimizer_states"][0]["state"][slot][key]), (slot, key)


def test_channels_last_is_the_atari_default_and_changes_no_number():
    """NHWC weights compute the same loss and gradients as NCHW ones (float rounding only) on a fixed batch."""
    from xtra.datamodules.common import windows_to_tensors

    rng = np.random.default_rng(0)
    replay = Replay(400, (3, 96, 96), 18, 4)
    n = 60
    replay.add_segment(
        rng.integers(0, 256, size=(n + 1, 3, 96, 96), dtype=np.uint8), rng.integers(0, 18, n),
        rng.normal(size=n).astype(np.float32), np.zeros(n, np.float32), np.full((n, 18), 1 / 18, np.float32),
        np.arange(n), terminal=True,
    )  # fmt: skip
    batch = windows_to_tensors(replay.sample(6, 3, 3, rng))

    def grads(channels_last):
        torch.manual_seed(0)
        module = EfficientZeroModule((12, 96, 96), 18, network_overrides=TINY_NET, channels_last=channels_last,
                                     mcts=SearchOptions(num_simulations=4), unroll_steps=3, td_steps=3,
                                     reanalyse_fraction=0.0, augmentation=False)  # fmt: skip
        module.frame_stack = 4
        loss = module.compute_loss(module.prepare_batch(batch, module.target_net)).loss
        loss.backward()
        return module, loss.detach(), {k: p.grad for k, p in module.net.named_parameters() if p.grad is not None}

    nhwc, loss, grad = grads(None)  # the Atari trunk's default
    conv = nhwc.net.representation.trunk[0].weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    nchw, loss_ref, grad_ref = grads(False)
    assert nchw.net.representation.trunk[0].weight.is_contiguous()
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-5)
    assert grad.keys() == grad_ref.keys()
    for k in grad:  # rounding is relative to each tensor's scale (one thread sums in another order than two);
        # a layout error would differ by the scale itself
        scale = float(grad_ref[k].abs().max())
        torch.testing.assert_close(grad[k], grad_ref[k], rtol=1e-3, atol=max(1e-5, 1e-3 * scale), msg=k)
    minatar = EfficientZeroModule((10, 10, 10), 6, network="minatar", network_overrides=TINY_NET)
    assert minatar.net.representation.trunk[0].weight.is_contiguous()  # MinAtar keeps NCHW
