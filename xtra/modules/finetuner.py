"""CrossTaskFinetuner: XTRA stage 3 — online on the target game while still training on the offline games.

L = L_EZ(target) + Σ_i η_i · L_EZ(offline_i), as the mean over all rows of ω·w_PER·ℓ with ω = 1 on target rows and
η_i on game i's rows (the authors' code). The target's rows get EfficientZero's targets (reanalysed with this
model's target network); offline rows get the targets stored with their data by default (the authors' code: no
reanalyse), with a correct n-step bootstrap on the stored search values — or, behind a switch, the authors'
double-counting target, or a reanalyse with this model.

The η_i are set by a callback (:class:`~xtra.callbacks.task_weights.GradientCosineTaskWeights`), which asks for
per-task gradients on its measurement steps. By default (``gradient_probe: joint_backward``, the authors' way)
those come from the one joint forward pass — every game normalised with the joint batch's batch-norm
statistics, as on every other step — with one backward per task; the update then uses their combination, which
is exactly the joint loss's gradient. ``task_rows`` (one forward and backward per task over its own rows) is
cheaper but normalises each game with its own batch statistics: on a multi-game student its per-task losses
differ several-fold from the joint pass and the cosines cross the threshold, so it is an approximation, kept for
speed studies; its running statistics are restored afterwards. Under DDP the per-task gradients are all-reduced
before anything is computed from them, so every rank sees the same similarities and the same η. PCGrad
(``gradient_surgery: pcgrad``) uses the same per-task gradients on every step.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.distributed as dist

from xtra.checkpoints import load_network, require_same_network
from xtra.gradients import assign_flat_gradient, cosine_to_first, flat_gradient, pcgrad
from xtra.losses import LossOutput, reduce_loss
from xtra.modules.base import check_finite
from xtra.modules.efficientzero import EfficientZeroModule, task_slices


@contextmanager
def frozen_running_stats(net: torch.nn.Module):
    """Batch-norm running statistics as they were before the block.

    Per-task forward passes would otherwise pull the running statistics toward whichever game ran last, and the
    acting/evaluation network (eval mode) would then normalise the target game's frames with another game's
    statistics. Ordinary steps keep updating them from the joint batch.
    """
    saved = {name: b.clone() for name, b in net.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for name, b in net.named_buffers():
                b.copy_(saved[name])


class CrossTaskFinetuner(EfficientZeroModule):
    """Finetune on a target game (online) together with offline games.

    Args:
        pretrained: a student checkpoint (DistillationModule) to start from; ``None`` starts from random
            weights (the "w/o pretraining" ablation). Its network must equal this model's.
        network: size preset (the paper finetunes ``efficientzero-l``).
        offline_targets: ``stored`` (the data's search policies; values bootstrapped from the stored search
            values, n-step), ``stored_as_coded`` (the authors' value target: stored value of the same state plus
            the 5-step reward sum), or ``reanalyse`` (this model's search and target network, as for the target).
        gradient_surgery: ``none`` or ``pcgrad`` (Yu et al., 2020) over the per-task gradients.
        gradient_probe: how per-task gradients are taken: ``joint_backward`` (the authors' way: one joint
            forward, then one backward per task; the joint batch-norm statistics, about 1 + M times the backward
            cost on measured steps) or ``task_rows`` (one forward/backward per task on its own rows; cheaper,
            but with per-task batch statistics — an approximation, see the module docstring).
        reanalyse_fraction: share of *target* rows with fresh search policies (authors: all of them).
        reset_policy_head: start the policy head's output layer from zero (uniform prior, as in a new network)
            instead of the student's. A student whose pretraining data favoured one shared action plays that
            action in every state of a new game; with stored (not reanalysed) policy targets its own biased
            search then becomes the target. Not in the authors' code (they finetune every weight).
        reset_value_heads: start the value and value-prefix output layers from zero too (every action's Q is 0
            at the start, as in a new network). The student's value and reward predictions on a new game are
            another game's, and they differ by shared action id: with them the first searches prefer one action
            whatever the policy prior, and that action's visit counts become the policy targets.
        **kwargs: as :class:`~xtra.modules.efficientzero.EfficientZeroModule`.
    """

    def __init__(
        self,
        pretrained: str | None = None,
        network: str = "efficientzero-l",
        offline_targets: Literal["stored", "stored_as_coded", "reanalyse"] = "stored",
        gradient_surgery: Literal["none", "pcgrad"] = "none",
        gradient_probe: Literal["task_rows", "joint_backward"] = "joint_backward",
        reanalyse_fraction: float = 1.0,
        reset_policy_head: bool = False,
        reset_value_heads: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(network=network, reanalyse_fraction=reanalyse_fraction, **kwargs)
        if pretrained:
            loaded = load_network(pretrained)
            require_same_network(loaded, self.net, "pretrained model")
            self.net.load_state_dict(loaded.net.state_dict())
            heads = [self.net.prediction.policy_head] if reset_policy_head else []
            if reset_value_heads:
                heads += [self.net.prediction.value_head, self.net.dynamics.prefix_head]
            for head in heads:
                torch.nn.init.zeros_(head[-1].weight)
                torch.nn.init.zeros_(head[-1].bias)
            self.target_net.load_state_dict(self.net.state_dict())
        # whether an evaluation before the first update scores the pretrained model as it is (its zero-shot score):
        # not when output layers were reset (results.json says so; xtra-report's zero-shot row needs it)
        self.starts_as_pretrained = bool(pretrained) and not (reset_policy_head or reset_value_heads)
        self.probe_gradients = False  # set by the task-weight callback on its measurement steps
        self.last_similarities: dict[str, float] = {}

    def target_task(self) -> str:
        target = self.target_task_id()
        if target is None:
            raise ValueError("the finetuner needs data with a target game played online (CrossTaskDataModule)")
        return target

    def setup(self, stage: str) -> None:
        super().setup(stage)
        sources = getattr(self.trainer.datamodule, "offline_sources", {})
        if self.hparams.offline_targets != "reanalyse":
            for task, source in sources.items():
                if source.get("search_targets") is False:
                    raise ValueError(
                        f"the dataset of {task} has no search targets (source: {source.get('kind')}); use "
                        "model.offline_targets: reanalyse, or relabel it with its teacher first"
                    )

    def task_targets(self, task_id: str, raw: dict[str, torch.Tensor]) -> dict[str, Any]:
        ids = self.action_ids_for(task_id)
        if task_id == self.target_task() or self.hparams.offline_targets == "reanalyse":
            return self.prepare_batch(raw, self.target_net, ids)
        return self.prepare_batch(raw, None, ids, reanalyse_fraction=0.0, value_bootstrap=self.hparams.offline_targets)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, dict[str, Any]], batch_idx: int) -> torch.Tensor:
        if not (self.probe_gradients or self.hparams.gradient_surgery == "pcgrad") or len(batch) < 2:
            return super().training_step(batch, batch_idx)
        out, slices = self.per_task_step(batch)
        self.after_update(batch, out, slices)
        return out.loss.detach()

    def per_task_step(self, batch: dict[str, dict[str, Any]]):
        """Per-task gradients; similarities and/or PCGrad from them; then the update with their combination."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        grads, joint, slices = self.task_gradients(batch, params)
        if self.probe_gradients:
            self.last_similarities = self.similarities(batch, grads)
        self.optimizers().zero_grad(set_to_none=True)
        assign_flat_gradient(params, self.combine(batch, grads))
        self.step_optimizer()
        return joint, slices

    def task_gradients(self, batch: dict[str, dict[str, Any]], params: list[torch.Tensor]):
        """``[T, P]``: row t is the gradient of task t's own PER-weighted mean loss (all-reduced under DDP)."""
        tasks = list(batch)
        if self.hparams.gradient_probe == "joint_backward":
            joint, slices = self.joint_loss(batch)
            check_finite(joint.loss, joint.terms, self.global_step)
            k = self.hparams.unroll_steps
            grads = torch.stack([
                flat_gradient(reduce_loss(joint.per_sample[slices[t]], batch[t]["weights"], k), params, True)
                for t in tasks
            ])  # fmt: skip
        else:
            outs, flat = [], []
            with frozen_running_stats(self.net):
                for task in tasks:  # each task's graph is freed by its own backward before the next forward
                    outs.append(self.compute_loss(batch[task]))
                    check_finite(outs[-1].loss, outs[-1].terms, self.global_step)
                    flat.append(flat_gradient(outs[-1].loss, params))
            grads = torch.stack(flat)
            joint, slices = self.merge_outputs(batch, outs)
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(grads)
            grads /= dist.get_world_size()
        return grads, joint, slices

    def similarities(self, batch: dict[str, dict[str, Any]], grads: torch.Tensor) -> dict[str, float]:
        """Cosine of each offline game's gradient with the target's, after the element-wise clamp."""
        cos = cosine_to_first(grads, self.hparams.max_grad_norm)
        return {task: float(c) for task, c in zip(list(batch)[1:], cos.tolist(), strict=True)}

    def combine(self, batch: dict[str, dict[str, Any]], grads: torch.Tensor) -> torch.Tensor:
        """The joint loss's gradient Σ_t ω_t·(n_t / n)·g_t — or PCGrad's projection of those terms."""
        total_rows = sum(len(b["rows"]) for b in batch.values())
        coeff = torch.tensor(
            [self.task_weight(t) * len(b["rows"]) / total_rows for t, b in batch.items()], device=grads.device
        )
        if self.hparams.gradient_surgery == "pcgrad":
            gen = torch.Generator().manual_seed(int(self.hparams.seed) * 1_000_003 + self.global_step)
            return pcgrad(grads * coeff[:, None], gen)
        return (grads * coeff[:, None]).sum(0)

    def merge_outputs(self, batch, outs):
        """The per-task outputs as one joint output (for priorities and logging), loss weighted as the joint one."""
        sample_terms = {k: torch.cat([o.sample_terms[k] for o in outs]) for k in outs[0].sample_terms}
        per_sample = torch.cat([o.per_sample.detach() for o in outs])
        weights = torch.cat([b["weights"] * self.task_weight(t) for t, b in batch.items()])
        loss = reduce_loss(per_sample, weights, self.hparams.unroll_steps)
        terms = {k: v.mean() for k, v in sample_terms.items()}
        predicted = torch.cat([o.predicted_values for o in outs])
        return LossOutput(per_sample, loss, terms, sample_terms, predicted), task_slices(batch)
