"""``rlcore.train`` on a GPU against the same runs on the same machine's CPU (issue 19's table), one JSON line.

Each row is one training run, timed on every device configuration in turn (evaluation, checkpoints, logs and the
progress bar off), after a short warm-up run of the same row on the same configuration that pays for CUDA's
start-up, numba's and torch's compilation. The rows, issue 19's acceptance first:

- ``cnn_ppo_gpu_variant``: PPO with the small CNN on MinAtar Breakout, the preset's GPU variant (``preset="gpu"``:
  64 envs, ``n_steps`` 64, 1,024-row minibatches, 8 epochs), what ``rlcore.train`` takes on CUDA;
- ``transformer_ppo_memory`` / ``lstm_ppo_memory``: PPO with a memory core on ``rlcore/Memory-v0`` (the settings of
  ``tests/test_learning_memory.py``, 8 envs);
- ``cnn_ppo_preset``: the CNN PPO with the preset itself (8 envs);
- ``dqn_cartpole``: DQN with its CartPole preset (the replay on the training device).

Configurations (``--configs``): ``cuda`` (rlcore's CUDA defaults: TF32 products), ``cuda_fp32`` (``tf32=False``),
``cuda_bf16`` (``amp="bf16"``, on-policy rows), ``cuda_compile`` (``compile=True``, on-policy rows), ``cpu1`` (one
thread) and ``cpu`` (every core of the machine). Reported per row: env steps/s of each configuration, the best CPU
configuration, and ``cuda / best CPU``. Configurations the machine cannot run (CUDA without a GPU) are skipped.

    python benchmarks/device_speed.py [--rows cnn_ppo_gpu_variant,...] [--configs cuda,cpu1,cpu] [--scale 1.0]
    python benchmarks/device_speed.py --quick      # a smoke run: every row on one CPU thread, tiny budgets
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import torch

import rlcore

MEMORY_PPO = {"n_steps": 64, "batch_size": 256, "n_epochs": 4, "learning_rate": 1e-3, "gamma": 0.99,
              "gae_lambda": 0.95, "ent_coef": 0.01, "sequence_length": 32, "context_length": 16, "memory_size": 64,
              "critic_memory": "shared", "num_envs": 8}

ROWS: dict[str, dict[str, Any]] = {
    "cnn_ppo_gpu_variant": {"algo": "ppo", "env": "rlcore/MinAtar-Breakout-v0", "steps": 131_072,
                            "settings": {"preset": "gpu"}},
    "transformer_ppo_memory": {"algo": "ppo", "env": "rlcore/Memory-v0", "steps": 4_096,
                               "settings": {**MEMORY_PPO, "memory": "transformer"}},
    "cnn_ppo_preset": {"algo": "ppo", "env": "rlcore/MinAtar-Breakout-v0", "steps": 65_536,
                       "settings": {"preset": "cpu"}},
    "lstm_ppo_memory": {"algo": "ppo", "env": "rlcore/Memory-v0", "steps": 4_096,
                        "settings": {**MEMORY_PPO, "memory": "lstm"}},
    "dqn_cartpole": {"algo": "dqn", "env": "CartPole-v1", "steps": 10_000, "settings": {}},
}
"""Row -> algorithm, env, timed env steps (at ``--scale`` 1) and settings on top of the env's preset; the rows of
issue 19's acceptance first."""

CONFIGS: dict[str, dict[str, Any]] = {
    "cuda": {"device": "cuda"},
    "cuda_fp32": {"device": "cuda", "tf32": False},
    "cuda_bf16": {"device": "cuda", "amp": "bf16"},
    "cuda_compile": {"device": "cuda", "compile": True},
    "cpu1": {"device": "cpu", "threads": 1},
    "cpu": {"device": "cpu", "threads": os.cpu_count() or 1},
}
"""Configuration -> its settings."""

ON_POLICY_ONLY = {"cuda_bf16", "cuda_compile"}
"""Configurations whose setting (``amp``, ``compile``) belongs to the on-policy algorithms."""


def train_rate(row: dict[str, Any], config: dict[str, Any], steps: int, seed: int) -> tuple[float, int]:
    """Env steps/s of one ``rlcore.train`` run of at least ``steps`` env steps (no evaluation, checkpoints or logs),
    and the env steps it took (whole rollouts)."""
    start = time.perf_counter()
    agent = rlcore.train(row["algo"], row["env"], total_env_steps=steps, seed=seed, eval_freq=0, checkpoint_freq=0,
                         log_dir=None, progress_bar=False, **row["settings"], **config)
    if config["device"] == "cuda":
        torch.cuda.synchronize()
    taken = agent.algo.env_steps
    return taken / (time.perf_counter() - start), taken


def warm_up_steps(row: dict[str, Any], steps: int) -> int:
    """A short run's env steps: two rollouts of the row's on-policy settings, else a tenth of ``steps``."""
    settings = row["settings"]
    if "n_steps" in settings:
        return 2 * settings["n_steps"] * settings["num_envs"]
    return max(steps // 10, 1_000)


def measure(rows: list[str], configs: list[str], scale: float, seed: int, warm_up: bool = True
            ) -> dict[str, dict[str, Any]]:
    """Env steps/s of every row on every configuration (each after a warm-up run unless ``warm_up=False``), the
    best CPU one and CUDA's ratio to it."""
    results: dict[str, dict[str, Any]] = {}
    for name in rows:
        row = ROWS[name]
        steps = max(int(row["steps"] * scale), 1_024)
        rates: dict[str, float] = {}
        taken = steps
        for config_name in configs:
            if config_name in ON_POLICY_ONLY and row["algo"] != "ppo":
                continue
            config = CONFIGS[config_name]
            if warm_up:
                train_rate(row, config, warm_up_steps(row, steps), seed)
            rate, taken = train_rate(row, config, steps, seed)
            rates[config_name] = round(rate, 1)
            sys.stderr.write(f"{name} on {config_name}: {rate:,.0f} env steps/s ({taken} env steps)\n")
        cpu_rates = {key: value for key, value in rates.items() if key.startswith("cpu")}
        result: dict[str, Any] = {"env_steps": taken, "env_steps_per_s": rates}
        if cpu_rates:
            best = max(cpu_rates, key=cpu_rates.__getitem__)
            result["best_cpu"] = best
            if "cuda" in rates:
                result["cuda_vs_best_cpu"] = round(rates["cuda"] / cpu_rates[best], 2)
        results[name] = result
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated, of {', '.join(ROWS)}")
    parser.add_argument("--configs", default="cuda,cuda_bf16,cpu1,cpu",
                        help=f"comma-separated, of {', '.join(CONFIGS)} (CUDA ones skipped without a GPU)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every row's timed env steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: every row, cpu1 only, tiny budgets")
    args = parser.parse_args()
    rows, configs = args.rows.split(","), args.configs.split(",")
    for given, known, what in ((rows, ROWS, "row"), (configs, CONFIGS, "configuration")):
        unknown = [item for item in given if item not in known]
        if unknown:
            parser.error(f"unknown {what} {unknown[0]!r}; known: {', '.join(known)}")
    if args.quick:
        configs, args.scale = ["cpu1"], 0.02
    cuda = torch.cuda.is_available()
    configs = [name for name in configs if cuda or CONFIGS[name]["device"] != "cuda"]
    record = {"benchmark": "device_speed", "device": torch.cuda.get_device_name(0) if cuda else "cpu only",
              "cpu_cores": os.cpu_count(), "torch": torch.__version__, "configs": configs,
              "rows": measure(rows, configs, args.scale, args.seed)}
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
