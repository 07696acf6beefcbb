"""The Collector steps a vector env with a policy and hands out complete transitions.

It is the only place that knows about autoreset: ``next_obs`` is the true last
observation when an episode ended (from ``info["final_obs"]``), never the reset one.
It also checks every observation and reward for NaN/inf, and keeps episode statistics.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from torch import Tensor

from rlcore.env import as_mask_array, can_replay, get_replay_states, restore_replay_states
from rlcore.observations import Observation, flat_observation, to_tensor
from rlcore.spaces import is_composite, leaf_spaces, out_of_range

logger = logging.getLogger(__name__)

ActFn = Callable[..., Tensor | tuple[Tensor, dict[str, Tensor]]]
"""A behaviour policy: observations ``[N, *obs_shape]`` (and ``action_mask=`` ``[N, n]`` when the collector reads
masks) -> actions ``[N, *action_shape]``, or ``(actions, extras)`` where ``extras`` (e.g. log-probs and values) join
the transition."""


class EnvOutputError(ValueError):
    """An environment returned something it must not (a reward that is not one number, an observation outside its
    space): the same env would again, so a worker process that meets one is not restarted."""


class NonFiniteError(EnvOutputError):
    """An environment produced NaN or inf."""


class DivergedError(ArithmeticError):
    """Training produced NaN or inf: a loss, or the policy's actions (its weights diverged)."""


def _discrete_ranges(space: spaces.Space) -> dict[str | None, tuple[int, int]]:
    """``{leaf path (None for a Discrete space itself): (lowest, highest value)}`` of the Discrete observations."""
    if isinstance(space, spaces.Discrete):
        return {None: (int(space.start), int(space.start) + int(space.n) - 1)}
    if not is_composite(space):
        return {}
    return {path: (int(leaf.start), int(leaf.start) + int(leaf.n) - 1)
            for path, leaf in leaf_spaces(space).items() if isinstance(leaf, spaces.Discrete)}


class EpisodeStats:
    """Running returns and lengths per env, and a window of finished episodes."""

    def __init__(self, num_envs: int, window: int = 100) -> None:
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.lengths = np.zeros(num_envs, dtype=np.int64)
        self.finished_returns: deque[float] = deque(maxlen=window)
        self.finished_lengths: deque[int] = deque(maxlen=window)
        self.episodes = 0
        self._metrics: dict[str, float] | None = None
        """:meth:`metrics` since the last finished episode (read after every step, changed only by episode ends)."""

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
            self._metrics = None

    def add_finished(self, returns: Sequence[float], lengths: Sequence[int]) -> None:
        """Adds episodes that finished elsewhere (e.g. in a worker process) to the window."""
        self.finished_returns.extend(float(value) for value in returns)
        self.finished_lengths.extend(int(value) for value in lengths)
        self.episodes += len(returns)
        self._metrics = None

    def metrics(self) -> dict[str, float]:
        """``rollout/ep_rew_mean`` and ``rollout/ep_len_mean`` over the window (empty before an episode ends); a
        new dict each call."""
        if self._metrics is None:
            self._metrics = {} if not self.finished_returns else {
                "rollout/ep_rew_mean": float(np.mean(self.finished_returns)),
                "rollout/ep_len_mean": float(np.mean(self.finished_lengths)),
            }
        return dict(self._metrics)

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
        self._metrics = None


class Collector:
    """Steps ``envs`` with a behaviour policy.

    Args:
        envs: A same-step-autoreset vector env (see :func:`rlcore.env.make_vec_env`).
        seed: Sub-env ``i`` is reset with ``seed + i`` on the first step.
        device: Where observations handed to the policy live.
        action_masks: Read each step's action masks from ``info["action_mask"]`` (bool ``[N, n]``; make_vec_env
            puts an env's ``action_masks()`` there), pass them to the policy as ``action_mask=`` and add
            ``action_mask`` (of ``obs``) and ``next_action_mask`` (of the true ``next_obs``) to the transitions.
    """

    def __init__(self, envs: VectorEnv, seed: int, device: str | torch.device = "cpu", *,
                 action_masks: bool = False) -> None:
        self.envs = envs
        self.seed = seed
        self.device = torch.device(device)
        self.num_envs = envs.num_envs
        self.stats = EpisodeStats(self.num_envs)
        self.env_steps = 0
        """Transitions collected so far (vector steps times ``num_envs``)."""
        self.action_masks = action_masks
        self._composite = is_composite(envs.single_observation_space)
        """Dict or Tuple observations, handed out as flat dicts ``{path: [N, ...]}``."""
        self._discrete_ranges = _discrete_ranges(envs.single_observation_space)
        """The lowest and highest value of each Discrete observation (by leaf path; None: the whole observation),
        checked at every step (an index out of it failed inside the network's one-hot)."""
        self._obs: Observation | None = None
        self._mask: np.ndarray | None = None
        """The legal actions of :attr:`last_obs`, bool ``[N, n]`` (with ``action_masks``)."""

    def _reset(self) -> None:
        obs, info = self.envs.reset(seed=[self.seed + i for i in range(self.num_envs)])
        self._obs = flat_observation(obs) if self._composite else obs
        self._check_observation(self._obs, "observation after reset")
        if self.action_masks:
            self._mask = self._masks_of(info, "after reset")

    def _check_observation(self, obs: Observation, what: str) -> None:
        for key, (low, high) in self._discrete_ranges.items():
            values = obs if key is None else obs[key]
            # one item: a Python comparison (~0.1 us); a batch: below low wraps past high - low as unsigned (~2 us)
            inside = low <= values.item() <= high if values.size == 1 else \
                not ((values - low).astype(np.uint64) > high - low).any()
            if not inside:
                bad = out_of_range(np.asarray(values, dtype=np.float64), low, high)
                where = "" if key is None else f" (key {key!r})"
                raise EnvOutputError(f"the environment returned the {what}{where} {bad} at env step {self.env_steps}, "
                                     f"outside its Discrete space [{low}, {high}]: return a value in it, or enlarge "
                                     "the space")
        if isinstance(obs, dict):
            for key, value in obs.items():
                self._check_finite(value, f"{what} (key {key!r})")
        else:
            self._check_finite(obs, what)

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

    def _masks_of(self, info: dict[str, Any], when: str) -> np.ndarray:
        """The legal actions of the observations just returned, bool ``[N, n]``, from ``info["action_mask"]``."""
        masks = info.get("action_mask")
        if masks is None or not np.all(info.get("_action_mask", True)):
            raise ValueError(f"the env gave action masks before but none {when} at env step {self.env_steps}; an env "
                             "with masks must give them after every reset and step (an action_masks() method, or "
                             "info['action_mask'])")
        masks = as_mask_array(masks, self.num_envs)
        if not masks.any(axis=1).all():
            raise ValueError(f"the env's action mask {when} at env step {self.env_steps} allows no action (sub-envs "
                             f"{np.flatnonzero(~masks.any(axis=1)).tolist()}); an observation to act on needs at "
                             "least one legal action")
        return masks

    def _final_masks(self, info: dict[str, Any], done: np.ndarray, next_masks: np.ndarray) -> np.ndarray:
        """The legal actions of each true next observation: ``next_masks`` where the episode goes on, the final
        observation's (``info["final_info"]["action_mask"]``) where it ended, all legal when the env did not say."""
        final = next_masks.copy()
        final[done] = True
        final_info = info.get("final_info")
        if isinstance(final_info, dict) and "action_mask" in final_info:
            given = done & np.asarray(final_info.get("_action_mask", done), dtype=bool)
            if given.any():
                final[given] = as_mask_array(final_info["action_mask"], self.num_envs)[given]
        return final

    def step(self, act: ActFn) -> dict[str, Any]:
        """One vector step; returns the transition, each value with leading dim ``N``.

        Keys: ``obs``, ``action``, ``reward``, ``next_obs``, ``terminated``, ``truncated`` (with ``action_masks``:
        ``action_mask``, ``next_action_mask``), plus the policy's extras when ``act`` returns ``(actions,
        extras)``; an extra of the same name replaces the collector's value (e.g. the unclipped ``action`` or the
        normalized ``obs``). A Dict or Tuple observation is a flat dict ``{path: [N, ...]}``.
        """
        if self._obs is None:
            self._reset()
        obs = self._obs
        observation = to_tensor(obs, self.device) if self._composite else torch.from_numpy(obs).to(self.device)
        if self.action_masks:
            output = act(observation, action_mask=torch.from_numpy(self._mask))
        else:
            output = act(observation)
        extras: dict[str, Tensor] = {}
        if isinstance(output, tuple):
            output, extras = output
        action = output.cpu().numpy()
        if action.dtype.kind == "f" and not np.isfinite(action).all():
            raise DivergedError(f"the policy gave non-finite actions (NaN or inf) at env step {self.env_steps}: its "
                                "weights diverged; lower learning_rate, clip gradients (max_grad_norm) or normalize "
                                "rewards/observations")
        next_obs, reward, terminated, truncated, info = self.envs.step(action)
        if self._composite:
            next_obs = flat_observation(next_obs)
        self.env_steps += self.num_envs
        with np.errstate(over="ignore"):  # a reward beyond float32's range becomes inf here, and is refused
            reward32 = np.asarray(reward, dtype=np.float32)  # the dtype every buffer stores rewards in
        if reward32.shape != (self.num_envs,):
            raise EnvOutputError(f"the environment returned rewards of shape {reward32.shape[1:]} at env step "
                             f"{self.env_steps}; a reward is one number: return float(reward) from step()")
        self._check_finite(reward32, "reward")
        self._check_observation(next_obs, "observation")
        done = terminated | truncated
        true_next_obs = next_obs
        if done.any():
            true_next_obs = self._with_final_observations(next_obs, info)
            self._check_observation(true_next_obs, "final observation")
        self.stats.record(reward, done)
        self._obs = next_obs
        transition = {
            "obs": obs,
            "action": action,
            "reward": reward32,
            "next_obs": true_next_obs,
            "terminated": terminated,
            "truncated": truncated,
        }
        if self.action_masks:
            next_masks = self._masks_of(info, "after a step")
            transition["action_mask"] = self._mask
            transition["next_action_mask"] = self._final_masks(info, done, next_masks) if done.any() else next_masks
            self._mask = next_masks
        transition.update(extras)
        return transition

    def _with_final_observations(self, next_obs: Observation, info: dict[str, Any]) -> Observation:
        """``next_obs`` with the rows of envs whose episode ended replaced by their true final observation."""
        ended = np.flatnonzero(info["_final_obs"])
        if isinstance(next_obs, dict):
            true_next_obs = {key: value.copy() for key, value in next_obs.items()}
            for env in ended:
                for key, value in flat_observation(info["final_obs"][env]).items():
                    true_next_obs[key][env] = value
            return true_next_obs
        true_next_obs = next_obs.copy()
        for env in ended:
            true_next_obs[env] = info["final_obs"][env]
        return true_next_obs

    @property
    def last_obs(self) -> Observation | None:
        """The observation the next step will act on, ``[N, *obs_shape]`` (a flat dict for Dict observations)."""
        return self._obs

    @property
    def last_action_mask(self) -> np.ndarray | None:
        """The legal actions of :attr:`last_obs`, ``[N, n]`` (None without ``action_masks``)."""
        return self._mask

    def state_dict(self) -> dict[str, Any]:
        """Counters, episode statistics and each env's replayable episode (with the current action masks)."""
        return {
            "env_steps": self.env_steps,
            "stats": self.stats.state_dict(),
            "envs": get_replay_states(self.envs) if self._obs is not None else None,
            **({"action_mask": self._mask} if self._mask is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores counters and rebuilds each env's current episode by replaying it (an env that cannot be replayed,
        a user's own vector env, starts fresh episodes)."""
        self.env_steps = int(state["env_steps"])
        self.stats.load_state_dict(state["stats"])
        self._mask = None
        if state["envs"] is None or not can_replay(self.envs):
            self._obs = None
            return
        obs = restore_replay_states(self.envs, state["envs"])
        self._obs = flat_observation(obs) if self._composite else obs
        if state.get("action_mask") is not None:
            self._mask = np.asarray(state["action_mask"], dtype=bool)
        elif self.action_masks:
            self._obs = None  # no masks saved for these episodes: start fresh ones

