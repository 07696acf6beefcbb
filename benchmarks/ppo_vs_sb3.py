"""PPO and A2C on CartPole-v1: rlcore vs Stable-Baselines3, same process, same rl-zoo settings.

Two measurements per algorithm and seed, each run side by side (the order alternating per seed,
so slow drifts of the machine cancel), on the CPU with one torch thread, logging files and
progress bars off:

1. **Throughput**: env steps per second of a whole training run of ``--steps`` env steps
   (construction included) with evaluation off.
2. **Time to solve**: wall-clock seconds (construction and evaluations included) and env steps
   until the first periodic evaluation (10 deterministic episodes every ``--eval-freq`` env
   steps) scores >= 475, within ``--budget`` env steps. rlcore uses ``stop_at_reward``; SB3 uses
   ``EvalCallback`` with ``StopTrainingOnRewardThreshold``. Both evaluate at the same env-step
   counts (a multiple of the rollout size) and at the same point of the update cycle: after the
   update on the rollout that reaches the count. (SB3's ``EvalCallback`` alone evaluates at the
   rollout's last env step, *before* that rollout's update, i.e. a policy one update behind;
   :class:`EvalAfterUpdate` moves its evaluation to the start of the next rollout.)

The hyperparameters are rl-zoo's (``rlcore/presets/ppo.yaml`` and ``a2c.yaml``), passed
explicitly to both libraries; both use SB3's defaults otherwise (64x64 tanh actor and critic,
orthogonal init, Adam eps 1e-5 for PPO, RMSprop for A2C). Figures are medians over seeds
(seeds ``0 .. --seeds - 1``, all of them reported; env steps to 475 also as means, since they
come in multiples of ``--eval-freq``); ``throughput_ratio`` and ``time_to_solve_ratio`` are
rlcore's speed-ups over SB3.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/ppo_vs_sb3.py [--algos ppo,a2c] [--seeds 10] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import A2C, PPO  # noqa: E402
from stable_baselines3.common.callbacks import EvalCallback, StopTrainingOnRewardThreshold  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

import rlcore  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "CartPole-v1"
TARGET = 475.0

SETTINGS: dict[str, dict[str, Any]] = {
    "ppo": {"num_envs": 8, "n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20,
            "ent_coef": 0.0, "learning_rate": 1e-3, "clip_range": 0.2, "linear": True},
    "a2c": {"num_envs": 8, "n_steps": 5, "ent_coef": 0.0, "learning_rate": 7e-4, "gae_lambda": 1.0, "gamma": 0.99,
            "linear": False},
}
"""rl-zoo's CartPole-v1 settings; ``linear`` is rl-zoo's ``lin_`` schedule of learning rate and clip range."""


def rlcore_settings(algo: str) -> dict[str, Any]:
    settings = {key: value for key, value in SETTINGS[algo].items() if key not in ("num_envs", "linear")}
    if SETTINGS[algo]["linear"]:
        settings["lr_schedule"] = "linear"
        if algo == "ppo":
            settings["clip_range_schedule"] = "linear"
    return settings


def sb3_model(algo: str, seed: int) -> Any:
    spec = SETTINGS[algo]
    kwargs = {key: value for key, value in spec.items() if key not in ("num_envs", "linear")}
    if spec["linear"]:
        kwargs["learning_rate"] = lambda progress, start=spec["learning_rate"]: progress * start
        if algo == "ppo":
            kwargs["clip_range"] = lambda progress, start=spec["clip_range"]: progress * start
    env = make_vec_env(ENV_ID, n_envs=spec["num_envs"], seed=seed)
    model_class = PPO if algo == "ppo" else A2C
    return model_class("MlpPolicy", env, device="cpu", seed=seed, verbose=0, **kwargs)


def rollout_size(algo: str) -> int:
    return SETTINGS[algo]["num_envs"] * SETTINGS[algo]["n_steps"]


# ------------------------------------------------------------------------------ one run each
def rlcore_run(algo: str, seed: int, steps: int, eval_freq: int = 0) -> dict[str, float]:
    start = time.perf_counter()
    config = TrainConfig(total_env_steps=steps, num_envs=SETTINGS[algo]["num_envs"], seed=seed, device="cpu",
                         eval_freq=eval_freq, eval_episodes=10, checkpoint_freq=0, log_dir=None, progress_bar=False,
                         stop_at_reward=TARGET if eval_freq else None)
    trainer = Trainer(algo, ENV_ID, config, rlcore_settings(algo))
    trainer.run()
    seconds = time.perf_counter() - start
    solved = bool(trainer.history) and trainer.best_eval >= TARGET
    return {"seconds": seconds, "env_steps": float(trainer.env_steps),
            "solved_at": float(trainer.env_steps) if solved else math.inf,
            "time_to_solve": seconds if solved else math.inf}


class EvalAfterUpdate(EvalCallback):
    """SB3's ``EvalCallback``, evaluating after the update instead of before it.

    ``EvalCallback`` evaluates in ``_on_step`` at every ``eval_freq``-th vector step, which is the
    last step of a rollout, before the algorithm trains on it. This one evaluates at the start of
    the next rollout (after that update, as rlcore's Trainer does) once ``every`` env steps have
    passed, and stops training at the next step if ``callback_on_new_best`` says so.
    """

    def __init__(self, *args: Any, every: int, **kwargs: Any) -> None:
        super().__init__(*args, eval_freq=1, **kwargs)  # eval_freq=1: super()._on_step() always evaluates
        self.every = every
        self.next_eval = every
        self.solved_at = math.inf
        self._continue = True

    def _on_rollout_start(self) -> None:
        if self.model.num_timesteps < self.next_eval:
            return
        while self.next_eval <= self.model.num_timesteps:
            self.next_eval += self.every
        self.num_timesteps = self.model.num_timesteps
        self._continue = super()._on_step()
        if not self._continue:
            self.solved_at = float(self.model.num_timesteps)

    def _on_step(self) -> bool:
        return self._continue


def sb3_run(algo: str, seed: int, steps: int, eval_freq: int = 0) -> dict[str, float]:
    start = time.perf_counter()
    model = sb3_model(algo, seed)
    callback = None
    if eval_freq:
        stop = StopTrainingOnRewardThreshold(reward_threshold=TARGET, verbose=0)
        callback = EvalAfterUpdate(make_vec_env(ENV_ID, n_envs=1, seed=seed + 10_000), callback_on_new_best=stop,
                                   every=eval_freq, n_eval_episodes=10, deterministic=True, verbose=0)
    model.learn(total_timesteps=steps, callback=callback)
    seconds = time.perf_counter() - start
    solved = callback is not None and callback.best_mean_reward >= TARGET
    return {"seconds": seconds, "env_steps": float(model.num_timesteps),
            "solved_at": callback.solved_at if solved else math.inf,  # type: ignore[union-attr]
            "time_to_solve": seconds if solved else math.inf}


RUNNERS = {"rlcore": rlcore_run, "sb3": sb3_run}


def alternate(seed: int) -> list[str]:
    return ["rlcore", "sb3"] if seed % 2 == 0 else ["sb3", "rlcore"]


def measure(algo: str, seeds: int, steps: int, budget: int, eval_freq: int) -> dict[str, Any]:
    """Throughput and time-to-solve figures for one algorithm."""
    for runner in RUNNERS.values():  # untimed warm-up: imports, first kernels
        runner(algo, 1_000, 4 * rollout_size(algo))
    throughput: dict[str, list[float]] = {name: [] for name in RUNNERS}
    solve: dict[str, list[dict[str, float]]] = {name: [] for name in RUNNERS}
    for seed in range(seeds):
        for name in alternate(seed):
            run = RUNNERS[name](algo, seed, steps)
            throughput[name].append(run["env_steps"] / run["seconds"])
            print(f"{algo} seed {seed} {name}: {throughput[name][-1]:.0f} steps/s", file=sys.stderr, flush=True)
        for name in alternate(seed + 1):
            run = RUNNERS[name](algo, seed, budget, eval_freq)
            solve[name].append(run)
            print(f"{algo} seed {seed} {name}: solved at {run['solved_at']:.0f} steps, {run['time_to_solve']:.1f} s",
                  file=sys.stderr, flush=True)
    rate = {name: statistics.median(values) for name, values in throughput.items()}
    time_to_solve = {name: statistics.median(run["time_to_solve"] for run in runs) for name, runs in solve.items()}
    steps_to_solve = {name: statistics.median(run["solved_at"] for run in runs) for name, runs in solve.items()}
    mean_steps = {name: statistics.fmean(run["solved_at"] for run in runs) for name, runs in solve.items()}
    return {
        "rlcore_steps_per_s": round(rate["rlcore"], 1),
        "sb3_steps_per_s": round(rate["sb3"], 1),
        "throughput_ratio": round(rate["rlcore"] / rate["sb3"], 3),
        "rlcore_median_seconds_to_475": round(time_to_solve["rlcore"], 2),
        "sb3_median_seconds_to_475": round(time_to_solve["sb3"], 2),
        "time_to_solve_ratio": round(time_to_solve["sb3"] / time_to_solve["rlcore"], 3),
        "rlcore_median_steps_to_475": steps_to_solve["rlcore"],
        "sb3_median_steps_to_475": steps_to_solve["sb3"],
        "rlcore_mean_steps_to_475": round(mean_steps["rlcore"], 1),
        "sb3_mean_steps_to_475": round(mean_steps["sb3"], 1),
        "seeds_rlcore_solved_in_no_more_steps": sum(
            ours["solved_at"] <= theirs["solved_at"] for ours, theirs in zip(solve["rlcore"], solve["sb3"])),
        "per_seed": {name: [{"steps_per_s": round(rate_, 1), "solved_at": run["solved_at"],
                             "seconds_to_475": round(run["time_to_solve"], 2)}
                            for rate_, run in zip(throughput[name], solve[name])] for name in RUNNERS},
        "settings": SETTINGS[algo],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--algos", default="ppo,a2c", help="comma-separated: ppo, a2c")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0 .. SEEDS-1, each run by both libraries")
    parser.add_argument("--steps", type=int, default=50_000, help="env steps of each throughput run")
    parser.add_argument("--budget", type=int, default=200_000, help="env-step budget of each time-to-solve run")
    parser.add_argument("--eval-freq", type=int, default=5_120, help="env steps between evaluations")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    seeds, steps, budget = (1, 2_560, 5_120) if args.quick else (args.seeds, args.steps, args.budget)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    results = {algo: measure(algo, seeds, steps, budget, args.eval_freq) for algo in args.algos.split(",")}
    print(json.dumps({
        "benchmark": "ppo_vs_sb3",
        "env": ENV_ID,
        **results,
        "targets": {"ppo_throughput_ratio": 3.0, "a2c_throughput_ratio": 2.0, "ppo_time_to_solve_ratio": 3.0},
        "seeds": seeds,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "sb3": stable_baselines3.__version__,
                     "python": platform.python_version(), "torch_threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
