"""PPO with the small CNN on MinAtar Breakout: mean return >= 10 within 1M env steps (issue 4).

Trains with the preset (``rlcore/presets/ppo.yaml``, entry ``rlcore/MinAtar-Breakout-v0``: Breakout's
3 useful actions, 8 envs, SmallCNN shared by linear heads, 128 steps per rollout, 4 epochs of 256-row
minibatches, learning rate 3e-3 decaying linearly over 3M env steps, entropy 0.01), evaluating 20
deterministic episodes every 50k env steps.
For each seed it reports the best evaluation, the env steps and wall-clock seconds at which the
target was first reached, the curve, the mean return of the last 100 training episodes (stochastic
policy) and the run's total time and throughput.

Prints one JSON line to stdout; progress goes to stderr.

``--preset gpu`` trains the preset's GPU-sized variant instead (64 envs, larger rollouts and minibatches; what
``rlcore.train`` takes on CUDA), on the CPU unless ``--device cuda``: its learning is the device's up to rounding.

    OMP_NUM_THREADS=1 python benchmarks/ppo_minatar.py [--seeds 1] [--jobs 1] [--budget 1000000] [--quick]
        [--preset cpu|gpu] [--device cpu|cuda] [--set KEY=VALUE ...]

``--jobs N`` trains N seeds at a time, each in its own process with one torch thread (use at most one job per
core: the wall times are then each run's own).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import rlcore  # noqa: E402
from rlcore.api import split_settings  # noqa: E402
from rlcore.cli import parse_setting  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "rlcore/MinAtar-Breakout-v0"
TARGET = 10.0
BUDGET = 1_000_000


def run_seed(seed: int, budget: int, eval_freq: int | None, preset: str = "cpu",
             settings: dict[str, Any] | None = None, device: str = "cpu") -> dict[str, Any]:
    """One preset run (``preset``: its ``cpu`` or ``gpu`` variant, then ``settings``) on ``device``; the target's
    first crossing by the periodic evaluation, and timings."""
    overrides: dict[str, Any] = {"seed": seed, "total_env_steps": budget, "log_dir": None, "progress_bar": False,
                                 "checkpoint_freq": 0, "device": device, "preset": preset, **(settings or {})}
    if eval_freq is not None:
        overrides["eval_freq"] = eval_freq
    train, algo = split_settings("ppo", ENV_ID, overrides)
    start = time.perf_counter()
    trainer = Trainer("ppo", ENV_ID, TrainConfig(**train), algo)
    trainer.run()
    seconds = time.perf_counter() - start
    reached = [entry for entry in trainer.history if entry["eval/mean_reward"] >= TARGET]
    first = reached[0] if reached else None
    training = trainer.source.stats.metrics()
    return {
        "seed": seed,
        "env_kwargs": trainer.env_kwargs,
        "actions": int(trainer.envs.single_action_space.n),
        "best_eval": round(trainer.best_eval, 2),
        "final_eval": round(trainer.history[-1]["eval/mean_reward"], 2) if trainer.history else None,
        "reached_target": first is not None,
        "env_steps_to_target": int(first["env_steps"]) if first else None,
        "seconds_to_target": round(first["wall_time"], 1) if first else None,
        "last_100_training_episodes_mean_return": round(training.get("rollout/ep_rew_mean", float("nan")), 2),
        "total_seconds": round(seconds, 1),
        "env_steps_per_s": round(trainer.env_steps / seconds, 1),
        "curve": [[int(entry["env_steps"]), round(entry["eval/mean_reward"], 2), round(entry["wall_time"], 1)]
                  for entry in trainer.history],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--budget", type=int, default=BUDGET, help="env steps per seed")
    parser.add_argument("--eval-freq", type=int, default=None, help="env steps between evaluations (preset: 50k)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds trained at once, one process each")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (1 seed, 20k env steps)")
    parser.add_argument("--first-seed", type=int, default=0, help="seeds FIRST_SEED .. FIRST_SEED + SEEDS - 1")
    parser.add_argument("--preset", choices=("cpu", "gpu"), default="cpu",
                        help="the preset (cpu) or its GPU-sized variant (gpu), either on --device")
    parser.add_argument("--device", default="cpu", help="the training device (cuda: the GPU run of issue 19)")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[],
                        metavar="KEY=VALUE", help="a setting on top of the preset (experiments)")
    args = parser.parse_args(argv)
    seeds, budget, eval_freq = (1, 20_480, 10_240) if args.quick else (args.seeds, args.budget, args.eval_freq)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    torch.set_num_threads(1)
    runs = []
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn"),
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        seed_range = range(args.first_seed, args.first_seed + seeds)
        settings = dict(args.settings)
        for run in pool.map(run_seed, seed_range, [budget] * seeds, [eval_freq] * seeds, [args.preset] * seeds,
                            [settings] * seeds, [args.device] * seeds):
            runs.append(run)
            print(f"{ENV_ID} seed {run['seed']}: best {run['best_eval']}, reached {TARGET} at "
                  f"{run['env_steps_to_target']} steps, {run['total_seconds']} s", file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "ppo_minatar",
        "env": ENV_ID,
        "target": TARGET,
        "preset": args.preset,
        "device": args.device,
        "settings": settings,
        "budget_env_steps": budget,
        "seeds_reaching_target": sum(run["reached_target"] for run in runs),
        "seeds": seeds,
        "jobs": args.jobs,
        "runs": runs,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     "torch_threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
