"""What a worker is, independent of how it is run (a local process or a Ray actor).

A :class:`WorkerSpec` is everything a worker needs to build its envs and its acting copy of the
algorithm; it is plain data, so it crosses a ``spawn`` or a Ray boundary. The tensors a worker must receive to
act like the learner's policy are the algorithm's :meth:`~rlcore.algos.base.Algorithm.acting_state`.
:class:`WorkerSource` is what both backends share as a :class:`~rlcore.sources.Source` of the training loop:
the env-step counter and the episode statistics that the workers' reports feed.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlcore.algos.base import Algorithm, ReplayAlgorithm, RolloutAlgorithm, build_algorithm
from rlcore.collector import Collector, EpisodeStats
from rlcore.env import EnvSpec, gives_action_masks, make_vec_env
from rlcore.normalize import RunningMeanStd
from rlcore.observations import concatenate, map_observation, to_tensor
from rlcore.sources import Source

MAX_RESTARTS = 10
"""Restarts of one worker (a local process or a Ray actor) after which the run gives up (it fails deterministically)."""
APEX_BASE_EPSILON = 0.4
APEX_ALPHA = 7.0
RESTART_SEED_STRIDE = 1_000_003
"""A restarted worker's envs are seeded this much further on, so it does not replay its first episodes."""
SESSION_SEED_STRIDE = 100_000_007
"""A resumed run's workers are seeded this much further on per earlier session, so they do not replay the run's first
episodes and exploration draws."""


@dataclass(frozen=True)
class WorkerSpec:
    """A worker's recipe: its envs, its share of the sub-env seeds, and the algorithm it acts for."""

    algo: str
    algo_config: dict[str, Any]
    env: EnvSpec
    env_kwargs: dict[str, Any]
    num_envs: int
    """Sub-envs this worker steps."""
    index: int
    """This worker's position, ``0 .. num_workers - 1``."""
    num_workers: int
    seed: int
    """The run's seed; worker ``w``'s sub-env ``j`` is seeded ``seed + w * num_envs + j`` (as one big vector env)."""
    total_env_steps: int
    vectorization: str = "sync"
    worker_epsilon: str = "schedule"
    restarts: int = 0
    """How many times this worker was restarted (moves its env seeds on)."""
    sessions: int = 0
    """How many sessions of the run came before this one (a resumed run's: moves its seeds on)."""
    wrappers: tuple[Any, ...] = ()
    """Applied to each sub-env, innermost first (picklable callables, as the env)."""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def env_seed(self) -> int:
        return self.seed + self.index * self.num_envs + self._seed_offset

    @property
    def generator_seed(self) -> int:
        """The worker's algorithm generator (exploration draws): distinct per worker and per restart."""
        return self.seed + 7_919 * (self.index + 1) + self._seed_offset

    @property
    def _seed_offset(self) -> int:
        return self.restarts * RESTART_SEED_STRIDE + self.sessions * SESSION_SEED_STRIDE


@dataclass(frozen=True)
class WorkerSettings:
    """The run's settings that a worker source needs besides the workers' specs."""

    total_env_steps: int
    num_envs: int
    """Sub-envs per worker."""
    weight_pull_interval: int
    """Vector steps an off-policy worker takes between looks for newer weights."""
    worker_lead: int | None = 0
    """Self-play workers: positions they may write beyond the next training phase (0: a default; None: no limit).
    (Off-policy workers are limited by the Trainer through :meth:`Source.limit`.)"""


def check_spawnable(env: EnvSpec, wrappers: Sequence[Any] = ()) -> None:
    """Raises a clear error when ``env`` or a wrapper cannot be sent to a ``spawn`` worker (a lambda or a local
    class)."""
    for what, value in (("env", env), *(("wrapper", wrapper) for wrapper in wrappers)):
        if isinstance(value, str):
            continue
        try:
            pickle.dumps(value)
        except (pickle.PicklingError, AttributeError, TypeError) as error:
            raise ValueError(
                f"num_workers > 0 sends the {what} to worker processes, but {value!r} cannot be pickled ({error}); "
                f"pass a registered id, or an Env class / factory function{' / wrapper' if what == 'wrapper' else ''} "
                "defined at module level"
            ) from error


def apex_epsilon(index: int, num_workers: int) -> float:
    """Ape-X's per-worker exploration rate ``0.4 ** (1 + 7 i / (N - 1))`` (0.4 for a single worker)."""
    if num_workers <= 1:
        return APEX_BASE_EPSILON
    return APEX_BASE_EPSILON ** (1.0 + APEX_ALPHA * index / (num_workers - 1))


def build_worker(spec: WorkerSpec) -> tuple[Algorithm[Any], Collector]:
    """The worker's envs, its acting algorithm (on the CPU) and a Collector over them."""
    torch.set_num_threads(1)
    envs = make_vec_env(spec.env, spec.num_envs, vectorization=spec.vectorization, env_kwargs=spec.env_kwargs,
                        wrappers=list(spec.wrappers))
    algo = build_algorithm(spec.algo, envs.single_observation_space, envs.single_action_space, spec.algo_config,
                           device="cpu", seed=spec.generator_seed, num_envs=spec.num_envs)
    algo.set_progress(0, spec.total_env_steps)
    masks = gives_action_masks(envs) and algo.accepts_action_masks
    if masks:
        algo.enable_action_masks()
    collector = Collector(envs, seed=spec.env_seed, device="cpu", action_masks=masks)
    return algo, collector


def set_worker_progress(algo: Algorithm[Any], spec: WorkerSpec, env_steps: int) -> None:
    """Moves the worker's schedules (epsilon) to the run's global ``env_steps``; Ape-X workers keep their own
    epsilon."""
    algo.set_progress(min(env_steps, spec.total_env_steps), spec.total_env_steps)
    if spec.worker_epsilon == "apex" and isinstance(algo, ReplayAlgorithm):
        algo.set_worker_exploration(apex_epsilon(spec.index, spec.num_workers))


# ----------------------------------------------------------------------------------- the learner's view
class WorkerSource(Source):
    """A source whose env steps are taken by workers: the run's env-step counter and episode statistics, fed by the
    workers' reports. Checkpoints hold both and the count of the run's sessions; the envs' current episodes live in
    the workers and are not resumed: a resumed run's workers start fresh episodes, seeded on from the earlier
    sessions' (:attr:`WorkerSpec.sessions`).

    Args:
        specs: One recipe per worker.
        settings: The run's settings.
    """

    def __init__(self, specs: Sequence[WorkerSpec], settings: WorkerSettings) -> None:
        super().__init__(settings.total_env_steps)
        self.specs = list(specs)
        self.settings = settings
        self.num_workers = len(self.specs)
        self._env_steps = 0
        self._stats = EpisodeStats(settings.num_envs * self.num_workers)

    @property
    def env_steps(self) -> int:
        return self._env_steps

    @property
    def stats(self) -> EpisodeStats:
        return self._stats

    def record_episodes(self, returns: Sequence[float], lengths: Sequence[int]) -> None:
        """Adds finished episodes to the statistics window."""
        self._stats.add_finished(returns, lengths)

    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self._env_steps, "stats": self._stats.state_dict(), "envs": None,
                "sessions": self.specs[0].sessions + 1}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._env_steps = int(state["env_steps"])
        sessions = int(state.get("sessions", 1))  # checkpoints written before the count: at least one session
        self.specs = [replace(spec, sessions=sessions) for spec in self.specs]
        stats = dict(state["stats"])
        if len(stats["returns"]) != len(self._stats.returns):  # a run resumed with another worker count
            stats["returns"] = np.zeros(len(self._stats.returns))
            stats["lengths"] = np.zeros(len(self._stats.returns), dtype=np.int64)
        self._stats.load_state_dict(stats)


def finished_episodes(stats: EpisodeStats, seen: int) -> tuple[list[float], list[int], int]:
    """Episodes a worker's :class:`EpisodeStats` finished since it had counted ``seen``:
    ``(returns, lengths, episodes now)`` (at most the last window's worth)."""
    new = min(stats.episodes - seen, len(stats.finished_returns))
    if new <= 0:
        return [], [], stats.episodes
    return list(stats.finished_returns)[-new:], list(stats.finished_lengths)[-new:], stats.episodes


# ---------------------------------------------------------------------------------- on-policy workers
Moments = tuple[np.ndarray, np.ndarray, float]
"""``(mean, var, count)`` of a batch of samples (float64)."""


def snapshot(stats: RunningMeanStd) -> Moments:
    return stats.mean.numpy().copy(), stats.var.numpy().copy(), float(stats.count)


def moments_since(stats: RunningMeanStd, start: Moments) -> Moments:
    """The moments of the samples folded into ``stats`` since it held ``start`` (Chan's merge, inverted)."""
    mean1, var1, count1 = snapshot(stats)
    mean0, var0, count0 = start
    count = count1 - count0
    if count <= 0:
        return np.zeros_like(mean1), np.ones_like(var1), 0.0
    mean = (mean1 * count1 - mean0 * count0) / count
    spread = var1 * count1 - var0 * count0 - np.square(mean - mean0) * (count0 * count / count1)
    return mean, np.maximum(spread / count, 0.0), count


def merge_moments(stats: RunningMeanStd, moments: Moments) -> None:
    """Folds a batch's ``(mean, var, count)`` into ``stats`` exactly (Chan et al.)."""
    mean, var, count = moments
    if count <= 0:
        return
    total = stats.count + count
    delta = torch.as_tensor(np.array(mean, dtype=np.float64)) - stats.mean  # a copy: arrays may be read-only
    spread = stats.var * stats.count + torch.as_tensor(np.array(var, dtype=np.float64)) * count
    stats.mean = stats.mean + delta * (count / total)
    stats.var = (spread + delta.square() * (stats.count * count / total)) / total
    stats.count = total


@dataclass
class RolloutPart:
    """One worker's rollout: ``columns`` ``[T, E, ...]`` as its algorithm stored them, the observation after the
    last step ``[E, *obs_shape]`` (a flat dict of them for Dict observations), and the moments its running statistics
    gained."""

    columns: dict[str, Tensor]
    last_obs: Any
    moments: dict[str, Moments]


def worker_rollout(algo: RolloutAlgorithm[Any], collector: Collector, n_steps: int) -> RolloutPart:
    """Collects ``n_steps`` vector steps with the worker's current weights (worker side)."""
    start = {name: snapshot(stats) for name, stats in algo.running_stats().items()}
    for _ in range(n_steps):
        algo.store(collector.step(algo.explore))
    algo.value_pending_truncations(collector.last_obs)
    rollout = algo.rollout
    columns = {key: column.clone() for key, column in rollout.columns.items()}
    rollout.clear()
    moments = {name: moments_since(stats, start[name]) for name, stats in algo.running_stats().items()}
    return RolloutPart(columns, map_observation(np.array, collector.last_obs), moments)


def join_rollouts(algo: RolloutAlgorithm[Any], parts: Sequence[RolloutPart]) -> Tensor:
    """Folds the workers' statistics into the learner's and joins their rollouts along the env axis (worker 0's
    envs first) into ``algo.rollout`` (learner side). Returns the observations after the last step, ``[N, ...]``."""
    stats = algo.running_stats()
    for part in parts:
        for name, running in stats.items():
            merge_moments(running, part.moments[name])
    algo.running_stats_changed()
    rollout = algo.rollout
    rollout.clear()
    keys = list(parts[0].columns)
    for t in range(parts[0].columns[keys[0]].shape[0]):
        rollout.add({key: torch.cat([part.columns[key][t] for part in parts]) for key in keys})
    return to_tensor(concatenate([part.last_obs for part in parts]))
