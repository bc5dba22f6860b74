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
import math
from dataclasses import asdict, fields
from typing import Any, Literal, TypedDict

import lightning as L
import numpy as np
import torch

from xtra.acting import make_actor, temperature_at
from xtra.augmentation import augment
from xtra.callbacks.replay_snapshots import ReplaySnapshots
from xtra.datamodules.contract import task_data
from xtra.distributed import gather_from_ranks
from xtra.envs import game_name, network_action_ids
from xtra.losses import LossOutput, LossWeights, UnrollTargets, efficientzero_loss
from xtra.mcts import BatchedMCTS, MCTSConfig, SearchOptions
from xtra.network import EfficientZeroNet, network_config, saved_description
from xtra.reanalyse import bootstrap_values, reanalysed_policies
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


class EfficientZeroModule(L.LightningModule):
    """EfficientZero on one task.

    Args:
        obs_shape, num_actions: linked from the datamodule (the stacked observation and the action count).
        network: a preset of :data:`xtra.network.PRESETS`; ``network_overrides`` changes single fields.
        mcts: search settings for acting and reanalyse; the search discounts with ``discount`` and resets the
            value prefix every ``value_prefix_horizon`` steps, the module's own (one owner each).
        unroll_steps, td_steps: K and the largest n of the n-step value targets.
        td_decay_env_steps: data older than this many env steps loses one TD step per multiple (EZ: 30 000);
            ``None`` keeps n fixed.
        reanalyse_fraction: share of each batch whose policy targets come from a fresh target-network MCTS
            (EZ: 0.99); the rest use the policies stored at collection.
        value_bootstrap: ``network`` bootstraps n-step values from the target network's value (what the
            EfficientZero code runs by default), ``search`` from a fresh MCTS root value (what its paper
            describes; one more search per position).
        optimizer: ``sgd`` (EZ: momentum 0.9, lr 0.2 warmed up over ``lr_warmup_steps``, ×``lr_decay_rate``
            every ``lr_decay_steps``) or ``adam``.
        target_update_interval / actor_update_interval: updates between refreshes of the reanalyse target
            network and of the acting snapshot (EZ: 200 / 100).
        augmentation: random shift + intensity on training observations (Atari).
    """

    def __init__(
        self,
        obs_shape: tuple[int, int, int] = (12, 96, 96),
        num_actions: int = 18,
        network: str = "efficientzero",
        network_overrides: dict[str, Any] | None = None,
        mcts: SearchOptions = SearchOptions(),
        discount: float = 0.997**4,
        unroll_steps: int = 5,
        td_steps: int = 5,
        td_decay_env_steps: int | None = 30_000,
        value_prefix_horizon: int = 5,
        loss_weights: LossWeights = LossWeights(),
        reanalyse_fraction: float = 0.99,
        value_bootstrap: Literal["network", "search"] = "network",
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 0.2,
        lr_warmup_steps: int = 1_000,
        lr_decay_steps: int = 100_000,
        lr_decay_rate: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        max_grad_norm: float = 5.0,
        target_update_interval: int = 200,
        actor_update_interval: int = 100,
        augmentation: bool = True,
        temperature_schedule: tuple[float, float, float] = (1.0, 0.5, 0.25),
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if isinstance(mcts, MCTSConfig) and (mcts.discount, mcts.value_prefix_horizon) != (
            discount,
            value_prefix_horizon,
        ):
            raise ValueError(
                f"mcts has discount {mcts.discount} and value_prefix_horizon {mcts.value_prefix_horizon}, the module "
                f"{discount} and {value_prefix_horizon}: the search uses the module's; pass SearchOptions"
            )
        self.mcts_config = MCTSConfig.of(mcts, discount, value_prefix_horizon)
        self.hparams["mcts"] = {f.name: getattr(mcts, f.name) for f in fields(SearchOptions)}
        self.hparams["loss_weights"] = asdict(loss_weights)
        self.automatic_optimization = False
        self.net = EfficientZeroNet(tuple(obs_shape), num_actions, network_config(network, **(network_overrides or {})))
        self.target_net = self._frozen_copy()
        self._snapshot: dict[str, Any] = {"net": None, "step": -1}  # a dict: not a registered submodule
        self.search = BatchedMCTS(self.mcts_config)
        self.loss_weights = loss_weights
        self.frame_stack = 1  # set from the datamodule's spec in setup()
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        self._augment_rng: torch.Generator | None = None  # made on the training device at the first augmentation
        self._augment_rng_state: torch.Tensor | None = None  # a resumed run's, applied when it is made
        self._action_ids: dict[str, tuple[torch.Tensor | None]] = {}
        self.task_weights: dict[str, float] = {}  # ω per game, set by a task-weight rule (finetuning)

    # ---------------------------------------------------------------- plumbing
    def _frozen_copy(self) -> EfficientZeroNet:
        """A copy without gradients; callers switch it to eval mode where they search with it."""
        clone = copy.deepcopy(self.net)
        for p in clone.parameters():
            p.requires_grad_(False)
        return clone

    def configure_callbacks(self) -> list[L.Callback]:
        """Every checkpoint writes its replay snapshot: an explicit call, not a side effect of ``state_dict``."""
        return [ReplaySnapshots()]

    def setup(self, stage: str) -> None:
        dm = task_data(self._trainer)
        if dm is not None:
            if tuple(dm.obs_shape) != tuple(self.net.obs_shape) or dm.num_actions != self.net.num_actions:
                raise ValueError(
                    f"the model is built for observations {self.net.obs_shape} and {self.net.num_actions} actions, "
                    f"but the data has {tuple(dm.obs_shape)} and {dm.num_actions}: set model.obs_shape / "
                    "model.num_actions to match (the CLI links them from the data)"
                )
            self.frame_stack = dm.frame_stack
        self.rng = np.random.default_rng(np.random.SeedSequence([self.hparams.seed, 7, self.global_rank]))

    def data_task_ids(self) -> list[str]:
        """The games of the attached datamodule (empty without one)."""
        dm = task_data(self._trainer)
        return list(dm.task_ids) if dm is not None else []

    def target_task_id(self) -> str | None:
        """The game the attached datamodule plays online (None without one, or for offline data)."""
        dm = task_data(self._trainer)
        return dm.target_task_id if dm is not None else None

    @property
    def sampling(self) -> dict[str, int]:
        """What the data layer must gather per sample."""
        return {"unroll_steps": self.hparams.unroll_steps, "td_steps": self.hparams.td_steps}

    def temperature(self) -> float:
        """Visit-count temperature for acting at this point of training (:func:`temperature_at`)."""
        total = max(self.trainer.max_steps, 1) if self._trainer is not None else 1
        return temperature_at(self.global_step / total, self.hparams.temperature_schedule)

    def action_ids_for(self, task_id: str) -> torch.Tensor | None:
        """Map a game's own actions into this network's action space (None when the two coincide): the data knows
        the games it holds; another game (an evaluation elsewhere) is looked up from its environment."""
        if task_id not in self._action_ids:
            dm = task_data(self._trainer)
            if dm is not None and task_id in dm.task_ids:
                ids = dm.game_action_ids(task_id)
                ids = None if ids == tuple(range(self.net.num_actions)) else ids
            else:
                ids = network_action_ids(task_id, self.net.num_actions, dm.env_options if dm is not None else None)
            self._action_ids[task_id] = (None if ids is None else torch.tensor(ids),)
        ids = self._action_ids[task_id][0]
        return None if ids is None else ids.to(self.device)

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
        return make_actor(snap["net"], self.search, self.device, self.action_ids_for(target) if target else None)

    def evaluation_actor(self, task_id: str):
        """How evaluation episodes act: greedy MCTS with the current weights."""
        return make_actor(self.net, self.search, self.device, self.action_ids_for(task_id))

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
                target_net, obs[:n_re], self.search, self.rng, policies.shape[-1], action_ids
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

    def augment(self, obs: torch.Tensor) -> torch.Tensor:
        """:func:`augment` with this rank's own generator, saved in checkpoints (torch's global RNG is not)."""
        gen = self._augment_rng
        if gen is None or gen.device != obs.device:
            gen = torch.Generator(device=obs.device)
            gen.manual_seed(int(np.random.SeedSequence([self.hparams.seed, 8, self.global_rank]).generate_state(1)[0]))
            if self._augment_rng_state is not None:
                gen.set_state(self._augment_rng_state)
                self._augment_rng_state = None
            self._augment_rng = gen
        return augment(obs, gen)

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

    def optimize(self, loss: torch.Tensor, terms: dict[str, torch.Tensor]) -> None:
        """Backward, clip, step, schedule; a non-finite loss stops the run with its terms."""
        check_finite(loss, terms, self.global_step)
        self.optimizers().zero_grad(set_to_none=True)
        self.manual_backward(loss)
        self.step_optimizer()

    def step_optimizer(self) -> None:
        """Clip the gradients already in ``.grad``, step, advance the learning-rate schedule."""
        opt = self.optimizers()
        self.clip_gradients(opt, gradient_clip_val=self.hparams.max_grad_norm, gradient_clip_algorithm="norm")
        opt.step()
        self.lr_schedulers().step()

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
        """Learning rate, temperature and the datamodule's own figures alongside ``logs``."""
        logs["train/lr"] = self.optimizers().param_groups[0]["lr"]
        logs["train/temperature"] = self.temperature()
        dm = task_data(self._trainer)
        if dm is not None:
            logs.update(dm.pop_stats())
        self.log_dict(logs, on_step=True, prog_bar=False, batch_size=batch_size)
        if "data/env_steps" in logs:
            self.log("env_steps", logs["data/env_steps"], prog_bar=True, on_step=True, batch_size=1)

    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.net.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay)

        def schedule(step: int) -> float:
            if step < hp.lr_warmup_steps:
                return (step + 1) / hp.lr_warmup_steps
            return hp.lr_decay_rate ** math.floor((step - hp.lr_warmup_steps) / hp.lr_decay_steps)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What the network is, and what a resumed run needs beyond Lightning's state: each rank's search and
        augmentation RNGs, and the weights the actor is acting with (refreshed every ``actor_update_interval``
        steps, so generally older than the current ones)."""
        augment_rng = self._augment_rng.get_state() if self._augment_rng is not None else self._augment_rng_state
        snap = self._snapshot
        checkpoint["xtra"] = {
            "network": self.net.describe(),
            "task_ids": self.data_task_ids(),
            "acting": "mcts",
            "rank_rngs": gather_from_ranks({"search": self.rng.bit_generator.state, "augment": augment_rng}),
            "actor": None if snap["net"] is None else {"step": snap["step"], "state_dict": snap["net"].state_dict()},
            "format_version": 1,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = saved_description(checkpoint.get("xtra", {}).get("network"))
        if saved is not None and saved != self.net.describe():
            raise ValueError(
                f"checkpoint network {saved} differs from this model's {self.net.describe()}: use the config the "
                "checkpoint was trained with (model.network / model.network_overrides / data.task_id)"
            )
        saved = checkpoint.get("xtra", {})
        if "rank_rngs" in saved:
            rngs = saved["rank_rngs"]
            world = self.trainer.world_size if self._trainer is not None else 1
            if len(rngs) != world:
                raise ValueError(f"the checkpoint holds the RNG states of {len(rngs)} rank(s), this run has {world}; "
                                 "resume with as many ranks")  # fmt: skip
            mine = rngs[self.global_rank]
            self.rng.bit_generator.state = mine["search"]
            self._augment_rng, self._augment_rng_state = None, mine["augment"]
        elif "rng" in saved:  # written before per-rank RNG states
            self.rng.bit_generator.state = saved["rng"]
        if saved.get("actor") is not None:
            self._snapshot["net"] = self._frozen_copy()
            self._snapshot["net"].load_state_dict(saved["actor"]["state_dict"])
            self._snapshot["net"].eval()
            self._snapshot["step"] = int(saved["actor"]["step"])


def check_finite(loss: torch.Tensor, terms: dict[str, torch.Tensor], step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"non-finite loss at step {step} (terms: { {k: float(v) for k, v in terms.items()} }); "
            "lower model.lr or check the data"
        )
