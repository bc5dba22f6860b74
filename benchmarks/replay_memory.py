"""Bytes the replay keeps per stored Atari step, against one 3×96×96 uint8 frame. Prints one JSON line.

python benchmarks/replay_memory.py --steps 20000 --segment 200
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from xtra.replay import FIELDS, Replay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000)
    parser.add_argument("--segment", type=int, default=200, help="steps per stored segment (collector flush size)")
    parser.add_argument("--stack", type=int, default=4)
    parser.add_argument("--actions", type=int, default=18)
    args = parser.parse_args()

    frame = (3, 96, 96)
    context = args.stack - 1
    segments = args.steps // args.segment
    rows = segments * (context + args.segment + 1)
    replay = Replay(rows, frame, args.actions, args.stack)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(context + args.segment + 1, *frame), dtype=np.uint8)
    for i in range(segments):
        replay.add_segment(
            frames=frames,
            actions=rng.integers(0, args.actions, args.segment),
            rewards=np.zeros(args.segment, np.float32),
            root_values=np.zeros(args.segment, np.float32),
            policies=np.full((args.segment, args.actions), 1 / args.actions, np.float32),
            step_index=np.arange(i * args.segment, (i + 1) * args.segment),
            terminal=False,
            context=context,
        )
    frame_bytes = int(np.prod(frame))
    total = sum(getattr(replay, name).nbytes for name in FIELDS)
    frames_total = replay.frames.nbytes
    steps = replay.num_steps_added
    print(
        json.dumps(
            {
                "steps": steps,
                "frame_bytes": frame_bytes,
                "bytes_per_step": round(total / steps, 1),
                "frame_bytes_per_step": round(frames_total / steps, 1),
                "frames_per_step_ratio": round(frames_total / steps / frame_bytes, 4),
                "small_fields_bytes_per_step": round((total - frames_total) / steps, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
