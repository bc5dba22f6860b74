"""NetworkModule: what every stage that trains an EfficientZero network needs, and nothing of the search.

The network, its optimiser and schedule, augmentation, the data contract (games, target game, action ids), logging
and the checkpoint's description of the network. :class:`~xtra.modules.efficientzero.EfficientZeroModule` adds the
search, the target network and the EfficientZero step; behaviour cloning needs only this.
"""

from __future__ import annotations

import contextlib
import functools
import math
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn

from xtra.augmentation import augment
from xtra.callbacks.replay_snapshots import ReplaySnapshots
from xtra.datamodules.contract import task_data
from xtra.distributed import gather_from_ranks
from xtra.envs import network_action_ids
from xtra.network import EfficientZeroNet, network_config, saved_description


def lr_factor(step: int, warmup: int, schedule: str, decay_steps: int, decay_rate: float, total: int) -> float:
    """The learning rate at ``step`` as a fraction of ``lr``: a linear warm-up, then ``step`` decay or a
    ``cosine`` from 1 to 0 at ``total`` updates."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        done = min((step - warmup) / max(total - warmup, 1), 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * done))
    return decay_rate ** math.floor((step - warmup) / decay_steps)


def native_half_precision(precision: str) -> bool:
    """Whether this CPU computes ``precision``'s half type natively (bf16: AVX-512 BF16 or AMX; fp16: AVX-512 FP16).

    Without it oneDNN emulates the type; measured on an AVX2-only CPU (README, "Speed"), bf16 autocast made the
    MinAtar update 8× slower than float32 and the Atari update 8.5× slower.
    """
    if precision.startswith("bf16"):
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    elif precision.startswith("16"):
        probe = getattr(torch.ops.mkldnn, "_is_mkldnn_fp16_supported", None)
    else:
        return True
    return True if probe is None else bool(probe())


def warn_if_emulated_precision(precision: str, device: torch.device) -> None:
    """A half-precision run on a CPU that emulates the type is several times slower than ``32``: say so up front."""
    if device.type == "cpu" and not native_half_precision(precision):
        rank_zero_warn(
            f"--trainer.precision {precision} on this CPU is emulated (no native {precision.split('-')[0]} "
            "instructions): expect it to be several times slower than float32; use --trainer.precision 32 here"
        )


class NetworkModule(L.LightningModule):
    """An EfficientZero network under training.

    Args:
        obs_shape, num_actions: linked from the datamodule (the stacked observation and the action count).
        network: a preset of :data:`xtra.network.PRESETS`; ``network_overrides`` changes single fields.
        optimizer: ``sgd`` (EZ: momentum 0.9, lr 0.2 warmed up over ``lr_warmup_steps``, ×``lr_decay_rate``
            every ``lr_decay_steps``) or ``adam``.
        lr_schedule: after the warm-up, ``step`` (×``lr_decay_rate`` every ``lr_decay_steps``, EfficientZero's) or
            ``cosine`` (half a cosine from ``lr`` to 0 at ``trainer.max_steps``): a model trained on a fixed
            dataset for a fixed number of updates ends on an annealed step instead of wherever a constant rate
            left it.
        augmentation: random shift + intensity on training observations (Atari).
        channels_last: keep the network's convolution weights (and so its activations) in NHWC memory order.
            ``None`` turns it on for the strided Atari trunk, where it made the update about 1.2× faster on the CPU
            (README, "Speed") and is the layout tensor cores want under mixed precision; MinAtar's 10×10 grids
            gained nothing measurable. Numbers are the same up to float rounding.
        seed: set from ``seed_everything`` by the CLI.
    """

    acting = "policy"  # how evaluation acts, recorded in checkpoints: "policy" (the policy head) or "mcts"

    def __init__(
        self,
        obs_shape: tuple[int, int, int] = (12, 96, 96),
        num_actions: int = 18,
        network: str = "efficientzero",
        network_overrides: dict[str, Any] | None = None,
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 0.2,
        lr_warmup_steps: int = 1_000,
        lr_decay_steps: int = 100_000,
        lr_decay_rate: float = 0.1,
        lr_schedule: Literal["step", "cosine"] = "step",
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        max_grad_norm: float = 5.0,
        augmentation: bool = True,
        channels_last: bool | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # every subclass's arguments too (Lightning reads the whole __init__ chain)
        self.automatic_optimization = False
        self.net = EfficientZeroNet(tuple(obs_shape), num_actions, network_config(network, **(network_overrides or {})))
        if self.net.config.downsample if channels_last is None else channels_last:
            self.net.to(memory_format=torch.channels_last)  # Module.to keeps it on every later device move
        self.frame_stack = 1  # set from the datamodule's spec in setup()
        self._augment_rng: torch.Generator | None = None  # made on the training device at the first augmentation
        self._augment_rng_state: torch.Tensor | None = None  # a resumed run's, applied when it is made
        self._action_ids: dict[str, tuple[torch.Tensor | None]] = {}

    # ---------------------------------------------------------------- the data
    def configure_callbacks(self) -> list[L.Callback]:
        """Every checkpoint writes its replay snapshot: an explicit call, not a side effect of ``state_dict``."""
        return [ReplaySnapshots()]

    def setup(self, stage: str) -> None:
        warn_if_emulated_precision(str(self.trainer.precision), self.trainer.strategy.root_device)
        dm = task_data(self._trainer)
        if dm is not None:
            if tuple(dm.obs_shape) != tuple(self.net.obs_shape) or dm.num_actions != self.net.num_actions:
                raise ValueError(
                    f"the model is built for observations {self.net.obs_shape} and {self.net.num_actions} actions, "
                    f"but the data has {tuple(dm.obs_shape)} and {dm.num_actions}: set model.obs_shape / "
                    "model.num_actions to match (the CLI links them from the data)"
                )
            self.frame_stack = dm.frame_stack

    def data_task_ids(self) -> list[str]:
        """The games of the attached datamodule (empty without one)."""
        dm = task_data(self._trainer)
        return list(dm.task_ids) if dm is not None else []

    def target_task_id(self) -> str | None:
        """The game the attached datamodule plays online (None without one, or for offline data)."""
        dm = task_data(self._trainer)
        return dm.target_task_id if dm is not None else None

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

    def evaluation_actor(self, task_id: str, simulations: int | None = None):
        """How evaluation episodes act (each stage says); ``simulations`` sets the search budget of a module that
        searches (default: its own), so that models trained with different budgets can be compared at one."""
        raise NotImplementedError

    def inference_context(self) -> contextlib.AbstractContextManager:
        """The trainer's precision for the network calls outside the loss (targets, acting, evaluation): under
        ``--trainer.precision bf16-mixed`` or ``16-mixed`` the searches run under the loss's autocast, as
        EfficientZero's self-play and reanalyse do under AMP; 32-bit runs and a module without a trainer get none."""
        if self._trainer is None:
            return contextlib.nullcontext()
        return self.trainer.precision_plugin.forward_context()

    # ---------------------------------------------------------------- training
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

    def log_common(self, logs: dict[str, Any], batch_size: int) -> None:
        """The learning rate and the datamodule's own figures alongside ``logs``."""
        logs["train/lr"] = self.optimizers().param_groups[0]["lr"]
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

        total = self.trainer.max_steps if self._trainer is not None else -1
        if hp.lr_schedule == "cosine" and total is not None and total <= hp.lr_warmup_steps:
            raise ValueError(
                f"lr_schedule: cosine anneals to trainer.max_steps, which is {total}: set --trainer.max_steps above "
                f"lr_warmup_steps ({hp.lr_warmup_steps}) or use lr_schedule: step"
            )
        schedule = functools.partial(
            lr_factor, warmup=hp.lr_warmup_steps, schedule=hp.lr_schedule, decay_steps=hp.lr_decay_steps,
            decay_rate=hp.lr_decay_rate, total=total,
        )  # fmt: skip
        sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # ---------------------------------------------------------------- checkpoints
    def rank_rng_states(self) -> dict[str, Any]:
        """This rank's RNG states that a resumed run needs (stages with more RNGs add theirs)."""
        return {"augment": self._augment_rng.get_state() if self._augment_rng is not None else self._augment_rng_state}

    def restore_rank_rngs(self, states: dict[str, Any]) -> None:
        self._augment_rng, self._augment_rng_state = None, states["augment"]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """What the network is, how it acts, which games it learnt, and every rank's RNG states."""
        checkpoint["xtra"] = {
            "network": self.net.describe(),
            "task_ids": self.data_task_ids(),
            "acting": self.acting,
            "rank_rngs": gather_from_ranks(self.rank_rng_states()),
            "format_version": 1,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        saved = saved_description(checkpoint.get("xtra", {}).get("network"))
        if saved is not None and saved != self.net.describe():
            raise ValueError(
                f"checkpoint network {saved} differs from this model's {self.net.describe()}: use the config the "
                "checkpoint was trained with (model.network / model.network_overrides / data.task_id)"
            )
        rngs = checkpoint.get("xtra", {}).get("rank_rngs")
        if rngs is not None:
            world = self.trainer.world_size if self._trainer is not None else 1
            if len(rngs) != world:
                raise ValueError(f"the checkpoint holds the RNG states of {len(rngs)} rank(s), this run has {world}; "
                                 "resume with as many ranks")  # fmt: skip
            self.restore_rank_rngs(rngs[self.global_rank])


def check_finite(loss: torch.Tensor, terms: dict[str, torch.Tensor], step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(
            f"non-finite loss at step {step} (terms: { {k: float(v) for k, v in terms.items()} }); "
            "lower model.lr or check the data"
        )
