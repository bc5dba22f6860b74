"""Import a local Minari dataset into the xtra dataset format (optional extra ``xtra[minari]``).

Each Minari episode becomes one segment: its observations resampled to the task's frames (Atari RGB screens are
area-resampled exactly as the environment does; MinAtar boolean grids are padded to 10 channels), its actions
(which must be the game's own action indices), sign-clipped rewards, and as "search policy" the one-hot recorded
action — the data come from an unknown behaviour policy, so no search values are claimed (``root_values`` 0 and
``source.search_targets`` false; teachers reanalyse such data, they do not trust it).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from xtra.envs import (
    MINATAR_CHANNELS,
    EnvOptions,
    area_resize_matrix,
    env_spec,
    parse_task_id,
    resample_screen,
    resolve_options,
)
from xtra.replay import DatasetError, Replay


def _open(source: str):
    try:
        import minari
    except ImportError as e:
        raise ImportError("importing Minari datasets needs the extra: pip install 'xtra[minari]'") from e
    if Path(source).is_dir():
        root = Path(source)
        return minari.MinariDataset(root / "data" if (root / "data").is_dir() else root)
    try:
        return minari.load_dataset(source, download=False)
    except FileNotFoundError as e:
        raise DatasetError(
            f"no local Minari dataset {source!r} (looked in $MINARI_DATASETS_PATH or ~/.minari/datasets); "
            "give its directory or download it first"
        ) from e


def frame_converter(task_id: str, options: EnvOptions | None, obs_shape: tuple[int, ...]):
    """A function from one episode's observations ``[T+1, …]`` to frames ``[T+1, C, H, W]`` uint8."""
    family, _ = parse_task_id(task_id)
    opts = resolve_options(task_id, options)
    if family == "minatar":
        if len(obs_shape) != 3 or obs_shape[:2] != (10, 10) or obs_shape[2] > MINATAR_CHANNELS:
            raise DatasetError(f"MinAtar observations are 10×10×C grids, the Minari dataset has {obs_shape}")

        def convert(obs: np.ndarray) -> np.ndarray:
            frames = np.zeros((len(obs), MINATAR_CHANNELS, 10, 10), dtype=np.uint8)
            frames[:, : obs.shape[-1]] = np.asarray(obs, dtype=np.uint8).transpose(0, 3, 1, 2)
            return frames

        return convert
    if len(obs_shape) != 3 or obs_shape[2] != 3:
        raise DatasetError(f"Atari observations must be H×W×3 RGB screens (obs_type='rgb'), got {obs_shape}")
    rows = area_resize_matrix(obs_shape[0], opts.resolution)
    cols_t = area_resize_matrix(obs_shape[1], opts.resolution).T.copy()
    return lambda obs: np.stack([resample_screen(o, rows, cols_t, opts.gray_scale) for o in obs])


def import_minari(
    source: str,
    task_id: str,
    out: str | Path,
    env_options: EnvOptions | None = None,
    clip_rewards: bool = True,
    overwrite: bool = False,
) -> Path:
    """Convert ``source`` (a Minari dataset id or directory) for ``task_id`` into a dataset directory ``out``."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} exists; choose another path or pass --overwrite to replace it")
    dataset = _open(source)
    spec = env_spec(task_id, env_options)
    n_actions = getattr(dataset.action_space, "n", None)
    if n_actions is None or int(n_actions) != spec.num_actions:
        raise DatasetError(
            f"the Minari dataset's action space is {dataset.action_space}, {task_id} has {spec.num_actions} actions "
            "with these options (record the data with the same action set, or set full_action_space)"
        )
    convert = frame_converter(task_id, env_options, tuple(dataset.observation_space.shape))
    episodes = list(dataset.iterate_episodes())
    if not episodes:
        raise DatasetError(f"the Minari dataset {source!r} holds no episodes")
    rows = sum(len(e) + 1 for e in episodes)
    replay = Replay(rows, spec.frame_shape, spec.num_actions, spec.frame_stack)
    step = 0
    for episode in episodes:
        steps = len(episode)
        if steps == 0:
            continue
        actions = np.asarray(episode.actions, dtype=np.int64)
        rewards = np.asarray(episode.rewards, dtype=np.float32)
        replay.add_segment(
            frames=convert(np.asarray(episode.observations)),
            actions=actions,
            rewards=np.sign(rewards) if clip_rewards else rewards,
            root_values=np.zeros(steps, dtype=np.float32),
            policies=np.eye(spec.num_actions, dtype=np.float32)[actions],
            step_index=np.arange(step, step + steps),
            terminal=bool(episode.terminations[-1]),
        )
        step += steps
    source_info = {
        "kind": "minari",
        "dataset": str(source),
        "episodes": len(episodes),
        "search_targets": False,
        "rewards": "sign-clipped" if clip_rewards else "raw",
    }
    return replay.save(out, task_id, source=source_info, action_ids=spec.action_ids)
