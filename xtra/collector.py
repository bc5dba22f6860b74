"""Acting: n environments stepped together by one batched MCTS per step, trajectories pushed into replay.

The collector knows environments and replay, not networks: it calls an ``Actor`` (built by the LightningModule
from a snapshot of its weights) that maps a batch of observations to actions, search values and visit
distributions. Evaluation episodes use the same path without noise and with greedy actions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from xtra.envs import EnvOptions, VectorEnv
from xtra.replay import Replay

# actor(obs [n, stack·C, H, W] uint8, rng or None for greedy evaluation, temperature)
#   -> (actions [n], root values [n], visit distributions [n, A])
Actor = Callable[[np.ndarray, np.random.Generator | None, float], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass
class _Trajectory:
    frames: list[np.ndarray] = field(default_factory=list)
    context: int = 0
    actions: list[int] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    root_values: list[float] = field(default_factory=list)
    policies: list[np.ndarray] = field(default_factory=list)
    step_index: list[int] = field(default_factory=list)


class Collector:
    """Steps ``num_envs`` games of one task and writes their trajectories into ``replay`` in segments."""

    def __init__(
        self,
        task_id: str,
        replay: Replay,
        num_envs: int = 8,
        seed: int = 0,
        rank: int = 0,
        env_options: EnvOptions | None = None,
        segment_length: int = 200,
        clip_rewards: bool = True,
    ) -> None:
        self.env = VectorEnv(task_id, num_envs, seed=seed, rank=rank, training=True, options=env_options)
        self.replay = replay
        self.num_envs = num_envs
        self.segment_length = segment_length
        self.clip_rewards = clip_rewards
        self.rng = np.random.default_rng(np.random.SeedSequence([seed, rank, 1]))
        self.env_steps = 0
        self.rewarded_steps = 0  # steps played with a nonzero reward: on games whose episodes outlast a run
        # (freeway) the only sign in the logs that play has found any reward
        self.episode_returns: list[float] = []
        self.episode_lengths: list[int] = []
        self.search_stats = np.zeros(3)  # sum of root values, sum of visit entropies, searches
        self._obs = self.env.reset()
        self._traj = [_Trajectory(frames=[self._newest(i)]) for i in range(num_envs)]

    @property
    def spec(self):
        return self.env.spec

    def _newest(self, i: int) -> np.ndarray:
        c = self.spec.frame_shape[0]
        return self._obs[i, -c:].copy()

    def _flush(self, i: int, terminal: bool, continue_episode: bool) -> None:
        tr = self._traj[i]
        if tr.actions:
            self.replay.add_segment(
                frames=np.stack(tr.frames),
                actions=np.asarray(tr.actions, dtype=np.int64),
                rewards=np.asarray(tr.rewards, dtype=np.float32),
                root_values=np.asarray(tr.root_values, dtype=np.float32),
                policies=np.stack(tr.policies),
                step_index=np.asarray(tr.step_index, dtype=np.int64),
                terminal=terminal,
                context=tr.context,
            )
        if continue_episode:
            keep = tr.frames[-self.spec.frame_stack :]
            self._traj[i] = _Trajectory(frames=list(keep), context=len(keep) - 1)

    def collect(self, num_steps: int, actor: Actor | None, temperature: float = 1.0) -> dict[str, float]:
        """Play at least ``num_steps`` env steps (whole vector steps); ``actor=None`` acts uniformly at random."""
        num_actions = self.spec.num_actions
        done_steps = 0
        while done_steps < num_steps:
            if actor is None:
                actions = self.rng.integers(0, num_actions, size=self.num_envs)
                values = np.zeros(self.num_envs, dtype=np.float32)
                policies = np.full((self.num_envs, num_actions), 1.0 / num_actions, dtype=np.float32)
            else:
                actions, values, policies = actor(self._obs, self.rng, temperature)
                entropy = -(policies * np.log(np.clip(policies, 1e-12, None))).sum(1)
                self.search_stats += (float(values.sum()), float(entropy.sum()), len(values))
            step = self.env.step(actions)
            rewards = np.sign(step.reward) if self.clip_rewards else step.reward
            self.rewarded_steps += int(np.count_nonzero(rewards))
            for i in range(self.num_envs):
                tr = self._traj[i]
                tr.actions.append(int(actions[i]))
                tr.rewards.append(float(rewards[i]))
                tr.root_values.append(float(values[i]))
                tr.policies.append(policies[i])
                tr.step_index.append(self.env_steps + i)
                if step.done[i]:
                    tr.frames.append(step.last_frame[i])
                    self._flush(i, terminal=bool(step.terminated[i]), continue_episode=False)
                    self._traj[i] = _Trajectory(frames=[step.frame[i]])
                else:
                    tr.frames.append(step.frame[i])
                    if len(tr.actions) >= self.segment_length:
                        self._flush(i, terminal=False, continue_episode=True)
                if np.isfinite(step.game_return[i]):
                    self.episode_returns.append(float(step.game_return[i]))
                    self.episode_lengths.append(int(step.game_length[i]))
            self._obs = step.obs
            self.env_steps += self.num_envs
            done_steps += self.num_envs
        return {"env_steps": float(self.env_steps)}

    def state_dict(self) -> dict:
        """Everything play depends on: the environments mid-game, the observations to act on, the unfinished
        trajectories, the counters and the RNG. A collector restored from it plays and stores exactly what this one
        would have (resume equals the uninterrupted run)."""
        return {
            "env": self.env.state_dict(),
            "obs": torch.from_numpy(self._obs.copy()),
            "trajectories": [_trajectory_state(tr) for tr in self._traj],
            "env_steps": self.env_steps,
            "rewarded_steps": self.rewarded_steps,
            "rng": self.rng.bit_generator.state,
            "search_stats": torch.from_numpy(self.search_stats.copy()),
            "episode_returns": list(self.episode_returns),
            "episode_lengths": list(self.episode_lengths),
        }

    def load_state_dict(self, state: dict) -> None:
        self.env.load_state_dict(state["env"])
        self._obs = state["obs"].numpy().copy()
        self._traj = [_restored_trajectory(t) for t in state["trajectories"]]
        self.env_steps = int(state["env_steps"])
        self.rewarded_steps = int(state.get("rewarded_steps", 0))  # absent from checkpoints before it was counted
        self.rng.bit_generator.state = state["rng"]
        self.search_stats = state["search_stats"].numpy().copy()
        self.episode_returns = list(state["episode_returns"])
        self.episode_lengths = list(state["episode_lengths"])

    def flush_in_progress(self) -> None:
        """Write every episode in progress to the replay as a cut (non-terminal) segment; play goes on from there.

        Saving a dataset without this would drop up to ``segment_length`` steps per environment.
        """
        for i in range(self.num_envs):
            self._flush(i, terminal=False, continue_episode=True)

    def pop_search_stats(self) -> dict[str, float]:
        """Mean root value and visit-distribution entropy of the searches since the last call."""
        values, entropy, n = self.search_stats
        self.search_stats = np.zeros(3)
        return {"mcts/acting_root_value": values / n, "mcts/acting_visit_entropy": entropy / n} if n else {}

    def pop_episode_stats(self) -> tuple[list[float], list[int]]:
        returns, lengths = self.episode_returns, self.episode_lengths
        self.episode_returns, self.episode_lengths = [], []
        return returns, lengths


def _trajectory_state(tr: _Trajectory) -> dict:
    return {
        "frames": torch.from_numpy(np.stack(tr.frames)),
        "context": tr.context,
        "actions": list(tr.actions),
        "rewards": list(tr.rewards),
        "root_values": list(tr.root_values),
        "policies": [torch.from_numpy(p.copy()) for p in tr.policies],
        "step_index": list(tr.step_index),
    }


def _restored_trajectory(state: dict) -> _Trajectory:
    return _Trajectory(
        frames=list(state["frames"].numpy().copy()),
        context=int(state["context"]),
        actions=list(state["actions"]),
        rewards=list(state["rewards"]),
        root_values=list(state["root_values"]),
        policies=[p.numpy().copy() for p in state["policies"]],
        step_index=list(state["step_index"]),
    )


def random_actor(num_actions: int, seed: int = 0) -> Actor:
    """Uniformly random moves (the reference every learned policy must beat); uniform visit distributions."""
    rng = np.random.default_rng(seed)

    def act(obs: np.ndarray, _rng, _temperature: float):
        n = obs.shape[0]
        return rng.integers(0, num_actions, n), np.zeros(n, np.float32), np.full((n, num_actions), 1 / num_actions)

    return act


@dataclass
class Evaluated:
    """What greedy evaluation episodes did: their returns and how the policy chose (collapse shows here)."""

    returns: np.ndarray  # [episodes] raw game returns
    action_counts: np.ndarray  # [A] greedy moves per action of the game, over all episodes
    visit_entropy: float  # mean entropy (nats) of the search's visit distribution per move

    @property
    def top_action_share(self) -> float:
        """Share of all moves on the most played action (1.0: the policy played one action throughout)."""
        total = self.action_counts.sum()
        return float(self.action_counts.max() / total) if total else 0.0

    @property
    def collapsed(self) -> bool:
        """The greedy policy put at least :data:`COLLAPSE_SHARE` of its moves on one action."""
        return self.top_action_share >= COLLAPSE_SHARE


COLLAPSE_SHARE = 0.95  # a greedy policy with at least this share of its moves on one action is "collapsed"


def evaluate(
    actor: Actor,
    task_id: str,
    episodes: int = 32,
    seed: int = 0,
    env_options: EnvOptions | None = None,
    max_steps: int | None = None,
    batch: int | None = None,
) -> Evaluated:
    """``episodes`` greedy episodes (no noise, most-visited action, no episodic life): returns and move statistics.

    Episodes run ``batch`` at a time (default: all at once); each uses its own seed derived from ``seed``, which
    is independent of the training seed so that every checkpoint is scored on the same games.
    """
    batch = min(batch or episodes, episodes)
    returns: list[float] = []
    counts: np.ndarray | None = None
    entropy_sum, moves = 0.0, 0
    wave = 0
    while len(returns) < episodes:
        n = min(batch, episodes - len(returns))
        env = VectorEnv(task_id, n, seed=seed, rank=10_000 + wave, training=False, options=env_options)
        obs = env.reset()
        finished = np.full(n, np.nan)
        steps = 0
        while np.isnan(finished).any():
            actions, _, visits = actor(obs, None, 0.0)
            live = np.isnan(finished)  # moves of episodes that already ended do not count
            counts = np.zeros(visits.shape[1], dtype=np.int64) if counts is None else counts
            counts += np.bincount(actions[live], minlength=visits.shape[1])
            p = visits[live]
            entropy_sum += float(-(p * np.log(np.clip(p, 1e-12, None))).sum())
            moves += int(live.sum())
            step = env.step(actions)
            obs = step.obs
            steps += 1
            newly = np.isnan(finished) & np.isfinite(step.game_return)
            finished[newly] = step.game_return[newly]
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None:
            # Episodes cut by ``max_steps`` count with the score reached so far.
            partial = np.isnan(finished)
            finished[partial] = env.running_game_returns()[partial]
        returns.extend(finished.tolist())
        wave += 1
    counts = np.zeros(0, dtype=np.int64) if counts is None else counts
    return Evaluated(np.asarray(returns[:episodes]), counts, entropy_sum / max(moves, 1))
