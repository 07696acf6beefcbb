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
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

from learning_to_target import parse_setting, summary, train_seed  # noqa: E402

ENV_ID = "CartPole-v1"
TARGET = 475.0
BUDGET = 100_000


def run_seed(seed: int, budget: int, full: bool, settings: dict[str, Any]) -> dict[str, Any]:
    """One seed's row: :func:`learning_to_target.train_seed`'s, plus the search's throughput."""
    trainer, row = train_seed("muzero", ENV_ID, seed, budget, TARGET, full, settings)
    metrics = trainer._train_metrics
    return {
        **row,
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
    print(json.dumps({"benchmark": "muzero_cartpole",
                      **summary(ENV_ID, TARGET, args.budget, settings, args.jobs, runs)}))


if __name__ == "__main__":
    main()
