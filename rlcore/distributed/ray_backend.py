"""The distributed roles as Ray actors (``backend="ray"``; ``pip install -e '.[distributed]'``).

- **Collectors** are Ray actors (:class:`CollectorWorker` wrapped with ``ray.remote``), placed on any node of the
  cluster; each builds its envs and a CPU acting copy of the algorithm from a :class:`WorkerSpec`.
- **The learner** is the driver process: the :class:`~rlcore.Trainer`'s loop drives a :class:`RaySource`, and
  holds the algorithm, the replay buffer or the joined rollout, evaluation, logging and checkpoints.
- **Weights** go through the object store: the learner ``ray.put``s its acting tensors (numpy arrays, read
  zero-copy on every node) once per publish, and a worker is handed the reference only when the version
  changed since its last call.

Off-policy algorithms (DQN) run asynchronously: each worker collects ``weight_pull_interval`` vector steps
per call while the learner trains on what already arrived, keeping the single-process run's ratio of
gradient steps to env steps. On-policy algorithms (PPO, A2C, ...) run synchronously: every worker collects
``n_steps`` with the current weights, the learner joins the rollouts along the env axis and updates.

Placement: ``worker_resources`` (e.g. ``{"collector": 1}``) puts the actors only on nodes that offer those custom
resources (``ray start --resources='{"collector": 4}'``), and actors are spread over the nodes that qualify
(``SPREAD``; inside a Tune trial they stay in the trial's placement group).

A worker that dies (node lost, ``ray.kill``, crash) is logged and replaced by a fresh actor with moved-on env
seeds, on a node that can host it; training goes on. Actors are never restarted by Ray and calls are never
retried, so a chunk reaches the learner at most once; the env steps of a call lost with its actor are not counted
(``distributed/discarded_env_steps``). When no alive node can host a replacement, the learner waits
:data:`PLACEMENT_TIMEOUT_S` for one to join, then stops with an error naming the missing resources. Ray is shut
down at the end only when this run started it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from rlcore.algos.base import Algorithm, ReplayAlgorithm, RolloutAlgorithm
from rlcore.distributed.roles import (
    MAX_RESTARTS,
    RolloutPart,
    WorkerSettings,
    WorkerSource,
    WorkerSpec,
    build_worker,
    finished_episodes,
    join_rollouts,
    set_worker_progress,
    worker_rollout,
)
from rlcore.observations import flatten_fields, map_observation

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
PROBE_INTERVAL_S = 0.5
"""How often an unreachable actor (its node may be dying, or a connection dropped) is asked whether it answers again,
until it does or Ray declares it dead."""
PLACEMENT_TIMEOUT_S = 30.0
"""How long the learner waits for a node that can host a collector actor (its CPUs and ``worker_resources``) to
join (an autoscaler, a restarted node) before it stops with an error naming the missing resources."""
RAY_OWN_RESOURCES = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
"""Resources Ray asks for through their own options, not through ``resources=``."""


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
        if _is_loopback(address):
            _keep_loopback_addresses()
        with _users_sigterm_handler_kept():
            ray.init(address=address, log_to_driver=False)
        logger.info("joined the Ray cluster at %s (%s)", address, ray.cluster_resources())
        return True
    with _environment(LOOPBACK_PROXY_ENV), _users_sigterm_handler_kept():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, object_store_memory=object_store_memory,
                 _node_ip_address="127.0.0.1", log_to_driver=False)
    logger.info("started a local Ray (%d CPUs, %d MB object store, 127.0.0.1)", num_cpus,
                object_store_memory // 2**20)
    return True


@contextlib.contextmanager
def _users_sigterm_handler_kept() -> Iterator[None]:
    """``ray.init`` installs its own SIGTERM handler (``sys.exit``) for good: one the user had installed is put back
    after it (the default one is left to Ray's, which exits as SIGTERM would, through ``atexit``)."""
    users = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    finally:
        if callable(users):
            signal.signal(signal.SIGTERM, users)


class LoopbackCluster:
    """A multi-node Ray on this one machine, to try the cluster recipe of ``docs/distributed.md`` and to test and
    benchmark placement, transfers between nodes and node failures: a head node and worker nodes, each its own
    raylet and object store, all on 127.0.0.1 with :func:`init_ray`'s loopback settings and no dashboard. A node
    lost without warning is declared dead after about ``node_failure_s``. This process is not connected to it:
    pass :attr:`address` as ``ray_address`` (or to :func:`init_ray`).

    Args:
        head_cpus: Logical CPUs of the head node (the learner's: the driver connects to the head).
        head_resources: Custom resources of the head node (e.g. to place some actors beside the learner).
        object_store_bytes: Each node's object store.
        node_failure_s: Seconds of failed health checks (one a second) before a node is declared dead.
    """

    def __init__(self, *, head_cpus: int = 1, head_resources: Mapping[str, float] | None = None,
                 object_store_bytes: int = 100 * 2**20, node_failure_s: float = 5.0) -> None:
        from ray.cluster_utils import Cluster

        for key, value in LOOPBACK_ENV.items():
            os.environ.setdefault(key, value)
        _keep_loopback_addresses()
        self.object_store_bytes = object_store_bytes
        system_config = {"health_check_period_ms": 1000,
                         "health_check_failure_threshold": max(1, round(node_failure_s))}
        with _environment(LOOPBACK_PROXY_ENV):
            self.cluster = Cluster(initialize_head=True, head_node_args={
                **self._node_args(head_cpus, head_resources or {}), "_system_config": system_config})

    def _node_args(self, cpus: int, resources: Mapping[str, float]) -> dict[str, Any]:
        return {"num_cpus": cpus, "resources": dict(resources), "object_store_memory": self.object_store_bytes,
                "include_dashboard": False, "node_ip_address": "127.0.0.1", "dashboard_agent_listen_port": None}

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: the ``ray_address`` of the head node."""
        return str(self.cluster.address)

    @property
    def head_node_id(self) -> str:
        return str(self.cluster.head_node.node_id)

    def add_worker_node(self, resources: Mapping[str, float] | None = None, *, cpus: int = 2) -> Any:
        """Starts a worker node with ``cpus`` logical CPUs and the custom ``resources`` (``{"collector": 2}``), as
        ``ray start --address=HEAD --num-cpus=CPUS --resources=...`` does; returns it (``.node_id``)."""
        with _environment(LOOPBACK_PROXY_ENV):
            return self.cluster.add_node(**self._node_args(cpus, resources or {}))

    @property
    def worker_nodes(self) -> list[Any]:
        return sorted(self.cluster.worker_nodes, key=lambda node: node.node_id)

    def kill_node(self, node: Any) -> None:
        """Kills a worker node's processes at once (SIGKILL: its raylet, object store and actors), as a crash or a
        lost machine would."""
        self.cluster.remove_node(node, allow_graceful=False)

    def shutdown(self) -> None:
        """Stops every node (connected drivers should ``ray.shutdown()`` first)."""
        self.cluster.shutdown()


def _is_loopback(address: str) -> bool:
    host = address.removeprefix("ray://").rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1")


def _keep_loopback_addresses() -> None:
    """Makes this process's Ray keep 127.0.0.1 as it is (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), also when Ray was
    imported before the variable was set: otherwise Ray swaps a loopback address for the machine's network address,
    where a loopback-only cluster does not listen."""
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False  # read when an address is resolved, not only at import


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


def check_worker_resources(resources: Mapping[str, float] | None) -> dict[str, float]:
    """``worker_resources`` as a plain dict (empty for None); raises a ValueError naming a bad key or amount."""
    if resources is None:
        return {}
    if not isinstance(resources, Mapping):
        raise ValueError(f"worker_resources must map custom resource names to amounts, e.g. {{'collector': 1}}, "
                         f"got {resources!r}")
    checked = {}
    for name, amount in resources.items():
        if not isinstance(name, str) or name in RAY_OWN_RESOURCES:
            raise ValueError(f"worker_resources: {name!r} is not a custom resource name (CPU, GPU and memory are "
                             "Ray's own; rlcore sizes the actors' CPU share itself)")
        if isinstance(amount, bool) or not isinstance(amount, int | float) or amount < 0 or (
                amount > 1 and amount != int(amount)):
            raise ValueError(f"worker_resources[{name!r}] must be a fraction up to 1 or a whole number, got {amount!r}")
        checked[name] = float(amount)
    return checked


def alive_nodes() -> list[dict[str, Any]]:
    """The cluster's alive nodes as ``ray.nodes()`` lists them (``NodeID``, ``Resources``: totals, ...)."""
    return [node for node in _ray().nodes() if node.get("Alive")]


def _can_host(node: dict[str, Any], demands: Mapping[str, float]) -> bool:
    """Whether ``node``'s total resources cover ``demands`` (busy or not)."""
    totals = node.get("Resources", {})
    return all(totals.get(name, 0.0) >= amount for name, amount in demands.items() if amount > 0)


def wait_for_host(demands: Mapping[str, float], timeout_s: float | None = None) -> None:
    """Returns once an alive node could host an actor asking for ``demands``; after ``timeout_s`` (default
    :data:`PLACEMENT_TIMEOUT_S`) without one, raises a RuntimeError naming what is missing and what the alive nodes
    offer."""
    timeout_s = PLACEMENT_TIMEOUT_S if timeout_s is None else timeout_s
    deadline = time.monotonic() + timeout_s
    warned = False
    while True:
        nodes = alive_nodes()
        if any(_can_host(node, demands) for node in nodes):
            return
        if time.monotonic() >= deadline:
            offered = [{name: amount for name, amount in node.get("Resources", {}).items()
                        if not name.startswith("node:")} for node in nodes]
            raise RuntimeError(
                f"no alive Ray node can host a collector actor: each asks for {dict(demands)}, and the "
                f"{len(nodes)} alive node(s) offer {offered} (waited {timeout_s:.0f} s for one to join). Start a "
                "node that has them, e.g. ray start --address=HEAD_IP:6379 --resources='{\"collector\": 4}', or "
                "change worker_resources")
        if not warned:
            logger.warning("no alive Ray node can host a collector actor (%s); waiting up to %.0f s for one to join",
                           dict(demands), timeout_s)
            warned = True
        time.sleep(min(1.0, timeout_s))


def _ray() -> Any:
    try:
        import ray
    except ImportError as error:  # pragma: no cover - depends on the install
        raise ImportError("backend='ray' needs Ray: pip install -e '.[distributed]'") from error
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

    def env_steps(self) -> int:
        """Env steps this actor has taken (over its envs, since it started)."""
        return int(self.collector.env_steps)

    def _pull(self, weights: dict[str, np.ndarray] | None, version: int) -> None:
        if weights is None or version == self.version:
            return
        self.algo.load_acting_state(_as_tensors(weights))
        self.version = version

    def _episodes(self) -> tuple[list[float], list[int]]:
        returns, lengths, self._episodes_seen = finished_episodes(self.collector.stats, self._episodes_seen)
        return returns, lengths

    def collect(self, weights: dict[str, np.ndarray] | None, version: int, env_steps: int, n_steps: int) -> Chunk:
        """Off-policy: loads ``weights`` when given (Ray resolves the reference), then takes ``n_steps`` vector
        steps with the exploration the run is at (``env_steps`` of the whole run)."""
        self._pull(weights, version)
        set_worker_progress(self.algo, self.spec, env_steps)
        steps = [flatten_fields(self.collector.step(self.algo.act)) for _ in range(n_steps)]  # Dict obs: per leaf
        transitions = {key: np.stack([np.asarray(step[key]) for step in steps]) for key in steps[0]}
        returns, lengths = self._episodes()
        return Chunk(self.spec.index, self.version, transitions, returns, lengths)

    def rollout(self, weights: dict[str, np.ndarray] | None, version: int, env_steps: int,
                n_steps: int) -> RolloutReport:
        """On-policy: ``n_steps`` vector steps with exactly the learner's weights of ``version``."""
        self._pull(weights, version)
        set_worker_progress(self.algo, self.spec, env_steps)
        part = worker_rollout(self.algo, self.collector, n_steps)
        returns, lengths = self._episodes()
        return RolloutReport(self.spec.index, self.version, part, returns, lengths)


def _writable(report: RolloutReport) -> RolloutReport:
    """Arrays that come out of the object store are read-only views: the learner merges copies."""
    part = report.part
    part.moments = {name: (np.array(mean), np.array(var), count) for name, (mean, var, count) in part.moments.items()}
    part.last_obs = map_observation(np.array, part.last_obs)
    return report


# ------------------------------------------------------------------------------------------ the learner
class _WorkerSet:
    """The run's actors, the published weights, and what each worker was sent and has used.

    Args:
        specs: One recipe per actor.
        resources: Custom resources each actor asks for (``worker_resources``); it gets ``min(1, CPUs / workers)``
            logical CPUs, counting the CPUs of the nodes that have those resources.
    """

    def __init__(self, specs: list[WorkerSpec], resources: Mapping[str, float]) -> None:
        ray = _ray()
        self.specs = specs
        self.resources = dict(resources)
        workers = len(specs)
        wait_for_host(self.resources)
        cpus = sum(node["Resources"].get("CPU", 0.0) for node in alive_nodes() if _can_host(node, self.resources))
        self.cpus = round(min(1.0, cpus / workers), 4)
        self.demands = {"CPU": self.cpus, **self.resources}
        """What one actor asks for."""
        self._actor_class = ray.remote(CollectorWorker)
        self._token = uuid.uuid4().hex[:8]
        self.restarts = [0] * workers
        self.ready = [False] * workers
        """Whether each worker's current actor has answered a call (it built its envs)."""
        self.env_steps = [0] * workers
        """Env steps received from each worker (over its restarts)."""
        self.actor_env_steps = [0] * workers
        """Env steps received from each worker's current actor."""
        self.actor_discarded = [0] * workers
        """Env steps of calls to each worker's current actor that failed (it may have taken them)."""
        self.discarded_env_steps = 0
        """Env steps of calls lost with their actor (never written, never counted)."""
        self.actors = [self._start(index) for index in range(workers)]
        self.sent_version = [-1] * workers
        self.acting_version = [-1] * workers
        """The newest weights version each worker has reported acting with."""
        self.version = -1
        self._weights: Any = None
        logger.info("started %d Ray collector actors (%s each)", workers, self.demands)

    def actor_name(self, index: int) -> str:
        """Worker ``index``'s actor name (``ray list actors``): ``rlcore-<run>-collector<i>-r<restarts>``."""
        return f"rlcore-{self._token}-collector{index}-r{self.restarts[index]}"

    def _start(self, index: int) -> Any:
        """Worker ``index``'s actor: never restarted by Ray nor its calls retried (a chunk arrives at most once);
        spread over the nodes, unless it runs inside a placement group (a Tune trial's), which it then stays in."""
        ray = _ray()
        spec = dataclasses.replace(self.specs[index], restarts=self.restarts[index])
        options: dict[str, Any] = {"name": self.actor_name(index), "num_cpus": self.cpus, "max_restarts": 0,
                                   "max_task_retries": 0}
        if self.resources:
            options["resources"] = self.resources
        if ray.util.get_current_placement_group() is None:
            options["scheduling_strategy"] = "SPREAD"
        self.actor_env_steps[index] = self.actor_discarded[index] = 0
        self.ready[index] = False
        return self._actor_class.options(**options).remote(spec)

    def wait_ready(self) -> None:
        """Waits until every actor has built its envs (so the first calls do not all go to the fastest one)."""
        ray = _ray()
        for index, actor in enumerate(self.actors):
            try:
                ray.get(actor.pid.remote())
                self.ready[index] = True
            except Exception as error:
                if not _is_worker_failure(error):
                    raise
                self.replace(index, error)

    def probe(self, index: int) -> Any:
        """A cheap call that answers once worker ``index``'s actor is reachable again (or fails once it is dead)."""
        return self.actors[index].pid.remote()

    def publish(self, tensors: dict[str, torch.Tensor]) -> None:
        """Puts the learner's acting tensors into the object store as a new version."""
        self._weights = _ray().put(_as_arrays(tensors))
        self.version += 1

    def weights_for(self, index: int) -> tuple[Any, int]:
        """The reference to hand worker ``index`` (None when it already has this version) and the version."""
        if self.sent_version[index] == self.version:
            return None, self.version
        self.sent_version[index] = self.version
        return self._weights, self.version

    def lost_call(self, index: int, error: BaseException, lost_env_steps: int) -> bool:
        """A call to worker ``index`` failed: its ``lost_env_steps`` are dropped (never counted). When the actor is
        only unreachable (``ActorUnavailableError``: its node may be dying, or a connection dropped), returns False:
        probe it again after :data:`PROBE_INTERVAL_S`; Ray declares it dead once its node is declared dead, so a
        replacement is never placed on a node that is still being detected as lost. When it is dead, replaces it
        and returns True."""
        from ray.exceptions import ActorUnavailableError

        self.discarded_env_steps += lost_env_steps
        self.actor_discarded[index] += lost_env_steps
        self.sent_version[index] = -1  # the lost call may have carried the weights
        if isinstance(error, ActorUnavailableError):
            if lost_env_steps:
                logger.warning("Ray collector %d is unreachable (%s); its %d env steps in flight are dropped; "
                               "probing it until it answers or Ray declares it dead", index, _first_line(error),
                               lost_env_steps)
            return False
        self.replace(index, error)
        return True

    def replace(self, index: int, error: BaseException) -> None:
        """Logs a dead worker and starts a fresh actor in its place (its envs seeded further on) once a node can
        host it; as local workers: an actor whose first start failed (its envs could not be built) or one that died
        :data:`~rlcore.distributed.roles.MAX_RESTARTS` times stops the run with its error instead."""
        if not self.ready[index] and self.restarts[index] == 0:
            raise RuntimeError(f"Ray collector {index} failed before it started (a replacement would fail alike): "
                               f"{error}") from error
        self.restarts[index] += 1
        if self.restarts[index] > MAX_RESTARTS:
            raise RuntimeError(f"Ray collector {index} died {self.restarts[index]} times; last error: {error}") \
                from error
        logger.warning("Ray collector %d died (%s); starting a replacement (restart %d)", index, _first_line(error),
                       self.restarts[index])
        with contextlib.suppress(Exception):  # it is gone already
            _ray().kill(self.actors[index])
        wait_for_host(self.demands)
        self.actors[index] = self._start(index)
        self.sent_version[index] = -1

    def received(self, index: int, version: int, env_steps: int) -> None:
        self.ready[index] = True
        self.acting_version[index] = max(self.acting_version[index], version)
        self.env_steps[index] += env_steps
        self.actor_env_steps[index] += env_steps

    def reconcile(self, in_flight: list[int]) -> dict[str, Any]:
        """The run's accounting: what each current actor says it collected must equal what the learner received
        from it plus its calls still in flight (``in_flight`` per worker; the actor answers after them), plus at
        most the env steps of its calls that failed while it was unreachable."""
        ray = _ray()
        collected: list[int | None] = []
        for actor in self.actors:
            try:
                collected.append(int(ray.get(actor.env_steps.remote(), timeout=60)))
            except Exception as error:  # died or unreachable at the very end: its count is unknown
                if not (_is_worker_failure(error) or isinstance(error, ray.exceptions.GetTimeoutError)):
                    raise
                collected.append(None)
        expected = [received + flying for received, flying in zip(self.actor_env_steps, in_flight)]
        consistent = all(count is None or want <= count <= want + lost
                         for count, want, lost in zip(collected, expected, self.actor_discarded))
        return {
            "received_env_steps": sum(self.env_steps),
            "discarded_env_steps": self.discarded_env_steps,
            "actors_collected": collected,
            "actors_received": list(self.actor_env_steps),
            "actors_in_flight": list(in_flight),
            "actors_acting_version": list(self.acting_version),
            "consistent": consistent,
        }

    def metrics(self) -> dict[str, float]:
        """``distributed/...`` scalars: the published and the oldest acting version, each worker's share, restarts."""
        return {
            "distributed/weights_version": float(self.version),
            "distributed/acting_version_min": float(min(self.acting_version)),
            "distributed/worker_env_steps_min": float(min(self.env_steps)),
            "distributed/worker_env_steps_max": float(max(self.env_steps)),
            "distributed/restarts": float(sum(self.restarts)),
            "distributed/discarded_env_steps": float(self.discarded_env_steps),
        }

    def close(self) -> None:
        ray = _ray()
        for actor in self.actors:
            with contextlib.suppress(Exception):  # already dead
                ray.kill(actor)


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0][:200]}" if text else type(error).__name__


def _is_worker_failure(error: BaseException) -> bool:
    """An actor died (crash, ``ray.kill``, its node lost) or is unreachable, or its call's result was lost with its
    node."""
    from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayActorError

    return isinstance(error, (RayActorError, ActorDiedError, ActorUnavailableError, ObjectLostError))


class RaySource(WorkerSource):
    """Collection by Ray collector actors; the driver is the learner. Joins ``ray_address`` or starts a local Ray,
    which it shuts down at the end.

    Off-policy: every actor always has one call of ``weight_pull_interval`` vector steps in flight; each
    :meth:`collect_replay` waits for one chunk, sends that actor its next call at once (it collects on while the
    learner trains) and writes the chunk into the actor's shard. On-policy: every actor collects ``n_steps``
    with the current weights, and the rollouts are joined along the env axis.

    Args:
        specs: One recipe per actor.
        settings: The run's settings.
        ray_address: The cluster to join; None starts a loopback-only local Ray.
        worker_resources: Custom Ray resources each actor asks for (e.g. ``{"collector": 1}``); None: any node.
    """

    def __init__(self, specs: list[WorkerSpec], settings: WorkerSettings, *, ray_address: str | None,
                 worker_resources: Mapping[str, float] | None = None) -> None:
        super().__init__(specs, settings)
        self.label = f"x{self.num_workers} Ray actors"
        self.ray_address = ray_address
        self.worker_resources = check_worker_resources(worker_resources)
        self.workers: _WorkerSet | None = None
        self._started_ray = False
        self._pending: dict[Any, tuple[int, int]] = {}
        """Off-policy: in-flight call -> (worker, env steps it will bring; 0 for a probe)."""
        self._probe_at: dict[int, float] = {}
        """Off-policy: unreachable worker -> when to probe it."""
        self.accounting: dict[str, Any] | None = None
        """Set when the run finishes: :meth:`_WorkerSet.reconcile`'s env-step accounting (also logged)."""

    def start(self, algo: Algorithm[Any]) -> None:
        if not isinstance(algo, ReplayAlgorithm | RolloutAlgorithm):
            raise ValueError(f"Ray actors collect for replay and rollout algorithms, not {algo.name!r} "
                             f"({algo.data_kind} data); use backend='local' or num_workers=0")
        self._started_ray = init_ray(self.ray_address)
        self.workers = _WorkerSet(self.specs, self.worker_resources)
        self.workers.wait_ready()
        self.workers.publish(algo.acting_state())
        if isinstance(algo, ReplayAlgorithm):
            for index in range(self.num_workers):
                self._dispatch(index)

    # --- off-policy --------------------------------------------------------------------------------------------
    def _dispatch(self, index: int) -> None:
        """Sends worker ``index`` its next call, unless the run's env steps are all collected or in flight."""
        assert self.workers is not None
        in_flight = sum(steps for _, steps in self._pending.values())
        remaining = self.total_env_steps - self._env_steps - in_flight
        if remaining <= 0:
            return
        n_steps = min(self.settings.weight_pull_interval, math.ceil(remaining / self.settings.num_envs))
        weights, version = self.workers.weights_for(index)
        call = self.workers.actors[index].collect.remote(weights, version, self._env_steps, n_steps)
        self._pending[call] = (index, n_steps * self.settings.num_envs)

    def collect_replay(self, algo: ReplayAlgorithm[Any], vector_steps: int) -> None:
        """Waits (up to :data:`WAIT_TIMEOUT_S`) for one actor's chunk and writes it into that actor's shard."""
        assert self.workers is not None
        self._send_due_probes()
        if not self._pending:
            if self._probe_at:  # every worker is unreachable: wait for the next probe
                time.sleep(max(0.0, min(self._probe_at.values()) - time.monotonic()))
            return
        timeout = PROBE_INTERVAL_S if self._probe_at else WAIT_TIMEOUT_S
        ready, _ = _ray().wait(list(self._pending), num_returns=1, timeout=timeout)
        if not ready:
            return
        index, env_steps = self._pending.pop(ready[0])
        try:
            result = _ray().get(ready[0])
        except Exception as error:
            if not _is_worker_failure(error):
                raise
            algo.replay.writer(index).end_interrupted_episodes()  # its next chunk may not continue the last row
            if self.workers.lost_call(index, error, env_steps):
                self._dispatch(index)
            else:
                self._probe_at[index] = time.monotonic() + PROBE_INTERVAL_S
            return
        if env_steps == 0:  # a probe answered: the worker is reachable again
            self._dispatch(index)
            return
        chunk: Chunk = result
        self._env_steps += chunk.env_steps  # counted before the next call is sized: it is no longer in flight
        self._dispatch(index)  # the worker collects on while the learner writes and trains
        writer = algo.replay.writer(chunk.index)
        for t in range(chunk.transitions["reward"].shape[0]):
            writer.add({key: value[t] for key, value in chunk.transitions.items()})
        self.record_episodes(chunk.returns, chunk.lengths)
        self.workers.received(index, chunk.version, chunk.env_steps)

    def _send_due_probes(self) -> None:
        assert self.workers is not None
        now = time.monotonic()
        for index, when in list(self._probe_at.items()):
            if when <= now:
                del self._probe_at[index]
                self._pending[self.workers.probe(index)] = (index, 0)

    # --- on-policy ---------------------------------------------------------------------------------------------
    def collect_rollout(self, algo: RolloutAlgorithm[Any]) -> torch.Tensor:
        """Every actor's rollout with the current weights, joined into ``algo.rollout``; a dead actor is replaced
        and asked again."""
        assert self.workers is not None
        workers, n_steps = self.workers, algo.config.n_steps

        def request(index: int) -> Any:
            weights, version = workers.weights_for(index)
            return workers.actors[index].rollout.remote(weights, version, self._env_steps, n_steps)

        pending = {request(index): index for index in range(self.num_workers)}
        probes: set[Any] = set()
        probe_at: dict[int, float] = {}
        reports: dict[int, RolloutReport] = {}
        while pending or probe_at:
            now = time.monotonic()
            for index, when in list(probe_at.items()):
                if when <= now:
                    del probe_at[index]
                    probe = workers.probe(index)
                    probes.add(probe)
                    pending[probe] = index
            if not pending:
                time.sleep(max(0.0, min(probe_at.values()) - now))
                continue
            ready, _ = _ray().wait(list(pending), num_returns=1, timeout=PROBE_INTERVAL_S if probe_at else
                                   WAIT_TIMEOUT_S)
            for call in ready:
                index = pending.pop(call)
                is_probe = call in probes
                probes.discard(call)
                try:
                    result = _ray().get(call)
                except Exception as error:
                    if not _is_worker_failure(error):
                        raise
                    lost = 0 if is_probe else self.settings.num_envs * n_steps
                    if workers.lost_call(index, error, lost):
                        pending[request(index)] = index
                    else:
                        probe_at[index] = time.monotonic() + PROBE_INTERVAL_S
                    continue
                if is_probe:  # reachable again: ask for its rollout
                    pending[request(index)] = index
                else:
                    reports[index] = _writable(result)
        ordered = [reports[index] for index in sorted(reports)]
        for report in ordered:
            self.record_episodes(report.returns, report.lengths)
            workers.received(report.index, report.version, self.settings.num_envs * n_steps)
        self._env_steps += len(ordered) * self.settings.num_envs * n_steps
        return join_rollouts(algo, [report.part for report in ordered])

    # --- the rest ----------------------------------------------------------------------------------------------
    def publish(self, algo: Algorithm[Any]) -> None:
        assert self.workers is not None
        self.workers.publish(algo.acting_state())

    def metrics(self) -> dict[str, float]:
        return self.workers.metrics() if self.workers is not None else {}

    def finish(self) -> None:
        if self.workers is not None:
            in_flight = [0] * self.num_workers
            for index, env_steps in self._pending.values():
                in_flight[index] += env_steps
            self.accounting = self.workers.reconcile(in_flight)
            logger.info("ray run finished: %s; env steps: %s", self.workers.metrics(), self.accounting)
            if not self.accounting["consistent"]:
                logger.warning("Ray collectors' own env-step counts differ from what the learner received: %s",
                               self.accounting)
        self.close()

    def close(self, failed: bool = False) -> None:
        if self.workers is not None:
            self.workers.close()
            self.workers = None
        if self._started_ray:
            _ray().shutdown()
            self._started_ray = False
