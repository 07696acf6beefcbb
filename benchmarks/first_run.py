"""A new user's first run: the README's first training command, as a subprocess, against SB3 and the old default.

The command is read from README.md (the ``rlcore train ...`` part of its first command, as ``.ci/readme_commands.py``
gives it to CI, e.g. ``rlcore train dqn CartPole-v1``) and run as ``python -m rlcore.cli train ...`` in a fresh
temporary folder (its ``runs/`` lands there), with every thread variable (``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``) removed from its environment, as on a fresh machine. Variants:

- ``rlcore``: the command as written (rlcore's default, ``threads="auto"``);
- ``rlcore_unlimited``: ``--set threads=null``, rlcore leaving torch and numpy at their own defaults (every
  core each): what the command did before rlcore chose threads;
- ``rlcore_omp1``: the command with ``OMP_NUM_THREADS=1 MKL_NUM_THREADS=1`` set, what the tests use;
- ``sb3``: Stable-Baselines3's DQN with the same settings (rl-zoo's CartPole-v1 DQN, which rlcore's preset is;
  an ``EvalCallback`` of 10 deterministic episodes every 2,500 env steps, as the preset evaluates) at SB3's own
  defaults otherwise (no thread setting, no logging files), also a subprocess with no thread variables.

Each variant's figure is the wall time of the whole process (start-up, imports, training, evaluations and, for
rlcore, its default TensorBoard files and checkpoints), the median over ``--repeats`` rounds whose order
rotates. ``speedup_vs_unlimited`` (target >= 8), ``vs_omp1`` (rlcore's time over the OMP_NUM_THREADS=1 time;
target <= 1.15) and ``speedup_vs_sb3`` (target >= 2) are ratios of those medians. The CPU seconds of each child
(user + system) are recorded too: on a shared machine they show what the wall times lose to waiting.

Prints one JSON line to stdout; progress goes to stderr.

    python benchmarks/first_run.py [--steps 50000] [--repeats 1] [--variants rlcore,rlcore_unlimited,...] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import resource
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""As rlcore.threads.THREAD_VARIABLES (not imported: this script must not load torch before its children)."""
SB3_SETTINGS: dict[str, Any] = {
    "learning_rate": 2.3e-3, "batch_size": 64, "buffer_size": 100_000, "learning_starts": 1_000, "gamma": 0.99,
    "target_update_interval": 10, "train_freq": 256, "gradient_steps": 128, "exploration_fraction": 0.16,
    "exploration_final_eps": 0.04, "policy_kwargs": {"net_arch": [256, 256]},
}
"""rl-zoo's CartPole-v1 DQN, the settings of rlcore's dqn.yaml preset."""
EVAL_FREQ, EVAL_EPISODES, PRESET_STEPS = 2_500, 10, 50_000
VARIANTS = ("rlcore", "rlcore_unlimited", "rlcore_omp1", "sb3")


def readme_train_command(readme: Path = ROOT / "README.md") -> list[str]:
    """The ``rlcore train ...`` words of the README's first command (as .ci/run reads it)."""
    spec = importlib.util.spec_from_file_location("readme_commands", ROOT / ".ci" / "readme_commands.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    first = module.readme_commands(readme)[0]
    match = re.search(r"(?:^|&&)\s*(rlcore train [^&]*)", first.split("#", 1)[0])
    if match is None:
        raise SystemExit(f"the README's first command has no 'rlcore train' part: {first}")
    return shlex.split(match.group(1))


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    return {**env, **extra}


def variant_command(variant: str, words: list[str], steps: int | None) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` of one variant's child process."""
    if variant == "sb3":
        return ([sys.executable, __file__, "--sb3-child", "--steps", str(steps or PRESET_STEPS)], clean_env())
    argv = [sys.executable, "-m", "rlcore.cli", *words[1:]] + (["--steps", str(steps)] if steps else [])
    if variant == "rlcore_unlimited":
        return argv + ["--set", "threads=null"], clean_env()
    if variant == "rlcore_omp1":
        return argv, clean_env(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return argv, clean_env()


def timed_child(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """``(wall seconds, CPU seconds)`` of one child process, run in a fresh temporary folder."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory(prefix="rlcore-first-run-") as folder:
        env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))}
        start = time.perf_counter()
        result = subprocess.run(argv, env=env, cwd=folder, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({result.returncode}):\n{result.stderr[-3000:]}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def sb3_child(steps: int) -> None:
    """Trains SB3's DQN at its defaults (the process's thread defaults included), with the preset's evaluation."""
    import gymnasium as gym
    from stable_baselines3 import DQN
    from stable_baselines3.common.callbacks import EvalCallback

    model = DQN("MlpPolicy", "CartPole-v1", seed=0, **SB3_SETTINGS)
    callback = EvalCallback(gym.make("CartPole-v1"), n_eval_episodes=EVAL_EPISODES, eval_freq=EVAL_FREQ,
                            deterministic=True, verbose=0)
    model.learn(total_timesteps=steps, callback=callback)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="env steps (default: the command's own, the preset's 50,000)")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of all variants (default: %(default)s)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated subset of " + ", ".join(VARIANTS))
    parser.add_argument("--quick", action="store_true", help="smoke run: 3,000 steps, one round")
    parser.add_argument("--sb3-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sb3_child:
        sb3_child(args.steps)
        return
    steps = 3_000 if args.quick else args.steps
    variants = args.variants.split(",")
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    words = readme_train_command()
    walls: dict[str, list[float]] = {variant: [] for variant in variants}
    cpus: dict[str, list[float]] = {variant: [] for variant in variants}
    load_before = os.getloadavg()
    for round_index in range(1 if args.quick else args.repeats):
        shift = round_index % len(variants)
        for variant in variants[shift:] + variants[:shift]:
            wall, cpu = timed_child(*variant_command(variant, words, steps))
            walls[variant].append(wall)
            cpus[variant].append(cpu)
            print(f"round {round_index}: {variant} {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    median = {variant: statistics.median(values) for variant, values in walls.items()}
    ratios: dict[str, float] = {}
    if "rlcore" in median:
        for name, other, key in (("speedup_vs_unlimited", "rlcore_unlimited", True), ("vs_omp1", "rlcore_omp1", False),
                                 ("speedup_vs_sb3", "sb3", True)):
            if other in median:
                ratio = median[other] / median["rlcore"] if key else median["rlcore"] / median[other]
                ratios[name] = round(ratio, 2)
    print(json.dumps({
        "benchmark": "first_run",
        "command": shlex.join(words) + (f" --steps {steps}" if steps else ""),
        "env_steps": steps or PRESET_STEPS,
        "wall_seconds": {variant: round(value, 2) for variant, value in median.items()},
        "wall_seconds_all": {variant: [round(value, 2) for value in values] for variant, values in walls.items()},
        "cpu_seconds": {variant: round(statistics.median(values), 2) for variant, values in cpus.items()},
        **ratios,
        "targets": {"speedup_vs_unlimited": ">= 8", "vs_omp1": "<= 1.15", "speedup_vs_sb3": ">= 2"},
        "load_average_before": [round(value, 2) for value in load_before],
        "load_average_after": [round(value, 2) for value in os.getloadavg()],
        "cores": os.cpu_count(),
        "versions": versions(),
    }))


def versions() -> dict[str, str]:
    from importlib import metadata

    from rlcore.logger import library_versions

    try:
        sb3 = metadata.version("stable-baselines3")
    except metadata.PackageNotFoundError:
        sb3 = "not installed"
    return {**library_versions(), "stable-baselines3": sb3}


if __name__ == "__main__":
    main()
