"""The distributed roles as Ray actors (``backend="ray"``; ``pip install rlcore[distributed]``).

- **Collectors** are Ray actors (:class:`CollectorWorker` wrapped with ``ray.remote``), placed on any node of the
  cluster; each builds its envs and a CPU acting copy of the algorithm from a :class:`WorkerSpec`.
- **The learner** is the driver process (the :class:`~rlcore.Trainer`): it holds the algorithm, the replay
  buffer or the joined rollout, and does the evaluation, logging and checkpoints through the Trainer's own
  methods.
- **Weights** go through the object store: the learner ``ray.put``s its acting tensors (numpy arrays, read
  zero-copy on every node) once per publish, and a worker is handed the reference only when the version
  changed since its last call.

Off-policy algorithms (DQN) run asynchronously: each worker collects ``weight_pull_interval`` vector steps
per call while the learner trains on what already arrived, keeping the single-process run's ratio of
gradient steps to env steps. On-policy algorithms (PPO, A2C, ...) run synchronously: every worker collects
``n_steps`` with the current weights, the learner joins the rollouts along the env axis and updates.

A worker that dies (node lost, ``ray.kill``, crash) is logged and replaced by a fresh actor with moved-on env
seeds; training goes on. Ray is shut down at the end only when this run started it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from rlcore.distributed.roles import (
    RolloutPart,
    WorkerSpec,
    acting_tensors,
    build_worker,
    finished_episodes,
    learner_update,
    load_acting_tensors,
    load_publishable_tensors,
    publishable_tensors,
    set_worker_progress,
    worker_rollout,
    worker_spec,
)
from rlcore.logger import ProgressBar

if TYPE_CHECKING:  # pragma: no cover
    from rlcore.agent import Agent
    from rlcore.trainer import Trainer

logger = logging.getLogger(__name__)

LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
}
"""Set for the whole process (when not already set) before a local Ray starts: no usage statistics."""
LOOPBACK_PROXY_ENV = {"http_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9"}
"""Set (when not already set) while a local Ray starts, so the cloud-metadata and 8.8.8.8 probes Ray makes at
start-up go to a closed local port instead of the network; Ray's processes keep them, this process gets its own
values back afterwards (a proxy on a closed port would break its later HTTP, e.g. to a local TensorBoard)."""
LOCAL_NUM_CPUS = 2
"""Logical CPUs of a local Ray started by rlcore (actors then get fractional CPUs; this only counts)."""
LOCAL_OBJECT_STORE_BYTES = 200 * 1024 * 1024
"""Object store of a local Ray started by rlcore (Ray's default reserves ~30% of RAM in /dev/shm)."""
WAIT_TIMEOUT_S = 1.0
"""How long the learner waits for a worker's result before looking again (keeps Ctrl-C responsive)."""


# ------------------------------------------------------------------------------------------ Ray itself
def init_ray(address: str | None = None, *, num_cpus: int = LOCAL_NUM_CPUS,
             object_store_memory: int = LOCAL_OBJECT_STORE_BYTES) -> bool:
    """Connects to Ray: joins the cluster at ``address`` (``"auto"``, ``"ray://head:10001"``, ``"host:6379"``), or
    starts a loopback-only local Ray when ``address`` is None: :data:`LOOPBACK_ENV` and
    :data:`LOOPBACK_PROXY_ENV`, no dashboard, ``num_cpus`` logical CPUs, a small object store, node address
    127.0.0.1.

    Returns:
        True when this call connected (the caller then calls ``ray.shutdown()`` when done), False when Ray was
        already initialized in this process (someone else owns it).
    """
    if address is None:
        for key, value in LOOPBACK_ENV.items():
            os.environ.setdefault(key, value)
    ray = _ray()
    if ray.is_initialized():
        return False
    if address is not None:
        ray.init(address=address, log_to_driver=False)
        logger.info("joined the Ray cluster at %s (%s)", address, ray.cluster_resources())
        return True
    with _environment(LOOPBACK_PROXY_ENV):
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, object_store_memory=object_store_memory,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
    logger.info("started a local Ray (%d CPUs, %d MB object store, 127.0.0.1)", num_cpus,
                object_store_memory // 2**20)
    return True


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Sets the variables of ``values`` that are not set, and unsets them again on exit."""
    added = [key for key in values if key not in os.environ]
    os.environ.update({key: values[key] for key in added})
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("backend='ray' needs Ray: pip install 'rlcore[distributed]'") from error
    return ray


# ------------------------------------------------------------------------------------------ workers
@dataclass
class Chunk:
    """What an off-policy worker hands the learner after one call."""

    index: int
    """The worker's position."""
    version: int
    """The weights version it acted with."""
    transitions: dict[str, np.ndarray]
    """Each key ``[k, E, ...]``: ``k`` vector steps of the worker's ``E`` envs, as :meth:`Collector.step` gives them."""
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)

    @property
    def env_steps(self) -> int:
        reward = self.transitions["reward"]
        return int(reward.shape[0] * reward.shape[1])


@dataclass
class RolloutReport:
    """What an on-policy worker hands the learner after one rollout."""

    index: int
    version: int
    part: RolloutPart
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)


def _as_tensors(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Object-store arrays are read-only views of shared memory: copy them into tensors."""
    return {key: torch.from_numpy(np.array(value)) for key, value in arrays.items()}


def _as_arrays(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    return {key: tensor.detach().cpu().numpy().copy() for key, tensor in tensors.items()}


class CollectorWorker:
    """One worker: its envs and its acting copy of the algorithm. :func:`run_ray` runs it as a Ray actor
    (``ray.remote(CollectorWorker)``); it is a plain class, so it also works (and is tested) in-process."""

    def __init__(self, spec: WorkerSpec) -> None:
        self.spec = spec
        self.algo, self.collector = build_worker(spec)
        self.version = -1
        """The weights version the acting copy holds (-1: its own initialization)."""
        self._episodes_seen = 0

    def pid(self) -> int:
        """The actor's process id (tests kill it)."""
        return os.getpid()

    def _pull(self, weights: dict[str, np.ndarray] | None, version: int, on_policy: bool) -> None:
        if weights is None or version == self.version:
            return
        load = load_publishable_tensors if on_policy else load_acting_tensors
        load(self.algo, _as_tensors(weights))
        self.version = version

    def _episodes(self) -> tuple[list[float], list[int]]:
        returns, lengths, self._episodes_seen = finished_episodes(self.collector.stats, self._episodes_seen)
        return returns, lengths

    def collect(self, weights: dict[str, np.ndarray] | None, version: int, env_steps: int, n_steps: int) -> Chunk:
        """Off-policy: loads ``weights`` when given (Ray resolves the reference), then takes ``n_steps`` vector
        steps with the exploration the run is at (``env_steps`` of the whole run)."""
        self._pull(weights, version, on_policy=False)
        set_worker_progress(self.algo, self.spec, env_steps)
        steps = [self.collector.step(self.algo.act) for _ in range(n_steps)]
        transitions = {key: np.stack([np.asarray(step[key]) for step in steps]) for key in steps[0]}
        returns, lengths = self._episodes()
        return Chunk(self.spec.index, self.version, transitions, returns, lengths)

    def rollout(self, weights: dict[str, np.ndarray] | None, version: int, env_steps: int,
                n_steps: int) -> RolloutReport:
        """On-policy: ``n_steps`` vector steps with exactly the learner's weights of ``version``."""
        self._pull(weights, version, on_policy=True)
        set_worker_progress(self.algo, self.spec, env_steps)
        part = worker_rollout(self.algo, self.collector, n_steps)
        returns, lengths = self._episodes()
        return RolloutReport(self.spec.index, self.version, part, returns, lengths)


def _writable(report: RolloutReport) -> RolloutReport:
    """Arrays that come out of the object store are read-only views: the learner merges copies."""
    part = report.part
    part.moments = {name: (np.array(mean), np.array(var), count) for name, (mean, var, count) in part.moments.items()}
    part.last_obs = np.array(part.last_obs)
    return report


# ------------------------------------------------------------------------------------------ the learner
class _WorkerSet:
    """The run's actors, the published weights, and what each worker was sent and has used."""

    def __init__(self, trainer: Trainer, on_policy: bool) -> None:
        ray = _ray()
        self.trainer = trainer
        self.on_policy = on_policy
        workers = trainer.config.num_workers
        cpus = min(1.0, float(ray.cluster_resources().get("CPU", workers)) / workers)
        self._actor_class = ray.remote(num_cpus=cpus)(CollectorWorker)
        self._token = uuid.uuid4().hex[:8]
        self.restarts = [0] * workers
        self.actors = [self._start(index) for index in range(workers)]
        self.sent_version = [-1] * workers
        self.acting_version = [-1] * workers
        """The newest weights version each worker has reported acting with."""
        self.env_steps = [0] * workers
        """Env steps received from each worker."""
        self.version = -1
        self._weights: Any = None
        logger.info("started %d Ray collector actors (%.2f CPU each)", workers, cpus)

    def actor_name(self, index: int) -> str:
        """Worker ``index``'s actor name (``ray list actors``): ``rlcore-<run>-collector<i>-r<restarts>``."""
        return f"rlcore-{self._token}-collector{index}-r{self.restarts[index]}"

    def _start(self, index: int) -> Any:
        spec = worker_spec(self.trainer, index, self.restarts[index])
        return self._actor_class.options(name=self.actor_name(index)).remote(spec)

    def wait_ready(self) -> None:
        """Waits until every actor has built its envs (so the first calls do not all go to the fastest one)."""
        ray = _ray()
        for index, actor in enumerate(self.actors):
            try:
                ray.get(actor.pid.remote())
            except Exception as error:
                if not _is_worker_failure(error):
                    raise
                self.replace(index, error)

    def publish(self) -> None:
        """Puts the learner's current acting tensors into the object store as a new version."""
        tensors = publishable_tensors(self.trainer.algo) if self.on_policy else acting_tensors(self.trainer.algo)
        self._weights = _ray().put(_as_arrays(tensors))
        self.version += 1

    def weights_for(self, index: int) -> tuple[Any, int]:
        """The reference to hand worker ``index`` (None when it already has this version) and the version."""
        if self.sent_version[index] == self.version:
            return None, self.version
        self.sent_version[index] = self.version
        return self._weights, self.version

    def replace(self, index: int, error: BaseException) -> None:
        """Logs a dead worker and starts a fresh one in its place (its envs seeded further on)."""
        self.restarts[index] += 1
        logger.warning("Ray collector %d died (%s); starting a replacement (restart %d)", index,
                       type(error).__name__, self.restarts[index])
        with contextlib.suppress(Exception):  # it is gone already
            _ray().kill(self.actors[index])
        self.actors[index] = self._start(index)
        self.sent_version[index] = -1

    def received(self, index: int, version: int, env_steps: int) -> None:
        self.acting_version[index] = max(self.acting_version[index], version)
        self.env_steps[index] += env_steps

    def metrics(self) -> dict[str, float]:
        """``distributed/...`` scalars: the published and the oldest acting version, each worker's share, restarts."""
        return {
            "distributed/weights_version": float(self.version),
            "distributed/acting_version_min": float(min(self.acting_version)),
            "distributed/worker_env_steps_min": float(min(self.env_steps)),
            "distributed/worker_env_steps_max": float(max(self.env_steps)),
            "distributed/restarts": float(sum(self.restarts)),
        }

    def close(self) -> None:
        ray = _ray()
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already dead
                ray.kill(actor)


def _is_worker_failure(error: BaseException) -> bool:
    from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

    return isinstance(error, (RayActorError, ActorDiedError, ActorUnavailableError))


class _RayRun:
    """The learner's loop over Ray workers; the Trainer does the evaluation, logging and checkpoints."""

    def __init__(self, trainer: Trainer) -> None:
        self.trainer = trainer
        self.config = trainer.config
        self.algo = trainer.algo
        self.on_policy = self.algo.data_kind == "rollout"  # the Trainer checked it is "rollout" or "replay"
        remote = trainer.collector  # a RemoteCollector: the Trainer made one for its workers
        self.collector = remote
        self.replay = None if self.on_policy else self.algo.replay  # type: ignore[attr-defined]
        """Off-policy: the :class:`ShardedReplay` (a shard per worker, in this process) the Trainer gave the
        algorithm."""
        self._phases_done = 0 if self.on_policy else self._phases_due(remote.env_steps)

    # ----------------------------------------------------------------- off-policy data
    def _phases_due(self, env_steps: int) -> int:
        """Training phases a single-process run has taken by ``env_steps``: one per ``train_freq * num_envs`` env
        steps, after ``learning_starts``."""
        algo_config = self.algo.config
        period = algo_config.train_freq * self.config.num_envs
        return max(0, env_steps // period - algo_config.learning_starts // period)

    def _absorb(self, chunk: Chunk) -> None:
        writer = self.replay.writer(chunk.index)
        transitions = chunk.transitions
        for t in range(transitions["reward"].shape[0]):
            writer.add({key: value[t] for key, value in transitions.items()})
        self.collector.env_steps += chunk.env_steps
        self.collector.record_episodes(chunk.returns, chunk.lengths)

    def _train_due(self) -> bool:
        """Takes the training phases the env steps received so far call for; True when it trained."""
        algo, env_steps = self.algo, self.collector.env_steps
        algo.set_progress(env_steps, self.config.total_env_steps)
        due = self._phases_due(env_steps)
        trained = due > self._phases_done
        while self._phases_done < due:
            self.trainer._train_metrics = algo.train(algo.config.gradient_steps)  # type: ignore[attr-defined]
            self._phases_done += 1
        return trained

    # ----------------------------------------------------------------- the loops
    def run(self) -> Agent:
        trainer, total = self.trainer, self.config.total_env_steps
        trainer.logger.log_hparams(trainer.hparams())
        bar = ProgressBar(total, f"{trainer.algo_name} {trainer.env_label} x{self.config.num_workers} Ray actors",
                          self.config.progress_bar, start=self.collector.env_steps)
        workers = None
        try:
            workers = _WorkerSet(trainer, self.on_policy)
            workers.wait_ready()
            trainer.start_clock()
            loop = self._on_policy_loop if self.on_policy else self._off_policy_loop
            loop(workers, bar)
            logger.info("ray run finished: %s", workers.metrics())
            workers.close()
            workers = None
            return trainer.finish(bar)
        finally:
            if workers is not None:
                workers.close()
            bar.close()
            trainer.logger.close()

    def _running(self) -> bool:
        return self.collector.env_steps < self.config.total_env_steps and not self.trainer.reached_target()

    def _after_iteration(self, workers: _WorkerSet, start: tuple[float, int], bar: ProgressBar) -> None:
        trainer = self.trainer
        trainer._train_metrics = {**trainer._train_metrics, **workers.metrics()}
        fps = (self.collector.env_steps - start[1]) / max(time.perf_counter() - start[0], 1e-9)
        trainer._after_iteration(fps, bar)

    def _off_policy_loop(self, workers: _WorkerSet, bar: ProgressBar) -> None:
        ray, total, envs = _ray(), self.config.total_env_steps, self.config.num_envs
        start = (time.perf_counter(), self.collector.env_steps)
        pending: dict[Any, tuple[int, int]] = {}
        """In-flight call -> (worker, env steps it will bring)."""

        def dispatch(index: int) -> None:
            in_flight = sum(steps for _, steps in pending.values())
            remaining = total - self.collector.env_steps - in_flight
            if remaining <= 0 or not self._running():
                return
            n_steps = min(self.config.weight_pull_interval, math.ceil(remaining / envs))
            weights, version = workers.weights_for(index)
            call = workers.actors[index].collect.remote(weights, version, self.collector.env_steps, n_steps)
            pending[call] = (index, n_steps * envs)

        workers.publish()
        for index in range(len(workers.actors)):
            dispatch(index)
        while pending and self._running():
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_TIMEOUT_S)
            if not ready:
                continue
            index, _ = pending.pop(ready[0])
            try:
                chunk: Chunk = ray.get(ready[0])
            except Exception as error:
                if not _is_worker_failure(error):
                    raise
                workers.replace(index, error)
                self.replay.writer(index).end_interrupted_episodes()
                dispatch(index)
                continue
            dispatch(index)  # the worker collects on while the learner trains
            self._absorb(chunk)
            workers.received(index, chunk.version, chunk.env_steps)
            if self._train_due():
                workers.publish()
            self._after_iteration(workers, start, bar)

    def _on_policy_loop(self, workers: _WorkerSet, bar: ProgressBar) -> None:
        total, n_steps = self.config.total_env_steps, self.algo.config.n_steps
        start = (time.perf_counter(), self.collector.env_steps)
        while self._running():
            workers.publish()
            reports = self._gather_rollouts(workers, n_steps)
            for report in reports:
                self.collector.record_episodes(report.returns, report.lengths)
                workers.received(report.index, report.version, self.config.num_envs * n_steps)
            self.collector.env_steps += len(reports) * self.config.num_envs * n_steps
            self.trainer._train_metrics = learner_update(self.algo, [report.part for report in reports],
                                                         self.collector.env_steps, total)
            self._after_iteration(workers, start, bar)

    def _gather_rollouts(self, workers: _WorkerSet, n_steps: int) -> list[RolloutReport]:
        """Every worker's rollout with the current weights; a worker that dies is replaced and asked again."""
        ray = _ray()

        def request(index: int) -> Any:
            weights, version = workers.weights_for(index)
            return workers.actors[index].rollout.remote(weights, version, self.collector.env_steps, n_steps)

        pending = {request(index): index for index in range(len(workers.actors))}
        reports: dict[int, RolloutReport] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_TIMEOUT_S)
            for call in ready:
                index = pending.pop(call)
                try:
                    reports[index] = _writable(ray.get(call))
                except Exception as error:
                    if not _is_worker_failure(error):
                        raise
                    workers.replace(index, error)
                    pending[request(index)] = index
        return [reports[index] for index in sorted(reports)]


def run_ray(trainer: Trainer) -> Agent:
    """Trains ``trainer``'s algorithm with ``trainer.config.num_workers`` Ray collector actors; the driver is the
    learner. Joins ``trainer.config.ray_address`` or starts a local Ray, which it shuts down at the end."""
    started = init_ray(trainer.config.ray_address)
    try:
        return _RayRun(trainer).run()
    finally:
        if started:
            _ray().shutdown()
