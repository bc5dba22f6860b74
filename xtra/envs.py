"""Environments: task ids, the Atari-100k protocol on the real ALE, padded MinAtar, batched stepping.

Task ids are ``atari/<Game>`` (any ROM that ale-py ships, CamelCase as in ``atari/MsPacman``) and
``minatar/<game>``. Every game emits uint8 frames of shape ``(C, H, W)``; :class:`VectorEnv` steps n games
in one process, stacks frames for acting and resets finished games itself.

The Atari protocol is EfficientZero's (``efficientzero-spec.md`` §1): frame skip 4 with a max over the last
two raw frames, 96×96 RGB (area resampling), 1–30 no-op starts, episodic life for training only, sticky
actions off (the ``NoFrameskip-v4`` protocol of the Atari-100k papers), and a cap on episode length.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace
from importlib.util import find_spec

import numpy as np
import torch

MINATAR_GAMES = ("asterix", "breakout", "freeway", "seaquest", "space_invaders")
MINATAR_CHANNELS = 10  # seaquest has the most channels; every game is zero-padded to it
FULL_ATARI_ACTIONS = 18
FULL_MINATAR_ACTIONS = 6


@dataclass(frozen=True)
class EnvOptions:
    """The environment protocol. ``None`` fields take the family's default (see :func:`resolve_options`).

    Attributes:
        full_action_space: use every action of the console (18 on Atari, 6 on MinAtar) so that all games
            share one policy head; otherwise each game's minimal action set.
        frame_stack: frames stacked into one observation (Atari 4, MinAtar 1: its channels carry motion).
        max_episode_steps: agent steps before an episode is truncated (Atari 27 000 = 108 000 frames).
        sticky_action_prob: probability that the previous action repeats (Atari 0.0 as in the Atari-100k
            papers; MinAtar 0.1, its own default).
        frame_skip: Atari frames per agent step.
        resolution: Atari frames are resampled to ``resolution × resolution``.
        gray_scale: Atari frames in grey (1 channel) rather than RGB (3).
        noop_max: Atari resets play 1…noop_max no-ops.
        episodic_life: a lost life ends a *training* episode on Atari (never an evaluation one).
    """

    full_action_space: bool = False
    frame_stack: int | None = None
    max_episode_steps: int | None = None
    sticky_action_prob: float | None = None
    frame_skip: int = 4
    resolution: int = 96
    gray_scale: bool = False
    noop_max: int = 30
    episodic_life: bool = True


@dataclass(frozen=True)
class EnvSpec:
    """What a learner needs to know about a task: shapes, actions and the mapping to the shared action space."""

    task_id: str
    frame_shape: tuple[int, int, int]
    frame_stack: int
    num_actions: int
    action_ids: tuple[int, ...]  # local action index -> index in the console's full action set
    full_action_count: int

    @property
    def obs_shape(self) -> tuple[int, int, int]:
        c, h, w = self.frame_shape
        return (c * self.frame_stack, h, w)


def _camel_to_snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def _snake_to_camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@functools.cache
def atari_games() -> dict[str, str]:
    """CamelCase game name -> ale-py ROM id, for every ROM bundled in the installed ale-py."""
    from ale_py import roms

    return {_snake_to_camel(rom): rom for rom in roms.get_all_rom_ids()}


def minatar_available() -> bool:
    return find_spec("minatar") is not None


def valid_task_ids() -> list[str]:
    return [f"atari/{g}" for g in sorted(atari_games())] + [f"minatar/{g}" for g in MINATAR_GAMES]


def parse_task_id(task_id: str) -> tuple[str, str]:
    """Split and validate a task id; an unknown id fails with the list of valid ones."""
    family, _, game = task_id.partition("/")
    if family == "atari" and game in atari_games():
        return family, game
    if family == "minatar" and game in MINATAR_GAMES:
        if not minatar_available():
            raise ModuleNotFoundError(
                f"task {task_id!r} needs MinAtar, an optional GPL-3.0 extra: pip install 'xtra[minatar]'"
            )
        return family, game
    hint = ""
    if family == "atari" and _snake_to_camel(_camel_to_snake(game)) in atari_games():
        hint = f" (did you mean 'atari/{_snake_to_camel(_camel_to_snake(game))}'?)"
    elif family == "atari" and _snake_to_camel(game) in atari_games():
        hint = f" (did you mean 'atari/{_snake_to_camel(game)}'?)"
    raise ValueError(
        f"unknown task id {task_id!r}{hint}. Valid ids are 'atari/<Game>' for the ROMs ale-py ships and "
        f"'minatar/<game>': {', '.join(valid_task_ids())}"
    )


def game_name(task_id: str) -> str:
    """``atari/Pong`` → ``Pong``: the part of a task id used in metric names and file names."""
    return task_id.split("/", 1)[1]


def resolve_options(task_id: str, options: EnvOptions | None = None) -> EnvOptions:
    """Fill the family defaults into ``options``."""
    family, _ = parse_task_id(task_id)
    options = options or EnvOptions()
    atari = family == "atari"
    return replace(
        options,
        frame_stack=options.frame_stack if options.frame_stack is not None else (4 if atari else 1),
        max_episode_steps=(
            options.max_episode_steps if options.max_episode_steps is not None else (27_000 if atari else 10_000)
        ),
        sticky_action_prob=(
            options.sticky_action_prob if options.sticky_action_prob is not None else (0.0 if atari else 0.1)
        ),
    )


def area_resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """Row-stochastic ``(n_out, n_in)`` matrix of exact pixel-area overlaps (area resampling, as INTER_AREA)."""
    scale = n_in / n_out
    edges = np.arange(n_out + 1) * scale
    lo, hi = edges[:-1, None], edges[1:, None]
    left = np.arange(n_in)[None, :]
    overlap = np.clip(np.minimum(hi, left + 1) - np.maximum(lo, left), 0.0, None)
    return (overlap / scale).astype(np.float32)


def resample_screen(raw: np.ndarray, rows: np.ndarray, cols_t: np.ndarray, gray_scale: bool) -> np.ndarray:
    """An ``H×W×3`` RGB screen → a channel-first uint8 frame, area-resampled by ``rows @ screen @ cols_t``."""
    raw = raw.astype(np.float32)
    if gray_scale:
        out = rows @ (raw @ np.array([0.299, 0.587, 0.114], dtype=np.float32)) @ cols_t
        return np.rint(out)[None].astype(np.uint8)
    h, w, _ = raw.shape
    n = rows.shape[0]
    tmp = (rows @ raw.reshape(h, w * 3)).reshape(n, w, 3).transpose(2, 0, 1)
    return np.rint(tmp @ cols_t).astype(np.uint8)


class AtariGame:
    """One ALE game under the Atari-100k protocol. Rewards are raw; clipping is the learner's choice."""

    def __init__(self, game: str, options: EnvOptions, seed: int, training: bool) -> None:
        import ale_py

        self.options = options
        self.training = training
        ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)
        self.ale = ale_py.ALEInterface()
        self.ale.setInt("random_seed", int(seed) % (2**31 - 1))
        self.ale.setFloat("repeat_action_probability", float(options.sticky_action_prob))
        self.ale.setInt("frame_skip", 1)
        self.ale.setInt("max_num_frames_per_episode", 0)
        self.ale.loadROM(str(ale_py.roms.get_rom_path(atari_games()[game])))
        self.actions = self.ale.getLegalActionSet() if options.full_action_space else self.ale.getMinimalActionSet()
        self.action_ids = tuple(int(a.value) for a in self.actions)
        self.rng = np.random.default_rng(seed)
        h, w = self.ale.getScreenDims()
        self._raw = np.zeros((2, h, w, 3), dtype=np.uint8)
        self._rows = area_resize_matrix(h, options.resolution)
        self._cols_t = area_resize_matrix(w, options.resolution).T.copy()
        self.channels = 1 if options.gray_scale else 3
        self._lives = 0
        self._steps = 0

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.options.resolution, self.options.resolution)

    def _frame(self) -> np.ndarray:
        raw = np.maximum(self._raw[0], self._raw[1])
        return resample_screen(raw, self._rows, self._cols_t, self.options.gray_scale)

    def _grab(self, slot: int) -> None:
        self.ale.getScreenRGB(self._raw[slot])

    def reset(self) -> np.ndarray:
        """Start a new game (with random no-ops); frames of both pooling slots come from the same screen."""
        self.ale.reset_game()
        for _ in range(int(self.rng.integers(1, self.options.noop_max + 1)) if self.options.noop_max else 0):
            self.ale.act(0)
            if self.ale.game_over():
                self.ale.reset_game()
        self._grab(0)
        self._raw[1] = self._raw[0]
        self._lives = self.ale.lives()
        self._steps = 0
        return self._frame()

    def continue_after_life_loss(self) -> np.ndarray:
        """The start of the next training episode after a lost life: one no-op, the game goes on."""
        frame, *_ = self.step(0)
        return frame

    def state_dict(self) -> dict:
        """The emulator (with its sticky-action RNG), the no-op RNG, the pooling frames and the counters."""
        emulator = self.ale.cloneState(include_rng=True).serialize()
        return {
            "ale": torch.frombuffer(bytearray(emulator), dtype=torch.uint8),
            "rng": self.rng.bit_generator.state,
            "raw": torch.from_numpy(self._raw.copy()),
            "lives": self._lives,
            "steps": self._steps,
        }

    def load_state_dict(self, state: dict) -> None:
        import ale_py

        self.ale.restoreState(ale_py.ALEState(state["ale"].numpy().tobytes()))
        self.rng.bit_generator.state = state["rng"]
        self._raw[:] = state["raw"].numpy()
        self._lives, self._steps = int(state["lives"]), int(state["steps"])

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, bool]:
        """Play one agent step; returns (frame, raw reward, terminated, truncated, game_over)."""
        a = self.actions[int(action)]
        reward = 0.0
        skip = self.options.frame_skip
        for i in range(skip):
            reward += self.ale.act(a)
            if i >= skip - 2:
                self._grab(i - (skip - 2))
            if self.ale.game_over():
                if i < skip - 1:
                    self._grab(0)
                    self._raw[1] = self._raw[0]
                break
        self._steps += 1
        game_over = self.ale.game_over()
        lives = self.ale.lives()
        life_lost = self.training and self.options.episodic_life and 0 < lives < self._lives
        self._lives = lives
        truncated = not game_over and self._steps >= self.options.max_episode_steps
        return self._frame(), reward, game_over or life_lost, truncated, game_over or truncated


class MinAtarGame:
    """One MinAtar game; observations are channel-first uint8, zero-padded to :data:`MINATAR_CHANNELS`."""

    def __init__(self, game: str, options: EnvOptions, seed: int, training: bool) -> None:
        from minatar import Environment

        self.options = options
        self.env = Environment(game, sticky_action_prob=float(options.sticky_action_prob))
        self.env.seed(int(seed) % (2**31 - 1))
        self.action_ids = tuple(
            range(FULL_MINATAR_ACTIONS) if options.full_action_space else self.env.minimal_action_set()
        )
        self._steps = 0

    @property
    def frame_shape(self) -> tuple[int, int, int]:
        return (MINATAR_CHANNELS, 10, 10)

    def _frame(self) -> np.ndarray:
        state = self.env.state()
        frame = np.zeros(self.frame_shape, dtype=np.uint8)
        frame[: state.shape[2]] = state.transpose(2, 0, 1)
        return frame

    def reset(self) -> np.ndarray:
        self.env.reset()
        self._steps = 0
        return self._frame()

    continue_after_life_loss = reset

    def state_dict(self) -> dict:
        """The game's fields, its RNG (shared with the sticky actions) and the last action, as tensors and
        built-in types (a checkpoint loads them without unpickling objects)."""
        game = {k: _saveable(v) for k, v in vars(self.env.env).items() if k not in _MINATAR_FIXED}
        _, keys, pos, has_gauss, cached = self.env.random.get_state()
        return {
            "game": game,
            "random": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
            "last_action": int(self.env.last_action),
            "steps": self._steps,
        }  # fmt: skip

    def load_state_dict(self, state: dict) -> None:
        for k, v in state["game"].items():
            setattr(self.env.env, k, _restored(v))
        r = state["random"]
        self.env.random.set_state(
            ("MT19937", r["keys"].numpy().astype(np.uint32), r["pos"], r["has_gauss"], r["cached_gaussian"])
        )
        self.env.last_action = state["last_action"]
        self._steps = int(state["steps"])

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, bool]:
        reward, terminal = self.env.act(self.action_ids[int(action)])
        self._steps += 1
        truncated = not terminal and self._steps >= self.options.max_episode_steps
        return self._frame(), float(reward), bool(terminal), truncated, bool(terminal) or truncated


_MINATAR_FIXED = ("channels", "action_map", "random")  # set by the constructor; the RNG is saved on its own


def _saveable(value):
    """numpy arrays as tensors, numpy scalars as Python numbers, containers recursively."""
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (list, tuple)):
        return type(value)(_saveable(v) for v in value)
    if isinstance(value, dict):
        return {k: _saveable(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot save a game field of type {type(value).__name__}")


def _restored(value):
    if isinstance(value, torch.Tensor):
        return value.numpy().copy()
    if isinstance(value, (list, tuple)):
        return type(value)(_restored(v) for v in value)
    if isinstance(value, dict):
        return {k: _restored(v) for k, v in value.items()}
    return value


def make_game(task_id: str, options: EnvOptions | None = None, seed: int = 0, training: bool = True):
    """Build one game for ``task_id`` with the family defaults filled in."""
    family, game = parse_task_id(task_id)
    options = resolve_options(task_id, options)
    cls = AtariGame if family == "atari" else MinAtarGame
    return cls(game, options, seed, training)


def env_spec(task_id: str, options: EnvOptions | None = None) -> EnvSpec:
    """The spec of a task, read off a real instance of the game (cheap: one emulator load)."""
    options = resolve_options(task_id, options)
    game = make_game(task_id, options, seed=0, training=False)
    family, _ = parse_task_id(task_id)
    return EnvSpec(
        task_id=task_id,
        frame_shape=game.frame_shape,
        frame_stack=int(options.frame_stack),
        num_actions=len(game.action_ids),
        action_ids=game.action_ids,
        full_action_count=FULL_ATARI_ACTIONS if family == "atari" else FULL_MINATAR_ACTIONS,
    )


def network_action_ids(task_id: str, num_actions: int, options: EnvOptions | None = None) -> tuple[int, ...] | None:
    """Where a game's own actions sit in a network's ``num_actions`` outputs (None: they coincide).

    A network with the family's full action space (18 Atari, 6 MinAtar) plays any game of that family through
    the game's action ids; a network sized for one game's own actions plays only games of that size.
    """
    spec = env_spec(task_id, options)
    if spec.num_actions == num_actions:
        return None
    if num_actions != spec.full_action_count:
        raise ValueError(
            f"{task_id} has {spec.num_actions} actions; a network with {num_actions} outputs cannot play it. Only a "
            f"network with the full {spec.full_action_count}-action space plays every game of its family"
        )
    return spec.action_ids


def env_seeds(seed: int, rank: int, count: int) -> list[int]:
    """Distinct, reproducible seeds for the ``count`` envs of one DDP rank (never shared across ranks)."""
    children = np.random.SeedSequence([seed, rank]).spawn(count)
    return [int(c.generate_state(1, dtype=np.uint32)[0]) for c in children]


@dataclass
class VectorStep:
    """What :meth:`VectorEnv.step` returns; arrays have a leading env axis.

    ``obs`` is the stacked observation to act on next (after an automatic reset where an episode ended);
    ``frame`` its newest frame; ``last_frame`` the frame an ended episode finished on. ``game_return`` and
    ``game_length`` hold the raw score and length of a whole game (across lives) where one ended, else NaN / -1.
    """

    obs: np.ndarray
    frame: np.ndarray
    last_frame: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    game_return: np.ndarray
    game_length: np.ndarray

    @property
    def done(self) -> np.ndarray:
        return self.terminated | self.truncated


class VectorEnv:
    """n games of one task stepped in-process, with frame stacks and automatic resets."""

    def __init__(
        self,
        task_id: str,
        num_envs: int,
        seed: int = 0,
        rank: int = 0,
        training: bool = True,
        options: EnvOptions | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be at least 1, got {num_envs}")
        self.options = resolve_options(task_id, options)
        self.spec = env_spec(task_id, self.options)
        self.games = [make_game(task_id, self.options, s, training) for s in env_seeds(seed, rank, num_envs)]
        self.num_envs = num_envs
        c, h, w = self.spec.frame_shape
        self._stack = np.zeros((num_envs, self.spec.frame_stack, c, h, w), dtype=np.uint8)
        self._game_return = np.zeros(num_envs, dtype=np.float64)
        self._game_length = np.zeros(num_envs, dtype=np.int64)

    def _start(self, i: int, frame: np.ndarray) -> None:
        self._stack[i] = frame

    def _push(self, i: int, frame: np.ndarray) -> None:
        self._stack[i, :-1] = self._stack[i, 1:]
        self._stack[i, -1] = frame

    def observation(self) -> np.ndarray:
        """The current stacked observations ``(n, stack·C, H, W)``."""
        n, s, c, h, w = self._stack.shape
        return self._stack.reshape(n, s * c, h, w).copy()

    def running_game_returns(self) -> np.ndarray:
        """Raw score of each env's game so far (for episodes cut before they end)."""
        return self._game_return.copy()

    def state_dict(self) -> dict:
        """Every game mid-play, the frame stacks and the running scores: a restored VectorEnv steps on exactly as
        this one would."""
        return {
            "games": [game.state_dict() for game in self.games],
            "stack": torch.from_numpy(self._stack.copy()),
            "game_return": torch.from_numpy(self._game_return.copy()),
            "game_length": torch.from_numpy(self._game_length.copy()),
        }

    def load_state_dict(self, state: dict) -> None:
        if len(state["games"]) != self.num_envs:
            raise ValueError(f"the saved play has {len(state['games'])} environments, this run has {self.num_envs}")
        for game, saved in zip(self.games, state["games"], strict=True):
            game.load_state_dict(saved)
        self._stack[:] = state["stack"].numpy()
        self._game_return[:] = state["game_return"].numpy()
        self._game_length[:] = state["game_length"].numpy()

    def reset(self) -> np.ndarray:
        for i, game in enumerate(self.games):
            self._start(i, game.reset())
        self._game_return[:] = 0.0
        self._game_length[:] = 0
        return self.observation()

    def step(self, actions: np.ndarray) -> VectorStep:
        n = self.num_envs
        actions = np.asarray(actions).reshape(n)
        frame = np.empty((n, *self.spec.frame_shape), dtype=np.uint8)
        last_frame = np.zeros_like(frame)
        reward = np.zeros(n, dtype=np.float32)
        terminated = np.zeros(n, dtype=bool)
        truncated = np.zeros(n, dtype=bool)
        game_return = np.full(n, np.nan)
        game_length = np.full(n, -1, dtype=np.int64)
        for i, game in enumerate(self.games):
            f, r, term, trunc, game_over = game.step(int(actions[i]))
            reward[i], terminated[i], truncated[i] = r, term, trunc
            self._game_return[i] += r
            self._game_length[i] += 1
            if game_over:
                game_return[i], game_length[i] = self._game_return[i], self._game_length[i]
                self._game_return[i], self._game_length[i] = 0.0, 0
                last_frame[i] = f
                f = game.reset()
                self._start(i, f)
            elif term or trunc:
                last_frame[i] = f
                f = game.continue_after_life_loss()
                self._start(i, f)
            else:
                self._push(i, f)
            frame[i] = f
        return VectorStep(
            self.observation(), frame, last_frame, reward, terminated, truncated, game_return, game_length
        )
