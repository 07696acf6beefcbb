"""Local worker processes: the shared replay, the weight store, faults and shutdown (rlcore.distributed.local)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import rlcore
from rlcore.buffers.replay import Replay, ReplaySettings, build_replay
from rlcore.buffers.storage import transition_fields
from rlcore.callbacks import Callback
from rlcore.distributed import local
from rlcore.distributed.shared import SharedBlock, WeightStore, weight_layout
from rlcore.distributed.shared_replay import ShardedReplay, shard_placement

OBS_DIM = 6


def _spaces() -> tuple[gym.Space, gym.Space]:
    return gym.spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32), gym.spaces.Discrete(1_000_000)


def _sharded_replay(num_shards: int, envs_per_shard: int, capacity: int, *, shared: bool = True,
                    **settings) -> Replay:
    """The learner's replay of ``num_shards`` workers, as the Trainer builds it."""
    fields = tuple(transition_fields(*_spaces()).items())
    return build_replay(ReplaySettings(capacity, fields, **settings),
                        shard_placement(num_shards, envs_per_shard, shared=shared))


def _checksum(obs: np.ndarray, next_obs: np.ndarray, action: np.ndarray) -> np.ndarray:
    """One crc32 per row (mod 2**24, so float32 holds it exactly)."""
    return np.array([zlib.crc32(o.tobytes() + n.tobytes() + a.tobytes()) % 2**24
                     for o, n, a in zip(obs, next_obs, action)], dtype=np.float32)


def _write_rows(geometry, name: str, shard: int, steps: int, envs: int) -> None:
    """A writer process: ``steps`` vector steps whose rows carry their id (action) and a checksum (reward)."""
    replay = ShardedReplay(geometry, name)
    writer = replay.writer(shard)
    rng = np.random.default_rng(shard)
    for step in range(steps):
        obs = rng.standard_normal((envs, OBS_DIM)).astype(np.float32)
        next_obs = rng.standard_normal((envs, OBS_DIM)).astype(np.float32)
        action = (shard * 10**5 + step * envs + np.arange(envs)).astype(np.int64)
        writer.add({"obs": obs, "action": action, "reward": _checksum(obs, next_obs, action), "next_obs": next_obs,
                    "terminated": np.zeros(envs, bool), "truncated": np.zeros(envs, bool)})
    replay.close()


def _assert_intact(batch: dict[str, torch.Tensor]) -> None:
    obs, next_obs, action = batch["obs"].numpy(), batch["next_obs"].numpy(), batch["action"].numpy()
    bad = _checksum(obs, next_obs, action) != batch["reward"].numpy()
    assert not bad.any(), f"{int(bad.sum())} torn rows, e.g. action ids {action[bad][:5]}"


@pytest.mark.parametrize("capacity_steps", [5_000, 64])
def test_writer_processes_rows_are_complete_and_intact(capacity_steps: int) -> None:
    """N writer processes x M steps: the learner samples intact rows while they write; with room for all of
    them, exactly N*M rows are readable afterwards, each written once. A small ring makes writers lap it."""
    writers, steps, envs = 2, 3_000, 2
    replay = _sharded_replay(writers, envs, writers * envs * capacity_steps)
    context = mp.get_context("spawn")
    processes = [context.Process(target=_write_rows, args=(replay.geometry, replay.name, shard, steps, envs))
                 for shard in range(writers)]
    for process in processes:
        process.start()
    generator = torch.Generator().manual_seed(0)
    samples = 0
    try:
        while any(process.is_alive() for process in processes) or samples < 20:
            if len(replay) > 0:
                _assert_intact(replay.sample(256, generator))
                samples += 1
    finally:
        for process in processes:
            process.join(60)
    assert all(process.exitcode == 0 for process in processes)
    assert samples >= 20
    assert replay.committed().tolist() == [steps] * writers
    if capacity_steps >= steps:
        assert len(replay) == writers * steps * envs
        columns = replay.columns
        ids = columns["action"][:, :steps].reshape(-1)
        expected = np.concatenate([shard * 10**5 + np.arange(steps * envs) for shard in range(writers)])
        assert np.array_equal(np.sort(ids), np.sort(expected))
        stored = {key: torch.from_numpy(np.ascontiguousarray(columns[key][:, :steps].reshape(
            -1, *columns[key].shape[3:]))) for key in ("obs", "next_obs", "action", "reward")}
        _assert_intact(stored)
    else:
        assert replay.torn_rows_redrawn >= 0
    replay.close()


def test_weight_store_versions_and_copies() -> None:
    tensors = {"params": torch.arange(5, dtype=torch.float32), "obs_count": torch.tensor([3.0], dtype=torch.float64)}
    block = SharedBlock(weight_layout(tensors))
    store = WeightStore(block)
    assert store.version == 0 and store.read(newer_than=0) is None
    assert store.publish(tensors) == 1
    version, copies = store.read(newer_than=0)
    assert version == 1 and torch.equal(copies["params"], tensors["params"])
    tensors["params"] += 1
    store.publish(tensors)
    assert store.read(newer_than=1)[1]["params"].tolist() == [1, 2, 3, 4, 5]
    assert store.read(newer_than=2) is None
    block.close()


def test_a_block_left_open_is_unlinked_at_exit_without_a_resource_tracker_warning() -> None:
    """An agent keeps its shared replay after ``train`` returns; the segment goes with the process, quietly."""
    script = textwrap.dedent("""
        import numpy as np
        from rlcore.distributed.shared import ArraySpec, BlockLayout, SharedBlock
        block = SharedBlock(BlockLayout((ArraySpec("x", "float32", (4,)),)))
        block["x"][:] = 1.0
        print(block.name)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    name = done.stdout.strip().lstrip("/")
    assert name and not Path("/dev/shm", name).exists()
    assert "leaked shared_memory" not in done.stderr, done.stderr


def test_restarted_writer_ends_the_interrupted_episode() -> None:
    replay = _sharded_replay(1, 1, 16, n_step=3, gamma=0.5, shared=False)
    writer = replay.writer(0)
    for step in range(3):
        writer.add({"obs": np.zeros((1, OBS_DIM), np.float32), "action": np.array([step]),
                    "reward": np.ones(1, np.float32), "next_obs": np.full((1, OBS_DIM), step, np.float32),
                    "terminated": np.zeros(1, bool), "truncated": np.zeros(1, bool)})
    writer.end_interrupted_episodes()  # what a restarted worker does first
    for step in range(3, 6):
        writer.add({"obs": np.zeros((1, OBS_DIM), np.float32), "action": np.array([step]),
                    "reward": np.full(1, 100.0, np.float32), "next_obs": np.full((1, OBS_DIM), step, np.float32),
                    "terminated": np.zeros(1, bool), "truncated": np.zeros(1, bool)})
    batch = replay.sample(400, torch.Generator().manual_seed(0))
    from_step1 = batch["action"] == 1
    assert from_step1.any()
    # step 1's 3-step sum stops at step 2 (the interrupted episode's last row) and bootstraps from its next_obs
    assert torch.allclose(batch["reward"][from_step1], torch.tensor(1.5))
    assert torch.all(batch["next_obs"][from_step1] == 2.0)
    assert torch.allclose(batch["discount"][from_step1], torch.tensor(0.25))


def test_prioritized_shards_skip_the_rows_writers_overwrite_next_and_follow_priorities() -> None:
    replay = _sharded_replay(2, 2, 80, prioritized=True, shared=False)
    for step in range(50):
        for shard in range(2 if step < 10 else 1):
            replay.writer(shard).add({
                "obs": np.full((2, OBS_DIM), step, np.float32), "action": np.array([step, step]),
                "reward": np.zeros(2, np.float32), "next_obs": np.zeros((2, OBS_DIM), np.float32),
                "terminated": np.zeros(2, bool), "truncated": np.zeros(2, bool)})
    generator = torch.Generator().manual_seed(0)
    batch = replay.sample(2_000, generator)
    shard0 = batch["index"] < replay.steps_capacity * 2
    # shard 0 holds steps 30..49 (20 per env); the oldest margin=5 are its writer's next rows: never drawn
    assert batch["action"][shard0].min() == 50 - replay.steps_capacity + replay.geometry.margin
    assert set(batch["action"][~shard0].tolist()) == set(range(10))
    assert torch.all(batch["obs"][:, 0] == batch["action"].float())  # the row drawn is the step named
    replay.update_priorities(batch["index"], torch.where(batch["action"] == 5, 100.0, 0.01))
    again = replay.sample(2_000, generator)
    assert (again["action"] == 5).float().mean() > 0.8
    assert again["weight"].max() == 1.0 and again["weight"][again["action"] == 5].max() < 0.5


def test_prioritized_dqn_trains_from_workers(tmp_path: Path) -> None:
    trainer = rlcore.Trainer("dqn", "CartPole-v1", rlcore.TrainConfig(
        num_workers=2, total_env_steps=4_000, eval_freq=0, log_dir=None, progress_bar=False),
        {"prioritized": True, "learning_starts": 500, "train_freq": 16, "gradient_steps": 4})
    trainer.run()
    assert trainer.algo.updates >= 0.9 * (4_000 - 500) * 4 / 16
    leaves = trainer.algo.replay.sampler.tree[np.arange(trainer.algo.replay.sampler.tree.capacity)]
    assert len(np.unique(leaves[leaves > 0])) > 100  # TD errors replaced the initial max priority


class KillFirstWorker(Callback):
    """SIGKILLs worker 0 from the learner's loop once ``after_env_steps`` arrived and the worker is running (READY,
    not still starting): the kill lands at the same point of the run on any machine."""

    def __init__(self, after_env_steps: int) -> None:
        self.after_env_steps = after_env_steps
        self.killed: list[int] = []

    def on_iteration(self, trainer: rlcore.Trainer, metrics: dict[str, float]) -> None:
        pool = trainer.source.pool
        if (not self.killed and trainer.env_steps >= self.after_env_steps and pool is not None
                and pool.processes[0] is not None and pool.flags[1, 0]):
            self.killed.append(pool.processes[0].pid)
            os.kill(self.killed[0], signal.SIGKILL)


@pytest.mark.parametrize("algo, train, algo_config", [
    pytest.param("ppo", {"num_envs": 4, "total_env_steps": 100_000, "stop_at_reward": 475.0, "eval_freq": 5_120}, None,
                 marks=[pytest.mark.slow, pytest.mark.ci_slow]),  # ~25-50 s: to the target after the restart
    ("dqn", {"total_env_steps": 12_000, "eval_freq": 0}, {"learning_starts": 1_000}),
])
def test_worker_killed_with_sigkill_is_restarted_and_training_goes_on(
    tmp_path: Path, algo: str, train: dict, algo_config: dict | None
) -> None:
    killer = KillFirstWorker(3_000)
    trainer = rlcore.Trainer(algo, "CartPole-v1", rlcore.TrainConfig(
        num_workers=2, seed=0, log_dir=str(tmp_path), progress_bar=False, **train), algo_config,
        run_dir=tmp_path / "run", callbacks=[killer])
    trainer.run()
    assert killer.killed, "the worker was never killed"
    assert trainer.source.pool.restarts[0] >= 1
    assert trainer.source.pool.processes[0].pid != killer.killed[0]
    if algo == "ppo":
        assert trainer.best_eval >= 475.0  # the run reached its target after the restart
    else:
        assert trainer.env_steps >= train["total_env_steps"]
        assert trainer.algo.updates > 0
    assert all(process.exitcode is not None for process in trainer.source.pool.processes)
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run"), size_guidance={"scalars": 0})
    events.Reload()  # the documented distributed/ scalars, which only Ray's workers logged
    restarts = [event.value for event in events.Scalars("distributed/restarts")]
    assert restarts[-1] >= 1 and events.Scalars("distributed/weights_version")[-1].value > 1


def test_workers_need_a_picklable_env() -> None:
    with pytest.raises(ValueError, match="cannot be pickled"):
        rlcore.Trainer("dqn", lambda: gym.make("CartPole-v1"), rlcore.TrainConfig(num_workers=2, log_dir=None))


def test_workers_reject_what_they_cannot_run() -> None:
    with pytest.raises(ValueError, match="memory"):
        rlcore.Trainer("ppo", "CartPole-v1", rlcore.TrainConfig(num_workers=2, log_dir=None), {"memory": "lstm"})
    with pytest.raises(ValueError, match="memory"):
        rlcore.Trainer("dqn", "CartPole-v1", rlcore.TrainConfig(num_workers=2, log_dir=None), {"memory": "lstm"})
    with pytest.raises(ValueError, match="backend='local'"):
        rlcore.Trainer("alphazero", "rlcore/TicTacToe-v0", rlcore.TrainConfig(num_workers=2, backend="ray",
                                                                               log_dir=None))
    with pytest.raises(ValueError, match="num_workers"):
        rlcore.Trainer("q_learning", "FrozenLake-v1", rlcore.TrainConfig(num_workers=2, log_dir=None))


class CrashingEnv(gym.Env):
    """CartPole that raises after a few steps: a worker bug that restarts cannot fix."""

    def __init__(self) -> None:
        self.inner = gym.make("CartPole-v1")
        self.observation_space, self.action_space = self.inner.observation_space, self.inner.action_space
        self.steps = 0

    def reset(self, *, seed=None, options=None):
        return self.inner.reset(seed=seed)

    def step(self, action):
        self.steps += 1
        if self.steps > 20:
            raise RuntimeError("CrashingEnv broke on purpose")
        return self.inner.step(action)


def test_a_worker_that_always_fails_stops_the_run_with_its_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "MAX_RESTARTS", 2)  # each restart starts a process (~4 s of imports)
    trainer = rlcore.Trainer("dqn", CrashingEnv, rlcore.TrainConfig(num_workers=1, total_env_steps=5_000,
                                                                      log_dir=None, progress_bar=False))
    with pytest.raises(RuntimeError, match="CrashingEnv broke on purpose"):
        trainer.run()
    assert all(process.exitcode is not None for process in trainer.source.pool.processes)


class RewardArrayEnv(CrashingEnv):
    """CartPole whose reward becomes an array after a few steps: an env output no restart makes right."""

    def step(self, action):
        self.steps += 1
        obs, reward, terminated, truncated, info = self.inner.step(action)
        return obs, np.array([reward]) if self.steps > 20 else reward, terminated, truncated, info


def test_a_workers_lasting_error_stops_the_run_without_restarts() -> None:
    """The env's bad output (or diverged weights) would meet a restarted worker again: the run stops on the first,
    with the env's message (it restarted the worker 10 times, a traceback each)."""
    trainer = rlcore.Trainer("dqn", RewardArrayEnv, rlcore.TrainConfig(num_workers=1, total_env_steps=5_000,
                                                                         log_dir=None, progress_bar=False))
    with pytest.raises(RuntimeError, match=r"(?s)worker 0 stopped on an error a restart would meet again:.*"
                                           r"EnvOutputError: the environment returned rewards of shape \(1,\)"):
        trainer.run()
    assert trainer.source.pool.restarts == [0]


class UnbuildableEnv(gym.Env):
    """CartPole that the learner builds, but that fails in every worker process."""

    def __init__(self) -> None:
        if mp.current_process().name.startswith("rlcore-worker"):
            raise RuntimeError("UnbuildableEnv cannot be built in a worker")
        self.inner = gym.make("CartPole-v1")
        self.observation_space, self.action_space = self.inner.observation_space, self.inner.action_space

    def reset(self, *, seed=None, options=None):
        return self.inner.reset(seed=seed)

    def step(self, action):
        return self.inner.step(action)


def test_a_worker_whose_first_start_fails_stops_the_run_without_restarts() -> None:
    trainer = rlcore.Trainer("dqn", UnbuildableEnv, rlcore.TrainConfig(num_workers=1, total_env_steps=5_000,
                                                                         log_dir=None, progress_bar=False))
    with pytest.raises(RuntimeError, match=r"(?s)worker 0 failed before it started .*UnbuildableEnv cannot be built"):
        trainer.run()
    assert trainer.source.pool.restarts == [0]


def test_local_workers_refuse_async_sub_envs_and_ray_needs_workers() -> None:
    with pytest.raises(ValueError, match="vectorization='async' with local workers"):
        rlcore.TrainConfig(num_workers=2, vectorization="async")
    with pytest.raises(ValueError, match="backend='ray' runs the collectors as Ray actors: set num_workers >= 1"):
        rlcore.TrainConfig(backend="ray")
    rlcore.TrainConfig(num_workers=2, vectorization="async", backend="ray")  # Ray actors may start processes
    for algo, workers in (("ppo", 2), ("sac", 2), ("dqn", 0)):
        with pytest.raises(ValueError, match="worker_epsilon='apex' gives each worker its own exploration rate"):
            rlcore.Trainer(algo, "Pendulum-v1" if algo == "sac" else "CartPole-v1",
                           rlcore.TrainConfig(num_workers=workers, worker_epsilon="apex", log_dir=None))


SCRIPT = textwrap.dedent("""
    import sys, time, torch
    import rlcore
    if __name__ == "__main__":
        torch.set_num_threads(1)
        trainer = rlcore.Trainer("dqn", "CartPole-v1", rlcore.TrainConfig(
            num_workers=2, total_env_steps=10_000_000, log_dir=sys.argv[1], progress_bar=False, eval_freq=0))
        import threading
        def report():
            while trainer.source.pool is None or trainer.env_steps < 2_000:
                time.sleep(0.01)
            pool = trainer.source.pool
            names = [pool.control.name, trainer.algo.replay.name]
            print("READY", " ".join(str(pid) for pid in pool.pids()), " ".join(names), flush=True)
        threading.Thread(target=report, daemon=True).start()
        try:
            trainer.run()
        except KeyboardInterrupt:
            print("INTERRUPTED", flush=True)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "zombie" in status.read_text())


@pytest.mark.skipif(not Path("/dev/shm").exists(), reason="checks POSIX shared memory in /dev/shm")
def test_ctrl_c_leaves_no_worker_process_or_shared_memory(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    learner = subprocess.Popen([sys.executable, str(script), str(tmp_path / "runs")], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"},  # SIGINT as a terminal's Ctrl-C
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    line = ""
    deadline = time.monotonic() + 120
    while "READY" not in line and time.monotonic() < deadline:
        line = learner.stdout.readline()
        if not line and learner.poll() is not None:
            break
    assert "READY" in line, f"the training script did not start (exit code {learner.poll()})"
    pids = [int(pid) for pid in line.split()[1:3]]
    names = line.split()[3:]
    assert all(_alive(pid) for pid in pids)
    learner.send_signal(signal.SIGINT)
    output, errors = learner.communicate(timeout=60)
    assert "INTERRUPTED" in output
    assert "--num-workers 2` (Python: rlcore.Trainer.resume(run_dir, num_workers=2).run())" in errors, errors
    time.sleep(0.5)
    assert not any(_alive(pid) for pid in pids), "a worker outlived the learner"
    assert not any(Path("/dev/shm", name).exists() for name in names), "a shared-memory segment was left behind"


@pytest.mark.slow
@pytest.mark.ci_slow
def test_alphazero_self_play_workers_feed_the_learner(tmp_path: Path) -> None:
    """Slow only because every worker compiles the game's numba kernels (~20 s each on 2 cores)."""
    tiny = {"num_simulations": 8, "channels": 8, "num_blocks": 1, "batch_size": 32, "buffer_size": 2_000,
            "learning_starts": 64, "train_every": 64, "gradient_steps": 2, "temperature_moves": 3,
            "eval_simulations": 8, "eval_mcts_simulations": 50}
    trainer = rlcore.Trainer("alphazero", "rlcore/TicTacToe-v0", rlcore.TrainConfig(
        num_workers=2, num_envs=4, total_env_steps=640, eval_freq=320, eval_episodes=4, log_dir=str(tmp_path),
        progress_bar=False, weight_pull_interval=4), tiny, run_dir=tmp_path / "run")
    trainer.run()
    positions = trainer.algo.replay.committed()
    assert (positions > 0).all(), positions  # both workers' games arrived
    assert trainer.algo.updates >= 2 * 4  # several train phases, each followed by a publish
    # each position counts once, as in one process (the workers write its mirror image too): twice the phases before
    assert trainer.algo.updates <= 2 * (int(positions.sum()) // 2 // 64 + 1)
    assert trainer.source.stats.episodes >= 40
    assert len(trainer.history) >= 2 and 0.0 <= trainer.history[-1]["eval/mean_reward"] <= 1.0
    assert (tmp_path / "run" / "final").exists()


def test_a_run_with_workers_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    config = rlcore.TrainConfig(num_workers=2, total_env_steps=3_000, eval_freq=0, checkpoint_freq=1_000,
                                log_dir=str(tmp_path), progress_bar=False)
    first = rlcore.Trainer("dqn", "CartPole-v1", config, {"learning_starts": 500}, run_dir=tmp_path / "run")
    first.run()
    stored = first.algo.replay.committed().copy()
    with pytest.raises(rlcore.CheckpointError, match="num_workers=2 .*never taken from a checkpoint"):
        rlcore.Trainer.resume(tmp_path / "run", total_env_steps=5_000)  # workers are the caller's to start
    with pytest.raises(rlcore.CheckpointError, match=r"resume it with num_workers=2 .*not in this process"):
        rlcore.Trainer.resume(tmp_path / "run", total_env_steps=5_000, num_workers=0)  # was advised, then failed
    resumed = rlcore.Trainer.resume(tmp_path / "run", total_env_steps=5_000, num_workers=2)
    assert resumed.env_steps >= 3_000 and len(resumed.algo.replay) == int(stored.sum())
    # fresh episodes and exploration draws, not the run's first ones again
    seeds = [(spec.env_seed, spec.generator_seed) for spec in first.source.specs + resumed.source.specs]
    assert len(set(seeds)) == 4 and [spec.sessions for spec in resumed.source.specs] == [1, 1]
    updates_before = resumed.algo.updates
    resumed.run()
    assert resumed.env_steps >= 5_000
    assert resumed.algo.updates > updates_before
    assert (resumed.algo.replay.committed() >= stored).all()


def test_a_finished_worker_run_leaves_no_shared_memory_while_its_agent_lives(tmp_path: Path) -> None:
    """The workers' replay segment stayed in /dev/shm as long as the returned agent (or a failed run's traceback)
    was alive: a notebook kept it for the kernel's life."""
    before = set(os.listdir("/dev/shm"))
    agent = rlcore.train("dqn", "CartPole-v1", num_workers=2, total_env_steps=1_000, learning_starts=200,
                         eval_freq=500, eval_episodes=2, log_dir=None, progress_bar=False)
    assert agent.algo.updates > 0
    assert set(os.listdir("/dev/shm")) - before == set()
    assert len(agent.algo.replay) > 0  # its count still answers


def test_a_worker_run_refused_late_leaves_no_shared_memory(tmp_path: Path) -> None:
    """The workers' replay is built before the run folder: a folder that cannot be made left its segment."""
    (tmp_path / "file").write_text("")
    before = set(os.listdir("/dev/shm"))
    with pytest.raises(OSError) as refused:
        rlcore.Trainer("dqn", "CartPole-v1", rlcore.TrainConfig(num_workers=2, progress_bar=False),
                       run_dir=tmp_path / "file" / "run")
    assert refused.value is not None and set(os.listdir("/dev/shm")) - before == set()


def test_local_workers_keep_the_lead_between_weight_pulls() -> None:
    """Workers checked the allowed lead once per weight pull (50 vector steps): behind a slow learner their data ran
    ~25 env steps ahead of what it had trained on, on average, for a promised lead of 3."""
    trainer = rlcore.Trainer("dqn", "CartPole-v1", rlcore.TrainConfig(
        num_workers=2, num_envs=1, total_env_steps=800, log_dir=None, progress_bar=False, eval_freq=0, seed=0),
        {"learning_starts": 100, "train_freq": 1, "gradient_steps": 8, "batch_size": 64, "net_arch": [64, 64]})
    leads: list[int] = []
    collect = trainer.source.collect_replay

    def measured(algo: object, vector_steps: int) -> None:
        collect(algo, vector_steps)
        if trainer._phases_done:
            leads.append(trainer.env_steps - trainer._phases.env_steps_of(trainer._phases_done - 1))

    trainer.source.collect_replay = measured
    trainer.run()
    assert len(leads) > 100 and sum(leads) / len(leads) < 8, (len(leads), max(leads), sum(leads) / len(leads))
