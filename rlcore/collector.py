"""The Collector steps a vector env with a policy and hands out complete transitions.

It is the only place that knows about autoreset: ``next_obs`` is the true last
observation when an episode ended (from ``info["final_obs"]``), never the reset one.
It also checks every observation and reward for NaN/inf, and keeps episode statistics.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from rlcore.env import get_replay_states, restore_replay_states

logger = logging.getLogger(__name__)

ActFn = Callable[[Tensor], Tensor | tuple[Tensor, dict[str, Tensor]]]
"""A behaviour policy: observations ``[N, *obs_shape]`` -> actions ``[N, *action_shape]``, or
``(actions, extras)`` where ``extras`` (e.g. log-probs and values) join the transition."""


class NonFiniteError(ValueError):
    """An environment produced NaN or inf."""


class EpisodeStats:
    """Running returns and lengths per env, and a window of finished episodes."""

    def __init__(self, num_envs: int, window: int = 100) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: deque[float] = deque(maxlen=window)
        self.finished_lengths: deque[int] = deque(maxlen=window)
        self.episodes = 0

    def record(self, rewards: np.ndarray, done: np.ndarray) -> None:
        self.returns += rewards
        self.lengths += 1
        if done.any():
            for env in np.flatnonzero(done):
                self.finished_returns.append(float(self.returns[env]))
                self.finished_lengths.append(int(self.lengths[env]))
            self.returns[done] = 0.0
            self.lengths[done] = 0
            self.episodes += int(done.sum())

    def metrics(self) -> dict[str, float]:
        """``rollout/ep_rew_mean`` and ``rollout/ep_len_mean`` over the window (empty before an episode ends)."""
        if not self.finished_returns:
            return {}
        return {
            "rollout/ep_rew_mean": float(np.mean(self.finished_returns)),
            "rollout/ep_len_mean": float(np.mean(self.finished_lengths)),
        }

    def state_dict(self) -> dict[str, Any]:
        return {
            "returns": self.returns.copy(),
            "lengths": self.lengths.copy(),
            "finished_returns": list(self.finished_returns),
            "finished_lengths": list(self.finished_lengths),
            "episodes": self.episodes,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.returns[:] = state["returns"]
        self.lengths[:] = state["lengths"]
        self.finished_returns.clear()
        self.finished_returns.extend(state["finished_returns"])
        self.finished_lengths.clear()
        self.finished_lengths.extend(state["finished_lengths"])
        self.episodes = int(state["episodes"])


class Collector:
    """Steps ``envs`` with a behaviour policy.

    Args:
        envs: A same-step-autoreset vector env (see :func:`rlcore.env.make_vec_env`).
        seed: Sub-env ``i`` is reset with ``seed + i`` on the first step.
        device: Where observations handed to the policy live.
    """

    def __init__(self, envs: VectorEnv, seed: int, device: str | torch.device = "cpu") -> None:
        self.envs = envs
        self.seed = seed
        self.device = torch.device(device)
        self.num_envs = envs.num_envs
        self.stats = EpisodeStats(self.num_envs)
        self.env_steps = 0
        """Transitions collected so far (vector steps times ``num_envs``)."""
        self._obs: np.ndarray | None = None

    def _reset(self) -> None:
        self._obs, _ = self.envs.reset(seed=[self.seed + i for i in range(self.num_envs)])
        self._check_finite(self._obs, "observation after reset")

    def _check_finite(self, values: np.ndarray, what: str) -> None:
        """Raises NonFiniteError when a float value is NaN/inf, or becomes inf in float32 (networks and buffers
        compute in float32, so a 1e300 reward or observation would turn into inf there)."""
        if values.dtype.kind != "f":
            return
        if values.dtype.itemsize > 4:
            with np.errstate(over="ignore"):
                values = values.astype(np.float32)
        if not np.isfinite(values).all():
            bad_envs = np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))
            raise NonFiniteError(
                f"the environment returned a non-finite {what} at env step {self.env_steps} "
                f"(sub-envs {bad_envs.tolist()}; NaN, inf, or beyond float32's range, where it is stored); check the "
                "env's dynamics or wrap it to clip/sanitize values"
            )

    def step(self, act: ActFn) -> dict[str, np.ndarray]:
        """One vector step; returns the transition, each value with leading dim ``N``.

        Keys: ``obs``, ``action``, ``reward``, ``next_obs``, ``terminated``, ``truncated``, plus the
        policy's extras when ``act`` returns ``(actions, extras)``; an extra of the same name replaces
        the collector's value (e.g. the unclipped ``action`` or the normalized ``obs``).
        """
        if self._obs is None:
            self._reset()
        obs = self._obs
        output = act(torch.from_numpy(obs).to(self.device))
        extras: dict[str, Tensor] = {}
        if isinstance(output, tuple):
            output, extras = output
        action = output.cpu().numpy()
        next_obs, reward, terminated, truncated, info = self.envs.step(action)
        self.env_steps += self.num_envs
        with np.errstate(over="ignore"):  # a reward beyond float32's range becomes inf here, and is refused
            reward32 = np.asarray(reward, dtype=np.float32)  # the dtype every buffer stores rewards in
        self._check_finite(reward32, "reward")
        self._check_finite(next_obs, "observation")
        done = terminated | truncated
        true_next_obs = next_obs
        if done.any():
            true_next_obs = next_obs.copy()
            for env in np.flatnonzero(info["_final_obs"]):
                true_next_obs[env] = info["final_obs"][env]
            self._check_finite(true_next_obs, "final observation")
        self.stats.record(reward, done)
        self._obs = next_obs
        return {
            "obs": obs,
            "action": action,
            "reward": reward32,
            "next_obs": true_next_obs,
            "terminated": terminated,
            "truncated": truncated,
            **extras,
        }

    @property
    def last_obs(self) -> np.ndarray | None:
        """The observation the next step will act on, ``[N, *obs_shape]``."""
        return self._obs

    def state_dict(self) -> dict[str, Any]:
        """Counters, episode statistics and each env's replayable episode."""
        return {
            "env_steps": self.env_steps,
            "stats": self.stats.state_dict(),
            "envs": get_replay_states(self.envs) if self._obs is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores counters and rebuilds each env's current episode by replaying it."""
        self.env_steps = int(state["env_steps"])
        self.stats.load_state_dict(state["stats"])
        if state["envs"] is None:
            self._obs = None
            return
        self._obs = restore_replay_states(self.envs, state["envs"])
