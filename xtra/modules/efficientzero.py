"""EfficientZeroModule: the one EfficientZero learner (online baseline; the base of teacher, student, finetuner).

Every stage trains on the same batch, ``{task_id: raw windows}`` (one game for online EfficientZero), through the
same step. Each game's targets are made on the device once the windows arrive (``on_after_batch_transfer`` →
:meth:`task_targets`; by default value targets bootstrap from the *target* network and the reanalysed share's
policies come from its fresh MCTS); then all games go through *one* joint forward pass (batch-norm statistics over
the whole batch, as in the authors' finetuning code) and the loss is the mean over all rows of ω_task · w_PER · ℓ.
Stages differ only in :meth:`task_targets` (own target network, frozen teacher, stored dataset) and ω
(:meth:`task_weight`). The data layer never sees a model; it gets an ``Actor`` (a frozen snapshot of the weights
plus MCTS) from :meth:`actor` when it needs to act.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, fields, replace
from typing import Any, Literal, TypedDict

import numpy as np
import torch

from xtra.acting import make_actor, temperature_at
from xtra.datamodules.contract import task_data
from xtra.envs import game_name
from xtra.losses import LossOutput, LossWeights, UnrollTargets, efficientzero_loss
from xtra.mcts import BatchedMCTS, MCTSConfig, SearchOptions
from xtra.modules.base import NetworkModule
from xtra.network import EfficientZeroNet
from xtra.reanalyse import REANALYSE_POLICIES, bootstrap_values, reanalysed_policies
from xtra.targets import (
    Bootstrap,
    bootstrapped_value_targets,
    plan_values,
    position_masks,
    stack_frames,
    td_steps,
    value_prefix_targets,
)


class TaskBatch(TypedDict):
    """One game's rows of a step, with their targets (what ``prepare_batch`` makes from raw windows)."""

    obs: torch.Tensor  # [B, K+1, stack·C, H, W]
    actions: torch.Tensor  # [B, K]
    targets: UnrollTargets
    weights: torch.Tensor  # PER importance weights [B]
    rows: torch.Tensor  # the replay rows the windows start at (for new priorities)
    stats: dict[str, float]  # target statistics, logged per game


def task_slices(batches: dict[str, Any]) -> dict[str, slice]:
    """Where each game's rows sit once the games' batches are concatenated in order."""
    slices, start = {}, 0
    for task, batch in batches.items():
        n = len(batch["rows"])
        slices[task], start = slice(start, start + n), start + n
    return slices


def concat_tasks(parts: list[TaskBatch], weights: list[torch.Tensor]) -> dict[str, Any]:
    """One batch out of several games' ones, rows in the given order, with the given per-row weights."""
    if len(parts) == 1:  # one game: its tensors as they are (no copy)
        return {**parts[0], "weights": weights[0]}
    targets = UnrollTargets(*[torch.cat([getattr(p["targets"], f.name) for p in parts]) for f in fields(UnrollTargets)])
    return {
        "obs": torch.cat([p["obs"] for p in parts]),
        "actions": torch.cat([p["actions"] for p in parts]),
        "targets": targets,
        "weights": torch.cat(weights),
    }


class EfficientZeroModule(NetworkModule):
    """EfficientZero, on one game or several (arguments not listed: :class:`~xtra.modules.base.NetworkModule`).

    Args:
        mcts: search settings for acting and reanalyse; the search discounts with ``discount`` and resets the
            value prefix every ``value_prefix_horizon`` steps, the module's own (one owner each).
        unroll_steps, td_steps: K and the largest n of the n-step value targets.
        td_decay_env_steps: data older than this many env steps loses one TD step per multiple (EZ: 30 000);
            ``None`` keeps n fixed.
        reanalyse_fraction: share of each batch whose policy targets come from a fresh target-network MCTS
            (EZ: 0.99); the rest use the policies stored at collection.
        reanalyse_policy: what a fresh search's policy target is: ``visits``, its visit distribution
            (EfficientZero), or ``completed_q``, ``softmax(prior logits + σ(completed Q))`` (Gumbel MuZero's
            improved policy), which keeps the search's ranking of the actions when a few simulations leave the
            visit counts nearly flat.
        value_bootstrap: ``network`` bootstraps n-step values from the target network's value (what the
            EfficientZero code runs by default), ``search`` from a fresh MCTS root value (what its paper
            describes; one more search per position).
        target_update_interval / actor_update_interval: updates between refreshes of the reanalyse target
            network and of the acting snapshot (EZ: 200 / 100).
    """

    acting = "mcts"

    def __init__(
        self,
        obs_shape: tuple[int, int, int] = (12, 96, 96),
        num_actions: int = 18,
        mcts: SearchOptions = SearchOptions(),
        discount: float = 0.997**4,
        unroll_steps: int = 5,
        td_steps: int = 5,
        td_decay_env_steps: int | None = 30_000,
        value_prefix_horizon: int = 5,
        loss_weights: LossWeights = LossWeights(),
        reanalyse_fraction: float = 0.99,
        reanalyse_policy: Literal["visits", "completed_q"] = "visits",
        value_bootstrap: Literal["network", "search"] = "network",
        target_update_interval: int = 200,
        actor_update_interval: int = 100,
        temperature_schedule: tuple[float, float, float] = (1.0, 0.5, 0.25),
        **kwargs: Any,
    ) -> None:
        # the network, optimiser, augmentation, memory layout and seed are NetworkModule's (one owner each)
        super().__init__(obs_shape=obs_shape, num_actions=num_actions, **kwargs)
        if isinstance(mcts, MCTSConfig) and (mcts.discount, mcts.value_prefix_horizon) != (
            discount,
            value_prefix_horizon,
        ):
            raise ValueError(
                f"mcts has discount {mcts.discount} and value_prefix_horizon {mcts.value_prefix_horizon}, the module "
                f"{discount} and {value_prefix_horizon}: the search uses the module's; pass SearchOptions"
            )
        if reanalyse_policy not in REANALYSE_POLICIES:
            raise ValueError(f"reanalyse_policy {reanalyse_policy!r}: choose one of {', '.join(REANALYSE_POLICIES)}")
        self.mcts_config = MCTSConfig.of(mcts, discount, value_prefix_horizon)
        self.hparams["mcts"] = {f.name: getattr(mcts, f.name) for f in fields(SearchOptions)}
        self.hparams["loss_weights"] = asdict(loss_weights)
        self.target_net = self._frozen_copy()
        self._snapshot: dict[str, Any] = {"net": None, "step": -1}  # a dict: not a registered submodule
        self.search = BatchedMCTS(self.mcts_config)
        self.loss_weights = loss_weights
        self.rng = np.random.default_rng(np.random.SeedSequence([self.hparams.seed, 7]))
        self.task_weights: dict[str, float] = {}  # ω per game, set by a task-weight rule (finetuning)

    # ---------------------------------------------------------------- plumbing
    def _frozen_copy(self) -> EfficientZeroNet:
        """A copy without gradients; callers switch it to eval mode where they search with it."""
        clone = copy.deepcopy(self.net)
        for p in clone.parameters():
            p.requires_grad_(False)
        return clone

    def setup(self, stage: str) -> None:
        super().setup(stage)
        self.rng = np.random.default_rng(np.random.SeedSequence([self.hparams.seed, 7, self.global_rank]))

    @property
    def sampling(self) -> dict[str, int]:
        """What the data layer must gather per sample."""
        return {"unroll_steps": self.hparams.unroll_steps, "td_steps": self.hparams.td_steps}

    def temperature(self) -> float:
        """Visit-count temperature for acting at this point of training (:func:`temperature_at`)."""
        total = max(self.trainer.max_steps, 1) if self._trainer is not None else 1
        return temperature_at(self.global_step / total, self.hparams.temperature_schedule)

    def actor(self):
        """A greedy-or-sampling MCTS actor over a snapshot of the weights refreshed every ``actor_update_interval``."""
        snap = self._snapshot
        if snap["net"] is None or self.global_step - snap["step"] >= self.hparams.actor_update_interval:
            if snap["net"] is None:
                snap["net"] = self._frozen_copy()
            snap["net"].load_state_dict(self.net.state_dict())
            snap["net"].eval()
            snap["step"] = self.global_step
        target = self.target_task_id()
        ids = self.action_ids_for(target) if target else None
        return make_actor(snap["net"], self.search, self.device, ids, self.inference_context)

    def evaluation_actor(self, task_id: str, simulations: int | None = None):
        """How evaluation episodes act: greedy MCTS with the current weights, with ``simulations`` per move if given
        (training's search is untouched)."""
        search = self.search
        if simulations is not None and simulations != self.mcts_config.num_simulations:
            search = BatchedMCTS(replace(self.mcts_config, num_simulations=simulations))
        return make_actor(self.net, search, self.device, self.action_ids_for(task_id), self.inference_context)

    # ---------------------------------------------------------------- targets
    def task_weight(self, task_id: str) -> float:
        """ω of a game's rows in the loss (1 unless a task-weight rule set ``task_weights``)."""
        return float(self.task_weights.get(task_id, 1.0))

    def task_targets(self, task_id: str, raw: dict[str, torch.Tensor]) -> TaskBatch:
        """Targets of one game's rows: reanalysed with this model's own target network, searching that game's
        actions. Stages override this: where targets come from is what tells them apart."""
        return self.prepare_batch(raw, self.target_net, self.action_ids_for(task_id))

    @torch.no_grad()
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``{task: raw windows}`` → ``{task: TaskBatch}``, on the training device."""
        if not isinstance(batch, dict):
            return batch
        with self.inference_context():
            return {task: self.task_targets(task, raw) for task, raw in batch.items()}

    @torch.no_grad()
    def prepare_batch(
        self,
        batch: dict[str, torch.Tensor],
        target_net: EfficientZeroNet | None,
        action_ids: torch.Tensor | None = None,
        reanalyse_fraction: float | None = None,
        value_bootstrap: str | None = None,
    ) -> TaskBatch:
        """Observation stacks, actions and all targets for one game's raw windows, using ``target_net``.

        ``action_ids`` restricts searches to one game's actions when the network has a shared action space.
        ``reanalyse_fraction`` and ``value_bootstrap`` override the model's settings for this batch; the bootstrap
        ``stored`` uses the search values recorded with the data (no network needed), ``stored_as_coded`` the
        authors' offline target (the stored value of the *same* state plus the n-step reward sum).
        """
        hp = self.hparams
        mode = Bootstrap(value_bootstrap or hp.value_bootstrap)
        reanalyse = hp.reanalyse_fraction if reanalyse_fraction is None else reanalyse_fraction
        k = hp.unroll_steps
        frames = batch["frames"]
        b = frames.shape[0]
        positions = torch.arange(k + 1, device=frames.device).expand(b, -1)
        obs = stack_frames(frames, positions, self.frame_stack)  # [B, K+1, stack·C, H, W]

        n = td_steps(batch["age"], hp.td_steps, hp.td_decay_env_steps)
        stored = mode.reads_stored_values
        plan = plan_values(batch["rewards"], batch["steps_left"], batch["terminal"], n, k, hp.discount, not stored)
        if target_net is not None:
            target_net.eval()
        boot = bootstrap_values(
            mode, plan, frames, batch["root_values"], self.frame_stack, target_net, self.search, action_ids
        )
        values = bootstrapped_value_targets(mode, plan, boot, batch["root_values"])

        obs_mask, policy_mask = position_masks(batch["steps_left"], k)
        if stored:  # no stored value exists for the last observation of a cut segment: no value target there
            obs_mask = obs_mask * plan.mask
        prefixes, prefix_mask = value_prefix_targets(batch["rewards"], batch["steps_left"], k, hp.value_prefix_horizon)
        policies = batch["policies"] * policy_mask[..., None]
        n_re = int(round(b * reanalyse))
        stats = {}
        if n_re > 0:
            fresh, root_value = reanalysed_policies(
                target_net, obs[:n_re], self.search, self.rng, policies.shape[-1], action_ids, hp.reanalyse_policy
            )
            policies[:n_re] = fresh * policy_mask[:n_re, :, None]
            stats["mcts/reanalyse_root_value"] = root_value
        stats["targets/value_mean"] = float((values * obs_mask).sum() / obs_mask.sum())
        stats["targets/td_steps_mean"] = float(n.float().mean())
        targets = UnrollTargets(values, policies, prefixes, obs_mask, policy_mask, prefix_mask)
        return {
            "obs": obs,
            "actions": batch["actions"],
            "targets": targets,
            "weights": batch["weights"],
            "rows": batch["rows"],
            "stats": stats,
        }

    # ---------------------------------------------------------------- training
    def compute_loss(self, batch: dict[str, Any]):
        obs = batch["obs"]
        if self.hparams.augmentation:
            obs = self.augment(obs)
        return efficientzero_loss(
            self.net,
            obs,
            batch["actions"],
            batch["targets"],
            batch["weights"],
            self.hparams.value_prefix_horizon,
            self.loss_weights,
        )

    def joint_loss(self, batch: dict[str, TaskBatch]) -> tuple[LossOutput, dict[str, slice]]:
        """One forward over every game's rows (batch-norm statistics over the whole batch); each game's rows in it."""
        weights = [b["weights"] * self.task_weight(t) for t, b in batch.items()]
        return self.compute_loss(concat_tasks(list(batch.values()), weights)), task_slices(batch)

    def training_step(self, batch: dict[str, TaskBatch], batch_idx: int) -> torch.Tensor:
        """The one step of every stage: the joint loss over ``{task: TaskBatch}`` (one task online), an update."""
        out, slices = self.joint_loss(batch)
        self.optimize(out.loss, out.terms)
        self.after_update(batch, out, slices)
        return out.loss.detach()

    def task_metrics(self, task_id: str, prepared: TaskBatch, out: LossOutput, rows: slice) -> dict[str, float]:
        """Extra per-game figures for TensorBoard (stages add theirs)."""
        return {}

    def after_update(self, batch: dict[str, TaskBatch], out: LossOutput, slices: dict[str, slice]) -> None:
        """Priorities back to each game's replay, network refreshes, logging (per game and joint)."""
        logs: dict[str, Any] = {f"loss/{k}": v for k, v in out.terms.items()}
        for task, rows in slices.items():
            game = game_name(task)
            priorities = self.send_priorities(batch[task], out.predicted_values[rows], task)
            logs[f"train/priority_mean/{game}"] = float(priorities.mean())
            if len(slices) > 1:
                logs[f"train/task_weight/{game}"] = self.task_weight(task)
                for name, values in out.sample_terms.items():
                    logs[f"loss/{name}/{game}"] = values[rows].mean()
            logs.update({f"{k}/{game}": v for k, v in batch[task]["stats"].items()})
            logs.update(self.task_metrics(task, batch[task], out, rows))
        self.refresh_target()
        self.log_common(logs, sum(s.stop - s.start for s in slices.values()))

    def send_priorities(self, batch: TaskBatch, predicted_values: torch.Tensor, task_id: str | None = None):
        """|v̂₀ − z₀| + ε as the new priorities of the sampled rows (EfficientZero)."""
        priorities = (predicted_values[:, 0] - batch["targets"].values[:, 0]).abs() + 1e-6
        dm = task_data(self._trainer)
        if dm is not None:
            dm.update_priorities(batch["rows"].cpu().numpy(), priorities.cpu().numpy(), task_id)
        return priorities

    def refresh_target(self) -> None:
        if self.global_step % self.hparams.target_update_interval == 0:
            self.target_net.load_state_dict(self.net.state_dict())

    def log_common(self, logs: dict[str, Any], batch_size: int) -> None:
        logs["train/temperature"] = self.temperature()
        super().log_common(logs, batch_size)

    # ---------------------------------------------------------------- checkpoints
    def rank_rng_states(self) -> dict[str, Any]:
        return {"search": self.rng.bit_generator.state, **super().rank_rng_states()}

    def restore_rank_rngs(self, states: dict[str, Any]) -> None:
        super().restore_rank_rngs(states)
        self.rng.bit_generator.state = states["search"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also the weights the actor is acting with (refreshed every ``actor_update_interval`` steps, so
        generally older than the current ones)."""
        super().on_save_checkpoint(checkpoint)
        snap = self._snapshot
        checkpoint["xtra"]["actor"] = (
            None if snap["net"] is None else {"step": snap["step"], "state_dict": snap["net"].state_dict()}
        )

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("xtra", {})
        if "rank_rngs" not in saved and "rng" in saved:  # written before per-rank RNG states
            self.rng.bit_generator.state = saved["rng"]
        if saved.get("actor") is not None:
            self._snapshot["net"] = self._frozen_copy()
            self._snapshot["net"].load_state_dict(saved["actor"]["state_dict"])
            self._snapshot["net"].eval()
            self._snapshot["step"] = int(saved["actor"]["step"])
