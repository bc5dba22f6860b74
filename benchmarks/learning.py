"""Does EfficientZero learn? Train on a MinAtar game for a fixed env-step budget and print one JSON line.

The line holds the evaluation-return curve (``--episodes`` greedy episodes per point, env steps on the x axis)
and the return of a uniformly random policy measured by this script with the same evaluation games.

    python benchmarks/learning.py --task minatar/breakout --env-steps 50000
    python benchmarks/learning.py --config configs/minatar/efficientzero.yaml --task minatar/asterix
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from xtra.allocator import add_malloc_argument, apply_malloc_argument
from xtra.collector import evaluate, random_actor
from xtra.envs import env_spec

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs/minatar/efficientzero.yaml"))
    parser.add_argument("--task", default="minatar/breakout")
    parser.add_argument("--env-steps", type=int, default=50_000)
    parser.add_argument("--points", type=int, default=5, help="evaluation points along training")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="run directory (default: a temporary one)")
    add_malloc_argument(parser)
    args, overrides = parser.parse_known_args()
    apply_malloc_argument(args)

    from xtra.cli import XtraCLI, quiet_known_noise
    from xtra.datamodules.online import OnlineReplayDataModule
    from xtra.modules.efficientzero import EfficientZeroModule

    spec = env_spec(args.task)
    random_returns = evaluate(random_actor(spec.num_actions, args.seed), args.task, args.episodes, seed=0).returns

    quiet_known_noise()
    out = Path(args.out or tempfile.mkdtemp(prefix="xtra-learning-"))
    cli = XtraCLI(
        EfficientZeroModule,
        OnlineReplayDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        run=False,
        args=["-c", args.config, f"--data.init_args.task_id={args.task}",
              f"--data.init_args.env_steps={args.env_steps}", f"--seed_everything={args.seed}",
              f"--trainer.default_root_dir={out}", "--trainer.enable_progress_bar=false", *overrides],
    )  # fmt: skip
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    if not any(o.startswith("--trainer.max_steps") for o in overrides):
        # as many updates as the replay ratio gives for this budget
        trainer.fit_loop.epoch_loop.max_steps = int((args.env_steps - data.warmup_steps) * data.update_to_data)
    from xtra.callbacks.evaluation import Evaluation

    evals = [cb for cb in trainer.callbacks if isinstance(cb, Evaluation)]
    if not evals:
        raise SystemExit("the config has no xtra.callbacks.evaluation.Evaluation callback")
    max_steps = trainer.max_steps
    evals[0].every_n_steps = max(1, max_steps // args.points)
    evals[0].episodes = args.episodes
    start = time.time()
    trainer.fit(module, data)
    minutes = (time.time() - start) / 60
    curve = []
    for record in evals[0].history:
        step = record["global_step"]
        curve.append(
            {"updates": step, "env_steps": data.target_env_steps(step),
             "return": round(float(np.mean(record["returns"][args.task])), 3)}
        )  # fmt: skip
    print(
        json.dumps(
            {
                "malloc": args.malloc, "task": args.task, "env_steps": data.collector.env_steps,
                "updates": trainer.global_step,
                "minutes": round(minutes, 1), "episodes_per_point": args.episodes,
                "sticky_action_prob": data.collector.env.options.sticky_action_prob,
                "full_action_space": data.collector.env.options.full_action_space,
                "random_return": round(float(random_returns.mean()), 3), "curve": curve,
                "final_return": curve[-1]["return"] if curve else None, "run_dir": str(out),
            }
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
