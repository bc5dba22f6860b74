"""Time the batched tree search alone: the network is a stand-in that returns random arrays of the right shapes.

Prints one JSON line per batch size. ``searches_per_s`` counts root searches (a batch of B roots is B searches);
``us_per_root_sim`` is wall time / (B · S). Numba compilation is excluded and reported as ``compile_s``.
``--driver device`` times the torch-gather driver that GPUs use, on the CPU (the default picks the numba host
gather for CPU states).

    python benchmarks/mcts.py --batch 1,8,64,256,1518 --simulations 50 --actions 18 --repeat 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np
import torch

from xtra.mcts import BatchedMCTS, MCTSConfig


def stand_in(num_actions: int, rng: np.random.Generator):
    """Random value prefix, value and policy logits; the latent and LSTM state pass through untouched."""

    def recurrent(latent, hidden, actions):
        n = latent.shape[0]
        return (
            latent,
            hidden,
            rng.normal(size=n),
            rng.normal(size=n),
            rng.normal(size=(n, num_actions)).astype(np.float32),
        )

    return recurrent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", default="256", help="one size or a comma-separated grid, e.g. 1,8,64,256,1518")
    parser.add_argument("--simulations", type=int, default=50)
    parser.add_argument("--actions", type=int, default=18)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--driver", choices=("auto", "device"), default="auto")
    args = parser.parse_args()
    for b in (int(x) for x in args.batch.split(",")):
        print(json.dumps(measure(b, args)), flush=True)


def measure(b: int, args: argparse.Namespace) -> dict:
    rng = np.random.default_rng(0)
    a = args.actions
    mcts = BatchedMCTS(
        MCTSConfig(num_simulations=args.simulations, host_gather=None if args.driver == "auto" else False)
    )
    latent = torch.zeros(b, 64, 6, 6)
    hidden = (torch.zeros(1, b, 512), torch.zeros(1, b, 512))
    recurrent = stand_in(a, rng)

    def once() -> float:
        logits = rng.normal(size=(b, a)).astype(np.float32)
        noise = mcts.dirichlet_noise(rng, b, a)
        start = time.perf_counter()
        mcts.search(recurrent, latent, hidden, logits, noise, seed=int(rng.integers(2**62)))
        return time.perf_counter() - start

    compile_s = once()
    for _ in range(args.warmup):
        once()
    median = statistics.median(once() for _ in range(args.repeat))
    compile_s -= median
    return {
        "impl": f"xtra-numba-{args.driver}",
        "batch": b,
        "simulations": args.simulations,
        "actions": a,
        "searches_per_s": round(b / median, 1),
        "us_per_root_sim": round(median / (b * args.simulations) * 1e6, 3),
        "median_s": round(median, 6),
        "compile_s": round(max(compile_s, 0.0), 3),
    }


if __name__ == "__main__":
    main()
