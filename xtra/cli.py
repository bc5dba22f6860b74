"""The ``xtra`` command: LightningCLI over the xtra modules and datamodules (``xtra fit -c configs/….yaml``)."""

from __future__ import annotations

import sys

from lightning.pytorch.cli import LightningCLI

from xtra import __version__


class XtraCLI(LightningCLI):
    """Links the data's observation shape and action count into the model so each is set in one place."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.set_defaults(
            {
                "model": {"class_path": "xtra.modules.efficientzero.EfficientZeroModule"},
                "data": {"class_path": "xtra.datamodules.online.OnlineReplayDataModule"},
            }
        )
        parser.link_arguments("data.obs_shape", "model.init_args.obs_shape", apply_on="instantiate")
        parser.link_arguments("data.num_actions", "model.init_args.num_actions", apply_on="instantiate")


def run(argv: list[str]) -> XtraCLI:
    """Run one ``xtra`` command in this process and return the CLI (its ``trainer`` and ``model`` included)."""
    import lightning as L

    from xtra.modules.efficientzero import EfficientZeroModule

    return XtraCLI(
        EfficientZeroModule,
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
