"""Probe: the student's search on Breakout at finetuning step 0 (policy head reset).

Prints, per checkpoint given on the command line, the greedy share of each action, the mean search Q per action,
the one-step predicted reward and value per action, and the root value, over 256 states of random play.

    python results/minatar-breakout-3seeds-reset-values/start_bias.py runs/evidence/seed*/student.ckpt
"""

import sys

import numpy as np
import torch

from xtra.checkpoints import load_network
from xtra.envs import make_game, network_action_ids
from xtra.mcts import BatchedMCTS, MCTSConfig, run_mcts

TASK = "minatar/breakout"


def states(n: int, seed: int, stack: int) -> np.ndarray:
    """``n`` stacked observations met by random play."""
    game, rng, out = make_game(TASK, seed=seed), np.random.default_rng(seed), []
    frames = [game.reset()] * stack
    while len(out) < n:
        out.append(np.concatenate(frames[-stack:], 0))
        frame, _, _, _, done = game.step(rng.integers(len(game.action_ids)))
        frames.append(frame)
        if done:
            frames = [game.reset()] * stack
    return np.stack(out)


def probe(path: str) -> None:
    net = load_network(path).net.eval()
    last = net.prediction.policy_head[-1]
    torch.nn.init.zeros_(last.weight)
    torch.nn.init.zeros_(last.bias)
    ids = network_action_ids(TASK, net.num_actions)
    obs = torch.from_numpy(states(256, 0, net.obs_shape[0] // 10))
    res, v0 = run_mcts(net, obs, BatchedMCTS(MCTSConfig(num_simulations=50)), None, torch.tensor(ids))
    rewards, values = [], []
    with torch.inference_mode():
        init = net.initial_inference(obs)
        for a in ids:
            out = net.recurrent_inference(init.latent, init.hidden, torch.full((len(obs),), a))
            rewards.append(net.scalar(out.value_prefix_logits).mean().item())
            values.append(net.scalar(out.value_logits).mean().item())
    greedy = np.bincount(res.visit_counts.argmax(1), minlength=len(ids)) / len(obs)
    q = np.where(np.isfinite(res.child_q), res.child_q, np.nan)
    print(path, "ids", ids, "\n greedy share", greedy.round(2), " mean visits", res.policy.mean(0).round(2),
          "\n mean Q", np.nanmean(q, 0).round(3), " 1-step reward", np.round(rewards, 3),
          " value", np.round(values, 3), " root v", v0.mean().round(3))  # fmt: skip


if __name__ == "__main__":
    torch.set_num_threads(1)
    for checkpoint in sys.argv[1:]:
        probe(checkpoint)
