"""Where the training loop's data comes from: envs in this process, worker processes, or Ray actors.

The :class:`~rlcore.trainer.Trainer` owns the only training loop and its schedule (when to train, evaluate,
checkpoint). A :class:`Source` only fills what the algorithm learns from and counts env steps:

- :class:`InProcessSource` steps the run's vector env in the learner's process;
- ``rlcore.distributed.local.LocalWorkerSource`` has worker processes write into shared memory;
- ``rlcore.distributed.ray_backend.RaySource`` has Ray actors send chunks through the object store.

Per data kind (see :mod:`rlcore.algos.base`) the loop asks the source to collect, then learns itself, then asks
the source to :meth:`~Source.publish` the new weights (a no-op in-process).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import torch
from gymnasium.vector import AsyncVectorEnv, VectorEnv
from torch import Tensor

from rlcore.algos.base import (
    Algorithm,
    PlanningAlgorithm,
    ReplayAlgorithm,
    RolloutAlgorithm,
    TransitionAlgorithm,
)
from rlcore.collector import Collector, EpisodeStats
from rlcore.observations import to_tensor


class Source(ABC):
    """What the loop drives. Every source counts the run's env steps and keeps its episode statistics.

    Args:
        total_env_steps: The run's length, for the algorithm's schedules (exploration) while collecting.
    """

    label: str = ""
    """Said after the algorithm and env on the progress bar (e.g. ``x2 workers``)."""

    def __init__(self, total_env_steps: int) -> None:
        self.total_env_steps = total_env_steps

    @property
    @abstractmethod
    def env_steps(self) -> int:
        """Env steps collected so far over every sub-env (of every worker)."""

    @property
    @abstractmethod
    def stats(self) -> EpisodeStats:
        """Returns and lengths of finished episodes (``rollout/ep_rew_mean``, ...)."""

    def start(self, algo: Algorithm[Any]) -> None:
        """Starts collecting for ``algo`` (workers are launched here)."""

    # --- one collection per data kind; a source that cannot serve a kind raises a ValueError at start ------------
    def collect_replay(self, algo: ReplayAlgorithm[Any], vector_steps: int) -> None:
        """Adds about ``vector_steps`` vector steps to ``algo.replay`` (workers: whatever arrived meanwhile)."""
        raise ValueError(f"{type(self).__name__} cannot collect replay data")

    def collect_rollout(self, algo: RolloutAlgorithm[Any]) -> Tensor:
        """Fills ``algo.rollout`` with ``n_steps`` vector steps of the current policy; returns the observations
        after its last step, ``[N, *obs_shape]`` (a flat dict of them for Dict observations)."""
        raise ValueError(f"{type(self).__name__} cannot collect on-policy rollouts")

    def collect_transitions(self, algo: TransitionAlgorithm[Any]) -> dict[str, float]:
        """One vector step acted and observed by ``algo``; returns its metrics."""
        raise ValueError(f"{type(self).__name__} cannot feed a learner vector step by vector step")

    def collect_plans(self, algo: PlanningAlgorithm[Any]) -> dict[str, float]:
        """Vector steps planned by ``algo`` (self-play workers: the positions their games added); returns the
        planner's metrics."""
        raise ValueError(f"{type(self).__name__} cannot run a planner")

    # --- after learning ---------------------------------------------------------------------------------------------
    def publish(self, algo: Algorithm[Any]) -> None:
        """Makes ``algo``'s new weights the ones collection acts with (workers pull them)."""

    def idle(self) -> None:
        """The loop had nothing to learn from this iteration: workers' sources nap briefly instead of spinning."""

    def limit(self, env_steps: int | None) -> None:
        """Off-policy rate limit: collect no further than ``env_steps`` until told more (None: no limit)."""

    def metrics(self) -> dict[str, float]:
        """The source's own scalars (``distributed/...``); empty in-process."""
        return {}

    def finish(self) -> None:
        """Stops collecting before the run's last evaluation (workers stop; in-process: nothing)."""

    def close(self, failed: bool = False) -> None:
        """Frees everything the source holds (idempotent; called whatever happened); ``failed``: the run is
        unwinding from an error, so processes that may be stuck are ended rather than waited for."""

    # --- checkpoints ------------------------------------------------------------------------------------------------
    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Counters, episode statistics and (in-process) each env's current episode."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`."""


class InProcessSource(Source):
    """Steps ``envs`` in the learner's process with the algorithm's behaviour policy.

    Args:
        envs: The run's same-step-autoreset vector env (:func:`rlcore.env.make_vec_env`).
        seed: Sub-env ``i`` is reset with ``seed + i``.
        device: Where observations handed to the policy live.
        total_env_steps: The run's length (schedules).
        action_masks: Pass the env's action masks to the algorithm and store them (see :class:`Collector`).
    """

    def __init__(self, envs: VectorEnv, *, seed: int, device: torch.device, total_env_steps: int,
                 action_masks: bool = False) -> None:
        super().__init__(total_env_steps)
        self.envs = envs
        self.collector = Collector(envs, seed=seed, device=device, action_masks=action_masks)

    @property
    def env_steps(self) -> int:
        return self.collector.env_steps

    @property
    def stats(self) -> EpisodeStats:
        return self.collector.stats

    def _progress(self, algo: Algorithm[Any]) -> None:
        algo.set_progress(self.collector.env_steps, self.total_env_steps)

    def collect_replay(self, algo: ReplayAlgorithm[Any], vector_steps: int) -> None:
        for _ in range(vector_steps):
            algo.replay.add(self.collector.step(algo.act))
            self._progress(algo)

    def collect_rollout(self, algo: RolloutAlgorithm[Any]) -> Tensor:
        for _ in range(algo.config.n_steps):
            algo.store(self.collector.step(algo.explore))
        self._progress(algo)
        return to_tensor(self.collector.last_obs)

    def collect_transitions(self, algo: TransitionAlgorithm[Any]) -> dict[str, float]:
        transition = self.collector.step(algo.act)
        self._progress(algo)
        return algo.observe(transition)

    def collect_plans(self, algo: PlanningAlgorithm[Any]) -> dict[str, float]:
        transition = self.collector.step(lambda obs: algo.plan(self.envs, deterministic=False))
        self._progress(algo)
        return algo.observe(transition)

    def close(self, failed: bool = False) -> None:
        if failed:  # maybe a sub-env process's error
            _end_async_processes(self.envs)
        self.envs.close()

    def state_dict(self) -> dict[str, Any]:
        return self.collector.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.collector.load_state_dict(state)


def _end_async_processes(envs: VectorEnv) -> None:
    """Ends an async vector env's processes at once: after a sub-env's error its step may be half-received, and
    gymnasium's close would wait for it (forever) or raise EOFError over the error that stopped the run."""
    inner = envs.unwrapped
    if not isinstance(inner, AsyncVectorEnv) or inner.closed:
        return
    for process in inner.processes:
        if process.is_alive():
            process.terminate()
    for pipe in inner.parent_pipes:
        if pipe is not None:
            pipe.close()
    for process in inner.processes:
        process.join(timeout=5)
    inner.closed = True


__all__ = ["InProcessSource", "Source"]
