"""Recurrent PPO: rlcore's memory policies vs sb3-contrib's RecurrentPPO, same settings, same process.

Per task and seed, each contender trains for ``--steps`` env steps and is evaluated after the update that reaches
each of ``--checkpoints`` (50k and 100k env steps by default): ``--eval-episodes`` deterministic episodes with a
fresh memory, the same evaluation code (:func:`rlcore.evaluation.evaluate_policy`, the same episode seeds) for
every contender. Throughput is env steps per second of training, evaluation time excluded: per CPU second of the
process (``steps_per_cpu_s``, the figure compared: every contender is single-threaded, so it holds when runs share
the machine, e.g. with ``--jobs``) and per wall second (``steps_per_s``).

Contenders:

- ``contrib``: sb3-contrib's ``RecurrentPPO`` (``MlpLstmPolicy``: an actor LSTM and a critic LSTM), with SB3's
  ``VecNormalize`` where the task normalizes (rl-zoo's ``normalize: True``: observations and rewards, the
  rewards' discounted-return statistics with the task's ``gamma``);
- ``lstm``: rlcore's PPO with ``memory="lstm"``, the same settings (``normalize_obs``/``normalize_reward``, rlcore's
  VecNormalize);
- ``transformer``: rlcore's PPO with ``memory="transformer"`` (``context_length`` steps of attention), the same
  settings otherwise;
- ``r2d2``: rlcore's recurrent DQN (its own settings, listed in the output), reported beside them.

Tasks (``--tasks``): ``cartpole`` is rl-zoo's RecurrentPPO setting for ``CartPoleNoVel-v1`` (rlcore's
``rlcore/CartPoleNoVelocity-v0``: cart position and pole angle only); ``pendulum`` is rl-zoo's ``PendulumNoVel-v1``
setting without gSDE (plain Gaussian on both sides; ``rlcore/PendulumNoVelocity-v0``: cos and sin of the angle
only); ``memory`` is rlcore's ``rlcore/Memory-v0`` (a cue to recall after 10 blank steps) at the settings of
tests/test_learning_memory.py.

Prints one JSON line to stdout; progress goes to stderr. The machine's load changes absolute figures: compare the
ratios, measured side by side (the contenders alternate order per seed, or run at the same time with ``--jobs``).

    OMP_NUM_THREADS=1 python benchmarks/recurrent_ppo_vs_contrib.py [--tasks cartpole,memory] [--seeds 3]
        [--first-seed 0] [--contenders contrib,lstm,transformer,r2d2] [--jobs N] [--quick]
        [--set lstm:KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import rlcore  # noqa: E402
from rlcore.callbacks import Callback  # noqa: E402
from rlcore.cli import parse_setting  # noqa: E402
from rlcore.evaluation import evaluate_policy  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

TASKS: dict[str, dict[str, Any]] = {
    "cartpole": {
        "env": "rlcore/CartPoleNoVelocity-v0", "num_envs": 8, "normalize": {"obs": True, "reward": True},
        "ppo": {"n_steps": 32, "batch_size": 256, "gae_lambda": 0.8, "gamma": 0.98, "n_epochs": 20, "ent_coef": 0.0,
                "learning_rate": 1e-3, "clip_range": 0.2, "linear": True, "memory_size": 64, "net_arch": [64],
                "activation": "relu", "ortho_init": False},
        "rlcore": {"context_length": 16},
        "r2d2": {"memory_size": 64, "net_arch": [64], "sequence_length": 16, "burn_in": 8, "learning_starts": 5_000,
                 "buffer_size": 50_000, "learning_rate": 1e-3, "batch_size": 32, "train_freq": 1,
                 "gradient_steps": 1, "target_update_interval": 1_000, "exploration_fraction": 0.2,
                 "exploration_final_eps": 0.02, "double": True, "gamma": 0.98, "n_step": 3},
    },
    "pendulum": {
        "env": "rlcore/PendulumNoVelocity-v0", "num_envs": 4, "normalize": {"obs": True, "reward": True},
        "ppo": {"n_steps": 1024, "batch_size": 64, "gae_lambda": 0.95, "gamma": 0.9, "n_epochs": 10, "ent_coef": 0.0,
                "learning_rate": 1e-3, "clip_range": 0.2, "linear": False, "memory_size": 64, "net_arch": [64],
                "activation": "relu", "ortho_init": False},
        "rlcore": {"context_length": 16},
        "r2d2": None,  # Box actions: no DQN
    },
    "memory": {
        "env": "rlcore/Memory-v0", "num_envs": 8, "normalize": {"obs": False, "reward": False},
        "ppo": {"n_steps": 64, "batch_size": 256, "gae_lambda": 0.95, "gamma": 0.99, "n_epochs": 4, "ent_coef": 0.01,
                "learning_rate": 1e-3, "clip_range": 0.2, "linear": False, "memory_size": 64, "net_arch": [64],
                "activation": "tanh", "ortho_init": True},
        "rlcore": {"context_length": 16},
        "r2d2": {"sequence_length": 9, "burn_in": 10, "context_length": 11, "memory_size": 64, "net_arch": [64],
                 "learning_starts": 1000, "buffer_size": 20_000, "learning_rate": 1e-3, "batch_size": 32,
                 "train_freq": 2, "gradient_steps": 1, "target_update_interval": 400, "exploration_fraction": 0.3,
                 "exploration_final_eps": 0.05, "double": True, "gamma": 0.99},
    },
}
"""Per task: the env, vector size, normalization (rl-zoo's ``normalize: True`` is VecNormalize's default: observations
and rewards), the PPO settings both libraries get (``linear``:
rl-zoo's ``lin_`` schedules of learning rate and clip range), rlcore's memory settings, R2D2's settings."""

CONTENDERS = ("contrib", "lstm", "transformer", "r2d2")


# ------------------------------------------------------------------------------ evaluation shared by all
class Checkpoints:
    """Evaluates ``make_act()`` at each of ``at`` env steps (once the count is reached) and keeps the time spent."""

    def __init__(self, env_id: str, at: list[int], episodes: int, seed: int) -> None:
        self.env_id, self.at, self.episodes, self.seed = env_id, sorted(at), episodes, seed
        self.returns: dict[int, float] = {}
        self.eval_seconds = 0.0
        self.eval_cpu_seconds = 0.0

    def maybe_evaluate(self, env_steps: int, make_act: Callable[[], Callable[[torch.Tensor], torch.Tensor]]) -> None:
        due = [step for step in self.at if step <= env_steps and step not in self.returns]
        if not due:
            return
        start, cpu_start = time.perf_counter(), time.process_time()
        score = evaluate_policy(make_act(), self.env_id, self.episodes, seed=self.seed)["eval/mean_reward"]
        for step in due:
            self.returns[step] = score
        self.eval_seconds += time.perf_counter() - start
        self.eval_cpu_seconds += time.process_time() - cpu_start


# ------------------------------------------------------------------------------ rlcore
def rlcore_settings(task: dict[str, Any], contender: str, overrides: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if contender == "r2d2":
        return "r2d2", {**task["r2d2"], "memory": "lstm", **overrides}
    ppo = {key: value for key, value in task["ppo"].items() if key != "linear"}
    if task["ppo"]["linear"]:
        ppo.update(lr_schedule="linear", clip_range_schedule="linear")
    normalize = task["normalize"]
    return "ppo", {**ppo, **task["rlcore"], "memory": contender, "normalize_obs": normalize["obs"],
                   "normalize_reward": normalize["reward"], **overrides}


class _EvaluateAt(Callback):
    def __init__(self, checkpoints: Checkpoints) -> None:
        self.checkpoints = checkpoints

    def on_iteration(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.checkpoints.maybe_evaluate(trainer.env_steps, lambda: trainer.algo.actor(deterministic=True))


def rlcore_run(task: dict[str, Any], contender: str, seed: int, steps: int, checkpoints: Checkpoints,
               overrides: dict[str, Any]) -> None:
    """Trains, evaluating at the checkpoints."""
    algo, settings = rlcore_settings(task, contender, overrides)
    config = TrainConfig(total_env_steps=steps, num_envs=task["num_envs"], seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False, threads=1)
    Trainer(algo, task["env"], config, settings, callbacks=[_EvaluateAt(checkpoints)]).run()


# ------------------------------------------------------------------------------ sb3-contrib
def contrib_model(task: dict[str, Any], seed: int) -> Any:
    """sb3-contrib's ``RecurrentPPO`` with the task's settings (an actor and a critic LSTM; SB3's ``VecNormalize``
    where the task normalizes; rl-zoo's linear schedules where ``linear``)."""
    from sb3_contrib import RecurrentPPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    spec = task["ppo"]
    env = make_vec_env(task["env"], n_envs=task["num_envs"], seed=seed)
    normalize = task["normalize"]
    if normalize["obs"] or normalize["reward"]:
        env = VecNormalize(env, norm_obs=normalize["obs"], norm_reward=normalize["reward"], gamma=spec["gamma"])
    kwargs = {key: spec[key] for key in ("n_steps", "batch_size", "gae_lambda", "gamma", "n_epochs", "ent_coef",
                                         "learning_rate", "clip_range")}
    if spec["linear"]:
        kwargs["learning_rate"] = lambda progress, rate=spec["learning_rate"]: progress * rate
        kwargs["clip_range"] = lambda progress, clip=spec["clip_range"]: progress * clip
    activation = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh}[spec["activation"]]
    policy_kwargs = {"ortho_init": spec["ortho_init"], "activation_fn": activation,
                     "lstm_hidden_size": spec["memory_size"], "enable_critic_lstm": True,
                     "net_arch": {"pi": list(spec["net_arch"]), "vf": list(spec["net_arch"])}}
    return RecurrentPPO("MlpLstmPolicy", env, device="cpu", seed=seed, verbose=0, policy_kwargs=policy_kwargs,
                        **kwargs)


def contrib_run(task: dict[str, Any], seed: int, steps: int, checkpoints: Checkpoints) -> None:
    """Trains, evaluating at the checkpoints."""
    from stable_baselines3.common.callbacks import BaseCallback

    normalize = task["normalize"]
    model = contrib_model(task, seed)
    env = model.get_env()

    def make_act() -> Callable[[torch.Tensor], torch.Tensor]:
        state: Any = None
        starts: np.ndarray | None = None

        def act(obs: torch.Tensor) -> torch.Tensor:
            nonlocal state, starts
            array = obs.numpy()
            if starts is None:
                starts = np.ones(len(array), dtype=bool)
            if normalize["obs"]:
                array = env.normalize_obs(array)
            action, state = model.predict(array, state=state, episode_start=starts, deterministic=True)
            starts = np.zeros(len(array), dtype=bool)
            return torch.as_tensor(action)

        return act

    class EvaluateAfterUpdate(BaseCallback):
        def _on_rollout_start(self) -> None:  # the update on the last rollout is done
            checkpoints.maybe_evaluate(self.model.num_timesteps, make_act)

        def _on_training_end(self) -> None:
            checkpoints.maybe_evaluate(self.model.num_timesteps, make_act)

        def _on_step(self) -> bool:
            return True

    model.learn(total_timesteps=steps, callback=EvaluateAfterUpdate())


# ------------------------------------------------------------------------------ the comparison
def run_one(name: str, contender: str, seed: int, steps: int, at: list[int], episodes: int,
            overrides: dict[str, Any]) -> dict[str, Any]:
    task = TASKS[name]
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    checkpoints = Checkpoints(task["env"], at, episodes, seed=10_000 + 100 * seed)
    start, cpu_start = time.perf_counter(), time.process_time()
    if contender == "contrib":
        contrib_run(task, seed, steps, checkpoints)
    else:
        rlcore_run(task, contender, seed, steps, checkpoints, overrides.get(contender, {}))
    seconds = time.perf_counter() - start - checkpoints.eval_seconds
    cpu_seconds = time.process_time() - cpu_start - checkpoints.eval_cpu_seconds
    result = {"steps_per_cpu_s": round(steps / cpu_seconds, 1), "steps_per_s": round(steps / seconds, 1),
              **{f"return_at_{step}": round(checkpoints.returns[step], 2) for step in at}}
    print(f"{name} seed {seed} {contender}: {result}", file=sys.stderr, flush=True)
    return result


def start_runs(name: str, contenders: list[str], seeds: range, at: list[int], episodes: int,
               overrides: dict[str, Any], pool: ProcessPoolExecutor | None) -> dict[str, list[Any]]:
    """Every (contender, seed) run of one task: its result, or its future in ``pool``."""
    task = TASKS[name]
    contenders = [c for c in contenders if c != "r2d2" or task["r2d2"] is not None]
    runs: dict[str, list[Any]] = {contender: [] for contender in contenders}
    for seed in seeds:
        order = contenders if seed % 2 == 0 else contenders[::-1]
        for contender in order:
            arguments = (name, contender, seed, max(at), at, episodes, overrides)
            runs[contender].append(pool.submit(run_one, *arguments) if pool is not None else run_one(*arguments))
    return runs


def summarize(name: str, started: dict[str, list[Any]], at: list[int], overrides: dict[str, Any]) -> dict[str, Any]:
    """Medians of throughput and mean returns per contender, and each against contrib."""
    task = TASKS[name]
    contenders = list(started)
    runs = {contender: [r.result() if isinstance(r, Future) else r for r in results]
            for contender, results in started.items()}
    summary: dict[str, Any] = {}
    for contender, results in runs.items():
        summary[contender] = {
            "steps_per_cpu_s": round(statistics.median(r["steps_per_cpu_s"] for r in results), 1),
            "steps_per_s": round(statistics.median(r["steps_per_s"] for r in results), 1),
            **{f"mean_return_at_{step}": round(statistics.fmean(r[f"return_at_{step}"] for r in results), 2)
               for step in at},
            "per_seed": results,
        }
    if "contrib" in runs:
        for contender in runs:
            if contender == "contrib":
                continue
            summary[contender]["throughput_ratio_vs_contrib"] = round(
                summary[contender]["steps_per_cpu_s"] / summary["contrib"]["steps_per_cpu_s"], 2)
            summary[contender]["at_or_above_contrib"] = all(
                summary[contender][f"mean_return_at_{step}"] >= summary["contrib"][f"mean_return_at_{step}"]
                for step in at)
    settings = {contender: rlcore_settings(task, contender, overrides.get(contender, {}))[1]
                for contender in contenders if contender != "contrib"}
    return {"env": task["env"], "num_envs": task["num_envs"], **summary,
            "settings": {"both": {**task["ppo"], "normalize": task["normalize"]}, **settings}}


def parse_overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        contender, _, assignment = item.partition(":")
        key, value = parse_setting(assignment)
        overrides.setdefault(contender, {})[key] = value
    return overrides


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--tasks", default="cartpole,pendulum", help=f"comma-separated: {', '.join(TASKS)}")
    parser.add_argument("--contenders", default=",".join(CONTENDERS), help=f"comma-separated: {', '.join(CONTENDERS)}")
    parser.add_argument("--seeds", type=int, default=3, help="how many seeds: FIRST_SEED .. FIRST_SEED + SEEDS - 1")
    parser.add_argument("--first-seed", type=int, default=0, help="the first seed (more seeds for an earlier run)")
    parser.add_argument("--checkpoints", default="50000,100000", help="env steps at which to evaluate")
    parser.add_argument("--eval-episodes", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], metavar="CONTENDER:KEY=VALUE",
                        help="an rlcore setting for one contender, e.g. lstm:sequence_length=16 (experiments)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process")
    parser.add_argument("--quick", action="store_true", help="a smoke run: one seed, 2,048 env steps")
    args = parser.parse_args(argv)
    at = [2_048] if args.quick else [int(step) for step in args.checkpoints.split(",")]
    seeds = range(args.first_seed, args.first_seed + (1 if args.quick else args.seeds))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    overrides = parse_overrides(args.set)
    contenders = args.contenders.split(",")
    pool = ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) if args.jobs > 1 else None
    started = {name: start_runs(name, contenders, seeds, at, args.eval_episodes, overrides, pool)
               for name in args.tasks.split(",")}
    results = {name: summarize(name, runs, at, overrides) for name, runs in started.items()}
    import sb3_contrib

    print(json.dumps({
        "benchmark": "recurrent_ppo_vs_contrib", **results, "seeds": len(seeds), "first_seed": seeds.start,
        "eval_episodes": args.eval_episodes, "jobs": args.jobs, "load_average_1min": round(os.getloadavg()[0], 2),
        "cpu_count": os.cpu_count(), "overrides": overrides,
        "targets": {"return": "lstm at or above contrib at every checkpoint", "throughput_ratio_vs_contrib": 3.0},
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "sb3_contrib": sb3_contrib.__version__,
                     "python": platform.python_version(), "torch_threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
