"""How far the cheap per-task gradient probe (``task_rows``) is from the exact one (``joint_backward``).

Both probes give the finetuner one gradient per game. ``joint_backward`` differentiates each game's share of the
one joint forward pass (the batch-norm statistics of the whole batch, as every ordinary update sees them);
``task_rows`` runs one forward per game on its own rows, so each game is normalised with its own statistics. On a
trained multi-game student the two can disagree even when every row and weight is the same. This script takes a
student checkpoint and datasets (the first stands in for the target game's replay, with its stored targets), draws
``--batches`` batches, and prints one JSON line: per batch, the cosine with the target that the task-weight rule
reads under each probe, and for every game the cosine and norm ratio of the ``task_rows`` gradient against the
exact one.

    python benchmarks/probe_agreement.py --student runs/default/seed0/student.ckpt \\
        --datasets runs/default/seed0/datasets/freeway runs/default/seed0/datasets/space_invaders
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch.nn.functional as F

from xtra.checkpoints import load_network
from xtra.datamodules.common import windows_to_tensors
from xtra.datamodules.offline import OfflineDataset
from xtra.gradients import cosine_to_first
from xtra.modules.finetuner import CrossTaskFinetuner, frozen_running_stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", required=True, help="a student checkpoint (stage 2)")
    parser.add_argument("--datasets", nargs="+", required=True, help="first: the target's stand-in; then offline games")
    parser.add_argument("--target-rows", type=int, default=64)
    parser.add_argument("--offline-rows", type=int, default=64, help="split evenly among the offline games")
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if len(args.datasets) < 2:
        parser.error("--datasets needs the target's stand-in and at least one offline game")

    hp = load_network(args.student).hparams
    module = CrossTaskFinetuner(pretrained=args.student, obs_shape=tuple(hp["obs_shape"]),
                                num_actions=int(hp["num_actions"]), network=hp["network"],
                                network_overrides=hp["network_overrides"], augmentation=False)  # fmt: skip
    module.net.train()
    datasets = [OfflineDataset(p) for p in args.datasets]
    module.frame_stack = int(datasets[0].manifest["frame_stack"])
    per_game = args.offline_rows // (len(datasets) - 1)
    sizes = [args.target_rows] + [per_game] * (len(datasets) - 1)
    k, n_td = module.hparams.unroll_steps, module.hparams.td_steps
    params = [p for p in module.net.parameters() if p.requires_grad]
    rng = np.random.default_rng(args.seed)
    rows = []
    for _ in range(args.batches):
        batch = {}
        for i, (ds, n) in enumerate(zip(datasets, sizes, strict=True)):
            raw = windows_to_tensors(ds.sample(n, k, n_td, rng, 1.0))
            batch[f"{i}:{ds.task_id}"] = module.prepare_batch(raw, None, None, reanalyse_fraction=0.0,
                                                              value_bootstrap="stored")  # fmt: skip
        grads = {}
        for probe in ("joint_backward", "task_rows"):
            module.hparams.gradient_probe = probe
            with frozen_running_stats(module.net):
                grads[probe] = module.task_gradients(batch, params)[0]
        exact, cheap = grads["joint_backward"], grads["task_rows"]
        clamp = module.hparams.max_grad_norm
        to_target = {p: [round(c, 3) for c in cosine_to_first(g, clamp).tolist()] for p, g in grads.items()}
        rows.append({
            "games": list(batch),
            "cosine_to_target": to_target,
            "task_rows_vs_exact_cosine": [round(c, 3) for c in F.cosine_similarity(cheap, exact, dim=1).tolist()],
            "task_rows_vs_exact_norm_ratio": [round(r, 3) for r in (cheap.norm(dim=1) / exact.norm(dim=1)).tolist()],
        })  # fmt: skip
    print(json.dumps({"student": args.student, "network": hp["network"], "rows": sizes, "batches": rows}))


if __name__ == "__main__":
    main()
