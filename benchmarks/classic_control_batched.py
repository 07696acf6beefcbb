"""Env steps per second: the batched classic-control envs (envs/classic_control.py) vs gymnasium's env objects in
rlcore's sync vector env (what ``make_vec_env`` built before, and still builds with ``batched=False``) and in
gymnasium's own ``SyncVectorEnv``, side by side in one process (issue 21).

For each id and each ``--num-envs``, the three step the same random actions (uniform over the action space) from
the same seeds, in alternating rounds (``--rounds``); the median of each is reported. The first batched step
(numba compilation or loading its cache) happens before timing.

Prints one JSON line to stdout.

    OMP_NUM_THREADS=1 python benchmarks/classic_control_batched.py [--num-envs 1,8,16] [--steps 2000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv  # noqa: E402

from envs.classic_control import RULES  # noqa: E402
from rlcore.env import make_vec_env  # noqa: E402

IDS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1"]


def random_actions(envs: VectorEnv, steps: int, rng: np.random.Generator) -> np.ndarray:
    """``[T, N]`` integer or ``[T, N, 1]`` float32 actions drawn uniformly from the action space."""
    space = envs.single_action_space
    if isinstance(space, gym.spaces.Discrete):
        return rng.integers(0, int(space.n), (steps, envs.num_envs))
    return rng.uniform(space.low, space.high, (steps, envs.num_envs, *space.shape)).astype(np.float32)


def steps_per_second(envs: VectorEnv, actions: np.ndarray) -> float:
    """Env steps per second of stepping ``actions`` (all sub-envs count)."""
    start = time.perf_counter()
    for step_actions in actions:
        envs.step(step_actions)
    return actions.shape[0] * actions.shape[1] / (time.perf_counter() - start)


def measure(env_id: str, num_envs: int, steps: int, rounds: int) -> dict[str, object]:
    contenders: dict[str, tuple[VectorEnv, int]] = {
        "gymnasium_sync_vector": (SyncVectorEnv([lambda: gym.make(env_id)] * num_envs,
                                                autoreset_mode=AutoresetMode.SAME_STEP), steps),
        "rlcore_gymnasium_envs": (make_vec_env(env_id, num_envs, batched=False), steps),
        "batched": (make_vec_env(env_id, num_envs), 10 * steps),  # faster: more steps for a steady time
    }
    assert type(contenders["batched"][0]).__name__ == "ClassicControlVectorEnv"
    rng = np.random.default_rng(0)
    figures: dict[str, list[float]] = {name: [] for name in contenders}
    for envs, _ in contenders.values():
        envs.reset(seed=0)
        envs.step(random_actions(envs, 1, rng)[0])  # compile / warm up
    for round_index in range(rounds):
        order = list(contenders.items())
        if round_index % 2:
            order.reverse()
        for name, (envs, count) in order:
            figures[name].append(steps_per_second(envs, random_actions(envs, count, rng)))
    medians = {name: statistics.median(values) for name, values in figures.items()}
    return {"env": env_id, "num_envs": num_envs, "env_steps_per_s": {k: round(v) for k, v in medians.items()},
            "ratio_vs_rlcore_gymnasium_envs": round(medians["batched"] / medians["rlcore_gymnasium_envs"], 1),
            "ratio_vs_gymnasium_sync_vector": round(medians["batched"] / medians["gymnasium_sync_vector"], 1)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ids", default=",".join(IDS))
    parser.add_argument("--num-envs", default="1,8,16", help="comma-separated vector sizes")
    parser.add_argument("--steps", type=int, default=2_000, help="vector steps per round (batched: 10x this)")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    ids = args.ids.split(",")
    unknown = sorted(set(ids) - set(RULES))
    if unknown:
        raise SystemExit(f"no batched implementation of {unknown}; these have one: {sorted(RULES)}")
    results = [measure(env_id, int(n), args.steps, args.rounds) for env_id in ids for n in args.num_envs.split(",")]
    print(json.dumps({
        "benchmark": "classic_control_batched", "rounds": args.rounds, "results": results,
        "load_average_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
        "versions": {"python": platform.python_version(), "numpy": np.__version__, "gymnasium": gym.__version__},
    }))


if __name__ == "__main__":
    main()
