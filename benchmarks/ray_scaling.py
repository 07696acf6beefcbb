"""Single-node figures behind the Ray backend's scaling model (``docs/distributed.md``).

Measured on a local, loopback-only Ray (2 logical CPUs, 200 MB object store), one torch thread:

- ``learner``: what the learner process can absorb.
  ``dqn_grad_steps_per_s``: DQN gradient steps per second with the CartPole-v1 preset (256x256 MLP, batch 64,
  128 steps per ``train`` call) from a full 100k :class:`ShardedReplay` (2 shards x 4 envs);
  ``dqn_add_us_per_env_step``: writing a received chunk into the replay, per env step;
  ``dqn_env_steps_per_s_at_preset_ratio``: the env steps per second it absorbs while keeping the preset's
  replay ratio (128 gradient steps per 256 x ``num_envs`` env steps, here ``num_envs=1``: 0.5 per env step).
  ``ppo_updates_per_s`` / ``ppo_env_steps_per_s``: PPO updates (the preset: 20 epochs, batch 256) of a joined
  rollout of ``W x 8 envs x 32 steps`` for W = 1 and 4 workers.
- ``object_store``: ``put_ms`` (driver ``ray.put``), ``actor_get_ms`` (an actor is handed the reference and
  reads the object; the empty call's round trip is subtracted) and ``return_ms`` (an actor returns the
  payload, the driver ``ray.get``s it) for the DQN and PPO weights and for transition chunks (50 vector
  steps x 8 envs of CartPole, and the same for 84x84x4 uint8 Atari frames), with the bandwidth each implies;
  ``call_round_trip_ms``: an empty actor call.
- ``actor``: env steps per second of one collector actor (DQN, CartPole, ``weight_pull_interval=50`` vector
  steps per call, 1 and 8 envs), measured through Ray (calls, serialization and the learner's side included)
  and in-process.
- ``runs``: whole ``backend="ray"`` DQN runs on CartPole with 8 envs per actor: the env steps per second the
  learner took in with 1 and 2 actors collecting only, and with 2 actors at the preset's replay ratio (on this
  2-core machine the actors and the learner share the cores).

On one node the object store is shared memory: a same-node get maps the object, it is not copied over a
network, so ``actor_get`` here is a lower bound.

``--multinode`` measures the same across nodes instead, on a :class:`LoopbackCluster` (a head node of 1 CPU for the
learner and a worker node of 2 CPUs, each its own raylet and 200 MB object store, on 127.0.0.1), with the actors
beside the learner (on the head, custom resource ``beside_learner``) and on the other node
(``worker_resources={"collector": 1}``) side by side: ``transfers`` (the ``object_store`` figures per placement;
across nodes an object bigger than Ray's 100 KB inline limit is copied from one object store to the other),
``intake_ceiling_w2`` (2 infinitely fast actors handing out ready CartPole or Atari chunks, one call in flight
each, the learner copying each out: the most the learner can take in from that placement) and ``runs``: the
env steps per second the learner took in from 2 actors x 8 envs collecting only, on CartPole (18 KB chunks, sent
inline) and on Atari Pong (``rlcore/Atari-Pong-v0``, 84x84x4 uint8 frames: 22.6 MB chunks through the object
stores), with the transition bytes per second that implies. Both nodes share this machine's cores and
memory, so the cross-node figures include the copy between object stores but no network.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/ray_scaling.py [--repeats 5] [--multinode]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rlcore.api import split_settings
from rlcore.distributed.ray_backend import CollectorWorker, LoopbackCluster, init_ray
from rlcore.distributed.roles import build_worker, join_rollouts, worker_rollout
from rlcore.trainer import TrainConfig, Trainer


def progress(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def best_of(repeats: int, measure: Callable[[], float]) -> float:
    """The median of ``repeats`` measurements (seconds)."""
    return statistics.median(measure() for _ in range(repeats))


def preset_trainer(algo: str, num_workers: int, num_envs: int, env: str = "CartPole-v1",
                   **overrides: Any) -> Trainer:
    train, algo_settings = split_settings(algo, env, {"num_workers": num_workers, "num_envs": num_envs,
                                                      "backend": "ray", "log_dir": None, "progress_bar": False,
                                                      **overrides})
    return Trainer(algo, env, TrainConfig(**train), algo_settings)


# ------------------------------------------------------------------------------------------ learner
def dqn_learner(repeats: int) -> dict[str, float]:
    trainer = preset_trainer("dqn", num_workers=2, num_envs=4)
    algo, replay = trainer.algo, trainer.algo.replay
    rng = np.random.default_rng(0)
    envs, steps = 4, replay.steps_capacity + 10
    chunk = {"obs": rng.standard_normal((steps, envs, 4), dtype=np.float32),
             "action": rng.integers(0, 2, (steps, envs)), "reward": np.ones((steps, envs), np.float32),
             "next_obs": rng.standard_normal((steps, envs, 4), dtype=np.float32),
             "terminated": rng.random((steps, envs)) < 0.02, "truncated": np.zeros((steps, envs), bool)}
    start = time.perf_counter()
    for shard in range(2):
        writer = replay.writer(shard)
        for t in range(steps):
            writer.add({key: value[t] for key, value in chunk.items()})
    add_us = (time.perf_counter() - start) / (2 * steps * envs) * 1e6
    gradient_steps = algo.config.gradient_steps
    algo.train(gradient_steps)  # warm-up (buffers)

    def phase() -> float:
        start = time.perf_counter()
        algo.train(gradient_steps)
        return time.perf_counter() - start

    steps_per_s = gradient_steps / best_of(repeats, phase)
    ratio = gradient_steps / (algo.config.train_freq * 1)
    return {"dqn_grad_steps_per_s": steps_per_s, "dqn_add_us_per_env_step": add_us,
            "dqn_replay_ratio": ratio,
            "dqn_env_steps_per_s_at_preset_ratio": 1.0 / (add_us * 1e-6 + ratio / steps_per_s)}


def ppo_learner(repeats: int, num_workers: int) -> dict[str, float]:
    trainer = preset_trainer("ppo", num_workers=num_workers, num_envs=8)
    spec = trainer.worker_spec(0)
    algo, collector = build_worker(spec)
    n_steps = trainer.algo.config.n_steps
    parts = [worker_rollout(algo, collector, n_steps) for _ in range(num_workers)]

    def update() -> float:
        start = time.perf_counter()
        trainer.algo.update(join_rollouts(trainer.algo, parts))
        return time.perf_counter() - start

    update()
    seconds = best_of(repeats, update)
    return {f"ppo_updates_per_s_w{num_workers}": 1.0 / seconds,
            f"ppo_env_steps_per_s_w{num_workers}": num_workers * 8 * n_steps / seconds}


# ------------------------------------------------------------------------------------------ object store
class Echo:
    """An actor that reads what it is handed, or sends back a payload of a given size."""

    def nothing(self) -> int:
        return 0

    def read(self, payload: dict[str, np.ndarray]) -> int:
        return int(sum(value.nbytes for value in payload.values()))

    def send(self, payload: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {key: value.copy() for key, value in payload.items()}


def payloads() -> dict[str, dict[str, np.ndarray]]:
    dqn = preset_trainer("dqn", num_workers=1, num_envs=1)
    ppo = preset_trainer("ppo", num_workers=1, num_envs=8)
    k, envs = 50, 8
    cartpole = {"obs": np.zeros((k, envs, 4), np.float32), "next_obs": np.zeros((k, envs, 4), np.float32),
                "action": np.zeros((k, envs), np.int64), "reward": np.zeros((k, envs), np.float32),
                "terminated": np.zeros((k, envs), bool), "truncated": np.zeros((k, envs), bool)}
    atari = {**cartpole, "obs": np.zeros((k, envs, 4, 84, 84), np.uint8),
             "next_obs": np.zeros((k, envs, 4, 84, 84), np.uint8)}
    return {
        "dqn_weights": {key: value.numpy().copy() for key, value in dqn.algo.acting_state().items()},
        "ppo_weights": {key: value.numpy().copy() for key, value in ppo.algo.acting_state().items()},
        "chunk_cartpole_50x8": cartpole,
        "chunk_atari_50x8": atari,
    }


def object_store(repeats: int, placement: dict[str, float] | None = None) -> dict[str, Any]:
    """The transfer figures with the echo actor on any node (``placement`` None) or on a node with the custom
    resources ``placement``."""
    import ray

    options = {"num_cpus": 0.0, "resources": placement} if placement else {"num_cpus": 0.5}
    echo = ray.remote(Echo).options(**options).remote()
    ray.get(echo.nothing.remote())

    def round_trip() -> float:
        start = time.perf_counter()
        ray.get(echo.nothing.remote())
        return time.perf_counter() - start

    empty = best_of(repeats * 10, round_trip)
    figures: dict[str, Any] = {"call_round_trip_ms": empty * 1e3}
    for name, payload in payloads().items():
        size = sum(value.nbytes for value in payload.values())

        def put(payload: dict[str, np.ndarray] = payload) -> float:
            start = time.perf_counter()
            ref = ray.put(payload)
            seconds = time.perf_counter() - start
            del ref
            return seconds

        def actor_get(payload: dict[str, np.ndarray] = payload) -> float:
            ref = ray.put(payload)
            start = time.perf_counter()
            ray.get(echo.read.remote(ref))
            return time.perf_counter() - start - empty

        source = ray.put(payload)

        def returned(source: Any = source) -> float:
            start = time.perf_counter()
            ray.get(echo.send.remote(source))
            return time.perf_counter() - start

        put_s, get_s, return_s = best_of(repeats, put), best_of(repeats, actor_get), best_of(repeats, returned)
        figures[name] = {"bytes": size, "put_ms": put_s * 1e3, "actor_get_ms": max(get_s, 0.0) * 1e3,
                         "return_ms": return_s * 1e3, "put_MB_per_s": size / put_s / 1e6,
                         "return_MB_per_s": size / return_s / 1e6}
        progress(f"  {name}: {figures[name]}")
    ray.kill(echo)
    return figures


# ------------------------------------------------------------------------------------------ one actor
CALLS = 20
"""collect() calls per actor-rate measurement (50 vector steps each)."""


def in_process_rates(repeats: int) -> dict[str, float]:
    """One collector's env steps per second without Ray (its envs and acting policy only)."""
    figures = {}
    for envs in (1, 8):
        worker = CollectorWorker(preset_trainer("dqn", num_workers=1, num_envs=envs).worker_spec(0))
        worker.collect(None, 0, 0, 50)

        def collect(worker: CollectorWorker = worker) -> float:
            start = time.perf_counter()
            for _ in range(CALLS):
                worker.collect(None, 0, 0, 50)
            return time.perf_counter() - start

        figures[f"env_steps_per_s_in_process_e{envs}"] = CALLS * 50 * envs / best_of(repeats, collect)
    return figures


def actor_rates(repeats: int) -> dict[str, float]:
    """One collector actor's env steps per second through Ray: calls, serialization, the driver's ``ray.get``."""
    import ray

    figures = {}
    for envs in (1, 8):
        spec = preset_trainer("dqn", num_workers=1, num_envs=envs).worker_spec(0)
        actor = ray.remote(num_cpus=1)(CollectorWorker).remote(spec)
        ray.get(actor.collect.remote(None, 0, 0, 50))

        def through_ray(actor: Any = actor) -> float:
            start = time.perf_counter()
            for _ in range(CALLS):
                ray.get(actor.collect.remote(None, 0, 0, 50))
            return time.perf_counter() - start

        figures[f"env_steps_per_s_ray_e{envs}"] = CALLS * 50 * envs / best_of(repeats, through_ray)
        ray.kill(actor)
    return figures


def pipeline(num_workers: int, learning: bool, env: str = "CartPole-v1", steps: int | None = None,
             name: str | None = None, **overrides: Any) -> dict[str, float]:
    """A whole ``backend="ray"`` DQN run (8 envs per actor): env steps per second the learner took in, collecting
    only (``learning_starts`` past the end) or at the preset's replay ratio."""
    steps = steps or (40_000 if not learning else 8_000)
    overrides = {"total_env_steps": steps, "eval_freq": 0, "checkpoint_freq": 0, **overrides}
    if not learning:
        overrides["learning_starts"] = steps + 1
    trainer = preset_trainer("dqn", num_workers=num_workers, num_envs=8, env=env, **overrides)
    trainer.run()
    name = name or f"dqn_{'learning' if learning else 'collect_only'}_w{num_workers}"
    figures = {f"{name}_env_steps_per_s": steps / trainer.elapsed()}
    if learning:
        config = trainer.algo.config
        figures[f"{name}_replay_ratio"] = config.gradient_steps / (config.train_freq * 8)
    return figures


# ------------------------------------------------------------------------------------------ across nodes
PLACEMENTS = {"same_node": {"beside_learner": 1.0}, "other_node": {"collector": 1.0}}
"""Where the actors run in ``--multinode``: on the learner's (head) node, or on the worker node."""
ATARI_BYTES_PER_ENV_STEP = 2 * 4 * 84 * 84
"""``obs`` and ``next_obs`` of one Atari transition (uint8)."""


class ChunkSource:
    """An infinitely fast collector: hands out the same ready chunk on every call (serialized each time)."""

    def __init__(self, chunk: dict[str, np.ndarray]) -> None:
        self.chunk = chunk

    def next(self) -> dict[str, np.ndarray]:
        return self.chunk


STREAM_CHUNKS = 40
"""Chunks the learner takes in per ``stream`` measurement."""


def stream(placement: dict[str, float], chunk: dict[str, np.ndarray], actors: int = 2) -> dict[str, float]:
    """The learner's intake ceiling: ``actors`` infinitely fast collectors with one call in flight each (as
    :class:`RaySource` keeps them), the learner waiting for whichever is ready and copying it out of the object
    store (as writing it into the replay does)."""
    import ray

    sources = [ray.remote(ChunkSource).options(num_cpus=0.0, resources=placement).remote(chunk)
               for _ in range(actors)]
    ray.get([source.next.remote() for source in sources])
    pending = {source.next.remote(): source for source in sources}
    start = time.perf_counter()
    for _ in range(STREAM_CHUNKS):
        ready, _ = ray.wait(list(pending), num_returns=1)
        source = pending.pop(ready[0])
        pending[source.next.remote()] = source
        received = {key: np.array(value) for key, value in ray.get(ready[0]).items()}
        del received
    seconds = time.perf_counter() - start
    for source in sources:
        ray.kill(source)
    size = sum(value.nbytes for value in chunk.values())
    env_steps = chunk["reward"].size
    return {"MB_per_s": STREAM_CHUNKS * size / seconds / 1e6, "env_steps_per_s": STREAM_CHUNKS * env_steps / seconds}


def multinode(repeats: int) -> dict[str, Any]:
    """Transfers and learner intake with the actors beside the learner and on another node, side by side."""
    import ray

    cluster = LoopbackCluster(head_cpus=1, head_resources={"beside_learner": 2}, object_store_bytes=200 * 2**20)
    cluster.add_worker_node({"collector": 2}, cpus=2)
    init_ray(cluster.address)
    try:
        transfers, streams = {}, {}
        chunks = payloads()
        for where, placement in PLACEMENTS.items():
            progress(f"object store, actor {where} ...")
            transfers[where] = object_store(repeats, placement)
            streams[where] = {name: stream(placement, chunks[name])
                              for name in ("chunk_cartpole_50x8", "chunk_atari_50x8")}
            progress(f"  intake ceiling: {streams[where]}")
        runs: dict[str, float] = {}
        for where, placement in PLACEMENTS.items():
            progress(f"whole runs, actors {where} ...")
            settings = {"ray_address": cluster.address, "worker_resources": placement}
            runs.update(pipeline(2, False, name=f"cartpole_collect_only_w2_{where}", **settings))
            atari = pipeline(2, False, env="rlcore/Atari-Pong-v0", steps=6_000, buffer_size=4_000,
                             name=f"atari_pong_collect_only_w2_{where}", **settings)
            rate = atari[f"atari_pong_collect_only_w2_{where}_env_steps_per_s"]
            runs.update(atari)
            runs[f"atari_pong_collect_only_w2_{where}_MB_per_s"] = rate * ATARI_BYTES_PER_ENV_STEP / 1e6
            progress(f"  {runs}")
        return {"transfers": transfers, "intake_ceiling_w2": streams, "runs": runs}
    finally:
        ray.shutdown()
        cluster.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--multinode", action="store_true", help="actors beside the learner vs on another node")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.multinode:
        figures = multinode(args.repeats)
        print(json.dumps({"benchmark": "ray_scaling_multinode", "cpus": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), **figures}))
        return
    progress("learner ...")
    learner = {**dqn_learner(args.repeats), **ppo_learner(args.repeats, 1), **ppo_learner(args.repeats, 4)}
    progress(f"  {learner}")
    actor = in_process_rates(args.repeats)
    started = init_ray()
    try:
        progress("object store ...")
        store = object_store(args.repeats)
        progress("collector actor ...")
        actor.update(actor_rates(args.repeats))
        progress(f"  {actor}")
        progress("whole runs ...")
        runs = {**pipeline(1, False), **pipeline(2, False), **pipeline(2, True)}
        progress(f"  {runs}")
    finally:
        if started:
            import ray

            ray.shutdown()
    print(json.dumps({"benchmark": "ray_scaling", "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                      "learner": learner, "object_store": store, "actor": actor, "runs": runs}))


if __name__ == "__main__":
    main()
