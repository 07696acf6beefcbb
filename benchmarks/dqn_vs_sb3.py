"""DQN training throughput on CartPole-v1: rlcore vs Stable-Baselines3, same process, same settings.

What is compared: wall-clock env steps per second of a whole training run (construction of the
env, networks and replay buffer included) of ``rlcore.train("dqn", ...)`` and of SB3's
``DQN("MlpPolicy", ...).learn(...)``, both with rl-zoo's tuned CartPole-v1 hyperparameters
(the ones in ``rlcore/presets/dqn.yaml``, passed explicitly to both libraries), on the CPU
with one torch thread, with evaluation, checkpoints, logging files and progress bars off.
rlcore runs part of its update's matrix products in numpy, whose OpenBLAS reads
``OMP_NUM_THREADS`` too: the script sets it to 1 before importing numpy (unless it is set), so
both libraries compute on one thread.

How: one short untimed warm-up run per library first (start-up costs), then for each seed
both libraries train for ``--steps`` env steps, the order alternating per seed (rlcore first
on even seeds, SB3 first on odd ones) so slow drifts of the machine cancel. Both loops
collect whole ``train_freq`` chunks, so a run makes ``ceil(steps / 256) * 256`` env steps
(20,224 for the default 20k), the count steps/s is computed from. The figure per library is
the median over seeds of ``env steps / seconds``; ``ratio`` is rlcore's over SB3's. With 20k
steps, learning starts at 1k and every 256 collected steps are followed by 128 gradient
steps, so the update phases dominate the time.

Each run's CPU time (``time.process_time``, this process only) is recorded too, and
``cpu_ratio`` is SB3's median CPU seconds over rlcore's: on a machine shared with other jobs it
leaves out the time the process waited for a core, though not the slowdown that the neighbours
cause through shared caches and memory.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/dqn_vs_sb3.py [--steps 20000] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import DQN  # noqa: E402

import rlcore  # noqa: E402

ENV_ID = "CartPole-v1"

HPARAMS: dict[str, Any] = {
    "learning_rate": 2.3e-3,
    "batch_size": 64,
    "buffer_size": 100_000,
    "learning_starts": 1_000,
    "gamma": 0.99,
    "target_update_interval": 10,
    "train_freq": 256,
    "gradient_steps": 128,
    "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04,
}
"""rl-zoo's CartPole-v1 DQN setting (shared); both libraries default to tau=1, max_grad_norm=10, eps0=1."""
NET_ARCH = [256, 256]
WARMUP_STEPS = 1_280
"""An untimed run per library first (a few update phases), so neither pays one-off start-up costs."""


def run_rlcore(steps: int, seed: int) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one rlcore DQN training run of ``steps`` env steps."""
    start, start_cpu = time.perf_counter(), time.process_time()
    rlcore.train(
        "dqn",
        ENV_ID,
        total_env_steps=steps,
        seed=seed,
        device="cpu",
        eval_freq=0,
        checkpoint_freq=0,
        log_dir=None,
        progress_bar=False,
        net_arch=NET_ARCH,
        **HPARAMS,
    )
    return time.perf_counter() - start, time.process_time() - start_cpu


def run_sb3(steps: int, seed: int) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one SB3 DQN training run of ``steps`` env steps."""
    start, start_cpu = time.perf_counter(), time.process_time()
    model = DQN(
        "MlpPolicy",
        ENV_ID,
        policy_kwargs={"net_arch": NET_ARCH},
        device="cpu",
        seed=seed,
        verbose=0,
        **HPARAMS,
    )
    model.learn(total_timesteps=steps)
    return time.perf_counter() - start, time.process_time() - start_cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per training run")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. seeds-1)")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run (2k steps, 1 seed)")
    args = parser.parse_args(argv)
    steps, seeds = (2_000, 1) if args.quick else (args.steps, args.seeds)
    torch.set_num_threads(1)

    runners: dict[str, Callable[[int, int], tuple[float, float]]] = {"rlcore": run_rlcore, "sb3": run_sb3}
    for name, runner in runners.items():  # untimed: lazy imports, first kernels, gym registration
        runner(WARMUP_STEPS, 1_000)
        print(f"warm-up {name} done", file=sys.stderr, flush=True)
    # both loops collect whole train_freq chunks: ceil(steps / train_freq) * train_freq env steps
    collected = math.ceil(steps / HPARAMS["train_freq"]) * HPARAMS["train_freq"]
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in runners}
    for seed in range(seeds):
        order = ["rlcore", "sb3"] if seed % 2 == 0 else ["sb3", "rlcore"]
        for name in order:
            elapsed, cpu = runners[name](steps, seed)
            seconds[name].append(elapsed)
            cpu_seconds[name].append(cpu)
            rate = collected / elapsed
            print(f"seed {seed} {name}: {elapsed:.2f}s, {cpu:.2f} CPU s ({rate:.0f} steps/s)", file=sys.stderr,
                  flush=True)

    steps_per_s = {name: statistics.median(collected / s for s in times) for name, times in seconds.items()}
    result = {
        "benchmark": "dqn_vs_sb3",
        "env": ENV_ID,
        "rlcore_steps_per_s": round(steps_per_s["rlcore"], 1),
        "sb3_steps_per_s": round(steps_per_s["sb3"], 1),
        "ratio": round(steps_per_s["rlcore"] / steps_per_s["sb3"], 3),
        "target_ratio": 2.0,
        "seconds": {name: [round(s, 3) for s in times] for name, times in seconds.items()},
        "cpu_seconds": {name: [round(s, 3) for s in times] for name, times in cpu_seconds.items()},
        "cpu_ratio": round(statistics.median(cpu_seconds["sb3"]) / statistics.median(cpu_seconds["rlcore"]), 3),
        "settings": {"steps": steps, "env_steps_collected": collected, "seeds": seeds, "net_arch": NET_ARCH, **HPARAMS,
                     "device": "cpu", "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "sb3": stable_baselines3.__version__,
                     "python": platform.python_version()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
