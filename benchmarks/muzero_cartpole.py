"""MuZero on CartPole-v1: a mean return >= 475 within 100k env steps, per seed (issue 20: 2 of 3 seeds).

Trains with the preset (``rlcore/presets/muzero.yaml``, entry ``CartPole-v1``: 25 simulations of the learned model
per move for 8 envs in lockstep, two gradient steps on 128 five-step unrolls per vector step), evaluating 10
deterministic episodes every 5k env steps. A run stops at its first evaluation >= 475 unless ``--full``. For each
seed it reports whether and when (env steps, seconds) the target was reached, the curve, and throughput: env steps/s,
the search's simulations/s and the share of search time spent in network calls.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/muzero_cartpole.py [--seeds 3] [--jobs 3] [--full] [--set key=value ...]

``--jobs`` trains that many seeds at once, one process each (each pinned to one thread); ``--set`` overrides a preset
setting (e.g. ``--set num_simulations=50``), for tuning.
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

ENV_ID = "CartPole-v1"
TARGET = 475.0
BUDGET = 100_000


class EvaluationsToStderr(Callback):
    """Prints every evaluation (progress of a long run)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def on_evaluation(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        print(f"seed {self.seed}: {trainer.env_steps} env steps, eval {metrics['eval/mean_reward']:.1f}, "
              f"{time.perf_counter() - self.start:.0f} s", file=sys.stderr, flush=True)

    def on_training_start(self, trainer: Trainer) -> None:
        self.start = time.perf_counter()


def run_seed(seed: int, budget: int, full: bool, settings: dict[str, Any]) -> dict[str, Any]:
    torch.set_num_threads(1)
    overrides: dict[str, Any] = {"seed": seed, "total_env_steps": budget, "log_dir": None, "progress_bar": False,
                                 "checkpoint_freq": 0, "device": "cpu", "stop_at_reward": None if full else TARGET,
                                 **settings}
    train, algo = split_settings("muzero", ENV_ID, overrides)
    start = time.perf_counter()
    trainer = Trainer("muzero", ENV_ID, TrainConfig(**train), algo, callbacks=[EvaluationsToStderr(seed)])
    trainer.run()
    seconds = time.perf_counter() - start
    reached = [entry for entry in trainer.history if entry["eval/mean_reward"] >= TARGET]
    first = reached[0] if reached else None
    metrics = trainer._train_metrics
    return {
        "seed": seed,
        "reached_target": first is not None,
        "env_steps_to_target": int(first["env_steps"]) if first else None,
        "seconds_to_target": round(first["wall_time"], 1) if first else None,
        "best_eval": round(trainer.best_eval, 2),
        "curve": [[int(entry["env_steps"]), round(entry["eval/mean_reward"], 1)] for entry in trainer.history],
        "total_env_steps": trainer.env_steps,
        "total_seconds": round(seconds, 1),
        "env_steps_per_s": round(trainer.env_steps / seconds, 1),
        "search_simulations_per_s": round(metrics.get("search/simulations_per_s", float("nan")), 1),
        "search_network_share": round(metrics.get("search/network_share", float("nan")), 3),
        "gradient_steps": trainer.algo.updates,
    }


def parse_setting(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as YAML (numbers, lists, booleans)."""
    key, _, value = text.partition("=")
    if not key or not _:
        raise SystemExit(f"--set needs key=value, got {text!r}")
    return key, yaml.safe_load(value)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=BUDGET, help="env steps per seed")
    parser.add_argument("--full", action="store_true", help="train the whole budget (default: stop at the target)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, one process each")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a preset setting")
    args = parser.parse_args(argv)
    settings = dict(parse_setting(text) for text in args.set)
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    with ProcessPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        runs = list(pool.map(run_seed, seeds, *zip(*[(args.budget, args.full, settings)] * len(seeds))))
    for result in runs:
        print(f"{ENV_ID} seed {result['seed']}: best {result['best_eval']}, reached {TARGET} at "
              f"{result['env_steps_to_target']} steps, {result['total_seconds']} s", file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "muzero_cartpole",
        "env": ENV_ID,
        "target": TARGET,
        "budget_env_steps": args.budget,
        "seeds_reaching_target": sum(run["reached_target"] for run in runs),
        "seeds": args.seeds,
        "settings_over_preset": settings,
        "jobs": args.jobs,
        "runs": runs,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     "torch_threads": torch.get_num_threads()},
        "load_average_at_end": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
