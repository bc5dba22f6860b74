"""Teacher's policy head alone (no search) vs its search, same checkpoints, same evaluation games."""

import sys

import torch

from xtra.acting import make_policy_actor
from xtra.checkpoints import load_network
from xtra.collector import evaluate
from xtra.envs import network_action_ids

for a in sys.argv[1:]:
    path, task = a.split("=")
    loaded = load_network(path)
    net = loaded.net.eval()
    ids = network_action_ids(task, net.num_actions)
    actor = make_policy_actor(net, torch.device("cpu"), None if ids is None else torch.tensor(ids))
    played = evaluate(actor, task, 32, 0)
    print(path, task, round(float(played.returns.mean()), 3), played.action_counts.tolist(), flush=True)
