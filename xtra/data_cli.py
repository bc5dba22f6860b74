"""``xtra-data``: inspect and check offline datasets (the directories written by ``save_dataset``)."""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from xtra.replay import DatasetError, Replay, read_manifest, require_steps


def info(path: str) -> dict:
    """Manifest facts plus what the arrays say (episodes, return statistics) without checksumming."""
    replay, manifest = Replay.load(path, mmap=True, verify=False)
    rows = np.arange(replay.head)
    steps = rows[replay.actions[rows] >= 0]
    rewards = replay.rewards[steps]
    return {
        "path": str(path),
        "task_id": manifest["task_id"],
        "format_version": manifest["format_version"],
        "frame_shape": manifest["frame_shape"],
        "frame_stack": manifest["frame_stack"],
        "num_actions": manifest["num_actions"],
        "action_ids": manifest["action_ids"],
        "counts": manifest["counts"],
        "reward_sum": float(rewards.sum()),
        "reward_per_step": float(rewards.mean()) if len(rewards) else 0.0,
        "source": manifest.get("source", {}),
        "created": manifest.get("created"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="xtra-data", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p_info = sub.add_parser("info", help="print a dataset's manifest and summary as JSON")
    p_info.add_argument("path")
    p_val = sub.add_parser("validate", help="check manifest, shapes and every checksum; exit 1 on a problem")
    p_val.add_argument("path")
    p_imp = sub.add_parser("import-minari", help="convert a local Minari dataset (needs the xtra[minari] extra)")
    p_imp.add_argument("source", help="a Minari dataset id (found locally) or its directory")
    p_imp.add_argument("--task-id", required=True, help="the game the data is from, e.g. atari/Breakout")
    p_imp.add_argument("--out", required=True, help="the dataset directory to write")
    p_imp.add_argument("--full-action-space", action="store_true", help="the data uses all 18 (6) actions")
    p_imp.add_argument("--raw-rewards", action="store_true", help="keep rewards unclipped")
    p_imp.add_argument("--overwrite", action="store_true", help="replace an existing dataset at --out")
    args = parser.parse_args(argv)
    try:
        if args.command == "info":
            print(json.dumps(info(args.path), indent=2))
        elif args.command == "import-minari":
            from xtra.envs import EnvOptions
            from xtra.minari_import import import_minari

            options = EnvOptions(full_action_space=args.full_action_space)
            path = import_minari(args.source, args.task_id, args.out, options, not args.raw_rewards, args.overwrite)
            print(json.dumps(info(str(path)), indent=2))
        else:
            manifest = read_manifest(args.path, verify=True)
            Replay.load(args.path, mmap=True, verify=False)
            require_steps(args.path, manifest)
            print(f"{args.path}: ok")
    except (DatasetError, FileExistsError, ImportError, ValueError) as e:
        print(f"xtra-data: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
