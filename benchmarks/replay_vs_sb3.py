"""Replay-buffer hot path: rlcore's ``ReplayBuffer`` vs SB3's ``ReplayBuffer``, same process.

What is compared, on the CPU with one torch thread, for CartPole-shaped data from 8 envs
(obs/next_obs float32 ``[8, 4]``, a discrete action int64 ``[8]``, reward float32 ``[8]``,
terminated/truncated bool ``[8]``) and the same capacity (100k transitions, 12.5k per env):

- ``add``: one vector step of 8 transitions, numpy in (what a collector hands over). Both copy
  six arrays into preallocated storage. rlcore (its C step writer, ``rlcore/kernels/_step_writer.c``,
  copies the whole step in one call): ``buffer.add({"obs": ..., "action": ...,
  "reward": ..., "next_obs": ..., "terminated": ..., "truncated": ...})``; SB3:
  ``buffer.add(obs, next_obs, action, reward, done, infos)`` with a prebuilt list of 8 empty
  info dicts (its cheapest case; it stores obs, next_obs, action, reward, done and the timeouts
  it reads from ``infos``).
- ``sample(256)``: a uniform minibatch of 256 transitions (with replacement) from a full buffer,
  returned as fresh torch tensors on the CPU (neither side's tensors alias its storage).
  SB3: ``buffer.sample(256)`` returns 5 contiguous tensors: ``observations`` float32 ``[256, 4]``,
  ``actions`` int64 ``[256, 1]``, ``next_observations`` float32 ``[256, 4]``, ``dones`` float32
  ``[256, 1]`` (terminations, timeouts masked out) and ``rewards`` float32 ``[256, 1]``.
  rlcore: ``buffer.sample(256, generator)`` (default ``UniformSampler``, n_step=1) returns 9:
  ``obs`` float32 ``[256, 4]``, ``action`` int64 ``[256]``, ``reward`` float32 ``[256]``,
  ``next_obs`` float32 ``[256, 4]``, ``terminated`` and ``truncated`` bool ``[256]``,
  ``discount`` float32 ``[256]`` (``gamma * (1 - terminated)``), ``index`` int64 ``[256]`` and
  ``weight`` float32 ``[256]`` (ones). The first six are strided views of one gathered array of
  records; the JSON line lists both sides' keys, shapes and dtypes as they came back.
- ``add_numpy``: rlcore's ``add`` with the step writer switched off (its numpy path: what an install
  without a C compiler runs, and what any value the writer does not take goes through).
- ``add_floor``: six numpy row assignments (``column[row] = value``) in one plain Python function,
  with no buffer logic at all: the most any Python buffer that copies its six input arrays with numpy
  per ``add`` can do on this machine (each assignment costs ~0.15-0.2 us), so ``add_floor / sb3``
  bounds the per-step ratio of such a buffer (~3.5x); the step writer is how rlcore gets past it.
- ``extend``: the same steps handed over ``--chunk`` consecutive vector steps at a time (values
  ``[K, 8, ...]``, stacked beforehand, untimed), each side through its public multi-step API:
  rlcore ``buffer.extend({"obs": [K, 8, 4], ...})`` (one copy per key, two where the ring wraps);
  SB3 ``buffer.extend(obs, next_obs, action, reward, done, infos)`` (its ``BaseBuffer.extend``, a
  loop of ``add`` over the first axis). Reported in vector steps per second, so ``extend`` and
  ``add`` figures are comparable; it is a different operation from ``add`` (a producer of whole
  chunks: a distributed actor, a data set), not a replacement for the per-step figure.

How: each measurement times ``--iters`` consecutive calls with ``time.perf_counter`` and is
repeated ``--repeats`` times, alternating which library goes first; the figure reported is
the median over repeats of calls per second. ``*_ratio`` is rlcore's ops/s over SB3's. The
data added is a pool of pregenerated random steps, cycled, so its creation is not timed.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/replay_vs_sb3.py \
        [--iters 20000] [--repeats 7] [--chunk 16] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from gymnasium import spaces  # noqa: E402
from stable_baselines3.common.buffers import ReplayBuffer as SB3ReplayBuffer  # noqa: E402

from rlcore.buffers.replay import ReplayBuffer  # noqa: E402

NUM_ENVS = 8
OBS_DIM = 4
NUM_ACTIONS = 2
CAPACITY = 100_000
BATCH_SIZE = 256
POOL = 1_024
"""Distinct pregenerated vector steps, cycled through by the add loops."""

Step = dict[str, np.ndarray]


def make_steps(count: int, seed: int = 0) -> list[Step]:
    """``count`` random CartPole-shaped vector steps, as rlcore's Collector returns them."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(count):
        done = rng.random(NUM_ENVS) < 0.02
        steps.append({
            "obs": rng.standard_normal((NUM_ENVS, OBS_DIM)).astype(np.float32),
            "action": rng.integers(NUM_ACTIONS, size=NUM_ENVS).astype(np.int64),
            "reward": np.ones(NUM_ENVS, dtype=np.float32),
            "next_obs": rng.standard_normal((NUM_ENVS, OBS_DIM)).astype(np.float32),
            "terminated": done & (rng.random(NUM_ENVS) < 0.5),
            "truncated": done,
        })
    for step in steps:
        step["truncated"] = step["truncated"] & ~step["terminated"]
    return steps


def make_rlcore() -> ReplayBuffer:
    return ReplayBuffer(CAPACITY, NUM_ENVS, device="cpu")


def make_sb3() -> SB3ReplayBuffer:
    observation_space = spaces.Box(-np.inf, np.inf, (OBS_DIM,), np.float32)
    return SB3ReplayBuffer(CAPACITY, observation_space, spaces.Discrete(NUM_ACTIONS), device="cpu", n_envs=NUM_ENVS)


def make_rlcore_numpy_path() -> ReplayBuffer:
    """rlcore's buffer with the C step writer off: ``add`` takes its numpy path."""
    buffer = make_rlcore()
    buffer._make_writer = lambda: None  # type: ignore[method-assign]
    return buffer


def rlcore_adder(buffer: ReplayBuffer, steps: list[Step]) -> Callable[[int], None]:
    def add(iters: int) -> None:
        for i in range(iters):
            buffer.add(steps[i % POOL])

    return add


def sb3_adder(buffer: SB3ReplayBuffer, steps: list[Step]) -> Callable[[int], None]:
    # SB3 takes done = terminated | truncated and reads truncation from infos["TimeLimit.truncated"]
    sb3_steps = [(s["obs"], s["next_obs"], s["action"], s["reward"], s["terminated"] | s["truncated"]) for s in steps]
    infos: list[dict[str, Any]] = [{} for _ in range(NUM_ENVS)]

    def add(iters: int) -> None:
        for i in range(iters):
            obs, next_obs, action, reward, done = sb3_steps[i % POOL]
            buffer.add(obs, next_obs, action, reward, done, infos)

    return add


def floor_adder(steps: list[Step]) -> Callable[[int], None]:
    """Six numpy row assignments per call into preallocated columns: no buffer logic (see the module doc)."""
    per_env = CAPACITY // NUM_ENVS
    obs_c, action_c, reward_c, next_obs_c, terminated_c, truncated_c = (
        np.zeros((per_env, *steps[0][key].shape), dtype=steps[0][key].dtype)
        for key in ("obs", "action", "reward", "next_obs", "terminated", "truncated")
    )

    def add(iters: int) -> None:
        for i in range(iters):
            step, row = steps[i % POOL], i % per_env
            obs_c[row] = step["obs"]
            action_c[row] = step["action"]
            reward_c[row] = step["reward"]
            next_obs_c[row] = step["next_obs"]
            terminated_c[row] = step["terminated"]
            truncated_c[row] = step["truncated"]

    return add


def make_chunks(steps: list[Step], chunk: int) -> list[Step]:
    """The pool cut into runs of ``chunk`` consecutive steps, each key stacked to ``[chunk, NUM_ENVS, ...]``."""
    return [{key: np.stack([step[key] for step in steps[start : start + chunk]]) for key in steps[0]}
            for start in range(0, len(steps) - chunk + 1, chunk)]


def rlcore_extender(buffer: ReplayBuffer, chunks: list[Step]) -> Callable[[int], None]:
    chunk = len(chunks[0]["obs"])

    def extend(iters: int) -> None:  # iters vector steps, in chunks
        for i in range(iters // chunk):
            buffer.extend(chunks[i % len(chunks)])

    return extend


def sb3_extender(buffer: SB3ReplayBuffer, chunks: list[Step]) -> Callable[[int], None]:
    chunk = len(chunks[0]["obs"])
    sb3_chunks = [(c["obs"], c["next_obs"], c["action"], c["reward"], c["terminated"] | c["truncated"]) for c in chunks]
    infos: list[list[dict[str, Any]]] = [[{} for _ in range(NUM_ENVS)] for _ in range(chunk)]

    def extend(iters: int) -> None:
        for i in range(iters // chunk):
            obs, next_obs, action, reward, done = sb3_chunks[i % len(sb3_chunks)]
            buffer.extend(obs, next_obs, action, reward, done, infos)

    return extend


def describe(batch: dict[str, torch.Tensor] | tuple[torch.Tensor, ...]) -> dict[str, str]:
    """``{name: "dtype [shape]"}`` of a sampled batch (SB3's is a NamedTuple of tensors; its unused fields are None)."""
    items = batch.items() if isinstance(batch, dict) else batch._asdict().items()  # type: ignore[union-attr]
    return {name: f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}" for name, t in items if t is not None}


def rlcore_sampler(buffer: ReplayBuffer) -> Callable[[int], None]:
    generator = torch.Generator().manual_seed(0)

    def sample(iters: int) -> None:
        for _ in range(iters):
            buffer.sample(BATCH_SIZE, generator)

    return sample


def sb3_sampler(buffer: SB3ReplayBuffer) -> Callable[[int], None]:
    np.random.seed(0)  # SB3 samples from numpy's global generator

    def sample(iters: int) -> None:
        for _ in range(iters):
            buffer.sample(BATCH_SIZE)

    return sample


def ops_per_second(runs: dict[str, Callable[[int], None]], iters: int, repeats: int, what: str) -> dict[str, float]:
    """Median over ``repeats`` of ``iters / seconds`` per library; the order alternates per repeat."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for name in names:  # warm-up
        runs[name](min(iters, 200))
    for repeat in range(repeats):
        for name in names if repeat % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runs[name](iters)
            rates[name].append(iters / (time.perf_counter() - start))
    medians = {name: statistics.median(values) for name, values in rates.items()}
    summary = ", ".join(f"{name} {rate:,.0f}/s" for name, rate in medians.items())
    print(f"{what}: {summary}", file=sys.stderr, flush=True)
    return medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--iters", type=int, default=20_000, help="calls per timed measurement")
    parser.add_argument("--repeats", type=int, default=7, help="timed measurements per library and operation")
    parser.add_argument("--chunk", type=int, default=16, help="vector steps per extend() call")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (500 calls, 3 repeats)")
    args = parser.parse_args(argv)
    iters, repeats = (500, 3) if args.quick else (args.iters, args.repeats)
    if not 1 <= args.chunk <= min(iters, POOL):
        parser.error(f"--chunk must be in [1, {min(iters, POOL)}]")
    torch.set_num_threads(1)
    steps = make_steps(POOL)

    # adds: fresh buffers, filled past capacity over the repeats (the ring wraps around)
    fast = make_rlcore()
    rlcore_adder(fast, steps)(1)
    if fast._writer is None:
        print("warning: rlcore's C step writer is not built; rlcore's add is its numpy path", file=sys.stderr)
    add_rates = ops_per_second({"rlcore": rlcore_adder(fast, steps), "sb3": sb3_adder(make_sb3(), steps),
                                "add_numpy": rlcore_adder(make_rlcore_numpy_path(), steps),
                                "add_floor": floor_adder(steps)}, iters, repeats, "add")
    chunks = make_chunks(steps, args.chunk)
    extend_rates = ops_per_second({"rlcore": rlcore_extender(make_rlcore(), chunks),
                                   "sb3": sb3_extender(make_sb3(), chunks)},
                                  iters - iters % args.chunk, repeats, f"extend({args.chunk} steps), per step")

    # samples: full buffers
    rl_buffer, sb3_buffer = make_rlcore(), make_sb3()
    per_env = CAPACITY // NUM_ENVS
    rlcore_adder(rl_buffer, steps)(per_env)
    sb3_adder(sb3_buffer, steps)(per_env)
    assert len(rl_buffer) == CAPACITY and sb3_buffer.full
    returns = {"rlcore": describe(rl_buffer.sample(BATCH_SIZE, torch.Generator().manual_seed(0))),
               "sb3": describe(sb3_buffer.sample(BATCH_SIZE))}
    sample_rates = ops_per_second({"rlcore": rlcore_sampler(rl_buffer), "sb3": sb3_sampler(sb3_buffer)},
                                  iters, repeats, f"sample({BATCH_SIZE})")

    result = {
        "benchmark": "replay_vs_sb3",
        "add_ops_per_s": {name: round(rate, 1) for name, rate in add_rates.items()},
        "extend_steps_per_s": {name: round(rate, 1) for name, rate in extend_rates.items()},
        "sample_ops_per_s": {name: round(rate, 1) for name, rate in sample_rates.items()},
        "add_ratio": round(add_rates["rlcore"] / add_rates["sb3"], 3),
        "add_numpy_ratio": round(add_rates["add_numpy"] / add_rates["sb3"], 3),
        "add_floor_ratio": round(add_rates["add_floor"] / add_rates["sb3"], 3),
        "step_writer": fast._writer is not None,
        "extend_ratio": round(extend_rates["rlcore"] / extend_rates["sb3"], 3),
        "sample_ratio": round(sample_rates["rlcore"] / sample_rates["sb3"], 3),
        "target_ratio": 5.0,
        "sample_returns": returns,
        "settings": {"capacity": CAPACITY, "num_envs": NUM_ENVS, "obs_shape": [OBS_DIM], "batch_size": BATCH_SIZE,
                     "extend_chunk": args.chunk,
                     "iters": iters, "repeats": repeats, "device": "cpu", "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "sb3": stable_baselines3.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
