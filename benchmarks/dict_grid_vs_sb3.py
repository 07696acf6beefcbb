"""Dict observations: PPO on DictGrid, rlcore vs Stable-Baselines3's ``MultiInputPolicy``, and rlcore's DQN.

``rlcore/DictGrid-v0`` (``envs/dict_grid.py``) observes ``Dict(image: uint8 [3, 5, 5], flag: Discrete(2))`` and is
learnable only by using both (best return 1, a policy ignoring the flag averages 0). Both libraries train PPO with
the same settings (:data:`PPO_SETTINGS`, passed explicitly to both) and the same network: per key, the image through
a 3x3 convolution of 16 filters, ReLU, a 128-unit linear layer, ReLU (rlcore's automatic ``SmallCNN``; for SB3, whose
``NatureCNN`` cannot take a 5x5 image, :class:`SB3DictGridExtractor` with the same layers) and the flag one-hot,
concatenated and shared by 64x64 tanh actor and critic MLPs, initialised alike (orthogonal, gain sqrt 2 in the
extractor and hidden layers, 0.01 and 1 for the policy and value outputs: SB3's ``ortho_init``, rlcore's default).
Each seed trains ``--budget`` env steps per library (the order alternating per seed), on the CPU with one torch
thread, logging, progress bars and evaluations off. rlcore's run takes the env the three ways a user can give it,
one per seed in turn: the registered id, the ``DictGridEnv`` class (with ``wrappers=`` adding the id's 20-step time
limit) and a factory.

Measured per run: the mean return of ``--eval-episodes`` deterministic episodes on the same seeded evaluation envs,
and env steps per second of the whole run (construction included), per wall-clock second and per second of the
process's CPU time (the figure a machine whose load changes during the run distorts least). Reported: per-seed
figures, means, and ``level_gap`` = rlcore's mean return minus SB3's (acceptance: rlcore reaches SB3's level, gap
>= -0.05 on a return scale of [-1, 1]). DQN (rlcore) trains ``--dqn-budget`` env steps per seed with
:data:`DQN_SETTINGS` and is evaluated the same way.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/dict_grid_vs_sb3.py [--seeds 3] [--budget 100000] [--jobs 1] [--quick]

``--jobs N`` runs N processes at once (one torch thread each): a seed's two PPO runs share one process, each DQN
run has its own; the steps/s figures of runs that shared the cores compare only within a process (the ratio).
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
from concurrent.futures import ProcessPoolExecutor
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402
from torch import Tensor, nn  # noqa: E402

import rlcore  # noqa: E402
from envs.dict_grid import DictGridEnv  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "rlcore/DictGrid-v0"
TIME_LIMIT = 20
NUM_ENVS = 8
PPO_SETTINGS: dict[str, Any] = {"n_steps": 64, "batch_size": 128, "n_epochs": 4, "learning_rate": 1e-3,
                                "gamma": 0.95, "gae_lambda": 0.95, "ent_coef": 0.01, "clip_range": 0.2,
                                "vf_coef": 0.5, "max_grad_norm": 0.5}
"""The PPO settings both libraries take under the same name (8 envs)."""
DQN_SETTINGS: dict[str, Any] = {"learning_rate": 5e-4, "buffer_size": 50_000, "learning_starts": 1_000,
                                "batch_size": 64, "gamma": 0.95, "train_freq": 4, "target_update_interval": 500,
                                "exploration_fraction": 0.3, "exploration_final_eps": 0.05}
"""rlcore DQN's settings on DictGrid (1 env)."""
LEVEL_TOLERANCE = 0.05


class SB3DictGridExtractor(BaseFeaturesExtractor):
    """rlcore's automatic Dict encoder for DictGrid, in plain PyTorch for SB3: SB3 hands the image scaled to [0, 1]
    (``[B, 3, 5, 5]``) and the flag one-hot (``[B, 2]``); output ``[B, 128 + 2]``."""

    def __init__(self, observation_space: gym.spaces.Dict, features_dim: int = 128, channels: int = 16) -> None:
        image = observation_space["image"]
        flag_size = int(observation_space["flag"].n)
        super().__init__(observation_space, features_dim + flag_size)
        in_channels, height, width = image.shape
        self.convs = nn.Sequential(nn.Conv2d(in_channels, channels, 3), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(channels * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: dict[str, Tensor]) -> Tensor:
        flag = observations["flag"]
        return torch.cat([self.linear(self.convs(observations["image"])), flag.reshape(len(flag), -1)], dim=1)


def with_time_limit(env: gym.Env) -> gym.Env:
    return gym.wrappers.TimeLimit(env, TIME_LIMIT)


def dict_grid_factory() -> gym.Env:
    return with_time_limit(DictGridEnv())


ENV_WAYS: list[tuple[str, Any, list[Callable[[gym.Env], gym.Env]] | None]] = [
    ("registered id", ENV_ID, None),
    ("env class + wrappers=", DictGridEnv, [with_time_limit]),
    ("factory", dict_grid_factory, None),
]


def evaluate(predict: Callable[[dict[str, np.ndarray]], Any], episodes: int) -> float:
    """Mean return of ``episodes`` deterministic episodes, each on a fresh env reset with seed 10_000 + k."""
    env = gym.make(ENV_ID)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=10_000 + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(int(predict(obs)))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return float(np.mean(returns))


def rlcore_run(algo: str, seed: int, steps: int, episodes: int) -> dict[str, Any]:
    way, env, wrappers = ENV_WAYS[seed % len(ENV_WAYS)] if algo == "ppo" else ENV_WAYS[0]
    num_envs = NUM_ENVS if algo == "ppo" else 1
    settings = dict(PPO_SETTINGS if algo == "ppo" else DQN_SETTINGS)
    start, cpu_start = time.perf_counter(), time.process_time()
    config = TrainConfig(total_env_steps=steps, num_envs=num_envs, seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False)
    trainer = Trainer(algo, env, config, settings, wrappers=wrappers)
    trainer.run()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    agent = trainer.agent()
    return {"env": way, "steps_per_s": round(trainer.env_steps / seconds, 1),
            "steps_per_cpu_s": round(trainer.env_steps / cpu_seconds, 1),
            "mean_return": round(evaluate(lambda obs: agent.predict(obs), episodes), 3)}


def sb3_run(seed: int, steps: int, episodes: int) -> dict[str, Any]:
    start, cpu_start = time.perf_counter(), time.process_time()
    model = PPO("MultiInputPolicy", make_vec_env(ENV_ID, n_envs=NUM_ENVS, seed=seed), device="cpu", seed=seed,
                verbose=0, policy_kwargs={"features_extractor_class": SB3DictGridExtractor}, **PPO_SETTINGS)
    model.learn(total_timesteps=steps)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {"steps_per_s": round(model.num_timesteps / seconds, 1),
            "steps_per_cpu_s": round(model.num_timesteps / cpu_seconds, 1),
            "mean_return": round(evaluate(lambda obs: model.predict(obs, deterministic=True)[0], episodes), 3)}


def ppo_side_by_side(seed: int, budget: int, episodes: int) -> dict[str, dict[str, Any]]:
    """rlcore's and SB3's PPO runs of one seed, in one process (the order alternating per seed)."""
    configure_process()
    order = ["rlcore", "sb3"] if seed % 2 == 0 else ["sb3", "rlcore"]
    runs = {}
    for name in order:
        runs[name] = rlcore_run("ppo", seed, budget, episodes) if name == "rlcore" else sb3_run(seed, budget, episodes)
        print(f"seed {seed} {name} ppo: {runs[name]}", file=sys.stderr, flush=True)
    return runs


def dqn_seed(seed: int, budget: int, episodes: int) -> dict[str, Any]:
    configure_process()
    run = rlcore_run("dqn", seed, budget, episodes)
    print(f"seed {seed} rlcore dqn: {run}", file=sys.stderr, flush=True)
    return run


def configure_process() -> None:
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=100_000, help="PPO env steps per run (both libraries)")
    parser.add_argument("--dqn-budget", type=int, default=30_000, help="rlcore DQN env steps per run (0: no DQN)")
    parser.add_argument("--eval-episodes", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=1,
                        help="processes at once: each runs one seed's rlcore and SB3 PPO side by side, or its DQN")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error("--jobs must be >= 1")
    seeds, budget, dqn_budget, episodes = ((1, 2_048, 2_000, 10) if args.quick else
                                           (args.seeds, args.budget, args.dqn_budget, args.eval_episodes))
    configure_process()
    with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        ppo_jobs = [pool.submit(ppo_side_by_side, seed, budget, episodes) for seed in range(seeds)]
        dqn_jobs = [pool.submit(dqn_seed, seed, dqn_budget, episodes) for seed in range(seeds if dqn_budget else 0)]
        ppo_runs = [job.result() for job in ppo_jobs]
        runs: dict[str, list[dict[str, Any]]] = {"rlcore_ppo": [run["rlcore"] for run in ppo_runs],
                                                 "sb3_ppo": [run["sb3"] for run in ppo_runs],
                                                 "rlcore_dqn": [job.result() for job in dqn_jobs]}
    mean = {name: statistics.fmean(run["mean_return"] for run in values) if values else None
            for name, values in runs.items()}
    rate = {name: statistics.median(run["steps_per_s"] for run in values) if values else None
            for name, values in runs.items()}
    gap = mean["rlcore_ppo"] - mean["sb3_ppo"]
    # per seed: a seed's two runs shared one process
    pairs = list(zip(runs["rlcore_ppo"], runs["sb3_ppo"]))
    ratios = [ours["steps_per_s"] / theirs["steps_per_s"] for ours, theirs in pairs]
    cpu_ratios = [ours["steps_per_cpu_s"] / theirs["steps_per_cpu_s"] for ours, theirs in pairs]
    print(json.dumps({
        "benchmark": "dict_grid_vs_sb3",
        "env": ENV_ID,
        "rlcore_ppo_mean_return": round(mean["rlcore_ppo"], 3),
        "sb3_ppo_mean_return": round(mean["sb3_ppo"], 3),
        "sb3_ppo_seed_range": [min(run["mean_return"] for run in runs["sb3_ppo"]),
                               max(run["mean_return"] for run in runs["sb3_ppo"])],
        "level_gap": round(gap, 3),
        "rlcore_reaches_sb3_level": gap >= -LEVEL_TOLERANCE,
        "rlcore_ppo_steps_per_s": rate["rlcore_ppo"],
        "sb3_ppo_steps_per_s": rate["sb3_ppo"],
        "throughput_ratio": round(statistics.median(ratios), 3),
        "cpu_throughput_ratio": round(statistics.median(cpu_ratios), 3),
        "rlcore_dqn_mean_return": round(mean["rlcore_dqn"], 3) if mean["rlcore_dqn"] is not None else None,
        "per_seed": runs,
        "ppo_settings": {"num_envs": NUM_ENVS, **PPO_SETTINGS}, "ppo_budget": budget,
        "dqn_settings": {"num_envs": 1, **DQN_SETTINGS}, "dqn_budget": dqn_budget,
        "eval_episodes": episodes, "seeds": seeds, "jobs": args.jobs,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "sb3": stable_baselines3.__version__,
                     "python": platform.python_version(), "torch_threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
