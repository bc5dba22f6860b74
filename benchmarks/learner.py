"""Learner throughput: updates/s and the time split between target computation (reanalyse) and the update.

The replay is filled with random frames; one update = targets (target-network values for every position, MCTS
policies for the reanalysed share) + forward/backward/step of the unrolled loss. Prints one JSON line per preset.

    python benchmarks/learner.py --preset minatar --batch 256 --unroll 5
    python benchmarks/learner.py --preset efficientzero --batch 256 --simulations 50 --device cuda
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch
from lightning.pytorch.plugins.precision import MixedPrecision, Precision

from xtra.allocator import add_malloc_argument, apply_malloc_argument
from xtra.datamodules.common import windows_to_tensors
from xtra.mcts import SearchOptions
from xtra.modules.efficientzero import EfficientZeroModule
from xtra.replay import Replay

SHAPES = {
    "minatar": ((10, 10, 10), 1, 6),
    "efficientzero": ((3, 96, 96), 4, 18),
    "efficientzero-l": ((3, 96, 96), 4, 18),
}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="minatar", choices=sorted(SHAPES))
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--unroll", type=int, default=5)
    parser.add_argument("--simulations", type=int, default=None, help="default: 16 (minatar) / 50 (Atari)")
    parser.add_argument("--reanalyse", type=float, default=None, help="default: 0 (minatar config) / 0.99 (Atari)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", choices=("32", "bf16-mixed", "16-mixed"), default="32",
                        help="autocast of targets and loss, like --trainer.precision")  # fmt: skip
    parser.add_argument("--channels-last", choices=("auto", "on", "off"), default="auto",
                        help="NHWC weights (auto: the module's default, on for the Atari presets)")  # fmt: skip
    add_malloc_argument(parser)
    args = parser.parse_args()
    apply_malloc_argument(args)

    frame, stack, actions = SHAPES[args.preset]
    atari = args.preset != "minatar"
    sims = args.simulations or (50 if atari else 16)
    reanalyse = args.reanalyse if args.reanalyse is not None else (0.99 if atari else 0.0)
    device = torch.device(args.device)
    rng = np.random.default_rng(0)
    replay = Replay(4_000, frame, actions, stack)
    for _ in range(15):
        n = 200
        replay.add_segment(
            rng.integers(0, 256 if atari else 2, size=(n + 1, *frame), dtype=np.uint8), rng.integers(0, actions, n),
            rng.normal(size=n).astype(np.float32), np.zeros(n, np.float32),
            np.full((n, actions), 1 / actions, np.float32), np.arange(n), terminal=True,
        )  # fmt: skip
    module = EfficientZeroModule(
        (frame[0] * stack, *frame[1:]), actions, network=args.preset, mcts=SearchOptions(num_simulations=sims),
        unroll_steps=args.unroll, reanalyse_fraction=reanalyse, augmentation=atari,
        channels_last={"auto": None, "on": True, "off": False}[args.channels_last],
    ).to(device)  # fmt: skip
    module.frame_stack = stack
    opt = torch.optim.SGD(module.net.parameters(), lr=0.01, momentum=0.9)
    # Lightning's own plugin: the autocast a training run with --trainer.precision P enters (fp16 also scales the loss)
    plugin = Precision() if args.precision == "32" else MixedPrecision(args.precision, device.type)
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "16-mixed")

    def once() -> tuple[float, float]:
        w = replay.sample(args.batch, args.unroll, 5, rng)
        batch = {k: v.to(device) for k, v in windows_to_tensors(w, pin=device.type == "cuda").items()}
        sync(device)
        t0 = time.perf_counter()
        with plugin.forward_context():  # as training runs the targets
            prepared = module.prepare_batch(batch, module.target_net)
        sync(device)
        t1 = time.perf_counter()
        with plugin.forward_context():
            out = module.compute_loss(prepared)
        opt.zero_grad()
        scaler.scale(out.loss).backward()
        scaler.step(opt)
        scaler.update()
        sync(device)
        return t1 - t0, time.perf_counter() - t1

    once()
    times = [once() for _ in range(args.repeat)]
    targets = statistics.median(t[0] for t in times)
    update = statistics.median(t[1] for t in times)
    total = targets + update
    print(
        json.dumps(
            {
                "malloc": args.malloc, "preset": args.preset, "device": str(device), "precision": args.precision,
                "batch": args.batch,
                "channels_last": module.net.representation.trunk[0].weight.is_contiguous(
                    memory_format=torch.channels_last),
                "unroll": args.unroll,
                "simulations": sims, "reanalyse_fraction": reanalyse, "updates_per_s": round(1 / total, 3),
                "targets_s": round(targets, 4), "update_s": round(update, 4),
                "targets_share": round(targets / total, 3), "update_share": round(update / total, 3),
            }
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
