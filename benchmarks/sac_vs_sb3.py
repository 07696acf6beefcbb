"""SAC and TD3 training throughput and final return on Pendulum-v1: rlcore (kernel and autograd) vs Stable-Baselines3,
same process, same settings.

What is compared: wall-clock env steps per second of a whole training run (construction of the env, networks and
replay buffer included) of ``rlcore.train(algo, ...)`` with its CPU kernel (``fast_path=True``, the default), of the
same with ``fast_path=False`` (the autograd reference: is the kernel worth having?) and of SB3's
``SAC``/``TD3("MlpPolicy", ...).learn(...)``, all with rl-zoo's tuned Pendulum-v1 hyperparameters (the ones in
``rlcore/presets/{sac,td3}.yaml``, passed explicitly to both libraries), on the CPU with one torch thread, with
evaluation, checkpoints, logging files and progress bars off. The script sets ``OMP_NUM_THREADS=1`` before importing
numpy (unless it is set): rlcore's kernel multiplies matrices in numpy.

After each run its final policy is evaluated deterministically on 10 episodes (seeds 10_000 + i, the same for both
libraries); ``final_return`` is the median over seeds and ``returns`` lists them, so learning can be compared with
SB3's seed spread ("equal learning").

How: one short untimed warm-up run per runner first (start-up costs), then for each seed every runner trains for
``--steps`` env steps, the order rotating per seed so slow drifts of the machine cancel. The figure per runner is the
median over seeds of ``env steps / seconds``; ``ratio`` is rlcore's (kernel) over SB3's, ``kernel_ratio`` the
kernel's over autograd's. ``--steps`` below rl-zoo's 20k with ``--learning-starts`` is a throughput check only (say
``--learning-starts 1000``: rl-zoo's TD3 collects 10k random steps before its first update).

Each run's CPU time (``time.process_time``) is recorded too: ``cpu_ratio`` is SB3's median CPU seconds over rlcore's
(on a machine shared with other jobs it leaves out the time the process waited for a core).

Prints one JSON line per algorithm to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 python benchmarks/sac_vs_sb3.py [--algos sac td3] [--steps 20000]
        [--seeds 3] [--first-seed 0] [--learning-starts N] [--runners rlcore rlcore_fp32 rlcore_autograd sb3] [--quick]
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

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import SAC, TD3  # noqa: E402
from stable_baselines3.common.noise import NormalActionNoise  # noqa: E402

import rlcore  # noqa: E402
from rlcore.presets import load_preset  # noqa: E402

ENV_ID = "Pendulum-v1"
EVAL_EPISODES = 10
EVAL_SEED = 10_000
WARMUP_STEPS = 600
SB3_CLASSES = {"sac": SAC, "td3": TD3}
RLCORE_ONLY = {"net_arch", "action_noise", "noise_std", "lr_schedule"}
"""Preset keys that SB3 takes in another form (policy_kwargs, an action-noise object)."""


def settings(algo: str, learning_starts: int | None) -> dict[str, Any]:
    """rl-zoo's Pendulum-v1 setting of ``algo`` (rlcore's preset), with ``learning_starts`` replaced if given."""
    algo_settings = dict(load_preset(algo, ENV_ID)["algo"])
    if learning_starts is not None:
        algo_settings["learning_starts"] = learning_starts
    return algo_settings


def evaluate(policy: Callable[[np.ndarray], np.ndarray]) -> float:
    """Mean return of ``policy`` (deterministic) over the evaluation episodes."""
    env = gym.make(ENV_ID)
    returns = []
    for episode in range(EVAL_EPISODES):
        obs, _ = env.reset(seed=EVAL_SEED + episode)
        done, total = False, 0.0
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def run_rlcore(algo: str, algo_settings: dict[str, Any], steps: int, seed: int, fast_path: bool, **options: Any
               ) -> tuple[float, float, float]:
    """``(wall seconds, CPU seconds, final return)`` of one rlcore run of ``steps`` env steps (``options``: more
    settings, e.g. ``amp``)."""
    start, start_cpu = time.perf_counter(), time.process_time()
    agent = rlcore.train(algo, ENV_ID, total_env_steps=steps, seed=seed, device="cpu", eval_freq=0, checkpoint_freq=0,
                         log_dir=None, progress_bar=False, fast_path=fast_path, **algo_settings, **options)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return elapsed, cpu, evaluate(lambda obs: agent.predict(obs[None])[0])


def run_sb3(algo: str, algo_settings: dict[str, Any], steps: int, seed: int) -> tuple[float, float, float]:
    """``(wall seconds, CPU seconds, final return)`` of one SB3 run of ``steps`` env steps."""
    start, start_cpu = time.perf_counter(), time.process_time()
    kwargs = {key: value for key, value in algo_settings.items() if key not in RLCORE_ONLY}
    if algo_settings.get("action_noise") == "normal":
        kwargs["action_noise"] = NormalActionNoise(np.zeros(1), algo_settings["noise_std"] * np.ones(1))
    policy_kwargs = {"net_arch": algo_settings.get("net_arch", [256, 256])}
    model = SB3_CLASSES[algo]("MlpPolicy", ENV_ID, policy_kwargs=policy_kwargs, device="cpu", seed=seed, verbose=0,
                              **kwargs)
    model.learn(total_timesteps=steps)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - start_cpu
    return elapsed, cpu, evaluate(lambda obs: model.predict(obs, deterministic=True)[0])


def all_runners(algo: str, algo_settings: dict[str, Any]) -> dict[str, Callable[[int, int, dict[str, Any]],
                                                                               tuple[float, float, float]]]:
    """Each runner by name: ``(steps, seed, settings) -> (wall s, CPU s, final return)``."""
    return {
        "rlcore": lambda n, seed, given: run_rlcore(algo, given, n, seed, True),
        "rlcore_fp32": lambda n, seed, given: run_rlcore(algo, given, n, seed, True, amp=None),
        "rlcore_autograd": lambda n, seed, given: run_rlcore(algo, given, n, seed, False),
        "sb3": lambda n, seed, given: run_sb3(algo, given, n, seed),
    }


def compare(algo: str, steps: int, seeds: int, learning_starts: int | None,
            runner_names: list[str] | None = None, first_seed: int = 0) -> dict[str, Any]:
    """Runs the runners (all by default) on ``seeds`` seeds from ``first_seed``; the JSON-ready result."""
    algo_settings = settings(algo, learning_starts)
    every = all_runners(algo, algo_settings)
    runners = {name: every[name] for name in (runner_names or list(every))}
    warmup = {**algo_settings, "learning_starts": 100}
    for runner in runners.values():
        runner(WARMUP_STEPS, 1_000, warmup)
    print(f"{algo}: warm-up done", file=sys.stderr, flush=True)
    seconds: dict[str, list[float]] = {name: [] for name in runners}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in runners}
    returns: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    for seed in range(first_seed, first_seed + seeds):
        for name in names[seed % len(names):] + names[: seed % len(names)]:
            elapsed, cpu, final = runners[name](steps, seed, algo_settings)
            seconds[name].append(elapsed)
            cpu_seconds[name].append(cpu)
            returns[name].append(final)
            print(f"{algo} seed {seed} {name}: {elapsed:.1f}s, {cpu:.1f} CPU s ({steps / elapsed:.0f} steps/s), "
                  f"final return {final:.0f}", file=sys.stderr, flush=True)
    rate = {name: statistics.median(steps / s for s in times) for name, times in seconds.items()}
    cpu = {name: statistics.median(times) for name, times in cpu_seconds.items()}
    return {
        "benchmark": "sac_vs_sb3",
        "algo": algo,
        "env": ENV_ID,
        "steps_per_s": {name: round(value, 1) for name, value in rate.items()},
        **ratios(rate, cpu),
        "target_ratio": 2.5,
        "final_return": {name: round(statistics.median(values), 1) for name, values in returns.items()},
        "returns": {name: [round(value, 1) for value in values] for name, values in returns.items()},
        "seconds": {name: [round(s, 2) for s in times] for name, times in seconds.items()},
        "settings": {"steps": steps, "seeds": list(range(first_seed, first_seed + seeds)), **algo_settings,
                     "device": "cpu", "torch_threads": torch.get_num_threads()},
        "versions": {"torch": torch.__version__, "sb3": stable_baselines3.__version__,
                     "python": platform.python_version()},
    }


def ratios(rate: dict[str, float], cpu: dict[str, float]) -> dict[str, float]:
    """rlcore's (its defaults) speed over each other runner's that ran: ``ratio`` and ``cpu_ratio`` over SB3's (wall
    and CPU time), ``kernel_ratio`` over the autograd reference's, ``amp_ratio`` over float32's (``amp=None``)."""
    result = {}
    for key, peer in (("ratio", "sb3"), ("kernel_ratio", "rlcore_autograd"), ("amp_ratio", "rlcore_fp32")):
        if "rlcore" in rate and peer in rate:
            result[key] = round(rate["rlcore"] / rate[peer], 3)
    for key, peer in (("cpu_ratio", "sb3"), ("amp_cpu_ratio", "rlcore_fp32")):
        if "rlcore" in cpu and peer in cpu:
            result[key] = round(cpu[peer] / cpu["rlcore"], 3)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--algos", nargs="+", default=["sac", "td3"], choices=sorted(SB3_CLASSES))
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per training run")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds (0 .. seeds-1)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--learning-starts", type=int, default=None, help="replaces rl-zoo's learning_starts")
    parser.add_argument("--quick", action="store_true", help="throughput smoke run (1.5k steps, updates from 500)")
    parser.add_argument("--runners", nargs="+", default=None,
                        choices=["rlcore", "rlcore_fp32", "rlcore_autograd", "sb3"],
                        help="which runners (default: all; rlcore_fp32 is the kernel with amp=None)")
    args = parser.parse_args(argv)
    steps, seeds, learning_starts = ((1_500, 1, 500) if args.quick else
                                     (args.steps, args.seeds, args.learning_starts))
    torch.set_num_threads(1)
    for algo in args.algos:
        print(json.dumps(compare(algo, steps, seeds, learning_starts, args.runners, args.first_seed)), flush=True)


if __name__ == "__main__":
    main()
