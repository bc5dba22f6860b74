"""The ``xtra`` command."""

from __future__ import annotations

import argparse
import sys

from xtra import __version__


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="xtra",
        description="XTRA on EfficientZero: online, offline-teacher, distillation and cross-task finetuning stages.",
    )
    parser.add_argument("--version", action="version", version=f"xtra {__version__}")
    parser.add_argument("--list-tasks", action="store_true", help="print every valid task id and exit")
    args = parser.parse_args(argv)
    if args.list_tasks:
        from xtra.envs import valid_task_ids

        print("\n".join(valid_task_ids()))
        return 0
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
