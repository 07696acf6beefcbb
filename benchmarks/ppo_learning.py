"""PPO learning checks that take minutes: Pendulum-v1 and LunarLander-v3 with their presets.

Targets (issue 3): Pendulum-v1 >= -250 within 150k env steps; LunarLander-v3 >= 200 within 1M.
For each seed it trains with the preset (``rlcore/presets/ppo.yaml``), evaluating 10
deterministic episodes every ``eval_freq`` env steps, and reports the best evaluation, the env
steps and wall-clock seconds at which the target was first reached, and the run's total time.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/ppo_learning.py --task pendulum [--seeds 3]
    OMP_NUM_THREADS=1 python benchmarks/ppo_learning.py --task lunarlander [--seeds 3]   # needs rlcore[envs]
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

TASKS: dict[str, dict[str, Any]] = {
    "pendulum": {"env": "Pendulum-v1", "target": -250.0, "budget": 150_000},
    "lunarlander": {"env": "LunarLander-v3", "target": 200.0, "budget": 1_000_000},
}


def run_seed(env_id: str, seed: int, budget: int, target: float) -> dict[str, Any]:
    """One preset run; the target's first crossing by the periodic evaluation, and timings."""
    start = time.perf_counter()
    train, algo = split_settings("ppo", env_id, {"seed": seed, "total_env_steps": budget, "log_dir": None,
                                                 "progress_bar": False, "checkpoint_freq": 0, "device": "cpu"})
    trainer = Trainer("ppo", env_id, TrainConfig(**train), algo)
    trainer.run()
    reached = [entry for entry in trainer.history if entry["eval/mean_reward"] >= target]
    first = reached[0] if reached else None
    return {
        "seed": seed,
        "best_eval": round(trainer.best_eval, 1),
        "reached_target": first is not None,
        "env_steps_to_target": int(first["env_steps"]) if first else None,
        "seconds_to_target": round(first["wall_time"], 1) if first else None,
        "total_seconds": round(time.perf_counter() - start, 1),
        "curve": [[int(entry["env_steps"]), round(entry["eval/mean_reward"], 1)] for entry in trainer.history],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (1 seed, 1/50 of the budget)")
    args = parser.parse_args(argv)
    task = TASKS[args.task]
    seeds, budget = (1, task["budget"] // 50) if args.quick else (args.seeds, task["budget"])
    torch.set_num_threads(1)
    runs = []
    for seed in range(seeds):
        runs.append(run_seed(task["env"], seed, budget, task["target"]))
        print(f"{task['env']} seed {seed}: best {runs[-1]['best_eval']}, reached at "
              f"{runs[-1]['env_steps_to_target']} steps", file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "ppo_learning",
        "env": task["env"],
        "target": task["target"],
        "budget_env_steps": budget,
        "seeds_reaching_target": sum(run["reached_target"] for run in runs),
        "seeds": seeds,
        "runs": runs,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "python": platform.python_version()},
    }))


if __name__ == "__main__":
    main()
