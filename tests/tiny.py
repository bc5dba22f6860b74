"""Small settings shared by the stage tests: a tiny network, a Trainer that logs to CSV, a recorded dataset."""

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from xtra.datamodules.online import OnlineReplayDataModule
from xtra.mcts import SearchOptions
from xtra.modules.efficientzero import EfficientZeroModule

TINY_NET = {"lstm_hidden": 16, "projection_hidden": 32, "projection_out": 32, "predictor_hidden": 16}
SMALL = dict(network="minatar", network_overrides=TINY_NET, mcts=SearchOptions(num_simulations=4), unroll_steps=3,
             td_steps=3, optimizer="adam", lr=1e-3, lr_warmup_steps=2, target_update_interval=4, seed=1)  # fmt: skip
GAMES = ("minatar/breakout", "minatar/space_invaders")


def trainer(root, max_steps, **kw):
    return L.Trainer(
        max_steps=max_steps, accelerator="cpu", devices=1, logger=CSVLogger(root, name="log"),
        enable_progress_bar=False, enable_model_summary=False, log_every_n_steps=1, default_root_dir=root,
        **{"enable_checkpointing": False, **kw},
    )  # fmt: skip


def record(task, path, root):
    """A dataset from a short online run (random warm-up plus a few MCTS steps): no expert data needed."""
    dm = OnlineReplayDataModule(task, num_envs=4, env_steps=240, warmup_steps=160, batch_size=8, segment_length=30,
                                save_dataset=str(path), seed=5)  # fmt: skip
    module = EfficientZeroModule(dm.obs_shape, dm.num_actions, **SMALL)
    trainer(root, 6).fit(module, dm)
    return path
