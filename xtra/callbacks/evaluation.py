"""Evaluation episodes during and after training: greedy MCTS, raw game scores, normalised scores on Atari."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
from lightning.pytorch.utilities import rank_zero_only

from xtra.atomic import write_bytes_atomic
from xtra.collector import evaluate
from xtra.datamodules.contract import task_data
from xtra.envs import EnvOptions, game_name
from xtra.scores import human_normalized


def log_folder(trainer: L.Trainer) -> Path:
    """The run's log folder, asked of the first logger directly: ``Trainer.log_dir`` is a broadcast under DDP, which
    a callback running on rank 0 alone would wait on forever."""
    logger = trainer.loggers[0] if trainer.loggers else None
    folder = getattr(logger, "log_dir", None) if logger is not None else None
    return Path(folder or trainer.default_root_dir)


def write_evaluation(folder: Path, record: dict) -> None:
    """One evaluation record as ``<folder>/eval/step<N>.json``, atomically (reports read every such file)."""
    write_bytes_atomic(folder / "eval" / f"step{record['global_step']}.json", json.dumps(record).encode())


class Evaluation(L.Callback):
    """Play ``episodes`` greedy episodes every ``every_n_steps`` updates and when training ends (rank 0).

    Args:
        task_ids: games to evaluate (default: the online target game, or every game of offline data); any game
            works, also one the model never saw (zero-shot), as long as its actions fit the network's.
        episodes: episodes per game (Atari protocol: 32).
        seed: evaluation games' seed, independent of the training seed so every checkpoint sees the same games.
        max_episode_steps: cap per episode (default: the environment's own).
        env_options: evaluation protocol (default: the datamodule's; episodic life is never applied).
        at_start / at_end: also evaluate before the first update (a pretrained model's zero-shot score) and after
            the last one.
        simulations: MCTS simulations per evaluation move (default: the module's own search). Returns of models
            trained with different search budgets (a data producer and the offline teacher trained on its data)
            compare the networks only when both are evaluated at one budget.
    Each evaluation's per-episode returns, greedy-move counts per action and mean visit entropy are written to
    ``<log_dir>/eval/step<N>.json`` and logged (``eval/action_share/<game>/<a>``, ``eval/top_action_share/<game>``,
    ``eval/visit_entropy/<game>``): a policy that collapsed onto one action shows as a top share near 1.
    """

    def __init__(
        self,
        every_n_steps: int = 10_000,
        episodes: int = 32,
        seed: int = 0,
        task_ids: list[str] | None = None,
        max_episode_steps: int | None = None,
        env_options: EnvOptions | None = None,
        at_end: bool = True,
        at_start: bool = False,
        simulations: int | None = None,
    ) -> None:
        if simulations is not None and simulations < 1:
            raise ValueError(f"simulations must be at least 1 (or null for the module's own search), got {simulations}")
        self.every_n_steps = every_n_steps
        self.episodes = episodes
        self.seed = seed
        self.task_ids = task_ids
        self.max_episode_steps = max_episode_steps
        self.env_options = env_options
        self.at_end = at_end
        self.at_start = at_start
        self.simulations = simulations
        self.last_return: float | None = None
        self.history: list[dict] = []

    def _tasks(self, trainer: L.Trainer) -> list[str]:
        if self.task_ids:
            return list(self.task_ids)
        target = trainer.lightning_module.target_task_id()
        return [target] if target else trainer.lightning_module.data_task_ids()

    def _options(self, trainer: L.Trainer) -> EnvOptions | None:
        data = task_data(trainer)
        return self.env_options if self.env_options is not None or data is None else data.env_options

    def run(self, trainer: L.Trainer, module: L.LightningModule) -> dict[str, float]:
        was_training = module.net.training
        module.net.eval()
        metrics: dict[str, float] = {}
        data = task_data(trainer)
        env_steps = data.env_steps if data is not None else None
        record = {"global_step": trainer.global_step, "env_steps": env_steps, "returns": {}, "actions": {},
                  "visit_entropy": {}, "simulations": self.simulations}  # fmt: skip
        try:
            for task in self._tasks(trainer):
                actor = module.evaluation_actor(task, self.simulations)
                played = evaluate(actor, task, self.episodes, self.seed, self._options(trainer), self.max_episode_steps)
                returns = played.returns
                game = game_name(task)
                mean = float(np.mean(returns))
                metrics[f"eval/return/{game}"] = mean
                metrics[f"eval/return_std/{game}"] = float(np.std(returns))
                metrics[f"eval/top_action_share/{game}"] = played.top_action_share
                metrics[f"eval/visit_entropy/{game}"] = float(played.visit_entropy)
                shares = played.action_counts / max(played.action_counts.sum(), 1)
                metrics.update({f"eval/action_share/{game}/{a}": float(s) for a, s in enumerate(shares)})
                record["actions"][task] = played.action_counts.tolist()
                record["visit_entropy"][task] = float(played.visit_entropy)
                hns = human_normalized(task, mean)
                if hns is not None:
                    metrics[f"eval/hns/{game}"] = hns
                record["returns"][task] = returns.tolist()
        finally:
            module.net.train(was_training)
        games = [k for k in metrics if k.startswith("eval/return/")]
        metrics["eval/return_mean"] = float(np.mean([metrics[k] for k in games]))
        self.last_return = metrics["eval/return_mean"]
        self.history.append({**record, "metrics": metrics})
        if trainer.logger is not None:
            trainer.logger.log_metrics(metrics, step=trainer.global_step)
        self._write(trainer, record)
        return metrics

    def _write(self, trainer: L.Trainer, record: dict) -> None:
        write_evaluation(log_folder(trainer), record)

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self.run(trainer, pl_module)
        if self.last_return is not None:
            pl_module.log("eval_return", self.last_return, prog_bar=True, rank_zero_only=True, batch_size=1)

    @rank_zero_only
    def on_train_start(self, trainer, pl_module) -> None:
        if self.at_start and trainer.global_step == 0:
            self.run(trainer, pl_module)

    @rank_zero_only
    def on_train_end(self, trainer, pl_module) -> None:
        if self.at_end and (not self.history or self.history[-1]["global_step"] != trainer.global_step):
            self.run(trainer, pl_module)

    def state_dict(self) -> dict:
        """The last return and every evaluation so far (lists of numbers): a resumed run's record and curve
        (``results.json``) then hold the evaluations from before the stop too."""
        return {"last_return": self.last_return, "history": self.history}

    def load_state_dict(self, state_dict: dict) -> None:
        self.last_return = state_dict.get("last_return")
        self.history = list(state_dict.get("history", []))
