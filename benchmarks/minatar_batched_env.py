"""Env steps per second: a batched MinAtar game (``envs/minatar_breakout.py``, or with ``--env`` another of
``envs/minatar_*.py``) vs the ``minatar`` package through gymnasium's ``SyncVectorEnv``, side by side in one process
(issue 19: >= 10x at 64 envs).

Both step the same random actions (full action set, sticky actions 0.1, same-step autoreset) from the same seeds;
the two are timed in alternating rounds (``--rounds``) and the median of each is reported, so that a change in the
machine's load hits both. The first batched step (numba compilation, or loading its cache) is done before timing.

Prints one JSON line to stdout.

    OMP_NUM_THREADS=1 python benchmarks/minatar_batched_env.py [--env rlcore/MinAtar-Freeway-v0] [--num-envs 64]
        [--steps 2000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv  # noqa: E402

import rlcore  # noqa: E402, F401  (registers the ids)
from envs.minatar_vector import MinAtarVectorEnv  # noqa: E402
from rlcore.env import BATCHED_ENVS, make_vec_env  # noqa: E402

ENV_IDS = tuple(env_id for env_id in BATCHED_ENVS if env_id.startswith("rlcore/MinAtar-"))
"""The MinAtar ids with a batched implementation."""


def make_reference(env_id: str, num_envs: int) -> VectorEnv:
    """The minatar package's game per sub-env, in gymnasium's sync vector env (rlcore's vectorization before)."""
    return SyncVectorEnv([lambda: gym.make(env_id)] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)


def steps_per_second(envs: VectorEnv, actions: np.ndarray) -> float:
    """Env steps per second of stepping ``actions [T, N]`` (all sub-envs count)."""
    start = time.perf_counter()
    for step_actions in actions:
        envs.step(step_actions)
    return actions.size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--env", choices=ENV_IDS, default=ENV_IDS[0])
    parser.add_argument("--num-envs", type=int, default=64)
    parser.add_argument("--steps", type=int, default=2_000, help="vector steps per round (batched: 10x this)")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    contenders: dict[str, tuple[VectorEnv, int]] = {
        "minatar_sync_vector": (make_reference(args.env, args.num_envs), args.steps),
        "batched": (make_vec_env(args.env, args.num_envs), 10 * args.steps),  # faster: more steps for a steady time
    }
    assert isinstance(contenders["batched"][0], MinAtarVectorEnv)
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for envs, _ in contenders.values():
        envs.reset(seed=0)
        envs.step(np.zeros(args.num_envs, dtype=np.int64))  # compile / warm up
    for round_index in range(args.rounds):
        order: list[tuple[str, tuple[VectorEnv, int]]] = list(contenders.items())
        if round_index % 2:
            order.reverse()
        for name, (envs, steps) in order:
            actions = rng.integers(0, 6, (steps, args.num_envs))
            figures[name].append(steps_per_second(envs, actions))
    median: Callable[[list[float]], float] = statistics.median
    reference, batched = median(figures["minatar_sync_vector"]), median(figures["batched"])
    print(json.dumps({
        "benchmark": "minatar_batched_env", "env": args.env, "num_envs": args.num_envs, "rounds": args.rounds,
        "env_steps_per_s": {"minatar_sync_vector": round(reference), "batched": round(batched)},
        "per_round": {name: [round(value) for value in values] for name, values in figures.items()},
        "ratio": round(batched / reference, 1), "target_ratio": 10.0, "meets_target": batched / reference >= 10.0,
        "load_average_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "gymnasium": gym.__version__},
    }))


if __name__ == "__main__":
    main()
