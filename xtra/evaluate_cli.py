"""``xtra-eval``: score any checkpoint on any games, including ones it never saw (zero-shot).

The network is rebuilt from the checkpoint alone (weights-only load); a model that acts by search plays greedy
MCTS, a behaviour-cloning model plays its policy head. Prints one JSON object: per game the mean, std and
human-normalised score (Atari) of ``--episodes`` raw-return episodes. ``--run-dir`` also makes the evaluation a run
of its own (``eval/step0.json`` and ``results.json``, as ``xtra fit`` writes them), so that reports read a zero-shot
score like any other row.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import torch

from xtra.acting import make_actor, make_policy_actor
from xtra.callbacks.run_record import RESULTS
from xtra.checkpoints import CheckpointError, load_network
from xtra.collector import evaluate
from xtra.envs import env_spec, network_action_ids
from xtra.mcts import BatchedMCTS, MCTSConfig, SearchOptions
from xtra.scores import human_normalized


def search_config(hp: dict, simulations: int | None = None) -> MCTSConfig:
    """The search a checkpoint's module ran: its search options, its discount and value-prefix horizon.

    Checkpoints written before the module owned the last two may also list them under ``mcts``; the module's win.
    """
    stored = dict(hp.get("mcts") or {})
    options = SearchOptions(**{f.name: stored[f.name] for f in fields(SearchOptions) if f.name in stored})
    if simulations is not None:
        options = replace(options, num_simulations=simulations)
    default = MCTSConfig()
    discount = hp.get("discount", stored.get("discount", default.discount))
    horizon = hp.get("value_prefix_horizon", stored.get("value_prefix_horizon", default.value_prefix_horizon))
    return MCTSConfig.of(options, discount, horizon)


def evaluate_checkpoint(
    path: str, task_ids: list[str], episodes: int = 32, seed: int = 0, simulations: int | None = None,
    max_steps: int | None = None, device: str = "cpu",
) -> dict:  # fmt: skip
    for name, value in (("--episodes", episodes), ("--simulations", simulations), ("--max-steps", max_steps)):
        if value is not None and value < 1:
            raise ValueError(f"{name} must be at least 1, got {value}")
    loaded = load_network(path)
    for task in task_ids:
        shape = env_spec(task).obs_shape
        if tuple(shape) != tuple(loaded.net.obs_shape):
            raise ValueError(
                f"{task} gives observations of shape {tuple(shape)}, the network in {path} takes "
                f"{tuple(loaded.net.obs_shape)} (trained on {', '.join(loaded.task_ids) or 'unknown games'}): "
                "evaluate it on games of the same family (atari/… or minatar/…)"
            )
    net = loaded.net.to(device)
    hp = loaded.hparams
    search = BatchedMCTS(search_config(hp, simulations))
    results = {}
    for task in task_ids:
        ids = network_action_ids(task, net.num_actions)
        ids_t = None if ids is None else torch.tensor(ids, device=device)
        if loaded.acting == "policy":
            actor = make_policy_actor(net, net_device(net), ids_t)
        else:
            actor = make_actor(net, search, net_device(net), ids_t)
        played = evaluate(actor, task, episodes, seed, None, max_steps)
        returns = played.returns
        mean = float(np.mean(returns))
        results[task] = {
            "mean": mean,
            "std": float(np.std(returns)),
            "action_counts": played.action_counts.tolist(),
            "top_action_share": played.top_action_share,
            "collapsed": played.collapsed,
            "hns": human_normalized(task, mean),
            "seen_in_training": task in loaded.task_ids,
            "returns": returns.tolist(),
            "visit_entropy": float(played.visit_entropy),
        }
    return {"checkpoint": str(Path(path)), "trained_on": loaded.task_ids, "trained_seed": hp.get("seed"),
            "acting": loaded.acting,
            "network": loaded.net.describe(), "games": results}  # fmt: skip


def write_run(run_dir: Path, result: dict, seed: int | None, simulations: int | None) -> Path:
    """``result`` as a run of one evaluation before any update: ``eval/step0.json`` in the Evaluation callback's
    format and ``results.json`` in RunRecord's, with the one game played as its target."""
    from xtra.callbacks.evaluation import write_evaluation
    from xtra.callbacks.run_record import run_record, write_run_record

    (target,) = result["games"]
    game = result["games"][target]
    record = {"global_step": 0, "env_steps": 0, "returns": {target: game["returns"]},
              "actions": {target: game["action_counts"]}, "visit_entropy": {target: game["visit_entropy"]},
              "simulations": simulations}  # fmt: skip
    run = run_record(run_dir, [record], config_sha256=None, seed=seed, global_step=0, complete=True, env_steps=0,
                     target=target, games=result["trained_on"], checkpoint=result["checkpoint"],
                     starts_as_pretrained=True)  # fmt: skip
    write_evaluation(run_dir, record)
    return write_run_record(run_dir, run)


def net_device(net: torch.nn.Module) -> torch.device:
    return next(net.parameters()).device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xtra-eval", description=__doc__)
    parser.add_argument("checkpoint")
    parser.add_argument("--tasks", nargs="+", required=True, help="games to play, e.g. minatar/asterix atari/Pong")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--simulations", type=int, default=None, help="MCTS simulations (default: the model's)")
    parser.add_argument("--max-steps", type=int, default=None, help="cap on steps per episode")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="also write the JSON here")
    parser.add_argument(
        "--run-dir",
        default=None,
        help="also write the evaluation as a run here (eval/step0.json, results.json; one --tasks game, the run's "
        "target), as a zero-shot row for xtra-report and xtra-pipeline",
    )
    parser.add_argument(
        "--run-seed",
        type=int,
        default=None,
        help="the seed the run is reported under (default: the checkpoint's seed_everything)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace the run in an existing --run-dir")
    args = parser.parse_args(argv)
    if args.run_dir is not None and len(args.tasks) != 1:
        parser.error("--run-dir records one game as the run's target: pass one --tasks game")
    if args.run_dir is not None and (Path(args.run_dir) / RESULTS).exists() and not args.overwrite:
        parser.error(f"{args.run_dir} holds a run already: pass --overwrite to replace it, or choose another --run-dir")
    try:
        result = evaluate_checkpoint(
            args.checkpoint, args.tasks, args.episodes, args.seed, args.simulations, args.max_steps, args.device
        )
    except (CheckpointError, ValueError) as e:
        print(f"xtra-eval: {e}", file=sys.stderr)
        return 1
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text)
    if args.run_dir:
        seed = args.run_seed if args.run_seed is not None else result["trained_seed"]
        write_run(Path(args.run_dir), result, seed, args.simulations)
    return 0


if __name__ == "__main__":
    sys.exit(main())
