"""MuZero against rlcore's PPO preset on a MinAtar game, at the same env-step budget (issue 20).

Both train with their presets (``rlcore/presets/muzero.yaml`` and ``ppo.yaml``, entry ``--env``: Breakout by
default, or Freeway, whose presets are Breakout's unchanged; the game's useful actions, 8 envs) for ``--budget``
env steps (default 100k, the sample-efficiency budget of Atari 100k scaled to MinAtar, which fits a MuZero run on
this 2-core machine), evaluating 20 deterministic episodes every ``--eval-freq`` env steps on the same evaluation
seeds. Each run reports its curve, its best and final evaluation and the final agent's mean return over
``--final-episodes`` further episodes; the comparison is the final agents' mean returns at the budget (and the
curves' points at equal env steps).

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/muzero_minatar.py [--env rlcore/MinAtar-Freeway-v0] [--seeds 1]
        [--budget 100000] [--algos muzero,ppo] [--set KEY=VALUE ...]   # MuZero settings other than the preset's
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402
from learning_to_target import versions  # noqa: E402

from rlcore.api import split_settings  # noqa: E402
from rlcore.cli import parse_setting  # noqa: E402
from rlcore.env import MINATAR_GAMES  # noqa: E402
from rlcore.presets import preset_envs  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "rlcore/MinAtar-Breakout-v0"
GAMES = sorted(set(preset_envs("muzero")) & set(preset_envs("ppo")) & {
    f"rlcore/MinAtar-{game}-v0" for game in MINATAR_GAMES})
"""The MinAtar games with a preset for both algorithms."""
BUDGET = 100_000


def run(algo: str, seed: int, budget: int, eval_freq: int, final_episodes: int,
        settings: dict[str, Any] | None = None, env_id: str = ENV_ID) -> dict[str, Any]:
    """One preset run of ``algo`` (with ``settings`` changed); its evaluations, the final agent's score and timings."""
    overrides: dict[str, Any] = {"seed": seed, "total_env_steps": budget, "eval_freq": eval_freq, "eval_episodes": 20,
                                 "log_dir": None, "progress_bar": False, "checkpoint_freq": 0, "device": "cpu",
                                 **(settings or {})}
    train, algo_settings = split_settings(algo, env_id, overrides)
    start = time.perf_counter()
    trainer = Trainer(algo, env_id, TrainConfig(**train), algo_settings)
    agent = trainer.run()
    seconds = time.perf_counter() - start
    final = agent.evaluate(final_episodes, seed=123_456)
    metrics = trainer._train_metrics
    return {
        "algo": algo,
        "seed": seed,
        "settings": settings or {},
        "final_mean_return": round(final["mean_reward"], 3),
        "final_std_return": round(final["std_reward"], 3),
        "best_eval": round(trainer.best_eval, 2),
        "curve": [[int(entry["env_steps"]), round(entry["eval/mean_reward"], 2)] for entry in trainer.history],
        "last_100_training_episodes_mean_return": round(
            trainer.source.stats.metrics().get("rollout/ep_rew_mean", float("nan")), 2),
        "total_seconds": round(seconds, 1),
        "env_steps_per_s": round(trainer.env_steps / seconds, 1),
        **({"search_simulations_per_s": round(metrics["search/simulations_per_s"], 1),
            "search_network_share": round(metrics["search/network_share"], 3)}
           if "search/simulations_per_s" in metrics else {}),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=BUDGET, help="env steps per run")
    parser.add_argument("--eval-freq", type=int, default=20_000)
    parser.add_argument("--final-episodes", type=int, default=50, help="episodes of the final agents' comparison")
    parser.add_argument("--algos", default="muzero,ppo", help="comma-separated: muzero, ppo")
    parser.add_argument("--env", choices=GAMES, default=ENV_ID, help="the game")
    parser.add_argument("--quick", action="store_true", help="a smoke run (1 seed, 4k env steps)")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[],
                        metavar="KEY=VALUE", help="a MuZero setting changed from the preset (repeatable; experiments)")
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.budget, args.eval_freq, args.final_episodes = 1, 4_000, 2_000, 5
    torch.set_num_threads(1)
    runs = []
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for algo in args.algos.split(","):
            result = run(algo, seed, args.budget, args.eval_freq, args.final_episodes,
                         dict(args.settings) if algo == "muzero" else None, args.env)
            runs.append(result)
            print(f"{algo} seed {seed}: final {result['final_mean_return']} (best eval {result['best_eval']}), "
                  f"{result['total_seconds']} s", file=sys.stderr, flush=True)
    means = {algo: sum(r["final_mean_return"] for r in runs if r["algo"] == algo) / max(
        sum(r["algo"] == algo for r in runs), 1) for algo in args.algos.split(",")}
    print(json.dumps({
        "benchmark": "muzero_minatar",
        "env": args.env,
        "budget_env_steps": args.budget,
        "final_mean_return": {algo: round(value, 3) for algo, value in means.items()},
        "muzero_above_ppo": means.get("muzero", 0.0) > means.get("ppo", float("inf")),
        "runs": runs,
        "versions": versions(),
        "load_average_at_end": os.getloadavg()[0],
    }))


if __name__ == "__main__":
    main()
