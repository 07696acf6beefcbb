"""What a worker is, independent of how it is run (a local process or a Ray actor).

A :class:`WorkerSpec` is everything a worker needs to build its envs and its acting copy of the
algorithm; it is plain data, so it crosses a ``spawn`` or a Ray boundary. :func:`acting_tensors` names
the tensors a worker must receive to act like the learner's policy (the flat parameter buffer, and the
observation statistics when observations are normalized).
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlcore.agent import build_algorithm
from rlcore.algos.base import Algorithm
from rlcore.collector import Collector, EpisodeStats
from rlcore.env import EnvSpec, make_vec_env
from rlcore.normalize import RunningMeanStd
from rlcore.settings import config_to_dict

APEX_BASE_EPSILON = 0.4
APEX_ALPHA = 7.0
RESTART_SEED_STRIDE = 1_000_003
"""A restarted worker's envs are seeded this much further on, so it does not replay its first episodes."""


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
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def env_seed(self) -> int:
        return self.seed + self.index * self.num_envs + self.restarts * RESTART_SEED_STRIDE

    @property
    def generator_seed(self) -> int:
        """The worker's algorithm generator (exploration draws): distinct per worker and per restart."""
        return self.seed + 7_919 * (self.index + 1) + self.restarts * RESTART_SEED_STRIDE


def worker_spec(trainer: Any, index: int, restarts: int = 0) -> WorkerSpec:
    """Worker ``index``'s recipe for ``trainer``'s run (a :class:`rlcore.Trainer`)."""
    config = trainer.config
    return WorkerSpec(
        algo=trainer.algo_name, algo_config=config_to_dict(trainer.algo.config), env=trainer.env_spec,
        env_kwargs=trainer.env_kwargs, num_envs=config.num_envs, index=index, num_workers=config.num_workers,
        seed=config.seed, total_env_steps=config.total_env_steps, vectorization=config.vectorization,
        worker_epsilon=config.worker_epsilon, restarts=restarts,
    )


def check_spawnable(env: EnvSpec) -> None:
    """Raises a clear error when ``env`` cannot be sent to a ``spawn`` worker (a lambda or a local class)."""
    if isinstance(env, str):
        return
    try:
        pickle.dumps(env)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise ValueError(
            f"num_workers > 0 sends the env to worker processes, but {env!r} cannot be pickled ({error}); "
            "pass a registered id, or an Env class / factory function defined at module level"
        ) from error


def apex_epsilon(index: int, num_workers: int) -> float:
    """Ape-X's per-worker exploration rate ``0.4 ** (1 + 7 i / (N - 1))`` (0.4 for a single worker)."""
    if num_workers <= 1:
        return APEX_BASE_EPSILON
    return APEX_BASE_EPSILON ** (1.0 + APEX_ALPHA * index / (num_workers - 1))


def build_worker(spec: WorkerSpec) -> tuple[Algorithm[Any], Collector]:
    """The worker's envs, its acting algorithm (on the CPU) and a Collector over them."""
    torch.set_num_threads(1)
    envs = make_vec_env(spec.env, spec.num_envs, vectorization=spec.vectorization, env_kwargs=spec.env_kwargs)
    algo = build_algorithm(spec.algo, envs.single_observation_space, envs.single_action_space, spec.algo_config,
                           device="cpu", seed=spec.generator_seed, num_envs=spec.num_envs)
    algo.set_progress(0, spec.total_env_steps)
    collector = Collector(envs, seed=spec.env_seed, device="cpu")
    return algo, collector


def set_worker_progress(algo: Algorithm[Any], spec: WorkerSpec, env_steps: int) -> None:
    """Moves the worker's schedules (epsilon) to the run's global ``env_steps``; Ape-X workers keep their own
    epsilon."""
    algo.set_progress(min(env_steps, spec.total_env_steps), spec.total_env_steps)
    if spec.worker_epsilon == "apex" and hasattr(algo, "exploration_rate"):
        algo.exploration_rate = apex_epsilon(spec.index, spec.num_workers)


def acting_tensors(algo: Algorithm[Any]) -> dict[str, Tensor]:
    """The learner's tensors a worker needs to act as its policy does, by name.

    ``params``: the optimizer's flat parameter buffer ``[P]`` (every network parameter is a view of it, so
    this is the buffer itself, not a copy); ``obs_mean``/``obs_var`` ``[*obs_shape]`` and ``obs_count`` ``[1]``
    (float64): the observation statistics, when observations are normalized.
    """
    optimizer = getattr(algo, "optimizer", None)
    flat = getattr(optimizer, "flat_params", None)
    if flat is None:  # a network trained by a torch optimizer (AlphaZero): its state dict, tensor by tensor
        net = getattr(algo, "net", None)
        if net is None:
            raise TypeError(f"{type(algo).__name__} has no flat parameter buffer or `net` to publish to workers")
        return {f"net/{name}": tensor for name, tensor in net.state_dict().items()}
    tensors = {"params": flat}
    normalizer = getattr(algo, "obs_normalizer", None)
    if normalizer is not None:
        stats = normalizer.stats
        tensors.update({"obs_mean": stats.mean, "obs_var": stats.var,
                        "obs_count": torch.tensor([stats.count], dtype=torch.float64)})
    return tensors


def load_acting_tensors(algo: Algorithm[Any], tensors: dict[str, Tensor]) -> None:
    """Copies published tensors (see :func:`acting_tensors`) into a worker's algorithm, in place."""
    if "params" not in tensors:
        algo.net.load_state_dict({name[4:]: tensor for name, tensor in tensors.items()})  # type: ignore[attr-defined]
        return
    with torch.no_grad():
        algo.optimizer.flat_params.copy_(tensors["params"])  # type: ignore[attr-defined]
    normalizer = getattr(algo, "obs_normalizer", None)
    if normalizer is not None and "obs_mean" in tensors:
        normalizer.load_state_dict({"mean": tensors["obs_mean"].clone(), "var": tensors["obs_var"].clone(),
                                    "count": float(tensors["obs_count"][0])})


# ----------------------------------------------------------------------------------- the learner's view
class RemoteCollector:
    """Stands in for the Trainer's :class:`Collector` when workers collect: the run's env-step counter and
    episode statistics, fed by the workers' reports; checkpoints hold the counter and the statistics."""

    def __init__(self, num_envs: int) -> None:
        self.num_envs = num_envs
        self.env_steps = 0
        self.stats = EpisodeStats(num_envs)
        self.last_obs = None

    def record_episodes(self, returns: Sequence[float], lengths: Sequence[int]) -> None:
        """Adds finished episodes to the statistics window."""
        for episode_return, length in zip(returns, lengths):
            self.stats.finished_returns.append(float(episode_return))
            self.stats.finished_lengths.append(int(length))
        self.stats.episodes += len(returns)

    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "stats": self.stats.state_dict(), "envs": None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps = int(state["env_steps"])
        stats = dict(state["stats"])
        if len(stats["returns"]) != self.num_envs:  # a run resumed with another worker count
            stats["returns"] = np.zeros(self.num_envs)
            stats["lengths"] = np.zeros(self.num_envs, dtype=np.int64)
        self.stats.load_state_dict(stats)


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


def running_stats(algo: Algorithm[Any]) -> dict[str, RunningMeanStd]:
    """The algorithm's running statistics that workers update while collecting: ``obs`` and ``reward``."""
    found = {}
    for name, attribute in (("obs", "obs_normalizer"), ("reward", "reward_normalizer")):
        normalizer = getattr(algo, attribute, None)
        if normalizer is not None:
            found[name] = normalizer.stats
    return found


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


def publishable_tensors(algo: Algorithm[Any]) -> dict[str, Tensor]:
    """:func:`acting_tensors` plus the reward statistics, for on-policy workers (their rewards are scaled
    with the run's statistics)."""
    tensors = acting_tensors(algo)
    reward = running_stats(algo).get("reward")
    if reward is not None:
        tensors.update({"reward_mean": reward.mean.reshape(1), "reward_var": reward.var.reshape(1),
                        "reward_count": torch.tensor([reward.count], dtype=torch.float64)})
    return tensors


def load_publishable_tensors(algo: Algorithm[Any], tensors: dict[str, Tensor]) -> None:
    """Inverse of :func:`publishable_tensors` on a worker's algorithm."""
    load_acting_tensors(algo, tensors)
    reward = running_stats(algo).get("reward")
    if reward is not None and "reward_mean" in tensors:
        reward.load_state_dict({"mean": tensors["reward_mean"].reshape(()).clone(),
                                "var": tensors["reward_var"].reshape(()).clone(),
                                "count": float(tensors["reward_count"][0])})


@dataclass
class RolloutPart:
    """One worker's rollout: ``columns`` ``[T, E, ...]`` as its algorithm stored them, the observation after the
    last step ``[E, *obs_shape]``, and the moments its running statistics gained."""

    columns: dict[str, Tensor]
    last_obs: np.ndarray
    moments: dict[str, Moments]


def check_on_policy_workers(algo: Algorithm[Any]) -> None:
    """Memory policies keep per-env state in the learner for its bootstrap values: not across workers yet."""
    if getattr(algo.config, "memory", None) is not None:
        raise ValueError(
            f"num_workers > 0 does not support memory={algo.config.memory!r} policies yet; train them with "
            "num_workers=0 (num_envs sub-envs in one process)"
        )


def worker_rollout(algo: Algorithm[Any], collector: Collector, n_steps: int) -> RolloutPart:
    """Collects ``n_steps`` vector steps with the worker's current weights (worker side)."""
    start = {name: snapshot(stats) for name, stats in running_stats(algo).items()}
    for _ in range(n_steps):
        algo.store(collector.step(algo.explore))  # type: ignore[attr-defined]
    rollout = algo.rollout  # type: ignore[attr-defined]
    columns = {key: column.clone() for key, column in rollout.columns.items()}
    rollout.clear()
    moments = {name: moments_since(stats, start[name]) for name, stats in running_stats(algo).items()}
    return RolloutPart(columns, np.array(collector.last_obs), moments)


def learner_update(algo: Algorithm[Any], parts: Sequence[RolloutPart], env_steps: int,
                   total_env_steps: int) -> dict[str, float]:
    """Joins the workers' rollouts along the env axis (worker 0's envs first) and takes the update (learner)."""
    for part in parts:
        for name, stats in running_stats(algo).items():
            merge_moments(stats, part.moments[name])
    normalizer = getattr(algo, "obs_normalizer", None)
    if normalizer is not None:
        normalizer._refresh()
    rollout = algo.rollout  # type: ignore[attr-defined]
    rollout.clear()
    keys = list(parts[0].columns)
    for t in range(parts[0].columns[keys[0]].shape[0]):
        rollout.add({key: torch.cat([part.columns[key][t] for part in parts]) for key in keys})
    algo.set_progress(env_steps, total_env_steps)
    last_obs = torch.from_numpy(np.concatenate([part.last_obs for part in parts]))
    return algo.update(last_obs)  # type: ignore[attr-defined]
