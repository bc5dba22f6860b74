"""How a network acts: by greedy or sampled MCTS (every search stage) or from its policy head (behaviour cloning),
and EfficientZero's acting-temperature schedule. Actors are what the data layer calls; they hold no trainer."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import numpy as np
import torch

from xtra.mcts import BatchedMCTS, run_mcts, select_actions
from xtra.network import EfficientZeroNet


def temperature_at(fraction: float, schedule: tuple[float, float, float]) -> float:
    """EfficientZero's acting temperature: the first value before 50 % of training, the second to 75 %, then the
    third (EZ: 1 → 0.5 → 0.25)."""
    hi, mid, lo = schedule
    return hi if fraction < 0.5 else mid if fraction < 0.75 else lo


Context = Callable[[], contextlib.AbstractContextManager]  # entered around every network call (autocast or none)


def make_actor(
    net: EfficientZeroNet,
    search: BatchedMCTS,
    device: torch.device,
    action_ids: torch.Tensor | None = None,
    context: Context = contextlib.nullcontext,
):
    """An :data:`xtra.collector.Actor` that searches with ``net`` (noise and sampling when given an rng)."""

    def act(obs: np.ndarray, rng: np.random.Generator | None, temperature: float):
        obs_t = torch.from_numpy(obs).to(device)
        with context():
            result, _ = run_mcts(net, obs_t, search, rng, action_ids)
        actions = select_actions(result.visit_counts, temperature, rng, result.child_q)
        return actions, result.root_values.astype(np.float32), result.policy

    return act


def make_policy_actor(
    net: EfficientZeroNet,
    device: torch.device,
    action_ids: torch.Tensor | None = None,
    context: Context = contextlib.nullcontext,
):
    """An actor that plays the policy head's most likely legal action, no search (behaviour cloning)."""

    @torch.inference_mode()
    def act(obs: np.ndarray, rng: np.random.Generator | None, temperature: float):
        with context():
            logits = net.initial_inference(torch.from_numpy(obs).to(device)).policy_logits
        logits = logits if action_ids is None else logits[:, action_ids]
        policy = torch.softmax(logits.float(), -1).cpu().numpy()
        if rng is None or temperature == 0.0:
            actions = policy.argmax(1)
        else:
            actions = select_actions(policy ** (1.0 / temperature), 1.0, rng)
        return actions, np.zeros(len(obs), dtype=np.float32), policy

    return act
