"""MuZero on CartPole-v1: a mean return >= 475 within 100k env steps, per seed (issue 20: 2 of 3 seeds).

Trains with the preset (``rlcore/presets/muzero.yaml``, entry ``CartPole-v1``: 25 simulations of the learned model
per move for 8 envs in lockstep, two gradient steps on 128 five-step unrolls per vector step), evaluating 10
deterministic episodes every 5k env steps. A run stops at its first evaluation >= 475 unless ``--full``. For each
seed it reports whether and when (env steps, seconds) the target was reached, the curve, and throughput: env steps/s,
the search's simulations/s and the share of search time spent in network calls.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/muzero_cartpole.py [--seeds 3] [--full]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import rlcore  # noqa: E402
from rlcore.api import split_settings  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "CartPole-v1"
TARGET = 475.0
BUDGET = 100_000


def run_seed(seed: int, budget: int, full: bool) -> dict[str, Any]:
    overrides: dict[str, Any] = {"seed": seed, "total_env_steps": budget, "log_dir": None, "progress_bar": False,
                                 "checkpoint_freq": 0, "device": "cpu", "stop_at_reward": None if full else TARGET}
    train, algo = split_settings("muzero", ENV_ID, overrides)
    start = time.perf_counter()
    trainer = Trainer("muzero", ENV_ID, TrainConfig(**train), algo)
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=BUDGET, help="env steps per seed")
    parser.add_argument("--full", action="store_true", help="train the whole budget (default: stop at the target)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        result = run_seed(seed, args.budget, args.full)
        runs.append(result)
        print(f"{ENV_ID} seed {seed}: best {result['best_eval']}, reached {TARGET} at {result['env_steps_to_target']} "
              f"steps, {result['total_seconds']} s", file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "muzero_cartpole",
        "env": ENV_ID,
        "target": TARGET,
        "budget_env_steps": args.budget,
        "seeds_reaching_target": sum(run["reached_target"] for run in runs),
        "seeds": args.seeds,
        "runs": runs,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     "torch_threads": torch.get_num_threads()},
        "load_average_at_end": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
