"""The ``xtra`` command: LightningCLI over the xtra modules and datamodules (``xtra fit -c configs/….yaml``)."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.cli import LightningCLI

from xtra import __version__
from xtra.shipped import with_shipped_configs


def seed_paths(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every ``seed`` argument under a parsed class config (nested datamodules included)."""
    if not isinstance(node, Namespace):
        return []
    paths = []
    init = node.get("init_args") if "class_path" in node else None
    for key, value in (vars(init) if isinstance(init, Namespace) else {}).items():
        here = f"{prefix}.init_args.{key}"
        paths += [here] if key == "seed" else seed_paths(value, here)
    return paths


class XtraCLI(LightningCLI):
    """Links the data's observation shape and action count into the model so each is set in one place.

    ``seed_everything`` owns every seed of a run: torch's (Lightning seeds it), the model's (search noise,
    reanalyse sampling), the data's (environments, replay sampling) and those of nested datamodules. A seed
    set elsewhere to another non-zero value is refused, so two runs that differ in ``seed_everything`` differ in
    every random stream, and no stream silently stays at its default.
    """

    def parse_arguments(self, parser: Any, args: Any) -> None:
        """Shipped configs are found from anywhere and every overlay's base is read first (``xtra/shipped.py``),
        however the CLI is built (the ``xtra`` command, a script, a test)."""
        try:
            if isinstance(args, list):
                args = with_shipped_configs(args)
            elif args is None and (expanded := with_shipped_configs(sys.argv[1:])) != sys.argv[1:]:
                args = expanded
        except ValueError as err:  # a broken '# extends:' chain: the parser's usage error, not a traceback
            parser.error(str(err))
        super().parse_arguments(parser, args)

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        seed = config.get("seed_everything")
        if isinstance(seed, bool) or not isinstance(seed, int):
            return
        for root in ("model", "data"):
            for path in seed_paths(config.get(root), root):
                current = config[path]
                if current not in (0, seed):
                    raise ValueError(
                        f"{path} is {current} but seed_everything is {seed}: seed_everything sets every seed of a "
                        f"run; drop the {path} override"
                    )
                config[path] = seed

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        """Checkpoints are written atomically (see ``xtra.checkpoint_io``) unless another CheckpointIO is set."""
        from lightning.pytorch.plugins.io import TorchCheckpointIO

        from xtra.checkpoint_io import AtomicCheckpointIO

        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def before_fit(self) -> None:
        """Every fit writes ``results.json`` when it ends (:class:`~xtra.callbacks.run_record.RunRecord`); ``--ckpt_path
        last`` resumes this run's newest intact checkpoint in its own version folder."""
        from xtra.callbacks.run_record import RunRecord

        if not any(isinstance(c, RunRecord) for c in self.trainer.callbacks):
            config = self.config[self.subcommand]
            resolved = self._parser(self.subcommand).dump(config, skip_none=False)
            self.trainer.callbacks.append(RunRecord(resolved, config.get("seed_everything")))
        if self.config_init[self.subcommand].get("ckpt_path") == "last":
            from xtra.resume import resolve_last

            path = resolve_last(self.trainer)
            self.config_init[self.subcommand]["ckpt_path"] = str(path)
            print(f"xtra: resuming from {path}", file=sys.stderr)

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(
            {
                "model": {"class_path": "xtra.modules.efficientzero.EfficientZeroModule"},
                "data": {"class_path": "xtra.datamodules.online.OnlineReplayDataModule"},
            }
        )
        parser.link_arguments("data.obs_shape", "model.init_args.obs_shape", apply_on="instantiate")
        parser.link_arguments("data.num_actions", "model.init_args.num_actions", apply_on="instantiate")


# Known-harmless messages every fit would print; each is dropped for the reason beside it.
HARMLESS_WARNINGS = (
    # the entry point hands sys.argv[1:] to LightningCLI itself (after handling --version and --list-tasks)
    r"LightningCLI's args parameter is intended to run from within Python",
    # Lightning's own pytree helper against newer torch; nothing of ours calls it
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",
    # by design: the module's hook (uint8 frames -> float on the device) is the one that must run
    r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a `LightningDataModule`",
    # by design: a checkpoint holds the state after its step's update, the state a resumed run continues from
    r"Using ModelCheckpoint with manual optimization and every_n_train_steps",
    # the loader yields only batch requests; the datamodules save and restore the state batches are made from
    r"You're resuming from a checkpoint that ended before the epoch ended and your dataloader is not resumable",
)


class _DropTips(logging.Filter):
    """Lightning advertises optional cloud packages at every fit ("💡 Tip: ..."); nothing to act on."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip")


def quiet_known_noise() -> None:
    for pattern in HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())


def run(argv: list[str]) -> XtraCLI:
    """Run one ``xtra`` command in this process and return the CLI (its ``trainer`` and ``model`` included)."""
    import lightning as L

    from xtra.allocator import keep_freed_memory

    quiet_known_noise()
    keep_freed_memory()  # CPU updates reuse their activations instead of page-faulting them in (README, "Speed")

    from xtra.modules.base import NetworkModule

    return XtraCLI(
        NetworkModule,  # every stage's base; the default model is EfficientZeroModule (add_arguments_to_parser)
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"default_env": True},
        args=argv,
    )


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["--version"]:
        print(f"xtra {__version__}")
        return
    if args[:1] == ["--list-tasks"]:
        from xtra.envs import valid_task_ids

        print("\n".join(valid_task_ids()))
        return
    run(args)


if __name__ == "__main__":
    main()
