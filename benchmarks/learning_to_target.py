"""Whether an algorithm's preset reaches a return within an env-step budget, per seed: the long learning checks of the
issues (e.g. SAC >= 200 on LunarLanderContinuous-v3 within 300k env steps in 2 of 3 seeds) as one JSON line.

Each seed trains ``rlcore.train(algo, env)`` with the preset for ``env`` (``rlcore/presets/<algo>.yaml``) and
``total_env_steps=--budget`` (a preset's learning-rate schedule then spans the budget, as for a user who passes
``--steps``), evaluating with the preset's ``eval_freq``/``eval_episodes`` (deterministic episodes on a separate
env). A run stops at its first evaluation >= ``--target`` unless ``--full``. Reported per seed: whether and when
(env steps, seconds) the target was reached, the best evaluation, the curve and env steps/s.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/learning_to_target.py --algo sac --env LunarLanderContinuous-v3 \\
        --target 200 --budget 300000 [--seeds 3] [--jobs 3] [--full] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
import yaml  # noqa: E402

import rlcore  # noqa: E402
from rlcore.api import split_settings  # noqa: E402
from rlcore.callbacks import Callback  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402


class EvaluationsToStderr(Callback):
    """Prints every evaluation (progress of a long run)."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.start = time.perf_counter()

    def on_training_start(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()

    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        print(f"{self.label}: {trainer.env_steps} env steps, eval {metrics['eval/mean_reward']:.1f}, "
              f"{time.perf_counter() - self.start:.0f} s", file=sys.stderr, flush=True)


def run_seed(algo: str, env_id: str, seed: int, budget: int, target: float, full: bool,
             settings: dict[str, Any]) -> dict[str, Any]:
    """Trains one seed; returns its row of the JSON line."""
    return train_seed(algo, env_id, seed, budget, target, full, settings)[1]


def train_seed(algo: str, env_id: str, seed: int, budget: int, target: float, full: bool,
               settings: dict[str, Any]) -> tuple[Trainer, dict[str, Any]]:
    """Trains one seed on one thread; returns the trainer and the seed's row of the JSON line."""
    torch.set_num_threads(1)
    overrides: dict[str, Any] = {"seed": seed, "total_env_steps": budget, "log_dir": None, "progress_bar": False,
                                 "checkpoint_freq": 0, "device": "cpu", "stop_at_reward": None if full else target,
                                 **settings}
    train, algo_settings = split_settings(algo, env_id, overrides)
    start = time.perf_counter()
    trainer = Trainer(algo, env_id, TrainConfig(**train), algo_settings,
                      callbacks=[EvaluationsToStderr(f"{algo} {env_id} seed {seed}")])
    trainer.run()
    seconds = time.perf_counter() - start
    reached = [entry for entry in trainer.history if entry["eval/mean_reward"] >= target]
    first = reached[0] if reached else None
    return trainer, {
        "seed": seed,
        "reached_target": first is not None,
        "env_steps_to_target": int(first["env_steps"]) if first else None,
        "seconds_to_target": round(first["wall_time"], 1) if first else None,
        "best_eval": round(trainer.best_eval, 2),
        "curve": [[int(entry["env_steps"]), round(entry["eval/mean_reward"], 1)] for entry in trainer.history],
        "total_env_steps": trainer.env_steps,
        "total_seconds": round(seconds, 1),
        "env_steps_per_s": round(trainer.env_steps / seconds, 1),
    }


def summary(env_id: str, target: float, budget: int, settings: dict[str, Any], jobs: int,
            runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The fields of a learning-to-target JSON line after its name: the task, the seeds' rows and the versions."""
    return {"env": env_id, "target": target, "budget_env_steps": budget,
            "seeds_reaching_target": sum(run["reached_target"] for run in runs), "seeds": len(runs),
            "settings_over_preset": settings, "jobs": jobs, "runs": runs, "versions": versions(),
            "load_average_at_end": os.getloadavg()[0]}


def versions() -> dict[str, Any]:
    """The library versions and torch's threads, for a benchmark's JSON line."""
    return {"rlcore": rlcore.__version__, "torch": torch.__version__, "python": platform.python_version(),
            "torch_threads": torch.get_num_threads()}


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (numbers, lists, booleans)."""
    key, _, value = text.partition("=")
    if not key or not _:
        raise SystemExit(f"--set needs key=value, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--algo", required=True)
    parser.add_argument("--env", required=True)
    parser.add_argument("--target", type=float, required=True, help="evaluation return to reach")
    parser.add_argument("--budget", type=int, required=True, help="env steps per seed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--full", action="store_true", help="train the whole budget (default: stop at the target)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, one process each")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a preset setting")
    args = parser.parse_args(argv)
    settings = dict(parse_setting(text) for text in args.set)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = [pool.submit(run_seed, args.algo, args.env, seed, args.budget, args.target, args.full, settings)
                   for seed in seeds]
        runs = [future.result() for future in futures]
    print(json.dumps({"benchmark": "learning_to_target", "algo": args.algo,
                      **summary(args.env, args.target, args.budget, settings, args.jobs, runs)}))


if __name__ == "__main__":
    main()
