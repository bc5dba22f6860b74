"""Stage 1: offline teachers, the distilled student and the behaviour-cloning baseline, on real MinAtar data."""

import json

import numpy as np
import pytest
import torch
from tiny import GAMES, SMALL, TINY_NET, trainer

from xtra.callbacks.evaluation import Evaluation
from xtra.callbacks.export import ExportCheckpoint
from xtra.checkpoints import CheckpointError, load_network
from xtra.datamodules.offline import OfflineReplayDataModule
from xtra.modules.bc import BehaviourCloningModule
from xtra.modules.student import DistillationModule
from xtra.modules.teacher import TeacherModule
from xtra.targets import plan_values, value_targets


def test_offline_batches_map_every_game_into_the_shared_action_space(datasets):
    dm = OfflineReplayDataModule(datasets, batch_size=16, seed=0)
    dm.setup("fit")
    assert dm.num_actions == 6 and dm.obs_shape == (10, 10, 10) and dm.task_ids == list(GAMES)
    batch = dm.sample(3, 3)
    for task, raw in batch.items():
        legal = list(dm.game_action_ids(task))
        assert set(raw["actions"].unique().tolist()) <= set(legal)
        illegal = [a for a in range(6) if a not in legal]
        assert raw["policies"][..., illegal].abs().sum() == 0
        assert raw["frames"].shape == (16, 1 + 3 + 3, 10, 10, 10)
        assert (raw["age"] == 0).all()


def test_teacher_fits_offline_and_its_evaluation_runs(teachers):
    loaded = load_network(teachers[0])
    assert loaded.task_ids == [GAMES[0]] and loaded.net.num_actions == 6
    log = next(iter(sorted((load_network(teachers[0]).path.parent / "breakout").rglob("eval/step6.json"))))
    returns = json.loads(log.read_text())["returns"][GAMES[0]]
    assert len(returns) == 2 and all(np.isfinite(returns))


def test_export_writes_the_whole_state_and_says_nothing_about_it(datasets, tmp_path, caplog):
    dm = OfflineReplayDataModule([datasets[0]], batch_size=8, seed=2)
    module = TeacherModule(obs_shape=dm.obs_shape, num_actions=dm.num_actions, **SMALL)
    path = tmp_path / "hand-off" / "teacher.ckpt"
    with caplog.at_level("INFO"):
        trainer(tmp_path, 2, callbacks=[ExportCheckpoint(str(path))]).fit(module, dm)
    saved = torch.load(path, weights_only=True)
    assert saved["global_step"] == 2 and saved["optimizer_states"]  # the whole state, not the weights alone
    assert load_network(str(path)).task_ids == [GAMES[0]]
    assert "weights_only" not in caplog.text


def test_teacher_refuses_more_than_one_game(datasets, tmp_path):
    dm = OfflineReplayDataModule(datasets, batch_size=4)
    module = TeacherModule(obs_shape=dm.obs_shape, num_actions=dm.num_actions, **SMALL)
    with pytest.raises(ValueError, match="a teacher learns one game"):
        trainer(tmp_path, 1).fit(module, dm)


def test_student_targets_are_each_games_teacher_and_losses_are_logged_per_game(datasets, teachers, tmp_path):
    dm = OfflineReplayDataModule(datasets, batch_size=8, seed=4)
    student = DistillationModule(teachers=teachers, obs_shape=dm.obs_shape, num_actions=dm.num_actions,
                                 **{**SMALL, "network": "minatar"})  # fmt: skip
    dm.setup("fit")
    student.frame_stack = dm.frame_stack
    raw = dm.sample(3, 3)
    for (task, batch), path in zip(raw.items(), teachers, strict=True):
        teacher = load_network(path).net
        prepared = student.task_targets(task, batch)
        # value targets: n-step returns bootstrapped from *this game's teacher*, computed independently here
        n = torch.full_like(batch["age"], 3)
        plan = plan_values(batch["rewards"], batch["steps_left"], batch["terminal"], n, 3, student.hparams.discount)
        from xtra.targets import stack_frames

        boot_obs = stack_frames(batch["frames"], plan.bootstrap_positions, dm.frame_stack).flatten(0, 1)
        with torch.no_grad():
            boot = teacher.scalar(teacher.initial_inference(boot_obs).value_logits).view(8, 4)
        torch.testing.assert_close(prepared["targets"].values, value_targets(plan, boot), atol=1e-4, rtol=1e-4)
        # policy targets: the teacher's 4-simulation visit distributions over this game's actions only
        legal = list(dm.game_action_ids(task))
        policies = prepared["targets"].policies
        illegal = [a for a in range(6) if a not in legal]
        assert policies[..., illegal].abs().sum() == 0
        visits = policies * 4
        torch.testing.assert_close(visits, visits.round())
        # and they differ from what the other game's teacher would give
        other = load_network(teachers[1 - GAMES.index(task)]).net
        other_prepared = student.prepare_batch(batch, other, student.action_ids_for(task))
        assert not torch.allclose(other_prepared["targets"].values, prepared["targets"].values)

    trainer(tmp_path, 4).fit(student, dm)
    header = (tmp_path / "log" / "version_0" / "metrics.csv").read_text().splitlines()[0].split(",")
    for game in ("breakout", "space_invaders"):
        for name in (f"loss/policy/{game}", f"loss/value/{game}", f"distill/policy_kl/{game}",
                     f"distill/value_error/{game}", f"train/task_weight/{game}"):  # fmt: skip
            assert name in header, name


def test_completed_q_policy_targets_come_from_the_teachers_search(datasets, teachers):
    """``reanalyse_policy: completed_q``: each row's policy target is the improved policy of the very search the
    teacher ran (same root noise), on the game's legal actions only; an unknown choice fails at construction."""
    from xtra.mcts import completed_q_policy, run_mcts
    from xtra.targets import stack_frames

    dm = OfflineReplayDataModule(datasets, batch_size=8, seed=4)
    student = DistillationModule(teachers=teachers, obs_shape=dm.obs_shape, num_actions=dm.num_actions,
                                 reanalyse_policy="completed_q", **{**SMALL, "network": "minatar"})  # fmt: skip
    dm.setup("fit")
    student.frame_stack = dm.frame_stack
    task, batch = next(iter(dm.sample(3, 3).items()))
    state = student.rng.bit_generator.state
    policies = student.task_targets(task, batch)["targets"].policies  # [8, 4, 6]
    student.rng.bit_generator.state = state
    ids = student.action_ids_for(task)
    obs = stack_frames(batch["frames"], torch.arange(4).expand(8, -1), dm.frame_stack).flatten(0, 1)
    result, values = run_mcts(load_network(teachers[0]).net, obs, student.search, student.rng, ids)
    expected = completed_q_policy(result.root_logits, result.visit_counts, result.child_q, values)
    mask = policies.sum(-1) > 0  # positions past a segment's end carry no target
    torch.testing.assert_close(policies[..., ids][mask], torch.from_numpy(expected).view(8, 4, -1)[mask])
    assert policies[..., [a for a in range(6) if a not in ids.tolist()]].abs().sum() == 0
    assert not torch.allclose(policies[mask] * 4, (policies[mask] * 4).round())  # not visit counts of 4 sims
    with pytest.raises(ValueError, match="choose one of visits, completed_q"):
        DistillationModule(teachers=teachers, obs_shape=dm.obs_shape, num_actions=dm.num_actions,
                           reanalyse_policy="gumbel", **{**SMALL, "network": "minatar"})  # fmt: skip


def test_cached_teacher_policies_are_the_teachers_search_paid_once_per_state(datasets, teachers, tmp_path):
    """``cache_teacher_policies``: without root noise a cached target is what a fresh search of the same state
    gives; a state sampled again is read, not searched; a checkpoint carries the cache to the resumed student."""
    from xtra.mcts import SearchOptions

    dm = OfflineReplayDataModule(datasets, batch_size=8, seed=4)
    quiet = {**SMALL, "network": "minatar", "mcts": SearchOptions(num_simulations=4, exploration_fraction=0.0)}
    fresh = DistillationModule(teachers=teachers, obs_shape=dm.obs_shape, num_actions=dm.num_actions, **quiet)
    cached = DistillationModule(teachers=teachers, obs_shape=dm.obs_shape, num_actions=dm.num_actions,
                                cache_teacher_policies=True, **quiet)  # fmt: skip
    dm.setup("fit")
    fresh.frame_stack = cached.frame_stack = dm.frame_stack
    for task, batch in dm.sample(3, 3).items():
        expected, first = fresh.task_targets(task, batch)["targets"], cached.task_targets(task, batch)
        torch.testing.assert_close(first["targets"].policies, expected.policies)
        torch.testing.assert_close(first["targets"].values, expected.values)
        valid = expected.policy_mask > 0
        states = (batch["rows"][:, None] + torch.arange(4))[valid]
        _, known = cached.policy_cache[task]
        assert int(known.sum()) == len(states.unique()) and known[states].all()  # each distinct state searched once
        assert first["stats"]["distill/cached_share"] == 1 - len(states.unique()) / len(states)
        assert np.isfinite(first["stats"]["mcts/reanalyse_root_value"])  # logged with the cache on as without it
        again = cached.task_targets(task, batch)
        assert again["stats"]["distill/cached_share"] == 1.0  # nothing searched the second time
        assert "mcts/reanalyse_root_value" not in again["stats"]  # no search, no root value
        torch.testing.assert_close(again["targets"].policies, expected.policies)

    path = tmp_path / "student.ckpt"
    t = trainer(tmp_path, 2)
    t.fit(cached, dm)
    t.save_checkpoint(path)
    resumed = DistillationModule(teachers=teachers, obs_shape=dm.obs_shape, num_actions=dm.num_actions,
                                 cache_teacher_policies=True, **quiet)  # fmt: skip
    trainer(tmp_path / "resumed", 2).fit(resumed, dm, ckpt_path=path)  # restores at the last step, runs none
    assert resumed.policy_cache.keys() == cached.policy_cache.keys()
    for task, (policies, known) in cached.policy_cache.items():
        assert torch.equal(resumed.policy_cache[task][1], known)
        torch.testing.assert_close(resumed.policy_cache[task][0], policies)


def test_student_refuses_wrong_teachers(datasets, teachers, tmp_path):
    dm = OfflineReplayDataModule(datasets, batch_size=4)
    kwargs = dict(obs_shape=dm.obs_shape, num_actions=dm.num_actions, **SMALL)
    with pytest.raises(CheckpointError, match="no teacher for"):
        trainer(tmp_path, 1).fit(DistillationModule(teachers=teachers[:1], **kwargs), dm)
    with pytest.raises(CheckpointError, match="two teachers"):
        DistillationModule(teachers=[teachers[0], teachers[0]], **kwargs)
    with pytest.raises(CheckpointError, match="sees observations"):
        DistillationModule(teachers=teachers, **{**kwargs, "num_actions": 3})
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(open(teachers[0], "rb").read()[:5000])
    with pytest.raises(CheckpointError, match="truncated, corrupt"):
        DistillationModule(teachers=[str(truncated)], **kwargs)


def test_behaviour_cloning_learns_the_recorded_actions_and_plays_from_its_policy(datasets, tmp_path):
    dm = OfflineReplayDataModule(datasets, batch_size=16, seed=0)
    module = BehaviourCloningModule(obs_shape=dm.obs_shape, num_actions=dm.num_actions, network="minatar",
                                    network_overrides=TINY_NET, optimizer="adam", lr=3e-3,
                                    lr_warmup_steps=1)  # fmt: skip
    evaluation = Evaluation(every_n_steps=0, episodes=2, task_ids=["minatar/asterix"])
    trainer(tmp_path, 30, callbacks=[evaluation]).fit(module, dm)
    header = (tmp_path / "log" / "version_0" / "metrics.csv").read_text()
    assert "bc/accuracy/breakout" in header and "eval/return/asterix" in header
    ckpt = tmp_path / "bc.ckpt"
    module.trainer.save_checkpoint(ckpt)
    assert load_network(ckpt).acting == "policy"


def test_zero_shot_evaluation_of_a_checkpoint_on_an_unseen_game(teachers, tmp_path, capsys):
    from xtra.evaluate_cli import main

    out = tmp_path / "zero_shot.json"
    args = [teachers[0], "--tasks", "minatar/asterix", "--episodes", "2", "--max-steps", "40", "--simulations", "2"]
    assert main([*args, "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    game = result["games"]["minatar/asterix"]
    assert result["trained_on"] == ["minatar/breakout"] and game["seen_in_training"] is False
    assert len(game["returns"]) == 2 and np.isfinite(game["mean"])
    assert result["network"]["action_encoding"] == "one_hot"  # the checkpoint says which encoding it holds
    assert sum(game["action_counts"]) > 0 and game["collapsed"] == (game["top_action_share"] >= 0.95)
    assert main([str(tmp_path / "missing.ckpt"), "--tasks", "minatar/asterix"]) == 1
    assert "no checkpoint" in capsys.readouterr().err
    # bad requests are refused before any episode: no NaN mean from 0 episodes, no convolution shape error
    assert main([teachers[0], "--tasks", "minatar/asterix", "--episodes", "0"]) == 1
    assert "--episodes must be at least 1" in capsys.readouterr().err
    assert main([teachers[0], "--tasks", "atari/Pong", "--episodes", "1"]) == 1
    assert "same family" in capsys.readouterr().err


def test_evaluation_searches_with_its_own_budget_and_training_keeps_the_modules():
    """A producer (16 simulations) and its teacher (8) compare as networks only at one search budget: the
    evaluation actor takes the budget it is given, the module's own search is left as it was."""
    from xtra.envs import env_spec

    spec = env_spec("minatar/asterix")
    module = TeacherModule(obs_shape=spec.obs_shape, num_actions=6, **SMALL)  # 4 simulations
    module.net.eval()
    obs = np.random.default_rng(0).random((3, *spec.obs_shape), dtype=np.float32)
    for simulations, budget in ((None, 4), (7, 7), (4, 4)):
        _, _, policy = module.evaluation_actor("minatar/asterix", simulations)(obs, None, 0.0)
        visits = policy * budget  # the root's visit counts: one per simulation
        np.testing.assert_allclose(visits, np.round(visits), atol=1e-5)
        np.testing.assert_allclose(visits.sum(1), budget, atol=1e-4)
    assert module.search.config.num_simulations == 4
    with pytest.raises(ValueError, match="simulations must be at least 1"):
        Evaluation(simulations=0)


@pytest.mark.slow
def test_ddp_student_resumes_each_ranks_own_policy_cache(datasets, teachers, tmp_path):
    """Each DDP rank samples its own rows and caches other states; Lightning writes rank 0's checkpoint dict only,
    so the caches of every rank are gathered into it and each rank takes its own back on resume."""
    import subprocess
    import sys
    from pathlib import Path

    config = Path(__file__).parents[2] / "configs/minatar/distill.yaml"
    command = [sys.executable, "-m", "xtra.cli", "fit", "-c", str(config), "--trainer.enable_progress_bar=false",
               "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
               f"--trainer.default_root_dir={tmp_path}", f"--model.init_args.teachers={json.dumps(teachers)}",
               f"--data.init_args.datasets={json.dumps(datasets)}", "--data.init_args.batch_size=8",
               "--model.init_args.cache_teacher_policies=true", "--model.init_args.network=minatar",
               f"--model.init_args.network_overrides={json.dumps(TINY_NET)}",
               "--model.init_args.mcts.num_simulations=2",
               '--trainer.callbacks=[{"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", '
               '"init_args": {"save_last": true, "every_n_train_steps": 2}}]']  # fmt: skip

    def caches(steps: int, *resume: str) -> list[dict]:
        run = subprocess.run([*command, f"--trainer.max_steps={steps}", *resume], cwd=tmp_path, capture_output=True,
                             text=True, timeout=600)  # fmt: skip
        assert run.returncode == 0, run.stderr[-3000:]
        (last,) = tmp_path.rglob("last.ckpt")
        return torch.load(last, weights_only=True)["xtra"]["rank_policy_caches"]

    before = caches(2)
    after = caches(4, "--ckpt_path=last")
    assert len(before) == len(after) == 2
    for task in before[0]:
        known = [b[task]["known"] for b in before]
        assert not torch.equal(known[0], known[1])  # the ranks searched different states
        for rank in (0, 1):  # each rank went on from its own cache: everything it knew, it still knows, unchanged
            old, new = before[rank][task], after[rank][task]
            n = len(old["known"])
            assert new["known"][:n][old["known"]].all()
            torch.testing.assert_close(new["policies"][:n][old["known"]], old["policies"][old["known"]])


def test_a_zero_shot_evaluation_written_as_a_run_is_a_row_of_the_reports(teachers, tmp_path):
    """``xtra-eval --run-dir``: the zero-shot score of a checkpoint as a run of its own, read by xtra-report (a
    ``zero-shot`` method named by its folder) and by the pipeline's table like a finetune's last evaluation."""
    from xtra.evaluate_cli import main
    from xtra.pipeline import final_evaluation
    from xtra.report import load_runs

    run = tmp_path / "runs" / "zero-shot"
    args = [teachers[0], "--tasks", "minatar/asterix", "--episodes", "2", "--max-steps", "40", "--simulations", "2"]
    assert main([*args, "--run-dir", str(run)]) == 0
    (loaded,) = load_runs([tmp_path / "runs"], zero_shot_of="zero-shot")  # its own step-0 point is no second row
    assert loaded.method == "zero-shot" and loaded.target == "minatar/asterix" and loaded.env_steps == 0
    assert loaded.seed == 1  # the teacher's own seed (tiny.SMALL), as its finetunes would be reported under
    final = final_evaluation(run, "minatar/asterix")
    assert len(final["returns"]) == 2 and loaded.score == pytest.approx(final["returns"].mean())
    with pytest.raises(SystemExit):  # a run has one target
        main([*args[:2], "minatar/asterix", "minatar/breakout", "--run-dir", str(tmp_path / "two")])
    with pytest.raises(SystemExit):  # nothing is replaced without --overwrite
        main([*args, "--run-dir", str(run)])
    assert main([*args, "--run-dir", str(run), "--overwrite"]) == 0
