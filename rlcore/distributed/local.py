"""Local workers: ``num_workers`` processes (``spawn``) collecting into shared memory for one learner.

Off-policy (DQN, Ape-X style): worker ``w`` steps its own ``num_envs`` sub-envs with its copy of the
policy and writes every vector step straight into shard ``w`` of a :class:`ShardedReplay`; the learner
samples across shards while they write, trains at the run's gradient-steps-per-env-step ratio and
publishes weights to a :class:`WeightStore`, which workers poll every ``weight_pull_interval`` steps.

On-policy (PPO, A2C, REINFORCE): synchronous, like one vector env spread over processes. Every worker
waits for weights of a new version, collects ``n_steps`` with them into its columns of a shared rollout
block, and says so; the learner joins the columns, updates, and publishes the next version.

Faults: the learner checks its workers every iteration; one that died (a crash or a SIGKILL) is logged
with its traceback (workers write it to a shared slot) and started again on the same shard, with new
env seeds; its half-written row was never committed, so it is invisible. Workers ignore Ctrl-C and exit
when the learner sets the stop flag or disappears; the learner's ``finally`` stops, joins (or kills) every
worker and unlinks every segment.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing as mp
import os
import signal
import time
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlcore.algos.base import Algorithm, ReplayAlgorithm, RolloutAlgorithm, SelfPlayAlgorithm
from rlcore.collector import DivergedError, EnvOutputError
from rlcore.distributed.roles import (
    MAX_RESTARTS,
    RolloutPart,
    WorkerSettings,
    WorkerSource,
    WorkerSpec,
    build_worker,
    check_spawnable,
    finished_episodes,
    join_rollouts,
    set_worker_progress,
    worker_rollout,
)
from rlcore.distributed.shared import ArraySpec, BlockLayout, SharedBlock, WeightStore, weight_layout
from rlcore.distributed.shared_replay import ReplayGeometry, ShardedReplay
from rlcore.env_checker import EnvCheckError
from rlcore.observations import flatten_fields, nest_fields

logger = logging.getLogger(__name__)

EPISODE_RING = 256
"""Finished episodes ``(return, length)`` a worker can report before the learner reads them."""
ERROR_BYTES = 8192
STOP, ALLOWED = 0, 1
"""Control row 0: slot 0 is set to 1 when workers must exit; slot 1 holds the env steps (over all workers)
that off-policy workers may reach before they wait for the learner (the rate limiter)."""
UNLIMITED = 2**62
READY, EPISODES, DONE_VERSION, STEPS = 0, 1, 2, 3
"""Slots of a worker's control row ``1 + w``."""
LASTING = "[lasting] "
"""Marks a worker's error that restarting it would meet again (the env's bad output, diverged weights): the run
stops on it at once instead of restarting the worker."""
JOIN_TIMEOUT = 10.0
CHECK_INTERVAL = 0.02
"""Seconds between the learner's looks at its workers' exit codes (a ``waitpid`` per worker)."""
IDLE_SLEEP = 0.002
"""Seconds the learner sleeps when nothing is due (it wakes at most 500 times a second)."""


# ------------------------------------------------------------------------------------------ layouts
def control_layout(num_workers: int) -> BlockLayout:
    return BlockLayout((
        ArraySpec("flags", "int64", (num_workers + 1, 8)),
        ArraySpec("episodes", "float64", (num_workers, EPISODE_RING, 2)),
        ArraySpec("errors", "uint8", (num_workers, ERROR_BYTES)),
    ))


def rollout_layout(columns: dict[str, torch.Tensor], num_workers: int, last_obs: Any,
                   moment_shapes: dict[str, tuple[int, ...]]) -> BlockLayout:
    """The shared rollout: each column ``[T, W * E, ...]`` as a worker's algorithm stores it, the observations
    after the last step ``[W * E, *obs_shape]`` (shaped after one worker's ``last_obs`` ``[E, *obs_shape]``, one array
    ``last_obs/<path>`` per leaf of a Dict observation), and each worker's statistics moments."""
    arrays = []
    for key, column in columns.items():
        steps, envs = column.shape[:2]
        arrays.append(ArraySpec(f"col/{key}", str(column.numpy().dtype), (steps, envs * num_workers,
                                                                            *column.shape[2:])))
    for name, value in _last_obs_arrays(last_obs).items():
        arrays.append(ArraySpec(name, str(value.dtype), (value.shape[0] * num_workers, *value.shape[1:])))
    for name, shape in moment_shapes.items():
        arrays.append(ArraySpec(f"mom/{name}/mean", "float64", (num_workers, *shape)))
        arrays.append(ArraySpec(f"mom/{name}/var", "float64", (num_workers, *shape)))
        arrays.append(ArraySpec(f"mom/{name}/count", "float64", (num_workers,)))
    return BlockLayout(tuple(arrays))


@dataclass(frozen=True)
class Handles:
    """Names and layouts of the shared blocks a worker attaches to."""

    weights: tuple[BlockLayout, str]
    replay: tuple[ReplayGeometry, str] | None = None
    rollout: tuple[BlockLayout, str] | None = None
    control: tuple[BlockLayout, str] | None = None
    """Set by :class:`LocalWorkerPool`, which creates the control block."""
    learner_pid: int = 0
    steps_budget: int = 0
    """Vector steps each off-policy or self-play worker collects in all (its share of ``total_env_steps``: a worker
    that starts late still gets its share, so every worker's data reaches the learner)."""
    pull_interval: int = 50


# ------------------------------------------------------------------------------------------ workers
def worker_main(spec: WorkerSpec, handles: Handles) -> None:
    """A worker process's entry point."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the learner's to handle
    control = SharedBlock(*handles.control)  # type: ignore[misc]
    try:
        weights = WeightStore(SharedBlock(*handles.weights))
        algo, collector = build_worker(spec)
        control["flags"][1 + spec.index, READY] = 1
        if handles.replay is not None and algo.data_kind == "planning":
            _selfplay_worker(spec, handles, control, weights, algo, collector)
        elif handles.replay is not None:
            _replay_worker(spec, handles, control, weights, algo, collector)
        else:
            _rollout_worker(spec, handles, control, weights, algo, collector)
    except BaseException as error:  # noqa: BLE001 - report everything, then die with a non-zero code
        lasting = isinstance(error, EnvOutputError | DivergedError | EnvCheckError)
        prefix = (LASTING if lasting else "").encode()
        message = prefix + traceback.format_exc().encode()[-(ERROR_BYTES - 1 - len(prefix)):]
        errors = control["errors"][spec.index]
        errors[:] = 0
        errors[: len(message)] = np.frombuffer(message, dtype=np.uint8)
        raise SystemExit(1) from None


def _should_stop(control: SharedBlock, handles: Handles) -> bool:
    return bool(control["flags"][0, STOP]) or os.getppid() != handles.learner_pid


def _report_episodes(control: SharedBlock, index: int, returns: list[float], lengths: list[int]) -> None:
    flags, ring = control["flags"][1 + index], control["episodes"][index]
    count = int(flags[EPISODES])
    for episode_return, length in zip(returns, lengths):
        ring[count % EPISODE_RING] = (episode_return, length)
        count += 1
    flags[EPISODES] = count


def _replay_worker(spec: WorkerSpec, handles: Handles, control: SharedBlock, weights: WeightStore,
                   algo: Any, collector: Any) -> None:
    replay = ShardedReplay(handles.replay[0], handles.replay[1])  # type: ignore[index]
    writer = replay.writer(spec.index)
    writer.end_interrupted_episodes()
    version, seen = 0, 0
    while not _should_stop(control, handles):
        update = weights.read(newer_than=version)
        if update is not None:
            version = update[0]
            algo.load_acting_state(update[1])
        global_steps = int(replay.committed().sum()) * spec.num_envs
        allowed = int(control["flags"][0, ALLOWED])
        if version == 0 or writer.steps_written >= handles.steps_budget or global_steps >= allowed:
            time.sleep(0.0005)
            continue
        set_worker_progress(algo, spec, global_steps)
        allowance = -(-(allowed - global_steps) // spec.num_envs)  # vector steps left of the lead (rounded up)
        for _ in range(min(handles.pull_interval, handles.steps_budget - writer.steps_written, allowance)):
            writer.add(collector.step(algo.act))
        returns, lengths, seen = finished_episodes(collector.stats, seen)
        _report_episodes(control, spec.index, returns, lengths)
        control["flags"][1 + spec.index, STEPS] = writer.steps_written


class PositionWriter:
    """What a self-play worker's AlphaZero adds finished games to: its shard of the shared positions."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def __len__(self) -> int:
        return self.writer.steps_written

    def add(self, obs: np.ndarray, policy: np.ndarray, value: np.ndarray) -> None:
        """Writes ``k`` positions (``obs [k, C, H, W]``, ``policy [k, A]``, ``value [k]``), each made visible."""
        for row in range(len(value)):
            self.writer.add({"obs": obs[row : row + 1], "policy": policy[row : row + 1],
                             "value": value[row : row + 1]})


def _selfplay_worker(spec: WorkerSpec, handles: Handles, control: SharedBlock, weights: WeightStore,
                     algo: Any, collector: Any) -> None:
    """Plays games in lockstep with the latest network and writes every finished game's labelled positions."""
    positions = ShardedReplay(handles.replay[0], handles.replay[1])  # type: ignore[index]
    algo.replay = PositionWriter(positions.writer(spec.index))
    flags = control["flags"]
    moves_before = int(flags[1 + spec.index, STEPS])  # a restarted worker continues the count
    version, seen = 0, 0
    plan = lambda obs: algo.plan(collector.envs)  # noqa: E731 - a planner acts on the envs' states
    while not _should_stop(control, handles):
        update = weights.read(newer_than=version)
        if update is not None:
            version = update[0]
            algo.load_acting_state(update[1])
        steps_left = handles.steps_budget - (moves_before + collector.env_steps) // spec.num_envs
        if version == 0 or steps_left <= 0 or int(positions.committed().sum()) >= flags[0, ALLOWED]:
            time.sleep(0.002)
            continue
        for _ in range(min(handles.pull_interval, steps_left)):
            algo.observe(collector.step(plan))
        returns, lengths, seen = finished_episodes(collector.stats, seen)
        _report_episodes(control, spec.index, returns, lengths)
        flags[1 + spec.index, STEPS] = moves_before + collector.env_steps


def _rollout_worker(spec: WorkerSpec, handles: Handles, control: SharedBlock, weights: WeightStore,
                    algo: Any, collector: Any) -> None:
    rollout = SharedBlock(*handles.rollout)  # type: ignore[misc]
    envs = slice(spec.index * spec.num_envs, (spec.index + 1) * spec.num_envs)
    n_steps = algo.config.n_steps
    version, seen = 0, 0
    while not _should_stop(control, handles):
        update = weights.read(newer_than=version)
        if update is None:
            time.sleep(0.0005)
            continue
        version = update[0]
        algo.load_acting_state(update[1])
        part = worker_rollout(algo, collector, n_steps)
        for key, column in part.columns.items():
            rollout[f"col/{key}"][:, envs] = column.numpy()
        for name, value in _last_obs_arrays(part.last_obs).items():
            rollout[name][envs] = value
        for name, (mean, var, count) in part.moments.items():
            rollout[f"mom/{name}/mean"][spec.index] = mean
            rollout[f"mom/{name}/var"][spec.index] = var
            rollout[f"mom/{name}/count"][spec.index] = count
        returns, lengths, seen = finished_episodes(collector.stats, seen)
        _report_episodes(control, spec.index, returns, lengths)
        control["flags"][1 + spec.index, DONE_VERSION] = version


# ------------------------------------------------------------------------------------------ the pool
class LocalWorkerPool:
    """Starts, watches, restarts and stops the worker processes of one run.

    Args:
        specs: One recipe per worker.
        handles: The shared blocks other than ``control``, which the pool creates.
    """

    def __init__(self, specs: list[WorkerSpec], handles: Handles) -> None:
        for spec in specs:
            check_spawnable(spec.env, spec.wrappers)
        self.specs = list(specs)
        self.control = SharedBlock(control_layout(len(specs)))
        self.handles = dataclasses.replace(handles, control=(self.control.layout, self.control.name),
                                           learner_pid=os.getpid())
        self._context = mp.get_context("spawn")
        self.processes: list[Any] = [None] * len(specs)
        self.restarts = [0] * len(specs)
        self._episodes_seen = [0] * len(specs)
        self._next_check = 0.0

    @property
    def flags(self) -> np.ndarray:
        return self.control["flags"]

    def start(self) -> None:
        for index in range(len(self.specs)):
            self._launch(index)

    def _launch(self, index: int) -> None:
        spec = dataclasses.replace(self.specs[index], restarts=self.restarts[index])
        self.flags[1 + index, READY] = 0
        process = self._context.Process(target=worker_main, args=(spec, self.handles),
                                        name=f"rlcore-worker-{index}", daemon=True)
        process.start()
        self.processes[index] = process

    def check(self) -> list[int]:
        """Restarts every worker that died (looked at every :data:`CHECK_INTERVAL` s); returns their indices."""
        now = time.monotonic()
        if now < self._next_check:
            return []
        self._next_check = now + CHECK_INTERVAL
        restarted = []
        for index, process in enumerate(self.processes):
            if process is None or process.exitcode is None:
                continue
            error = bytes(self.control["errors"][index]).rstrip(b"\0").decode(errors="replace")
            never_ready = not self.flags[1 + index, READY] and process.exitcode > 0  # not a kill by a signal
            if never_ready and not error:
                raise RuntimeError(
                    f"worker {index} exited with code {process.exitcode} before it started. Workers are started "
                    "with 'spawn', which re-imports your main script: put the training call under "
                    "`if __name__ == \"__main__\":` (see its traceback above)"
                )
            if never_ready and self.restarts[index] == 0:  # its first start failed: restarting would fail alike
                raise RuntimeError(f"worker {index} failed before it started (exit code {process.exitcode}):\n{error}")
            if error.startswith(LASTING):  # the env's bad output or diverged weights: a restart meets it again
                raise RuntimeError(f"worker {index} stopped on an error a restart would meet again:\n"
                                   f"{error.removeprefix(LASTING)}")
            self.restarts[index] += 1
            if self.restarts[index] > MAX_RESTARTS:
                raise RuntimeError(f"worker {index} died {self.restarts[index]} times (exit code "
                                   f"{process.exitcode}); last error:\n{error or '(none: killed by a signal)'}")
            logger.warning("worker %d died (exit code %s); restarting it (restart %d)%s", index, process.exitcode,
                           self.restarts[index], f"\n{error}" if error else "")
            self.control["errors"][index] = 0
            process.close()
            self._launch(index)
            restarted.append(index)
        return restarted

    def drain_episodes(self, source: WorkerSource) -> int:
        """Moves finished episodes the workers reported into the learner's statistics; returns how many."""
        drained = 0
        for index in range(len(self.specs)):
            count = int(self.flags[1 + index, EPISODES])
            first = max(self._episodes_seen[index], count - EPISODE_RING)
            if count > first:
                rows = self.control["episodes"][index][np.arange(first, count) % EPISODE_RING]
                source.record_episodes(rows[:, 0].tolist(), rows[:, 1].astype(int).tolist())
                drained += count - first
            self._episodes_seen[index] = count
        return drained

    def stop(self) -> None:
        """Asks every worker to exit, waits, kills stragglers, and frees the control block."""
        if self.control.arrays:
            self.flags[0, STOP] = 1
        deadline = time.monotonic() + JOIN_TIMEOUT
        for process in self.processes:
            if process is not None:
                process.join(max(deadline - time.monotonic(), 0.1))
        for process in self.processes:
            if process is not None and process.exitcode is None:
                logger.warning("worker %s did not stop in %.0f s; killing it", process.name, JOIN_TIMEOUT)
                process.kill()
                process.join(5.0)
        self.control.close()

    def pids(self) -> list[int | None]:
        return [process.pid if process is not None else None for process in self.processes]


# ------------------------------------------------------------------------------------------ the learner
def _weight_store(tensors: dict[str, torch.Tensor]) -> tuple[WeightStore, SharedBlock]:
    block = SharedBlock(weight_layout(tensors))
    store = WeightStore(block)
    store.publish(tensors)
    return store, block


class LocalWorkerSource(WorkerSource):
    """Collection by ``len(specs)`` local worker processes (see the module docstring); the learner's side.

    Args:
        specs: One recipe per worker.
        settings: The run's settings.
    """

    def __init__(self, specs: list[WorkerSpec], settings: WorkerSettings) -> None:
        for spec in specs:
            check_spawnable(spec.env, spec.wrappers)
        super().__init__(specs, settings)
        self.label = f"x{self.num_workers} workers"
        self.pool: LocalWorkerPool | None = None
        """The running worker processes (tests look at them)."""
        self._store: WeightStore | None = None
        self._blocks: list[Any] = []
        self._rollout_block: SharedBlock | None = None
        self._rollout_keys: list[str] = []
        self._moment_shapes: dict[str, tuple[int, ...]] = {}
        self._self_play = False

    def start(self, algo: Algorithm[Any]) -> None:
        self._store, weight_block = _weight_store(algo.acting_state())
        self._blocks.append(weight_block)
        handles = Handles(weights=(weight_block.layout, weight_block.name),
                          pull_interval=self.settings.weight_pull_interval)
        vector_steps = -(-self.total_env_steps // (self.num_workers * self.settings.num_envs))
        if isinstance(algo, ReplayAlgorithm):
            handles = dataclasses.replace(handles, replay=(algo.replay.geometry, algo.replay.name),
                                          steps_budget=vector_steps)
        elif isinstance(algo, SelfPlayAlgorithm):
            handles = dataclasses.replace(handles, replay=(algo.replay.geometry, algo.replay.name),
                                          steps_budget=vector_steps)
            self._positions_seen = int(algo.replay.committed().sum())
            self._self_play = True
        elif isinstance(algo, RolloutAlgorithm):
            self._rollout_block = self._make_rollout_block(algo)
            self._blocks.append(self._rollout_block)
            handles = dataclasses.replace(handles, rollout=(self._rollout_block.layout, self._rollout_block.name))
        else:
            raise ValueError(f"local workers collect for replay, rollout and self-play algorithms, not "
                             f"{algo.name!r} ({algo.data_kind} data); use num_workers=0")
        self.pool = LocalWorkerPool(self.specs, handles)
        if isinstance(algo, SelfPlayAlgorithm):
            self._allow_positions(algo)
        self.pool.start()

    def _make_rollout_block(self, algo: RolloutAlgorithm[Any]) -> SharedBlock:
        """The shared rollout, shaped after one vector step of a throwaway worker in the learner."""
        scratch, collector = build_worker(self.specs[0])
        try:
            sample = worker_rollout(scratch, collector, 1)  # type: ignore[arg-type]
        finally:
            collector.envs.close()
        n_steps = algo.config.n_steps
        columns = {key: column.expand(n_steps, *column.shape[1:]).contiguous()
                   for key, column in sample.columns.items()}
        self._rollout_keys = list(columns)
        self._moment_shapes = {name: tuple(np.shape(moments[0])) for name, moments in sample.moments.items()}
        self._last_obs_names = list(_last_obs_arrays(sample.last_obs))
        return SharedBlock(rollout_layout(columns, self.num_workers, sample.last_obs, self._moment_shapes))

    # --- collection --------------------------------------------------------------------------------------------
    def collect_replay(self, algo: ReplayAlgorithm[Any], vector_steps: int) -> None:
        """Reads how far the workers' shards are (workers write on their own)."""
        assert self.pool is not None
        self.pool.check()
        self._env_steps = int(algo.replay.committed().sum()) * self.settings.num_envs
        self.pool.drain_episodes(self)

    def limit(self, env_steps: int | None) -> None:
        assert self.pool is not None
        self.pool.flags[0, ALLOWED] = UNLIMITED if env_steps is None else env_steps

    def collect_rollout(self, algo: RolloutAlgorithm[Any]) -> torch.Tensor:
        """Waits for every worker's rollout with the current weights and joins them into ``algo.rollout``."""
        assert self.pool is not None and self._store is not None and self._rollout_block is not None
        parts = _gather_rollouts(self.pool, self._rollout_block, self._store.version, self.settings.num_envs,
                                 self._rollout_keys, self._moment_shapes, self._last_obs_names)
        self._env_steps += algo.config.n_steps * self.settings.num_envs * self.num_workers
        self.pool.drain_episodes(self)
        return join_rollouts(algo, parts)

    def collect_plans(self, algo: Any) -> dict[str, float]:
        """Self-play: tells the algorithm about the games and positions the workers added."""
        assert self.pool is not None and isinstance(algo, SelfPlayAlgorithm)
        self.pool.check()
        self._env_steps = int(self.pool.flags[1:, STEPS].sum())
        games = self.pool.drain_episodes(self)
        committed = int(algo.replay.committed().sum())
        algo.record_remote_games(committed - self._positions_seen, games)
        self._positions_seen = committed
        self._allow_positions(algo)
        return {}

    def _allow_positions(self, algo: SelfPlayAlgorithm[Any]) -> None:
        """Lets self-play workers write ``worker_lead`` positions (0: two training phases' worth per worker) beyond
        the next training phase, so a slow learner keeps the single-process ratio of updates to positions."""
        assert self.pool is not None
        lead = self.settings.worker_lead
        if lead is None:
            self.pool.flags[0, ALLOWED] = UNLIMITED
            return
        train_every = algo.config.train_every
        lead = lead or 2 * train_every * self.num_workers
        trained_on = self._positions_seen - algo.new_positions
        self.pool.flags[0, ALLOWED] = max(trained_on, algo.config.learning_starts) + train_every + lead

    def publish(self, algo: Algorithm[Any]) -> None:
        assert self._store is not None
        self._store.publish(algo.acting_state())

    def idle(self) -> None:
        time.sleep(IDLE_SLEEP)

    def metrics(self) -> dict[str, float]:
        """``distributed/...`` scalars, as Ray's: the published weights version, each worker's share of the env
        steps (replay and self-play workers; rollout workers take equal shares) and the restarts; with rollout
        workers, the oldest version they acted with."""
        if self.pool is None or self._store is None or not self.pool.control.arrays:  # not started, or stopped
            return {}
        flags = self.pool.flags[1:]
        metrics = {"distributed/weights_version": float(self._store.version),
                   "distributed/restarts": float(sum(self.pool.restarts))}
        if self._rollout_block is not None:
            metrics["distributed/acting_version_min"] = float(flags[:, DONE_VERSION].min())
        else:  # replay workers count vector steps, self-play workers env steps
            steps = flags[:, STEPS] * (1 if self._self_play else self.settings.num_envs)
            metrics.update({"distributed/worker_env_steps_min": float(steps.min()),
                            "distributed/worker_env_steps_max": float(steps.max())})
        return metrics

    def finish(self) -> None:
        if self.pool is not None:
            self.pool.drain_episodes(self)
            self.pool.stop()

    def close(self, failed: bool = False) -> None:
        if self.pool is not None:
            self.pool.stop()
        for block in self._blocks:
            block.close()
        self._blocks = []


def _last_obs_arrays(last_obs: Any) -> dict[str, np.ndarray]:
    """The shared block's arrays of a rollout's last observation: ``last_obs``, or ``last_obs/<path>`` per leaf."""
    return flatten_fields({"last_obs": last_obs})


def _gather_rollouts(pool: LocalWorkerPool, block: SharedBlock, version: int, num_envs: int, keys: list[str],
                     moment_shapes: dict[str, tuple[int, ...]], last_obs_names: list[str]) -> list[RolloutPart]:
    """Waits until every worker has written its rollout for weights ``version``; returns copies, per worker."""
    num_workers = len(pool.specs)
    while not all(int(pool.flags[1 + index, DONE_VERSION]) == version for index in range(num_workers)):
        pool.check()
        time.sleep(0.0002)
    parts = []
    for index in range(num_workers):
        envs = slice(index * num_envs, (index + 1) * num_envs)
        columns = {key: torch.from_numpy(block[f"col/{key}"][:, envs].copy()) for key in keys}
        moments = {name: (block[f"mom/{name}/mean"][index].copy(), block[f"mom/{name}/var"][index].copy(),
                          float(block[f"mom/{name}/count"][index])) for name in moment_shapes}
        last_obs = nest_fields({name: block[name][envs].copy() for name in last_obs_names}, ("last_obs",))["last_obs"]
        parts.append(RolloutPart(columns, last_obs, moments))
    return parts


__all__ = ["LocalWorkerPool", "LocalWorkerSource"]
