"""DistillationModule: one multi-task student distilled from frozen per-game teachers (XTRA stage 1, step 2).

Rows of game i get their targets from teacher i, not from the student: the policy target at every unrolled
position is teacher i's search distribution over game i's actions (placed into the shared action space by the
game's action ids), the value target is the n-step return bootstrapped from teacher i's value. Value prefixes
come from the data and the consistency loss is EfficientZero's. Because the teachers never change, the targets
are stable — the paper's reason this scales to many games where multi-task RL does not.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch

from xtra.checkpoints import CheckpointError, LoadedNetwork, load_network
from xtra.distributed import gather_from_ranks
from xtra.envs import game_name
from xtra.losses import LossOutput
from xtra.modules.efficientzero import EfficientZeroModule
from xtra.network import EfficientZeroNet
from xtra.reanalyse import reanalysed_policies


def policy_kl(out: LossOutput, targets, rows: slice) -> float:
    """Mean KL(teacher search policy ‖ student prior) per valid position: policy CE minus the target entropy."""
    p = targets.policies
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # [B, K+1]
    positions = targets.policy_mask.sum(1).clamp_min(1)
    kl = (out.sample_terms["policy"][rows] - (entropy * targets.policy_mask).sum(1)) / positions
    return float(kl.mean())


class DistillationModule(EfficientZeroModule):
    """A multi-task student trained on every pretraining game with its frozen teacher's targets.

    Args:
        teachers: one checkpoint per pretraining game (written by a TeacherModule run); each is matched to its
            game by the game ids saved in it and must have this student's observation shape and action space.
        network: the student's size preset (the paper's student is ``efficientzero-l``).
        reanalyse_fraction: share of rows whose policy target is the teacher's fresh search (default all; the
            rest use the policies stored in the data).
        cache_teacher_policies: search every dataset state with its teacher once and reuse that policy each time
            the state is sampled again. The teachers are frozen, so a state's target then differs from a fresh
            search only in the search's root noise (one draw per state instead of one per visit); the teachers'
            searches, most of a student's update otherwise, are paid once per state instead of once per visit.
        **kwargs: as :class:`~xtra.modules.efficientzero.EfficientZeroModule`.
    """

    def __init__(
        self,
        teachers: list[str] | None = None,
        network: str = "efficientzero-l",
        reanalyse_fraction: float = 1.0,
        td_decay_env_steps: int | None = None,
        cache_teacher_policies: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            network=network, reanalyse_fraction=reanalyse_fraction, td_decay_env_steps=td_decay_env_steps, **kwargs
        )
        # per game: every dataset row's teacher policy in the shared action space, and which rows hold one
        self.policy_cache: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.teachers: dict[str, EfficientZeroNet] = {}  # a plain dict: teachers are not part of the student
        for path in teachers or []:
            loaded = load_network(path)
            self._check_teacher(loaded)
            task = loaded.task_ids[0]
            if task in self.teachers:
                raise CheckpointError(f"two teachers for {task} (the second is {path}); give one per game")
            for p in loaded.net.parameters():
                p.requires_grad_(False)
            self.teachers[task] = loaded.net

    def _check_teacher(self, loaded: LoadedNetwork) -> None:
        if len(loaded.task_ids) != 1:
            raise CheckpointError(f"{loaded.path} was trained on {loaded.task_ids}, a teacher knows exactly one game")
        ours = self.net.describe()
        theirs = loaded.net.describe()
        if (theirs["obs_shape"], theirs["num_actions"]) != (ours["obs_shape"], ours["num_actions"]):
            raise CheckpointError(
                f"teacher {loaded.path} ({loaded.task_ids[0]}) sees observations {theirs['obs_shape']} with "
                f"{theirs['num_actions']} actions; the student needs {ours['obs_shape']} and {ours['num_actions']}: "
                "train teachers on the same datasets, in the family's full action space"
            )

    def setup(self, stage: str) -> None:
        super().setup(stage)
        missing = [t for t in self.data_task_ids() if t not in self.teachers]
        if missing:
            raise CheckpointError(f"no teacher for {missing}: add their checkpoints to model.teachers")
        unused = [t for t in self.teachers if t not in self.data_task_ids()]
        if unused:
            raise CheckpointError(f"teachers for {unused} have no dataset in data.datasets: add it or drop them")
        for net in self.teachers.values():
            net.to(self.device).eval()

    def teacher(self, task_id: str) -> EfficientZeroNet:
        net = self.teachers[task_id]
        if next(net.parameters()).device != self.device:
            net.to(self.device)
        return net

    def task_targets(self, task_id: str, raw: dict[str, torch.Tensor]) -> dict[str, Any]:
        """The game's teacher reanalyses the rows: its search policies and its bootstrapped values."""
        if not self.hparams.cache_teacher_policies:
            return self.prepare_batch(raw, self.teacher(task_id), self.action_ids_for(task_id))
        prepared = self.prepare_batch(raw, self.teacher(task_id), self.action_ids_for(task_id), reanalyse_fraction=0)
        targets = prepared["targets"]
        n_re = int(round(len(raw["rows"]) * self.hparams.reanalyse_fraction))
        if n_re > 0:
            policies = targets.policies.clone()
            k = torch.arange(targets.policies.shape[1], device=raw["rows"].device)
            states = raw["rows"][:n_re, None] + k  # the dataset row of the observation at each position k
            valid = targets.policy_mask[:n_re] > 0
            cached, searched, root_value = self.cached_policies(task_id, prepared["obs"][:n_re], states, valid)
            policies[:n_re] = cached * targets.policy_mask[:n_re, :, None]
            prepared["targets"] = replace(targets, policies=policies)
            # the share of this batch's policy targets read from the cache rather than searched now
            prepared["stats"]["distill/cached_share"] = 1.0 - searched / max(int(valid.sum()), 1)
            if root_value is not None:  # over the states searched now (first seen), not the whole batch
                prepared["stats"]["mcts/reanalyse_root_value"] = root_value
        return prepared

    def cached_policies(
        self, task_id: str, obs: torch.Tensor, states: torch.Tensor, valid: torch.Tensor
    ) -> tuple[torch.Tensor, int, float | None]:
        """Teacher policies ``[n, K+1, A]`` at dataset rows ``states`` ``[n, K+1]``, how many states were searched
        now (only the ``valid`` states that no earlier batch searched, each distinct state once), and the mean root
        value of those searches (None when all were read from the cache)."""
        width, device = self.net.num_actions, obs.device
        states = states.to(device)
        empty = (torch.zeros(0, width, device=device), torch.zeros(0, dtype=torch.bool, device=device))
        policies, known = (c.to(device) for c in self.policy_cache.get(task_id, empty))  # saved on the CPU
        size = int(states.max()) + 1
        if size > len(known):  # grow to the largest row seen (a dataset is read, never extended)
            policies = torch.cat([policies, torch.zeros(size - len(policies), width, device=device)])
            known = torch.cat([known, torch.zeros(size - len(known), dtype=torch.bool, device=device)])
        wanted = valid & ~known[states]
        searched, root_value = 0, None
        if bool(wanted.any()):
            new, first = torch.unique(states[wanted], return_inverse=True)
            pick = torch.zeros(len(new), dtype=torch.long, device=device)
            pick.scatter_(0, first, torch.arange(len(first), device=device))  # one observation stack per new state
            fresh, root_value = reanalysed_policies(
                self.teacher(task_id), obs[wanted][pick][:, None], self.search, self.rng, width,
                self.action_ids_for(task_id), self.hparams.reanalyse_policy,
            )  # fmt: skip
            policies[new] = fresh[:, 0]
            known[new] = True
            searched = len(new)
        self.policy_cache[task_id] = (policies, known)
        return policies[states], searched, root_value

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Every rank's cached teacher policies (each rank samples its own rows, so each caches other states), so
        that a resumed student reads the very targets it read before on each rank."""
        super().on_save_checkpoint(checkpoint)
        own = {t: {"policies": p.cpu(), "known": k.cpu()} for t, (p, k) in self.policy_cache.items()}
        checkpoint["xtra"]["rank_policy_caches"] = gather_from_ranks(own)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # refuses another number of ranks than the checkpoint's
        saved = checkpoint.get("xtra", {})
        ranks = saved.get("rank_policy_caches")
        own = ranks[self.global_rank] if ranks else saved.get("policy_cache") or {}  # earlier single-rank format
        self.policy_cache = {t: (c["policies"], c["known"]) for t, c in own.items()}

    def task_metrics(self, task_id: str, prepared: dict[str, Any], out: LossOutput, rows: slice) -> dict[str, float]:
        game = game_name(task_id)
        targets = prepared["targets"]
        value_error = (out.predicted_values[rows, 0] - targets.values[:, 0]).abs().mean()
        return {
            f"distill/policy_kl/{game}": policy_kl(out, targets, rows),
            f"distill/value_error/{game}": float(value_error),
        }
