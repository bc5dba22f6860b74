"""Replay: trajectories as rows of fixed-capacity arrays, prioritised sampling of K-step windows, datasets on disk.

Storage is a ring of *rows* addressed by a global, ever-growing row number (physical slot = row % capacity).
A trajectory arrives as a *segment*: ``context`` rows holding the frames that precede it (so that the first
observations of a continued episode stack correctly), one row per step (its frame o_t, action a_t, clipped
reward r_t, search value and visit distribution), and one *final* row holding the frame o_T reached after the
last action. Each frame is stored once; observations are stacked on read. Segments end at an episode end
(``terminal`` when the game ended rather than being cut) or wherever a collector flushes an in-progress episode.

The offline dataset format is this storage written to a directory: one ``.npy`` per field (no pickles) and a
``manifest.json`` written last, into a temporary directory that is renamed into place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from xtra.atomic import fsync_dir

FORMAT_VERSION = 1
FIELDS = (
    "frames", "actions", "rewards", "root_values", "policies",
    "segment_start", "segment_end", "terminal", "step_index", "priorities",
)  # fmt: skip
# every stored field's dtype: the ring is allocated with these and a dataset on disk must hold exactly these
DTYPES = {
    "frames": np.uint8, "actions": np.int16, "rewards": np.float32, "root_values": np.float32,
    "policies": np.float32, "segment_start": np.int64, "segment_end": np.int64, "terminal": np.bool_,
    "step_index": np.int64, "priorities": np.float32,
}  # fmt: skip


class DatasetError(ValueError):
    """A dataset on disk is missing, truncated, corrupt or does not fit what it is used for."""


@dataclass
class SampledWindows:
    """Raw windows of ``unroll_steps + 1`` positions for a batch of sampled steps t (numpy, no model involved).

    Frames cover rows ``t − stack + 1 … t + K + N`` (N = max TD steps), clamped inside the segment; rows past
    the segment's final row repeat it and are masked by the targets. ``steps_left`` is the number of actions
    stored from t to the segment end, ``terminal`` whether that end is a game end (no bootstrap past it).
    """

    frames: np.ndarray  # [B, stack + K + N, C, H, W] uint8
    actions: np.ndarray  # [B, K] int64 (random past the end)
    rewards: np.ndarray  # [B, K + N] float32 (0 past the end)
    policies: np.ndarray  # [B, K + 1, A] float32 stored search policies (0 past the end)
    root_values: np.ndarray  # [B, K + N + 1] float32 stored search values (0 past the end)
    steps_left: np.ndarray  # [B] int64
    terminal: np.ndarray  # [B] bool
    age: np.ndarray  # [B] int64 env steps between collection and now
    weights: np.ndarray  # [B] float32 importance weights (max-normalised)
    rows: np.ndarray  # [B] int64 global rows, for priority updates

    def in_action_space(self, action_ids: np.ndarray | list[int] | tuple[int, ...], count: int) -> SampledWindows:
        """The same windows with a game's own actions mapped into a shared space of ``count`` actions.

        Actions become their shared ids; stored policies are scattered to those ids (zeros elsewhere), so one
        policy head serves every game and cross-entropy pushes the game's illegal actions down.
        """
        ids = np.asarray(action_ids, dtype=np.int64)
        if len(ids) != self.policies.shape[-1] or ids.max(initial=0) >= count:
            raise ValueError(f"action ids {ids.tolist()} do not map {self.policies.shape[-1]} actions into {count}")
        policies = np.zeros((*self.policies.shape[:-1], count), dtype=self.policies.dtype)
        policies[..., ids] = self.policies
        return dataclasses.replace(self, actions=ids[self.actions], policies=policies)


def _atomic_replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished temp directory into place; an existing one is swapped out only after the new one is whole."""
    if final.exists():
        old = final.with_name(f".{final.name}.old-{os.getpid()}-{time.time_ns()}")
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)


def _write_synced(file: Path, write) -> Path:
    """``write(f)`` into a new binary file, then flush and fsync it (the directory rename that follows is atomic)."""
    with open(file, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    return file


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


class Replay:
    """Fixed-capacity trajectory storage with prioritised sampling (EfficientZero's α, β, ε)."""

    def __init__(
        self,
        capacity: int,
        frame_shape: tuple[int, int, int],
        num_actions: int,
        frame_stack: int,
        alpha: float = 0.6,
        epsilon: float = 1e-6,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"replay capacity must be positive, got {capacity}")
        self.capacity = int(capacity)
        self.frame_shape = tuple(int(x) for x in frame_shape)
        self.num_actions = int(num_actions)
        self.frame_stack = int(frame_stack)
        self.alpha, self.epsilon = alpha, epsilon
        shapes = {"frames": (capacity, *self.frame_shape), "policies": (capacity, self.num_actions)}
        for name in FIELDS:
            setattr(self, name, np.zeros(shapes.get(name, (capacity,)), dtype=DTYPES[name]))
        self.actions.fill(-1)
        self.head = 0  # next global row to write
        self.max_priority = 1.0
        self.num_steps_added = 0
        self.num_episodes = 0

    # ------------------------------------------------------------------ writing
    @property
    def tail(self) -> int:
        """The oldest global row still stored."""
        return max(0, self.head - self.capacity)

    def __len__(self) -> int:
        """Stored steps that can be sampled."""
        lo = self.tail
        return int((self.actions[self._slots(np.arange(lo, self.head))] >= 0).sum()) if self.head > lo else 0

    def _slots(self, rows: np.ndarray) -> np.ndarray:
        return rows % self.capacity

    def add_segment(
        self,
        frames: np.ndarray,
        actions: np.ndarray,
        rewards: np.ndarray,
        root_values: np.ndarray,
        policies: np.ndarray,
        step_index: np.ndarray,
        terminal: bool,
        context: int = 0,
        priorities: np.ndarray | None = None,
    ) -> None:
        """Append one segment: ``frames`` holds ``context`` preceding frames, then o_0 … o_T (T = len(actions))."""
        steps = len(actions)
        rows = context + steps + 1
        if frames.shape != (rows, *self.frame_shape):
            raise ValueError(f"segment frames have shape {frames.shape}, expected {(rows, *self.frame_shape)}")
        if steps == 0:
            return
        if rows > self.capacity:
            raise ValueError(f"a segment of {rows} rows does not fit a replay of capacity {self.capacity}")
        start = self.head
        slots = self._slots(np.arange(start, start + rows))
        step_slots = slots[context : context + steps]
        self.frames[slots] = frames
        self.actions[slots] = -1
        self.actions[step_slots] = actions
        self.rewards[slots] = 0.0
        self.rewards[step_slots] = rewards
        self.root_values[slots] = 0.0
        self.root_values[step_slots] = root_values
        self.policies[slots] = 0.0
        self.policies[step_slots] = policies
        self.segment_start[slots] = start
        self.segment_end[slots] = start + rows - 1
        self.terminal[slots] = bool(terminal)
        self.step_index[slots] = 0
        self.step_index[step_slots] = step_index
        self.priorities[slots] = 0.0
        if priorities is None:
            self.priorities[step_slots] = self.max_priority
        else:
            self.priorities[step_slots] = np.maximum(priorities, self.epsilon)
            self.max_priority = max(self.max_priority, float(np.max(priorities)))
        self.head += rows
        self.num_steps_added += steps
        self.num_episodes += int(terminal)

    # ----------------------------------------------------------------- sampling
    def sampleable_rows(self) -> np.ndarray:
        """The rows a sample may draw: those held now that record a step (a segment's context frames and its last
        observation record none)."""
        rows = np.arange(self.tail, self.head)
        return rows[self.actions[self._slots(rows)] >= 0]

    def sample(
        self,
        batch_size: int,
        unroll_steps: int,
        td_steps: int,
        rng: np.random.Generator,
        beta: float = 1.0,
        env_steps: int | None = None,
    ) -> SampledWindows:
        """Draw ``batch_size`` steps ∝ priority^α (with replacement) and gather their windows."""
        rows = self.sampleable_rows()
        if len(rows) == 0:
            raise RuntimeError("cannot sample from an empty replay: collect (or load) data first")
        p = self.priorities[self._slots(rows)].astype(np.float64) ** self.alpha
        cdf = np.cumsum(p)
        pick = np.minimum(np.searchsorted(cdf, rng.random(batch_size) * cdf[-1], side="right"), len(rows) - 1)
        chosen = rows[pick]
        probs = p[pick] / cdf[-1]
        weights = (len(rows) * probs) ** (-beta)
        weights = (weights / weights.max()).astype(np.float32)
        windows = self.gather(chosen, unroll_steps, td_steps, rng)
        windows.weights = weights
        now = self.num_steps_added if env_steps is None else env_steps
        windows.age = np.maximum(now - self.step_index[self._slots(chosen)], 0)
        return windows

    def gather(self, t: np.ndarray, unroll_steps: int, td_steps: int, rng: np.random.Generator) -> SampledWindows:
        """The windows starting at global step rows ``t`` (uniform importance weights, zero age)."""
        k, n, s = unroll_steps, td_steps, self.frame_stack
        st = self._slots(t)
        start, end = self.segment_start[st], self.segment_end[st]
        floor = np.maximum(start, self.tail)
        frame_rows = np.clip(t[:, None] + np.arange(-s + 1, k + n + 1)[None], floor[:, None], end[:, None])
        step_rows = t[:, None] + np.arange(k + n + 1)[None]
        inside = step_rows < end[:, None]  # a step (action) is stored at this row
        step_slots = self._slots(np.minimum(step_rows, end[:, None]))
        actions = self.actions[step_slots[:, :k]].astype(np.int64)
        random_actions = rng.integers(0, self.num_actions, size=actions.shape)
        actions = np.where(inside[:, :k], actions, random_actions)
        rewards = np.where(inside[:, : k + n], self.rewards[step_slots[:, : k + n]], 0.0).astype(np.float32)
        policies = np.where(inside[:, : k + 1, None], self.policies[step_slots[:, : k + 1]], 0.0).astype(np.float32)
        root_values = np.where(inside, self.root_values[step_slots], 0.0).astype(np.float32)
        return SampledWindows(
            frames=self.frames[self._slots(frame_rows)],
            actions=actions,
            rewards=rewards,
            policies=policies,
            root_values=root_values,
            steps_left=(end - t).astype(np.int64),
            terminal=self.terminal[st].copy(),
            age=np.zeros(len(t), dtype=np.int64),
            weights=np.ones(len(t), dtype=np.float32),
            rows=t.astype(np.int64),
        )

    def update_priorities(self, rows: np.ndarray, priorities: np.ndarray) -> None:
        """Write new priorities for sampled rows (rows overwritten since sampling are skipped)."""
        rows = np.asarray(rows, dtype=np.int64)
        keep = rows >= self.tail
        prios = np.maximum(np.asarray(priorities, dtype=np.float32)[keep], self.epsilon)
        self.priorities[self._slots(rows[keep])] = prios
        if len(prios):
            self.max_priority = max(self.max_priority, float(prios.max()))

    # ------------------------------------------------------------------ on disk
    def _ordered(self) -> dict[str, np.ndarray]:
        """Stored rows in global order, with segment pointers relative to the first stored row."""
        rows = np.arange(self.tail, self.head)
        slots = self._slots(rows)
        out = {name: getattr(self, name)[slots] for name in FIELDS}
        out["segment_start"] = np.maximum(out["segment_start"] - self.tail, 0)
        out["segment_end"] = out["segment_end"] - self.tail
        return out

    def save(
        self,
        path: str | os.PathLike,
        task_id: str,
        source: dict | None = None,
        action_ids=None,
        extra_files: dict[str, bytes] | None = None,
    ) -> Path:
        """Write the stored data as an offline dataset directory, atomically.

        ``extra_files`` (name → bytes) are written into the same directory and checksummed with the arrays (a
        checkpoint's replay snapshot keeps the collector's play in progress there)."""
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}-{time.time_ns()}")
        tmp.mkdir()
        try:
            arrays = self._ordered()
            checksums = {}
            for name, arr in arrays.items():

                def save_array(f, a=arr):
                    np.save(f, np.ascontiguousarray(a), allow_pickle=False)

                checksums[f"{name}.npy"] = _sha256(_write_synced(tmp / f"{name}.npy", save_array))
            for name, data in (extra_files or {}).items():
                checksums[name] = _sha256(_write_synced(tmp / name, lambda f, d=data: f.write(d)))
            manifest = {
                "format": "xtra-replay",
                "format_version": FORMAT_VERSION,
                "task_id": task_id,
                "frame_shape": list(self.frame_shape),
                "frame_stack": self.frame_stack,
                "num_actions": self.num_actions,
                "action_ids": list(action_ids) if action_ids is not None else list(range(self.num_actions)),
                "counts": {
                    "rows": int(len(arrays["actions"])),
                    "steps": int((arrays["actions"] >= 0).sum()),
                    "episodes": int(self.num_episodes),
                    "steps_added": int(self.num_steps_added),
                },
                "max_priority": float(self.max_priority),
                "alpha": self.alpha,
                "checksums": checksums,
                "extra_files": sorted(extra_files or {}),
                "source": source or {},
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            _write_synced(tmp / "manifest.json", lambda f: f.write(json.dumps(manifest, indent=2).encode()))
            _atomic_replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return final

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        capacity: int | None = None,
        mmap: bool = False,
        verify: bool = True,
    ) -> tuple[Replay, dict]:
        """Read a dataset directory; returns the replay and its manifest.

        With ``mmap`` the arrays stay on disk (read-only, for offline datasets); otherwise they are copied into a
        ring of ``capacity`` rows (default: exactly the stored rows) that can keep growing.
        """
        manifest = read_manifest(path, verify=verify)
        root = Path(path)
        arrays = {}
        for name in FIELDS:
            arrays[name] = np.load(root / f"{name}.npy", mmap_mode="r" if mmap else None, allow_pickle=False)
        rows = manifest["counts"]["rows"]
        _check_arrays(root, manifest, arrays)
        if mmap and capacity not in (None, rows):
            raise ValueError("a memory-mapped dataset is read-only; load it without mmap to give it a capacity")
        replay = cls(
            max(capacity or rows, 1), tuple(manifest["frame_shape"]), manifest["num_actions"], manifest["frame_stack"],
            alpha=manifest.get("alpha", 0.6),
        )  # fmt: skip
        if rows > replay.capacity:
            raise ValueError(f"dataset {root} has {rows} rows, more than the capacity {replay.capacity}")
        if mmap:
            for name in FIELDS:
                setattr(replay, name, arrays[name])
        else:
            for name in FIELDS:
                getattr(replay, name)[:rows] = arrays[name]
        replay.head = rows
        replay.max_priority = float(manifest.get("max_priority", 1.0))
        replay.num_steps_added = int(manifest["counts"].get("steps_added", manifest["counts"]["steps"]))
        replay.num_episodes = int(manifest["counts"]["episodes"])
        return replay, manifest


def read_manifest(path: str | os.PathLike, verify: bool = True) -> dict:
    """Load and check a dataset's manifest (and, with ``verify``, every file's checksum)."""
    root = Path(path)
    file = root / "manifest.json"
    if not root.is_dir():
        raise DatasetError(f"no dataset at {root}: expected a directory written by `--data.save_dataset` or xtra-data")
    if not file.is_file():
        raise DatasetError(
            f"{file} is missing: {root} is not a complete xtra dataset (an interrupted write leaves no manifest); "
            "write it again"
        )
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as e:
        raise DatasetError(f"{file} is not valid JSON ({e}); the dataset is corrupt, write it again") from e
    if manifest.get("format") != "xtra-replay":
        raise DatasetError(f"{file} does not describe an xtra dataset (format={manifest.get('format')!r})")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DatasetError(
            f"{root} has dataset format version {manifest.get('format_version')}, this xtra reads version "
            f"{FORMAT_VERSION}; convert it with the xtra version that wrote it"
        )
    for f in [root / f"{name}.npy" for name in FIELDS] + [root / name for name in manifest.get("extra_files", [])]:
        if not f.is_file():
            raise DatasetError(f"{f} is missing; the dataset is incomplete, write it again")
        if verify and _sha256(f) != manifest["checksums"].get(f.name):
            raise DatasetError(f"{f} does not match its checksum in {file}: the file is corrupt or was modified")
    return manifest


def _check_arrays(root: Path, manifest: dict, arrays: dict[str, np.ndarray]) -> None:
    rows = manifest["counts"]["rows"]
    shapes = {
        "frames": (rows, *manifest["frame_shape"]),
        "policies": (rows, manifest["num_actions"]),
    }
    for name, arr in arrays.items():
        expected = shapes.get(name, (rows,))
        if arr.shape != tuple(expected):
            raise DatasetError(f"{root / (name + '.npy')} has shape {arr.shape}, the manifest says {tuple(expected)}")
        if arr.dtype != DTYPES[name]:
            raise DatasetError(
                f"{root / (name + '.npy')} holds {arr.dtype}, xtra datasets store {np.dtype(DTYPES[name])}"
                + (" (frames as 0-255 integers, not scaled floats)" if name == "frames" else "")
                + "; write it with xtra (Replay.save) or convert it"
            )


def require_steps(path: str | os.PathLike, manifest: dict) -> None:
    """An offline dataset must hold at least one step to learn from."""
    if manifest["counts"]["steps"] < 1:
        raise DatasetError(f"{path} holds no steps (an empty dataset); record it again with a positive budget")


def reward_summary(path: str | os.PathLike) -> dict[str, int | float]:
    """How much reward an offline dataset holds: stored steps, steps with a nonzero reward, their sum.

    An offline learner can only learn a game's values from rewards its data holds: a dataset without one teaches
    dynamics and a policy prior of arbitrary play, and a teacher trained on it scores whatever that arbitrary
    policy happens to score (results/minatar-freeway-data/)."""
    root = Path(path)
    manifest = read_manifest(root, verify=False)
    rewards = np.load(root / "rewards.npy", mmap_mode="r", allow_pickle=False)
    return {"steps": int(manifest["counts"]["steps"]), "rewarded_steps": int(np.count_nonzero(rewards)),
            "reward_sum": float(np.sum(rewards, dtype=np.float64))}  # fmt: skip
