"""Replay-buffer hot path: rlcore's ``ReplayBuffer`` vs SB3's ``ReplayBuffer``, same process.

What is compared, on the CPU with one torch thread, for CartPole-shaped data from 8 envs
(obs/next_obs float32 ``[8, 4]``, a discrete action int64 ``[8]``, reward float32 ``[8]``,
terminated/truncated bool ``[8]``) and the same capacity (100k transitions, 12.5k per env):

- ``add``: one vector step of 8 transitions, numpy in (what a collector hands over).
  rlcore: ``buffer.add({"obs": ..., "action": ..., "reward": ..., "next_obs": ...,
  "terminated": ..., "truncated": ...})``; SB3: ``buffer.add(obs, next_obs, action, reward,
  done, infos)`` with a prebuilt list of 8 empty info dicts (its cheapest case).
- ``sample(256)``: a uniform minibatch of 256 transitions from a full buffer, returned as
  torch tensors on the CPU. rlcore: ``buffer.sample(256, generator)`` (default
  ``UniformSampler``, n_step=1); SB3: ``buffer.sample(256)``.

How: each measurement times ``--iters`` consecutive calls with ``time.perf_counter`` and is
repeated ``--repeats`` times, alternating which library goes first; the figure reported is
the median over repeats of calls per second. ``*_ratio`` is rlcore's ops/s over SB3's. The
data added is a pool of pregenerated random steps, cycled, so its creation is not timed.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/replay_vs_sb3.py [--iters 20000] [--repeats 7] [--quick]
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
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (500 calls, 3 repeats)")
    args = parser.parse_args(argv)
    iters, repeats = (500, 3) if args.quick else (args.iters, args.repeats)
    torch.set_num_threads(1)
    steps = make_steps(POOL)

    # adds: fresh buffers, filled past capacity over the repeats (the ring wraps around)
    add_rates = ops_per_second({"rlcore": rlcore_adder(make_rlcore(), steps), "sb3": sb3_adder(make_sb3(), steps)},
                               iters, repeats, "add")

    # samples: full buffers
    rl_buffer, sb3_buffer = make_rlcore(), make_sb3()
    per_env = CAPACITY // NUM_ENVS
    rlcore_adder(rl_buffer, steps)(per_env)
    sb3_adder(sb3_buffer, steps)(per_env)
    assert len(rl_buffer) == CAPACITY and sb3_buffer.full
    sample_rates = ops_per_second({"rlcore": rlcore_sampler(rl_buffer), "sb3": sb3_sampler(sb3_buffer)},
                                  iters, repeats, f"sample({BATCH_SIZE})")

    result = {
        "benchmark": "replay_vs_sb3",
        "add_ops_per_s": {name: round(rate, 1) for name, rate in add_rates.items()},
        "sample_ops_per_s": {name: round(rate, 1) for name, rate in sample_rates.items()},
        "add_ratio": round(add_rates["rlcore"] / add_rates["sb3"], 3),
        "sample_ratio": round(sample_rates["rlcore"] / sample_rates["sb3"], 3),
        "target_ratio": 5.0,
        "settings": {"capacity": CAPACITY, "num_envs": NUM_ENVS, "obs_shape": [OBS_DIM], "batch_size": BATCH_SIZE,
                     "iters": iters, "repeats": repeats, "device": "cpu", "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "sb3": stable_baselines3.__version__, "numpy": np.__version__,
                     "python": platform.python_version()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
