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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlcore.agent import Agent
from rlcore.distributed.roles import (
    RemoteCollector,
    RolloutPart,
    WorkerSpec,
    acting_tensors,
    build_worker,
    check_spawnable,
    finished_episodes,
    learner_update,
    load_acting_tensors,
    load_publishable_tensors,
    publishable_tensors,
    running_stats,
    set_worker_progress,
    worker_rollout,
    worker_spec,
)
from rlcore.distributed.shared import ArraySpec, BlockLayout, SharedBlock, WeightStore, weight_layout
from rlcore.distributed.shared_replay import ReplayGeometry, ShardedReplay
from rlcore.logger import ProgressBar

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
MAX_RESTARTS = 10
"""Restarts of one worker after which the run gives up (the worker fails deterministically)."""
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


def rollout_layout(columns: dict[str, torch.Tensor], num_workers: int, obs_shape: tuple[int, ...],
                   obs_dtype: str, moment_shapes: dict[str, tuple[int, ...]]) -> BlockLayout:
    """The shared rollout: each column ``[T, W * E, ...]`` as a worker's algorithm stores it, the observations
    after the last step ``[W * E, *obs_shape]``, and each worker's statistics moments."""
    arrays = []
    for key, column in columns.items():
        steps, envs = column.shape[:2]
        arrays.append(ArraySpec(f"col/{key}", str(column.numpy().dtype), (steps, envs * num_workers,
                                                                            *column.shape[2:])))
        per_worker_envs = envs
    arrays.append(ArraySpec("last_obs", obs_dtype, (per_worker_envs * num_workers, *obs_shape)))
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
    """Vector steps each off-policy worker writes in all (its share of ``total_env_steps``)."""
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
    except BaseException:  # noqa: BLE001 - report everything, then die with a non-zero code
        message = traceback.format_exc().encode()[-ERROR_BYTES + 1:]
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
            load_acting_tensors(algo, update[1])
        global_steps = int(replay.committed().sum()) * spec.num_envs
        if version == 0 or writer.committed >= handles.steps_budget or global_steps >= control["flags"][0, ALLOWED]:
            time.sleep(0.0005)
            continue
        set_worker_progress(algo, spec, global_steps)
        for _ in range(min(handles.pull_interval, handles.steps_budget - writer.committed)):
            writer.add(collector.step(algo.act))
        returns, lengths, seen = finished_episodes(collector.stats, seen)
        _report_episodes(control, spec.index, returns, lengths)
        control["flags"][1 + spec.index, STEPS] = writer.committed


class PositionWriter:
    """What a self-play worker's AlphaZero adds finished games to: its shard of the shared positions."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def __len__(self) -> int:
        return self.writer.committed

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
            load_acting_tensors(algo, update[1])
        total_moves = int(flags[1:, STEPS].sum())
        if version == 0 or total_moves >= spec.total_env_steps or int(positions.committed().sum()) >= flags[0, ALLOWED]:
            time.sleep(0.002)
            continue
        for _ in range(handles.pull_interval):
            algo.record_finished_games(collector.step(plan))
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
        load_publishable_tensors(algo, update[1])
        part = worker_rollout(algo, collector, n_steps)
        for key, column in part.columns.items():
            rollout[f"col/{key}"][:, envs] = column.numpy()
        rollout["last_obs"][envs] = part.last_obs
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
            check_spawnable(spec.env)
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
            if not self.flags[1 + index, READY] and not error and process.exitcode > 0:  # not a kill by a signal
                raise RuntimeError(
                    f"worker {index} exited with code {process.exitcode} before it started. Workers are started "
                    "with 'spawn', which re-imports your main script: put the training call under "
                    "`if __name__ == \"__main__\":` (see its traceback above)"
                )
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

    def drain_episodes(self, collector: RemoteCollector) -> None:
        """Moves finished episodes the workers reported into the learner's statistics."""
        for index in range(len(self.specs)):
            count = int(self.flags[1 + index, EPISODES])
            first = max(self._episodes_seen[index], count - EPISODE_RING)
            if count > first:
                rows = self.control["episodes"][index][np.arange(first, count) % EPISODE_RING]
                collector.record_episodes(rows[:, 0].tolist(), rows[:, 1].astype(int).tolist())
            self._episodes_seen[index] = count

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
def worker_specs(trainer: Any) -> list[WorkerSpec]:
    return [worker_spec(trainer, index) for index in range(trainer.config.num_workers)]


def run_local(trainer: Any) -> Agent:
    """Trains ``trainer``'s algorithm with local worker processes (see the module docstring)."""
    if trainer.algo.data_kind == "replay":
        return _run_replay(trainer)
    if trainer.algo.data_kind == "rollout":
        return _run_rollout(trainer)
    if trainer.algo.data_kind == "planning":
        return _run_selfplay(trainer)
    raise ValueError(f"num_workers > 0 supports off-policy replay and on-policy rollout algorithms, not "
                     f"{trainer.algo_name!r}; use num_workers=0")


def _publish_store(tensors: dict[str, torch.Tensor]) -> tuple[WeightStore, SharedBlock]:
    block = SharedBlock(weight_layout(tensors))
    store = WeightStore(block)
    store.publish(tensors)
    return store, block


def _drive(trainer: Any, pool: LocalWorkerPool, iterate: Callable[[], None], blocks: tuple[Any, ...]) -> Agent:
    """The learner's loop for every data kind: start the workers, ``iterate`` (collect counters, learn, publish)
    with the Trainer's logging, evaluation and checkpoints after each iteration, then stop the workers and free
    the shared ``blocks`` whatever happens."""
    config = trainer.config
    bar = ProgressBar(config.total_env_steps, f"{trainer.algo_name} {trainer.env_label} x{config.num_workers} workers",
                      config.progress_bar, start=trainer.collector.env_steps)
    try:
        trainer.logger.log_hparams(trainer.hparams())
        pool.start()
        start_time, start_steps = time.perf_counter(), trainer.collector.env_steps
        trainer.start_clock()
        while trainer.collector.env_steps < config.total_env_steps and not trainer.reached_target():
            iterate()
            fps = (trainer.collector.env_steps - start_steps) / max(time.perf_counter() - start_time, 1e-9)
            trainer._after_iteration(fps, bar)
        pool.drain_episodes(trainer.collector)
        pool.stop()
        return trainer.finish(bar)
    finally:
        pool.stop()
        bar.close()
        trainer.logger.close()
        for block in blocks:
            block.close()


def _run_replay(trainer: Any) -> Agent:
    algo, config = trainer.algo, trainer.config
    replay: ShardedReplay = algo.replay
    store, weight_block = _publish_store(acting_tensors(algo))
    vector_steps = -(-config.total_env_steps // (config.num_workers * config.num_envs))
    handles = Handles(weights=(weight_block.layout, weight_block.name),
                      replay=(replay.geometry, replay.name), steps_budget=vector_steps,
                      pull_interval=config.weight_pull_interval)
    pool = trainer.worker_pool = LocalWorkerPool(worker_specs(trainer), handles)
    updates_per_env_step = algo.config.gradient_steps / (algo.config.train_freq * config.num_envs)
    lead = (algo.config.train_freq * config.num_envs * config.num_workers if config.worker_lead == 0
            else config.worker_lead)

    def allow_workers() -> None:
        """Lets workers run ``lead`` env steps past what the learner has trained on."""
        consumed = algo.config.learning_starts + algo.updates / updates_per_env_step
        pool.flags[0, ALLOWED] = UNLIMITED if lead is None else int(consumed) + lead

    def iterate() -> None:
        pool.check()
        env_steps = trainer.collector.env_steps = int(replay.committed().sum()) * config.num_envs
        pool.drain_episodes(trainer.collector)
        algo.set_progress(min(env_steps, config.total_env_steps), config.total_env_steps)
        due = int((env_steps - algo.config.learning_starts) * updates_per_env_step)
        if env_steps > algo.config.learning_starts and algo.updates < due:
            trainer._train_metrics = algo.train(min(due - algo.updates, algo.config.gradient_steps))
            store.publish(acting_tensors(algo))
            allow_workers()
        else:
            time.sleep(IDLE_SLEEP)

    allow_workers()
    return _drive(trainer, pool, iterate, (weight_block, replay))


def _run_selfplay(trainer: Any) -> Agent:
    """AlphaZero: workers play, the learner trains ``gradient_steps`` per ``train_every`` new positions."""
    algo, config = trainer.algo, trainer.config
    positions: ShardedReplay = algo.replay
    store, weight_block = _publish_store(acting_tensors(algo))
    handles = Handles(weights=(weight_block.layout, weight_block.name),
                      replay=(positions.geometry, positions.name), pull_interval=config.weight_pull_interval)
    pool = trainer.worker_pool = LocalWorkerPool(worker_specs(trainer), handles)
    train_every, learning_starts = algo.config.train_every, algo.config.learning_starts
    trained_on = int(positions.committed().sum())
    lead = 2 * train_every * config.num_workers if config.worker_lead == 0 else config.worker_lead

    def allow_workers() -> None:
        pool.flags[0, ALLOWED] = UNLIMITED if lead is None else max(trained_on, learning_starts) + train_every + lead

    def iterate() -> None:
        nonlocal trained_on
        pool.check()
        trainer.collector.env_steps = int(pool.flags[1:, STEPS].sum())
        pool.drain_episodes(trainer.collector)
        committed = int(positions.committed().sum())
        if committed - trained_on >= train_every and len(positions) >= learning_starts:
            trainer._train_metrics = {**algo.train_phase(), "search/games": float(trainer.collector.stats.episodes),
                                      "search/positions": float(len(positions))}
            trained_on = committed
            store.publish(acting_tensors(algo))
            allow_workers()
        else:
            time.sleep(IDLE_SLEEP)

    allow_workers()
    return _drive(trainer, pool, iterate, (weight_block, positions))


def _scratch_rollout(trainer: Any, spec: WorkerSpec) -> tuple[dict[str, torch.Tensor], Any]:
    """One vector step by a throwaway worker in the learner, to learn the rollout columns' shapes and dtypes."""
    algo, collector = build_worker(spec)
    try:
        part = worker_rollout(algo, collector, 1)
        return part.columns, part
    finally:
        collector.envs.close()


def _run_rollout(trainer: Any) -> Agent:
    from rlcore.distributed.roles import check_on_policy_workers

    algo, config = trainer.algo, trainer.config
    check_on_policy_workers(algo)
    specs = worker_specs(trainer)
    columns, sample = _scratch_rollout(trainer, specs[0])
    n_steps = algo.config.n_steps
    columns = {key: column.expand(n_steps, *column.shape[1:]).contiguous() for key, column in columns.items()}
    moment_shapes = {name: tuple(np.shape(moments[0])) for name, moments in sample.moments.items()}
    rollout_block = SharedBlock(rollout_layout(columns, config.num_workers, sample.last_obs.shape[1:],
                                               str(sample.last_obs.dtype), moment_shapes))
    store, weight_block = _publish_store(publishable_tensors(algo))
    handles = Handles(weights=(weight_block.layout, weight_block.name),
                      rollout=(rollout_block.layout, rollout_block.name))
    pool = trainer.worker_pool = LocalWorkerPool(specs, handles)
    step_size = n_steps * trainer.total_envs

    def iterate() -> None:
        parts = _gather_rollouts(pool, rollout_block, store.version, config, list(columns), moment_shapes)
        trainer.collector.env_steps += step_size
        pool.drain_episodes(trainer.collector)
        trainer._train_metrics = learner_update(algo, parts, trainer.collector.env_steps, config.total_env_steps)
        store.publish(publishable_tensors(algo))

    return _drive(trainer, pool, iterate, (weight_block, rollout_block))


def _gather_rollouts(pool: LocalWorkerPool, block: SharedBlock, version: int, config: Any, keys: list[str],
                     moment_shapes: dict[str, tuple[int, ...]]) -> list[RolloutPart]:
    """Waits until every worker has written its rollout for weights ``version``; returns copies, per worker."""
    while not all(int(pool.flags[1 + index, DONE_VERSION]) == version for index in range(config.num_workers)):
        pool.check()
        time.sleep(0.0002)
    parts = []
    for index in range(config.num_workers):
        envs = slice(index * config.num_envs, (index + 1) * config.num_envs)
        columns = {key: torch.from_numpy(block[f"col/{key}"][:, envs].copy()) for key in keys}
        moments = {name: (block[f"mom/{name}/mean"][index].copy(), block[f"mom/{name}/var"][index].copy(),
                          float(block[f"mom/{name}/count"][index])) for name in moment_shapes}
        parts.append(RolloutPart(columns, block["last_obs"][envs].copy(), moments))
    return parts


__all__ = ["LocalWorkerPool", "run_local", "running_stats"]
