"""Acting throughput: env steps/s of n environments driven by one batched MCTS per step. Prints one JSON line.

python benchmarks/collector.py --task minatar/breakout --envs 16 --simulations 16 --steps 2000
python benchmarks/collector.py --task atari/Pong --envs 64 --simulations 50 --device cuda --precision bf16-mixed

``--precision`` runs the searches' network calls under autocast, as ``--trainer.precision`` does in training runs.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from xtra.acting import make_actor
from xtra.allocator import add_malloc_argument, apply_malloc_argument
from xtra.collector import Collector
from xtra.envs import env_spec
from xtra.mcts import BatchedMCTS, MCTSConfig
from xtra.network import EfficientZeroNet, network_config
from xtra.replay import Replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="minatar/breakout")
    parser.add_argument("--envs", type=int, default=16)
    parser.add_argument("--simulations", type=int, default=16)
    parser.add_argument("--steps", type=int, default=2_000)
    parser.add_argument("--network", default=None, help="preset (default: minatar / efficientzero by task)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--driver", choices=("auto", "device"), default="auto",
                        help="auto: numba host gather for CPU states; device: torch gather")  # fmt: skip
    parser.add_argument("--precision", choices=("32", "bf16-mixed", "16-mixed"), default="32")
    add_malloc_argument(parser)
    args = parser.parse_args()
    apply_malloc_argument(args)

    spec = env_spec(args.task)
    preset = args.network or ("minatar" if args.task.startswith("minatar") else "efficientzero")
    device = torch.device(args.device)
    net = EfficientZeroNet(spec.obs_shape, spec.num_actions, network_config(preset)).to(device).eval()
    search = BatchedMCTS(
        MCTSConfig(num_simulations=args.simulations, host_gather=None if args.driver == "auto" else False)
    )
    # Lightning's own plugin: the context a training run with --trainer.precision P enters around its searches
    plugin = Precision() if args.precision == "32" else MixedPrecision(args.precision, device.type)
    actor = make_actor(net, search, device, context=plugin.forward_context)
    replay = Replay(args.steps * 2 + 1_000, spec.frame_shape, spec.num_actions, spec.frame_stack)
    collector = Collector(args.task, replay, args.envs, seed=0)
    collector.collect(args.envs * 2, actor)  # warm-up: numba compile, allocator
    start = time.perf_counter()
    collector.collect(args.steps, actor)
    elapsed = time.perf_counter() - start
    steps = collector.env_steps - args.envs * 2
    print(
        json.dumps(
            {
                "malloc": args.malloc, "task": args.task, "network": preset, "device": str(device), "envs": args.envs,
                "simulations": args.simulations, "driver": args.driver, "precision": args.precision,
                "env_steps_per_s": round(steps / elapsed, 1),
            }
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
