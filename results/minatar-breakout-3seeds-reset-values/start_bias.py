"""Probe: the student's search on Breakout at finetuning step 0 (policy head reset): per-action Q, 1-step reward, value."""
import sys, numpy as np, torch
from xtra.checkpoints import load_network
from xtra.envs import make_game, network_action_ids
from xtra.mcts import BatchedMCTS, MCTSConfig, run_mcts
torch.set_num_threads(1)
task = "minatar/breakout"
def states(n=256, seed=0, stack=None):
    g = make_game(task, seed=seed); rng = np.random.default_rng(seed); out = []
    f = g.reset(); frames=[f]*stack
    while len(out) < n:
        out.append(np.concatenate(frames[-stack:], 0))
        f, r, term, trunc, done = g.step(rng.integers(len(g.action_ids)))
        frames.append(f)
        if done: f = g.reset(); frames=[f]*stack
    return np.stack(out)
for path in sys.argv[1:]:
    L = load_network(path); net = L.net.eval()
    last = net.prediction.policy_head[-1]; torch.nn.init.zeros_(last.weight); torch.nn.init.zeros_(last.bias)
    ids = network_action_ids(task, net.num_actions); ids_t = torch.tensor(ids)
    stack = net.obs_shape[0] // 10 if net.obs_shape[0] % 10 == 0 else 1
    obs = torch.from_numpy(states(256, 0, net.obs_shape[0]//10))
    res, v0 = run_mcts(net, obs, BatchedMCTS(MCTSConfig(num_simulations=50)), None, ids_t)
    with torch.inference_mode():
        init = net.initial_inference(obs)
        rew, val = [], []
        for a in ids:
            out = net.recurrent_inference(init.latent, init.hidden, torch.full((len(obs),), a))
            rew.append(net.scalar(out.value_prefix_logits).mean().item()); val.append(net.scalar(out.value_logits).mean().item())
    greedy = np.bincount(res.visit_counts.argmax(1), minlength=len(ids)) / len(obs)
    q = np.where(np.isfinite(res.child_q), res.child_q, np.nan)
    print(path, "ids", ids, "\n greedy share", greedy.round(2), " mean visits", res.policy.mean(0).round(2),
          "\n mean Q", np.nanmean(q, 0).round(3), " 1-step reward", np.round(rew, 3), " value", np.round(val, 3), " root v", v0.mean().round(3))
