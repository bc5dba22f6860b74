"""Share of finetuning time spent on measuring gradient-cosine task weights, at the authors' defaults.

The task-weight callback measures on N = 500 of every T = 5 000 updates. On a measured step the finetuner needs
one gradient per task. This script times, on one synthetic finetuning batch (target rows plus M offline games):

* ``plain``: the ordinary update's joint forward + backward;
* ``task_rows`` (the default): one forward + backward per task on its own rows, plus the cosines;
* ``joint_backward``: one joint forward and one full backward per task (exact joint batch norm);
* ``authors``: what the authors' code runs — the joint forward, one backward per task for the measurement, then
  another backward for the real update.

and prints one JSON line with each per-step time and the share of learner time the measurement costs at N/T
(``share = f·(t_probe − t_plain) / ((1 − f)·t_plain + f·t_probe)``, f = N/T). It also times the targets of that
batch (the target rows reanalysed by a ``--simulations`` search of the target network, the offline rows' stored
targets) and gives the share of a finetuning step (targets + update; acting not counted, so the share of the whole
run is smaller still).

Beside them it times an EfficientZero step of the same network on the target's rows alone (their targets + one
forward/backward), and gives the finetuning step over it: plain, and averaged over the cycle with each probe
(``(1 − f)·step + f·measured step``). The finetuning batch holds the target's rows *and* the offline games' rows
(the shipped configs: half of each), so its update does that much more arithmetic than EfficientZero's.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from xtra.allocator import add_malloc_argument, apply_malloc_argument
from xtra.datamodules.common import windows_to_tensors
from xtra.gradients import cosine_to_first, flat_gradient
from xtra.losses import UnrollTargets
from xtra.mcts import BatchedMCTS, SearchOptions
from xtra.modules.finetuner import CrossTaskFinetuner
from xtra.replay import Replay


def synthetic_batch(rows: int, obs_shape, actions: int, k: int, support: int, seed: int, device) -> dict:
    g = torch.Generator().manual_seed(seed)
    obs = torch.randint(0, 256 if obs_shape[0] > 10 else 2, (rows, k + 1, *obs_shape), generator=g, dtype=torch.uint8)
    targets = UnrollTargets(
        values=torch.randn(rows, k + 1, generator=g) * 3,
        policies=torch.softmax(torch.randn(rows, k + 1, actions, generator=g), -1),
        value_prefixes=torch.randn(rows, k, generator=g).clamp(-support, support),
        obs_mask=torch.ones(rows, k + 1),
        policy_mask=torch.ones(rows, k + 1),
        prefix_mask=torch.ones(rows, k),
    )
    batch = {
        "obs": obs,
        "actions": torch.randint(0, actions, (rows, k), generator=g),
        "targets": targets,
        "weights": torch.rand(rows, generator=g) * 0.5 + 0.5,
        "rows": torch.arange(rows),
        "stats": {},
    }
    batch["targets"] = UnrollTargets(*(getattr(targets, f).to(device) for f in targets.__dataclass_fields__))
    return {key: (v.to(device) if torch.is_tensor(v) else v) for key, v in batch.items()}


def raw_windows(rows: int, frame_shape, stack: int, actions: int, k: int, n: int, seed: int, device) -> dict:
    """Raw windows (what a datamodule yields) from a replay of random play, for timing the targets."""
    rng = np.random.default_rng(seed)
    replay = Replay(4 * 201, frame_shape, actions, stack)
    high = 256 if frame_shape[0] == 3 else 2
    for _ in range(4):
        replay.add_segment(
            rng.integers(0, high, (201, *frame_shape), dtype=np.uint8), rng.integers(0, actions, 200),
            np.sign(rng.normal(size=200)).astype(np.float32), np.zeros(200, np.float32),
            np.full((200, actions), 1 / actions, np.float32), np.arange(200), terminal=False,
        )  # fmt: skip
    windows = replay.sample(rows, k, n, rng)
    return {key: v.to(device) for key, v in windows_to_tensors(windows).items()}


def timed(fn, repeats: int, device) -> float:
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--network", default="minatar-l", help="minatar-l (CPU) or efficientzero-l (GPU)")
    parser.add_argument("--offline-games", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=512, help="all rows; half target, half offline")
    parser.add_argument("--cycle", type=int, default=5000)
    parser.add_argument("--measure", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--simulations", type=int, default=50, help="reanalyse search of the target rows")
    parser.add_argument("--reanalyse-fraction", type=float, default=1.0,
                        help="share of target rows reanalysed (authors: 1; the MinAtar configs: 0)")  # fmt: skip
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    add_malloc_argument(parser)
    args = parser.parse_args()
    apply_malloc_argument(args)
    device = torch.device(args.device)
    atari = not args.network.startswith("minatar")
    obs_shape, actions = ((12, 96, 96), 18) if atari else ((10, 10, 10), 6)
    module = CrossTaskFinetuner(obs_shape=obs_shape, num_actions=actions, network=args.network, augmentation=atari,
                                mcts=SearchOptions(num_simulations=args.simulations),
                                reanalyse_fraction=args.reanalyse_fraction)  # fmt: skip
    module.to(device)
    k, support = module.hparams.unroll_steps, module.net.support_size
    m = args.offline_games
    per_game = args.batch_size // 2 // m
    sizes = [args.batch_size - per_game * m] + [per_game] * m
    batch = {f"g/{i}": synthetic_batch(n, obs_shape, actions, k, support, i, device) for i, n in enumerate(sizes)}
    params = [p for p in module.net.parameters() if p.requires_grad]

    def plain():
        module.net.zero_grad(set_to_none=True)
        module.joint_loss(batch)[0].loss.backward()

    def probe(kind: str):
        def run():
            module.hparams.gradient_probe = kind
            grads, _, _ = module.task_gradients(batch, params)
            cosine_to_first(grads, 5.0)
            module.combine(batch, grads)

        return run

    def authors():
        out, slices = module.joint_loss(batch)
        grads = torch.stack([
            flat_gradient((batch[t]["weights"] * out.per_sample[slices[t]]).mean() / k, params, True) for t in batch
        ])  # fmt: skip
        cosine_to_first(grads, 5.0)
        module.net.zero_grad(set_to_none=True)
        out.loss.backward()

    frame_shape, stack = ((3, 96, 96), 4) if atari else ((10, 10, 10), 1)
    module.frame_stack = stack
    module.search = BatchedMCTS(module.mcts_config)
    n_td = module.hparams.td_steps
    raw = [raw_windows(n, frame_shape, stack, actions, k, n_td, i, device) for i, n in enumerate(sizes)]

    def targets():
        module.prepare_batch(raw[0], module.target_net, None)
        for r in raw[1:]:
            module.prepare_batch(r, None, None, reanalyse_fraction=0.0, value_bootstrap="stored")

    target_task = next(iter(batch))

    def efficientzero_targets():
        module.prepare_batch(raw[0], module.target_net, None)

    def efficientzero_update():  # the parent's loss on the target's rows alone: EfficientZero's step
        module.net.zero_grad(set_to_none=True)
        module.compute_loss(batch[target_task]).loss.backward()

    times = {"targets": timed(targets, max(args.repeats // 3, 1), device), "plain": timed(plain, args.repeats, device)}
    ez = {"targets": timed(efficientzero_targets, max(args.repeats // 3, 1), device),
          "update": timed(efficientzero_update, args.repeats, device)}  # fmt: skip
    ez_step = ez["targets"] + ez["update"]
    for name, fn in (("task_rows", probe("task_rows")), ("joint_backward", probe("joint_backward")),
                     ("authors", authors)):  # fmt: skip
        times[name] = timed(fn, args.repeats, device)
    f = args.measure / args.cycle
    probes = {name: t for name, t in times.items() if name not in ("plain", "targets")}
    plain_t = times["plain"]
    share = {name: round(f * (t - plain_t) / ((1 - f) * plain_t + f * t), 4) for name, t in probes.items()}
    step = times["targets"] + times["plain"]
    share_step = {
        name: round(f * (t - times["plain"]) / ((1 - f) * step + f * (step - times["plain"] + t)), 4)
        for name, t in probes.items()
    }
    over_ez = {"plain": round(step / ez_step, 3)}
    for name, t in probes.items():
        over_ez[name] = round(((1 - f) * step + f * (step - plain_t + t)) / ez_step, 3)
    print(json.dumps({
        "malloc": args.malloc, "network": args.network, "device": str(device), "offline_games": m, "rows": sizes,
        "measured_fraction": f, "seconds_per_step": {n: round(t, 4) for n, t in times.items()},
        "probe_step_over_plain": {n: round(t / times["plain"], 3) for n, t in probes.items()},
        "share_of_learner_time": share, "share_of_finetuning_step": share_step, "simulations": args.simulations,
        "reanalyse_fraction": args.reanalyse_fraction, "efficientzero_seconds": {n: round(t, 4) for n, t in ez.items()},
        "finetuning_step_over_efficientzero": over_ez,
    }))  # fmt: skip


if __name__ == "__main__":
    main()
