"""rl-zoo's settings on every env that runs here: rlcore vs Stable-Baselines3, same settings, same seeds, one run.

Every PPO, A2C, DQN, SAC and TD3 entry of rl-baselines3-zoo's ``hyperparams/{ppo,a2c,dqn,sac,td3}.yml`` whose env
runs on this machine (classic control, Box2D, MuJoCo: the zoo's -v4 settings on gymnasium's -v5 envs), plus rlcore's
own MinAtar preset (rl-zoo has no MinAtar setting), is a *task* (:data:`TASKS`). Both libraries train each task
with the zoo's settings, passed explicitly to both (SB3's defaults otherwise, which rlcore's configs share), with
the same seeds; runs alternate rlcore / SB3 per seed so slow drifts of the machine cancel. Each task runs in its
own child process, under one of two thread settings:

- ``one``: ``OMP_NUM_THREADS=MKL_NUM_THREADS=OPENBLAS_NUM_THREADS=1`` for both;
- ``default``: no thread variable, as a user runs them: rlcore's ``threads="auto"`` against SB3's (torch's)
  defaults. rlcore's choice is process-wide, so torch's and the BLAS pool's start-up counts are put back before
  each SB3 run.

Two modes:

- ``throughput`` (default): a fixed, modest number of env steps per task (``--steps``, rounded up to whole
  rollouts or training periods; at least one update; off-policy: after the zoo's ``learning_starts`` random steps,
  10,000 on MuJoCo, so keep ``--steps`` well above that cheap phase's cost), evaluation off; reports env steps/s
  (wall clock, construction included; CPU seconds too) and where the time goes: ``env_step`` (the vector env's
  step), ``act`` (the behaviour policy), ``store`` (rollout / replay writes), ``update`` (learning),
  ``evaluation``, ``other`` (the loop's glue and construction), in seconds per run.
- ``learning``: the zoo's budget (``n_timesteps``) with an evaluation of 10 deterministic episodes every
  ``budget / 20`` env steps (after the update, for both); reports each seed's final return (the final policy's
  mean over 100 further deterministic episodes, same seeds for both libraries), the wall time (construction and
  evaluations included) and env steps until the first evaluation reaching the task's reference score, and
  whether rlcore's mean final return lies within SB3's seed spread (at least SB3's worst seed).

The reference score of a task is the lower of gymnasium's ``reward_threshold`` and rl-zoo's published score
(``benchmark.md``: mean minus one std of the zoo's trained agent). Settings rlcore does not have are dropped for
both libraries and listed in the task's ``deviations`` (before session 35, gSDE: PPO's, A2C's and SAC's
``use_sde`` now reach both, with SAC's ``log_std_init``, which SB3 reads only with gSDE).
TD3's ``noise_type``/``noise_std`` become SB3's action-noise object (zero mean, ``noise_std`` per action dimension,
as rl-zoo builds it) and rlcore's ``action_noise``/``noise_std``. rlcore's SAC/TD3 run with its defaults otherwise
(``amp="auto"``: bfloat16 products on a CPU with AMX for layers >= 256 wide); the JSON's ``engine`` says what
trained.

Each task prints one JSON line (also appended to ``--out``); ``--table`` rewrites the summary table in
``docs/performance.md`` from the result files. Another algorithm both libraries have joins through
:func:`register_algorithm` and entries in :data:`TASKS`.

    nice -n 19 python benchmarks/zoo_suite.py                                   # throughput, every task, both
    nice -n 19 python benchmarks/zoo_suite.py --quick --threads 1               # the short subset, one thread
    nice -n 19 python benchmarks/zoo_suite.py --mode learning --tasks dqn/MountainCar-v0 --threads one
    python benchmarks/zoo_suite.py --list                                       # the tasks and their budgets
    # a long task's seeds on two cores: two processes, then one line with every seed
    taskset -c 0 python benchmarks/zoo_suite.py --mode learning --tasks a2c/Pendulum-v1 --threads one --seeds 2 \
        --out a.jsonl & taskset -c 1 python benchmarks/zoo_suite.py --mode learning --tasks a2c/Pendulum-v1 \
        --threads one --seeds 2 --first-seed 2 --out b.jsonl; wait
    python benchmarks/zoo_suite.py --merge a.jsonl b.jsonl                      # to the mode's result file
    python benchmarks/zoo_suite.py --table                                      # docs/performance.md from results
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "performance.md"
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
TABLE_BEGIN, TABLE_END = "<!-- zoo_suite:begin -->", "<!-- zoo_suite:end -->"
LEARNING_SEEDS = 3
"""Learning mode: seeds per library unless ``--seeds`` says otherwise (the issue's verdicts are over 3 seeds)."""
EVALUATIONS = 20
"""Learning mode: evaluations per run (every ``budget / EVALUATIONS`` env steps, rounded to whole rollouts)."""
EVAL_EPISODES = 10
FINAL_EPISODES = 100
"""Learning mode: deterministic episodes of the final policy (seeds ``20_000 + seed`` on), after the run's clock
stops; its mean is the run's final return (10 episodes alone leave a standard error of 3-6 on Acrobot)."""
GSDE_KEYS = ("use_sde", "sde_sample_freq")
GSDE_ALGOS = ("ppo", "a2c", "sac")
"""rlcore's algorithms with gSDE: the zoo's ``use_sde``/``sde_sample_freq`` reach both libraries; for any other
they would be dropped for both, and said so (:attr:`Task.deviations`)."""


def dropped_keys(algo: str) -> tuple[str, ...]:
    """Zoo keys not passed to either library: the policy class (read separately), and gSDE's where rlcore's
    algorithm has none."""
    return ("policy",) + (() if algo in GSDE_ALGOS else GSDE_KEYS)


# --------------------------------------------------------------------------------------------------- the tasks
@dataclass(frozen=True)
class Task:
    """One zoo entry: ``zoo`` holds it as in ``hyperparams/<algo>.yml`` (SB3's names; ``lin_X`` schedules as
    strings, ``policy_kwargs`` as a dict with ``activation_fn`` by name)."""

    algo: str
    env: str
    zoo: dict[str, Any]
    zoo_score: tuple[float, float] | None
    """rl-zoo's published ``(mean, std)`` for this algorithm and env (benchmark.md), None where it has none."""
    source: str = "rl-zoo"
    env_wrapper: str | None = None
    """A name in :data:`ENV_FACTORIES` when the zoo wraps the env (the same factory is given to both libraries)."""
    zoo_env: str | None = None
    """The env id of the zoo's entry when it differs from :attr:`env` (an older version, e.g. MuJoCo's -v4)."""
    score_env: str | None = None
    """The env id of the zoo's published score when it differs from :attr:`env` (e.g. MuJoCo's -v3)."""

    @property
    def name(self) -> str:
        return f"{self.algo}/{self.env}"

    @property
    def n_envs(self) -> int:
        return int(self.zoo.get("n_envs", 1))

    @property
    def budget(self) -> int:
        return int(float(self.zoo["n_timesteps"]))

    @property
    def reference(self) -> float | None:
        """The lower of gymnasium's reward threshold and the zoo's mean minus one std."""
        import gymnasium as gym

        candidates = []
        if self.zoo_score is not None:
            candidates.append(self.zoo_score[0] - self.zoo_score[1])
        threshold = gym.spec(self.env).reward_threshold if self.env in gym.registry else None
        if threshold is not None:
            candidates.append(float(threshold))
        return min(candidates) if candidates else None

    @property
    def deviations(self) -> list[str]:
        notes = [f"{key}={self.zoo[key]} dropped for both (rlcore's {self.algo.upper()} has no gSDE)"
                 for key in ("use_sde",) if self.zoo.get(key) and key in dropped_keys(self.algo)]
        notes += [f"policy_kwargs {key}={value} dropped for both (without gSDE SB3's {self.algo.upper()} ignores it)"
                  for key, value in self.zoo.get("policy_kwargs", {}).items() if key in dropped_policy_kwargs(self)]
        if int(self.zoo.get("gradient_steps", 1)) == -1:
            notes.append("gradient_steps=-1 passed as train_freq * n_envs to both")
        if self.zoo_env is not None:
            notes.append(f"rl-zoo's settings are for {self.zoo_env}; run on {self.env} with the same settings")
        if self.score_env is not None:
            notes.append(f"rl-zoo's published score is for {self.score_env}")
        return notes


def _zoo(**entry: Any) -> dict[str, Any]:
    return entry


PENDULUM_A2C = _zoo(normalize=True, n_envs=8, n_timesteps=1e6, ent_coef=0.0, max_grad_norm=0.5, n_steps=8,
                    gae_lambda=0.9, vf_coef=0.4, gamma=0.9, use_rms_prop=True, normalize_advantage=False,
                    learning_rate="lin_7e-4", use_sde=True, policy_kwargs={"log_std_init": -2, "ortho_init": False})
BIPEDAL_A2C = _zoo(normalize=True, n_envs=16, n_timesteps=5e6, ent_coef=0.0, max_grad_norm=0.5, n_steps=8,
                   gae_lambda=0.9, vf_coef=0.4, gamma=0.99, use_rms_prop=True, normalize_advantage=False,
                   learning_rate="lin_0.00096", use_sde=True, policy_kwargs={"log_std_init": -2, "ortho_init": False})
DQN_LUNAR = _zoo(n_timesteps=1e5, learning_rate=6.3e-4, batch_size=128, buffer_size=50000, learning_starts=0,
                 gamma=0.99, target_update_interval=250, train_freq=4, gradient_steps=-1, exploration_fraction=0.12,
                 exploration_final_eps=0.1, policy_kwargs={"net_arch": [256, 256]})
SAC_MUJOCO = _zoo(n_timesteps=1e6, learning_starts=10000)
TD3_BOX2D = _zoo(n_timesteps=1e6, gamma=0.98, buffer_size=200000, learning_starts=10000, noise_type="normal",
                 noise_std=0.1, gradient_steps=1, train_freq=1, learning_rate=1e-3,
                 policy_kwargs={"net_arch": [400, 300]})
TD3_MUJOCO = _zoo(n_timesteps=1e6, learning_starts=10000, noise_type="normal", noise_std=0.1, train_freq=1,
                  gradient_steps=1, learning_rate=1e-3, batch_size=256, policy_kwargs={"net_arch": [400, 300]})


def mujoco(algo: str, name: str, zoo: dict[str, Any], score: tuple[float, float]) -> Task:
    """A zoo MuJoCo entry (settings for ``<name>-v4``, scores for ``-v3``) run on gymnasium's ``<name>-v5``."""
    return Task(algo, f"{name}-v5", zoo, score, zoo_env=f"{name}-v4", score_env=f"{name}-v3")


TASKS: list[Task] = [
    # --- PPO (hyperparams/ppo.yml) ------------------------------------------------------------------------------
    Task("ppo", "CartPole-v1", _zoo(n_envs=8, n_timesteps=1e5, n_steps=32, batch_size=256, gae_lambda=0.8,
                                    gamma=0.98, n_epochs=20, ent_coef=0.0, learning_rate="lin_0.001",
                                    clip_range="lin_0.2"), (500.0, 0.0)),
    Task("ppo", "MountainCar-v0", _zoo(normalize=True, n_envs=16, n_timesteps=1e6, n_steps=16, gae_lambda=0.98,
                                       gamma=0.99, n_epochs=4, ent_coef=0.0), (-110.423, 19.473)),
    Task("ppo", "MountainCarContinuous-v0", _zoo(
        normalize=True, n_envs=1, n_timesteps=20000, batch_size=256, n_steps=8, gamma=0.9999,
        learning_rate=7.77e-05, ent_coef=0.00429, clip_range=0.1, n_epochs=10, gae_lambda=0.9, max_grad_norm=5,
        vf_coef=0.19, use_sde=True, sde_sample_freq=16, policy_kwargs={"log_std_init": -3.29, "ortho_init": False}),
        (88.343, 2.572)),
    Task("ppo", "Acrobot-v1", _zoo(normalize=True, n_envs=16, n_timesteps=1e6, n_steps=256, gae_lambda=0.94,
                                   gamma=0.99, n_epochs=4, ent_coef=0.0), (-73.506, 18.201)),
    Task("ppo", "Pendulum-v1", _zoo(n_envs=4, n_timesteps=1e5, n_steps=1024, gae_lambda=0.95, gamma=0.9,
                                    n_epochs=10, ent_coef=0.0, learning_rate=1e-3, clip_range=0.2, use_sde=True,
                                    sde_sample_freq=4), (-172.225, 104.159)),
    Task("ppo", "LunarLander-v3", _zoo(n_envs=16, n_timesteps=1e6, n_steps=1024, batch_size=64, gae_lambda=0.98,
                                       gamma=0.999, n_epochs=4, ent_coef=0.01), (242.119, 31.823)),
    Task("ppo", "LunarLanderContinuous-v3", _zoo(n_envs=16, n_timesteps=1e6, n_steps=1024, batch_size=64,
                                                 gae_lambda=0.98, gamma=0.999, n_epochs=4, ent_coef=0.01),
         (270.863, 32.072)),
    Task("ppo", "BipedalWalker-v3", _zoo(normalize=True, n_envs=32, n_timesteps=5e6, n_steps=2048, batch_size=64,
                                         gae_lambda=0.95, gamma=0.999, n_epochs=10, ent_coef=0.0,
                                         learning_rate=3e-4, clip_range=0.18), (287.939, 2.448)),
    Task("ppo", "BipedalWalkerHardcore-v3", _zoo(normalize=True, n_envs=16, n_timesteps=10e7, n_steps=2048,
                                                 batch_size=64, gae_lambda=0.95, gamma=0.99, n_epochs=10,
                                                 ent_coef=0.001, learning_rate="lin_2.5e-4", clip_range="lin_0.2"),
         (122.374, 117.605)),
    Task("ppo", "CarRacing-v3", _zoo(
        policy="CnnPolicy", normalize={"norm_obs": False, "norm_reward": True}, n_envs=8, n_timesteps=4e6,
        batch_size=128, n_steps=512, gamma=0.99, gae_lambda=0.95, n_epochs=10, ent_coef=0.0, sde_sample_freq=4,
        max_grad_norm=0.5, vf_coef=0.5, learning_rate="lin_1e-4", use_sde=True, clip_range=0.2,
        policy_kwargs={"log_std_init": -2, "ortho_init": False, "activation_fn": "gelu",
                       "net_arch": {"pi": [256], "vf": [256]}}), (153.938, 74.465), env_wrapper="car_racing"),
    # --- A2C (hyperparams/a2c.yml) ------------------------------------------------------------------------------
    Task("a2c", "CartPole-v1", _zoo(n_envs=8, n_timesteps=5e5, ent_coef=0.0), (500.0, 0.0)),
    Task("a2c", "LunarLander-v3", _zoo(n_envs=8, n_timesteps=2e5, gamma=0.995, n_steps=5,
                                       learning_rate="lin_0.00083", ent_coef=0.00001), (155.751, 80.419)),
    Task("a2c", "MountainCar-v0", _zoo(normalize=True, n_envs=16, n_timesteps=1e6, ent_coef=0.0),
         (-111.263, 24.087)),
    Task("a2c", "Acrobot-v1", _zoo(normalize=True, n_envs=16, n_timesteps=5e5, ent_coef=0.0), (-83.353, 17.213)),
    Task("a2c", "Pendulum-v1", PENDULUM_A2C, (-162.965, 103.210)),
    Task("a2c", "LunarLanderContinuous-v3", {**PENDULUM_A2C, "n_envs": 4, "n_timesteps": 5e6, "gamma": 0.99},
         (84.225, 145.906)),
    Task("a2c", "MountainCarContinuous-v0", _zoo(normalize=True, n_envs=4, n_steps=100, n_timesteps=1e5,
                                                 ent_coef=0.0, use_sde=True, sde_sample_freq=16,
                                                 policy_kwargs={"log_std_init": 0.0, "ortho_init": False}),
         (91.166, 0.255)),
    Task("a2c", "BipedalWalker-v3", BIPEDAL_A2C, (299.754, 23.459)),
    Task("a2c", "BipedalWalkerHardcore-v3", {**BIPEDAL_A2C, "n_envs": 32, "n_timesteps": 20e7, "ent_coef": 0.001,
                                             "learning_rate": "lin_0.0008"}, (96.171, 122.943)),
    # --- DQN (hyperparams/dqn.yml) ------------------------------------------------------------------------------
    Task("dqn", "CartPole-v1", _zoo(n_timesteps=5e4, learning_rate=2.3e-3, batch_size=64, buffer_size=100000,
                                    learning_starts=1000, gamma=0.99, target_update_interval=10, train_freq=256,
                                    gradient_steps=128, exploration_fraction=0.16, exploration_final_eps=0.04,
                                    policy_kwargs={"net_arch": [256, 256]}), (500.0, 0.0)),
    Task("dqn", "MountainCar-v0", _zoo(n_timesteps=1.2e5, learning_rate=4e-3, batch_size=128, buffer_size=10000,
                                       learning_starts=1000, gamma=0.98, target_update_interval=600, train_freq=16,
                                       gradient_steps=8, exploration_fraction=0.2, exploration_final_eps=0.07,
                                       policy_kwargs={"net_arch": [256, 256]}), (-100.849, 9.925)),
    Task("dqn", "LunarLander-v3", DQN_LUNAR, (154.382, 79.241)),
    Task("dqn", "Acrobot-v1", DQN_LUNAR, (-76.639, 11.752)),
    # --- SAC (hyperparams/sac.yml) ------------------------------------------------------------------------------
    Task("sac", "MountainCarContinuous-v0", _zoo(
        n_timesteps=50000, learning_rate=3e-4, buffer_size=50000, batch_size=512, ent_coef=0.1, train_freq=32,
        gradient_steps=32, gamma=0.9999, tau=0.01, learning_starts=0, use_sde=True,
        policy_kwargs={"log_std_init": -3.67, "net_arch": [64, 64]}), (94.679, 1.134)),
    Task("sac", "Pendulum-v1", _zoo(n_timesteps=20000, learning_rate=1e-3), (-156.995, 88.714)),
    Task("sac", "LunarLanderContinuous-v3", _zoo(
        n_timesteps=5e5, batch_size=256, learning_rate="lin_7.3e-4", buffer_size=1000000, ent_coef="auto",
        gamma=0.99, tau=0.01, train_freq=1, gradient_steps=1, learning_starts=10000,
        policy_kwargs={"net_arch": [400, 300]}), (260.390, 65.467), score_env="LunarLanderContinuous-v2"),
    Task("sac", "BipedalWalker-v3", _zoo(
        n_timesteps=5e5, learning_rate=7.3e-4, buffer_size=300000, batch_size=256, ent_coef="auto", gamma=0.98,
        tau=0.02, train_freq=64, gradient_steps=64, learning_starts=10000, use_sde=True,
        policy_kwargs={"log_std_init": -3, "net_arch": [400, 300]}), (297.668, 33.060)),
    Task("sac", "BipedalWalkerHardcore-v3", _zoo(
        n_timesteps=1e7, learning_rate="lin_7.3e-4", buffer_size=1000000, batch_size=256, ent_coef=0.005,
        gamma=0.99, tau=0.01, train_freq=1, gradient_steps=1, learning_starts=10000,
        policy_kwargs={"net_arch": [400, 300]}), (4.423, 103.910)),
    mujoco("sac", "HalfCheetah", SAC_MUJOCO, (9535.451, 100.470)),
    mujoco("sac", "Ant", SAC_MUJOCO, (4615.791, 1354.111)),
    mujoco("sac", "Hopper", SAC_MUJOCO, (2325.547, 1129.676)),
    mujoco("sac", "Walker2d", SAC_MUJOCO, (3863.203, 254.347)),
    mujoco("sac", "Humanoid", {**SAC_MUJOCO, "n_timesteps": 2e6}, (6232.287, 279.885)),
    mujoco("sac", "Swimmer", {**SAC_MUJOCO, "gamma": 0.999}, (345.568, 3.084)),
    # --- TD3 (hyperparams/td3.yml; noise_type/noise_std: SB3's action_noise object, rlcore's action_noise) -------
    Task("td3", "MountainCarContinuous-v0", _zoo(
        n_timesteps=300000, noise_type="ornstein-uhlenbeck", noise_std=0.5, gradient_steps=1, train_freq=1,
        learning_rate=1e-3, batch_size=256, policy_kwargs={"net_arch": [400, 300]}), (93.483, 0.075)),
    Task("td3", "Pendulum-v1", {**TD3_BOX2D, "n_timesteps": 20000}, (-151.855, 90.227)),
    Task("td3", "LunarLanderContinuous-v3", {**TD3_BOX2D, "n_timesteps": 3e5}, (207.451, 67.562),
         score_env="LunarLanderContinuous-v2"),
    Task("td3", "BipedalWalker-v3", TD3_BOX2D, (305.990, 56.886)),
    Task("td3", "BipedalWalkerHardcore-v3", _zoo(
        n_timesteps=1e7, gamma=0.99, buffer_size=1000000, learning_starts=10000, noise_type="normal", noise_std=0.1,
        batch_size=256, train_freq=1, learning_rate="lin_7e-4", policy_kwargs={"net_arch": [400, 300]}),
        (-98.116, 16.087)),
    mujoco("td3", "HalfCheetah", TD3_MUJOCO, (9655.666, 969.916)),
    mujoco("td3", "Ant", TD3_MUJOCO, (5813.274, 589.773)),
    mujoco("td3", "Hopper", TD3_MUJOCO, (3606.390, 4.027)),
    mujoco("td3", "Walker2d", TD3_MUJOCO, (4717.823, 46.303)),
    mujoco("td3", "Humanoid", {**TD3_MUJOCO, "n_timesteps": 2e6}, (5566.687, 14.544)),
    mujoco("td3", "Swimmer", {**TD3_MUJOCO, "gamma": 0.9999}, (359.127, 1.244)),
    # --- rlcore's own preset on MinAtar (rl-zoo has none): rlcore/presets/ppo.yaml -------------------------------
    Task("ppo", "rlcore/MinAtar-Breakout-v0", _zoo(
        n_envs=8, n_timesteps=1e6, n_steps=128, batch_size=256, n_epochs=4, learning_rate=3e-3, clip_range=0.2,
        ent_coef=0.01, vf_coef=0.5, gamma=0.99, gae_lambda=0.95, max_grad_norm=0.5),
        None, source="rlcore preset", env_wrapper="minatar_breakout"),
]
"""Every zoo entry for PPO, A2C, DQN, SAC and TD3 whose env runs here (gymnasium's current versions: LunarLander-v3
for the zoo's v2 scores; MuJoCo's -v5 for the zoo's -v4 settings and -v3 scores), and rlcore's MinAtar preset."""

QUICK = ("ppo/CartPole-v1", "ppo/Acrobot-v1", "ppo/MountainCar-v0", "ppo/Pendulum-v1", "ppo/LunarLander-v3",
         "a2c/CartPole-v1", "a2c/Acrobot-v1", "a2c/MountainCar-v0", "dqn/CartPole-v1", "dqn/MountainCar-v0",
         "dqn/Acrobot-v1", "sac/Pendulum-v1", "td3/Pendulum-v1", "ppo/rlcore/MinAtar-Breakout-v0")
"""``--quick``: the classic-control tasks the issue names, one Box2D and the MinAtar task, at fewer env steps."""
QUICK_STEPS = 8_192

MINATAR_REFERENCE = 10.0
"""rlcore's MinAtar Breakout preset's target (issue 4): a mean return of 10."""


# ------------------------------------------------------------------------------------------- env factories
def car_racing_wrappers() -> list[Callable[[Any], Any]]:
    """rl-zoo's CarRacing-v3 wrappers, innermost first: frame skip 2, 64x64, grayscale, the last 2 frames stacked on
    the channel axis. The frame skip is :class:`envs.car_racing.FrameSkip`: over rlcore's leaner CarRacing it does
    not draw the skipped frame, over gymnasium's it steps it as the zoo's wrapper does."""
    import gymnasium as gym
    import numpy as np
    from gymnasium.wrappers import GrayscaleObservation, ResizeObservation

    from envs.car_racing import FrameSkip

    class StackLast(gym.ObservationWrapper):
        def __init__(self, env: gym.Env, frames: int = 2) -> None:
            super().__init__(env)
            height, width, channels = env.observation_space.shape
            self.frames = np.zeros((height, width, channels * frames), dtype=np.uint8)
            self.observation_space = gym.spaces.Box(0, 255, self.frames.shape, np.uint8)
            self.channels = channels

        def reset(self, **kwargs: Any) -> Any:
            obs, info = self.env.reset(**kwargs)
            self.frames[:] = 0
            return self.observation(obs), info

        def observation(self, observation: Any) -> Any:
            self.frames = np.roll(self.frames, -self.channels, axis=2)
            self.frames[..., -self.channels:] = observation
            return self.frames.copy()

    return [FrameSkip, lambda env: ResizeObservation(env, (64, 64)),
            lambda env: GrayscaleObservation(env, keep_dim=True), StackLast]


def car_racing() -> Any:
    """gymnasium's CarRacing-v3 in rl-zoo's wrappers (:func:`car_racing_wrappers`): what SB3 steps."""
    import gymnasium as gym

    env = gym.make("CarRacing-v3")
    for wrapper in car_racing_wrappers():
        env = wrapper(env)
    return env


def minatar_breakout() -> Any:
    """rlcore's MinAtar Breakout with the preset's minimal action set."""
    import gymnasium as gym

    import rlcore  # noqa: F401  (registers rlcore/MinAtar-*)

    return gym.make("rlcore/MinAtar-Breakout-v0", use_minimal_action_set=True)


ENV_FACTORIES: dict[str, Callable[[], Any]] = {"car_racing": car_racing, "minatar_breakout": minatar_breakout}


# ----------------------------------------------------------------------------------- the algorithms (hook)
@dataclass(frozen=True)
class AlgorithmAdapter:
    """How an algorithm both libraries have is run and timed.

    ``kind`` is ``"rollout"`` (on-policy: n_steps rollouts then an update) or ``"replay"`` (off-policy:
    train_freq steps then gradient steps); ``sb3_class`` names the SB3 (or sb3_contrib) class as
    ``module:Class``; ``rlcore_act``/``rlcore_store`` the rlcore methods timed as acting and storing.
    """

    name: str
    kind: str
    sb3_class: str
    rlcore_act: str
    rlcore_store: str


ALGORITHMS: dict[str, AlgorithmAdapter] = {}


def register_algorithm(name: str, kind: str, sb3_class: str, *, rlcore_act: str | None = None) -> None:
    """Adds an algorithm to the suite (its tasks go into :data:`TASKS`): e.g. ``register_algorithm("sac",
    "replay", "stable_baselines3:SAC")`` with SAC's zoo entries as ``Task("sac", ...)``."""
    ALGORITHMS[name] = AlgorithmAdapter(name, kind, sb3_class,
                                        rlcore_act or ("explore" if kind == "rollout" else "act"),
                                        "store" if kind == "rollout" else "replay.add")


register_algorithm("ppo", "rollout", "stable_baselines3:PPO")
register_algorithm("a2c", "rollout", "stable_baselines3:A2C")
register_algorithm("dqn", "replay", "stable_baselines3:DQN")
register_algorithm("sac", "replay", "stable_baselines3:SAC")
register_algorithm("td3", "replay", "stable_baselines3:TD3")

GSDE_ONLY_POLICY_KWARGS: dict[str, tuple[str, ...]] = {}
"""Per algorithm, the ``policy_kwargs`` SB3 reads only with gSDE, dropped for both where rlcore's algorithm has no
gSDE (none since session 35: SAC's ``log_std_init`` reaches its gSDE actor)."""
NOISE_CLASSES = {"normal": "NormalActionNoise", "ornstein-uhlenbeck": "OrnsteinUhlenbeckActionNoise"}
"""The zoo's ``noise_type`` -> SB3's action-noise class (rlcore's ``action_noise`` takes the zoo's name)."""


def dropped_policy_kwargs(task: Task) -> tuple[str, ...]:
    return GSDE_ONLY_POLICY_KWARGS.get(task.algo, ())


# ---------------------------------------------------------------------------------------- settings, both ways
def linear(value: Any) -> tuple[float, bool]:
    """``("lin_0.001" | 0.001)`` -> ``(0.001, is_linear)``."""
    if isinstance(value, str) and value.startswith("lin_"):
        return float(value[4:]), True
    return float(value), False


def normalization(task: Task) -> tuple[bool, bool]:
    """``(normalize observations, normalize rewards)`` of the zoo's ``normalize`` entry."""
    value = task.zoo.get("normalize", False)
    if isinstance(value, dict):
        return bool(value.get("norm_obs", True)), bool(value.get("norm_reward", True))
    return bool(value), bool(value)


def algo_settings(task: Task) -> dict[str, Any]:
    """The zoo's algorithm settings in SB3's names (the zoo's ``noise_type``/``noise_std`` as they are), without
    the loop's (``n_envs``, ``n_timesteps``, ``normalize``), the dropped ones and ``policy_kwargs``;
    ``gradient_steps=-1`` made explicit."""
    skip = {"n_envs", "n_timesteps", "normalize", "policy_kwargs", *dropped_keys(task.algo)}
    settings = {key: value for key, value in task.zoo.items() if key not in skip}
    if int(settings.get("gradient_steps", 1)) == -1:
        settings["gradient_steps"] = int(settings.get("train_freq", 4)) * task.n_envs
    return settings


def rlcore_config(task: Task) -> dict[str, Any]:
    """The task as rlcore's algorithm config fields."""
    config: dict[str, Any] = {}
    for key, value in algo_settings(task).items():
        if key in ("learning_rate", "clip_range"):
            start, is_linear = linear(value)
            config[key] = start
            if is_linear:
                config["lr_schedule" if key == "learning_rate" else "clip_range_schedule"] = "linear"
        elif key == "use_rms_prop":
            config["optimizer"] = "rmsprop" if value else "adam"
        elif key == "noise_type":
            config["action_noise"] = value
        else:
            config[key] = value
    if ALGORITHMS[task.algo].kind == "rollout":
        config["normalize_obs"], config["normalize_reward"] = normalization(task)
    policy_kwargs = policy_settings(task)
    arch = policy_kwargs.pop("net_arch", None)
    if isinstance(arch, dict):
        config["net_arch"], config["vf_arch"] = arch["pi"], arch["vf"]
    elif arch is not None:
        config["net_arch"] = arch
    if "activation_fn" in policy_kwargs:
        config["activation"] = policy_kwargs.pop("activation_fn")
    config.update(policy_kwargs)  # log_std_init, ortho_init
    if task.zoo.get("policy") == "CnnPolicy":
        config["features_extractor"] = "nature_cnn"
    if task.env == "rlcore/MinAtar-Breakout-v0":  # the preset's network: SmallCNN shared by linear heads
        config.update(features_extractor="small_cnn", net_arch=[], lr_schedule="linear", lr_schedule_steps=3_000_000)
    return config


def policy_settings(task: Task) -> dict[str, Any]:
    """The zoo's ``policy_kwargs`` without those dropped for both (:func:`dropped_policy_kwargs`)."""
    dropped = dropped_policy_kwargs(task)
    return {key: value for key, value in task.zoo.get("policy_kwargs", {}).items() if key not in dropped}


def action_noise(task: Task, noise_type: str, noise_std: float) -> Any:
    """SB3's action-noise object for the zoo's ``noise_type``/``noise_std``, as rl-zoo builds it: zero mean,
    ``noise_std`` in every action dimension (of the action space scaled to [-1, 1], as rlcore's)."""
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common import noise

    env = ENV_FACTORIES[task.env_wrapper]() if task.env_wrapper else gym.make(task.env)
    dim = int(np.prod(env.action_space.shape))
    env.close()
    return getattr(noise, NOISE_CLASSES[noise_type])(mean=np.zeros(dim), sigma=noise_std * np.ones(dim))


def sb3_settings(task: Task, total_steps: int) -> dict[str, Any]:
    """The task as SB3 keyword arguments (schedules as functions of SB3's remaining progress)."""
    import torch.nn as nn

    kwargs: dict[str, Any] = {}
    for key, value in algo_settings(task).items():
        if key in ("learning_rate", "clip_range"):
            start, is_linear = linear(value)
            kwargs[key] = (lambda progress, start=start: progress * start) if is_linear else start
        elif key == "use_rms_prop":
            continue  # SB3's A2C default (RMSprop), rlcore's too
        elif key == "noise_type":
            kwargs["action_noise"] = action_noise(task, value, float(task.zoo["noise_std"]))
        elif key != "noise_std":
            kwargs[key] = value
    policy_kwargs = policy_settings(task)
    if "activation_fn" in policy_kwargs:
        policy_kwargs["activation_fn"] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[
            policy_kwargs["activation_fn"]]
    if task.env == "rlcore/MinAtar-Breakout-v0":
        from sb3_extractors import SB3SmallCNN  # not ppo_cnn_vs_sb3, which sets OMP_NUM_THREADS=1 at import

        start = kwargs.pop("learning_rate")
        kwargs["learning_rate"] = lambda progress: start * (1.0 - (1.0 - progress) * total_steps / 3_000_000)
        policy_kwargs.update(features_extractor_class=SB3SmallCNN, features_extractor_kwargs={"features_dim": 128},
                             net_arch=[], share_features_extractor=True)
    if policy_kwargs:
        kwargs["policy_kwargs"] = policy_kwargs
    return kwargs


GYMNASIUM_ENVS_VARIABLE = "ZOO_SUITE_GYMNASIUM_ENVS"
"""Set (by ``--gymnasium-envs``, inherited by the task workers): rlcore steps gymnasium's env objects even where it
has a batched implementation of the id (``envs/classic_control.py``), to show what that implementation is worth."""


def rlcore_envs(task: Task) -> str:
    """Which envs rlcore steps: its ``batched`` implementation of the id, gymnasium's class with rlcore's
    ``leaner step`` (the BipedalWalkers), or ``gymnasium``'s env objects."""
    from envs.classic_control import RULES
    from rlcore.env import BATCHED_ENVS, LEANER_STEP_ENVS

    if os.environ.get(GYMNASIUM_ENVS_VARIABLE) or not isinstance(rlcore_env(task).env, str):
        return "gymnasium"
    if task.env in RULES or (task.env in BATCHED_ENVS and task.n_envs > 1):
        return "batched"
    return "leaner step" if task.env in LEANER_STEP_ENVS else "gymnasium"


def cpu_description() -> dict[str, Any]:
    """The machine's CPU as the results need it: its model, its vector instructions, whether bfloat16 products pay
    (rlcore's SAC/TD3/DQN take them then, ``amp="auto"``; float32 otherwise) and, where it has the instructions,
    their timed speed-up over float32."""
    from rlcore.kernels.mlp_bf16 import bf16_hardware, bf16_speedup, fast_bf16_matmul

    fields: dict[str, str] = {}
    try:
        for text in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = text.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = set(fields.get("flags", "").split())
    isa = [name for name in ("avx2", "fma", "avx512f", "avx512_bf16", "amx_tile") if name in flags]
    model = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields:
        model += f" (family {fields['cpu family']}, model {fields.get('model', '?')})"
    return {"model": model, "isa": ", ".join(isa) or "unknown", "bf16_products": fast_bf16_matmul(),
            "bf16_speedup": round(bf16_speedup(), 2) if bf16_hardware() else None}


def env_spec(task: Task) -> Any:
    """What SB3 steps (and rlcore, but for :func:`rlcore_env`'s exceptions)."""
    if task.env_wrapper:
        return ENV_FACTORIES[task.env_wrapper]
    if os.environ.get(GYMNASIUM_ENVS_VARIABLE):
        import gymnasium

        return functools.partial(gymnasium.make, task.env)  # a factory: rlcore vectorizes the env objects
    return task.env


@dataclass(frozen=True)
class RlcoreEnv:
    """What rlcore's Trainer gets for a task: the env (an id or a factory), its wrappers and ``env_kwargs``."""

    env: Any
    wrappers: list[Callable[[Any], Any]] = field(default_factory=list)
    env_kwargs: dict[str, Any] = field(default_factory=dict)


def rlcore_env(task: Task) -> RlcoreEnv:
    """The env as a user of rlcore passes it: CarRacing as its id with the zoo's wrappers (``make_vec_env`` builds
    rlcore's leaner CarRacing under them, the same pixels), MinAtar Breakout as its id with the preset's
    ``env_kwargs`` (rlcore's batched env, the same trajectories), every other task :func:`env_spec`."""
    if not os.environ.get(GYMNASIUM_ENVS_VARIABLE):
        if task.env_wrapper == "car_racing":
            return RlcoreEnv(task.env, car_racing_wrappers())
        if task.env_wrapper == "minatar_breakout":
            return RlcoreEnv(task.env, env_kwargs={"use_minimal_action_set": True})
    return RlcoreEnv(env_spec(task))


def reference(task: Task) -> float | None:
    return MINATAR_REFERENCE if task.env == "rlcore/MinAtar-Breakout-v0" else task.reference


# -------------------------------------------------------------------------------------------------- timing
def timed(owner: Any, attribute: str, timers: dict[str, float], key: str) -> None:
    """Replaces ``owner.attribute`` (a method, ``a.b`` for a nested owner) by a wrapper adding the CPU time of the
    process during the call to ``timers[key]`` (CPU time, not wall time: on a shared machine the waits for a core
    would otherwise land in whichever part was running)."""
    *path, attribute = attribute.split(".")
    for step in path:
        owner = getattr(owner, step)
    method = getattr(owner, attribute)
    timers.setdefault(key, 0.0)
    clock = time.process_time

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = clock()
        try:
            return method(*args, **kwargs)
        finally:
            timers[key] += clock() - start

    setattr(owner, attribute, wrapper)


@dataclass
class RunResult:
    """One training run: wall and CPU seconds, env steps, seconds per part, and its evaluations."""

    seconds: float
    cpu_seconds: float
    env_steps: int
    parts: dict[str, float]
    evaluations: list[tuple[int, float, float]] = field(default_factory=list)
    """``(env steps, seconds since the run started, mean return)`` after each evaluation."""
    threads: str = ""
    engine: str = ""
    """What trained: rlcore's kernel (and its precision) or autograd; SB3's autograd."""
    final_evaluation: float | None = None
    """Learning mode: the final policy's mean return over :data:`FINAL_EPISODES` episodes."""

    def to_json(self, target: float | None) -> dict[str, Any]:
        reached = next(((steps, seconds) for steps, seconds, score in self.evaluations
                        if target is not None and score >= target), None)
        parts = {key: round(value, 3) for key, value in self.parts.items()}
        parts["other"] = round(self.cpu_seconds - sum(self.parts.values()), 3)
        return {"seconds": round(self.seconds, 3), "cpu_seconds": round(self.cpu_seconds, 3),
                "env_steps": self.env_steps, "steps_per_s": round(self.env_steps / self.seconds, 1),
                "cpu_steps_per_s": round(self.env_steps / self.cpu_seconds, 1),
                "parts_cpu_seconds": parts, "threads": self.threads, "engine": self.engine,
                "evaluations": [[steps, round(seconds, 2), round(score, 2)] for steps, seconds, score in
                                self.evaluations],
                "final_return": (round(self.final_evaluation, 2) if self.final_evaluation is not None
                                 else round(self.evaluations[-1][2], 2) if self.evaluations else None),
                "last_evaluation": round(self.evaluations[-1][2], 2) if self.evaluations else None,
                "steps_to_reference": reached[0] if reached else None,
                "seconds_to_reference": round(reached[1], 2) if reached else None}


# ---------------------------------------------------------------------------------------------- one run each
def run_rlcore(task: Task, seed: int, steps: int, eval_freq: int) -> RunResult:
    """One rlcore run of ``steps`` env steps (evaluating every ``eval_freq``, 0: never)."""
    import torch

    from rlcore.trainer import TrainConfig, Trainer

    adapter, timers = ALGORITHMS[task.algo], {}
    evaluations: list[tuple[int, float, float]] = []
    start, start_cpu = time.perf_counter(), time.process_time()
    config = TrainConfig(total_env_steps=steps, num_envs=task.n_envs, seed=seed, device="cpu", eval_freq=eval_freq,
                         eval_episodes=EVAL_EPISODES, checkpoint_freq=0, log_dir=None, progress_bar=False)
    env = rlcore_env(task)
    trainer = Trainer(task.algo, env.env, config, rlcore_config(task), wrappers=env.wrappers,
                      env_kwargs=env.env_kwargs)
    timed(trainer.envs, "step", timers, "env_step")
    timed(trainer.algo, adapter.rlcore_act, timers, "act")
    timed(trainer.algo, adapter.rlcore_store, timers, "store")
    timed(trainer.algo, "update" if adapter.kind == "rollout" else "train", timers, "update")
    evaluate = trainer._evaluate
    timers["evaluation"] = 0.0

    def evaluate_and_record() -> dict[str, float]:
        began = time.process_time()
        metrics = evaluate()
        timers["evaluation"] += time.process_time() - began
        evaluations.append((trainer.env_steps, time.perf_counter() - start, metrics["eval/mean_reward"]))
        return metrics

    trainer._evaluate = evaluate_and_record  # type: ignore[method-assign]
    agent = trainer.run()
    result = RunResult(time.perf_counter() - start, time.process_time() - start_cpu, trainer.env_steps, timers,
                       evaluations, f"torch {torch.get_num_threads()}: {trainer.threads.reason}",
                       rlcore_engine(trainer.algo))
    if eval_freq:
        result.final_evaluation = agent.evaluate(FINAL_EPISODES, seed=20_000 + seed)["mean_reward"]
    return result


def rlcore_engine(algo: Any) -> str:
    """``"kernel <class>"`` or ``"autograd"``, with the gradient steps' precision where the algorithm has one
    (SAC/TD3's ``amp``: ``"auto"`` picks bfloat16 on an AMX CPU for hidden layers >= 256 wide)."""
    kernel = getattr(algo, "_kernel", None)
    engine = f"kernel {type(kernel).__name__}" if kernel is not None else "autograd"
    if hasattr(algo, "amp"):
        engine += f", {algo.amp or 'float32'}"
    return engine


def run_sb3(task: Task, seed: int, steps: int, eval_freq: int) -> RunResult:
    """One SB3 run of ``steps`` env steps (evaluating every ``eval_freq`` env steps after the update, 0: never)."""
    import importlib

    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.vec_env import VecNormalize, sync_envs_normalization

    adapter, timers = ALGORITHMS[task.algo], {}
    module, class_name = adapter.sb3_class.split(":")
    model_class = getattr(importlib.import_module(module), class_name)
    evaluations: list[tuple[int, float, float]] = []
    start, start_cpu = time.perf_counter(), time.process_time()
    norm_obs, norm_reward = normalization(task) if adapter.kind == "rollout" else (False, False)
    settings = sb3_settings(task, steps)

    def vec_env(count: int, env_seed: int, training: bool) -> Any:
        # SB3's make_vec_env builds an env id with render_mode="rgb_array" (for video); LunarLander then creates
        # Box2D particles every engine firing and steps ~3x slower: both libraries step the env without rendering
        spec = env_spec(task)
        env = make_vec_env(spec, n_envs=count, seed=env_seed,
                           env_kwargs={"render_mode": None} if isinstance(spec, str) else None)
        if norm_obs or norm_reward:
            env = VecNormalize(env, training=training, norm_obs=norm_obs, norm_reward=norm_reward and training,
                               gamma=float(settings.get("gamma", 0.99)))
        return env

    env = vec_env(task.n_envs, seed, True)
    policy = "CnnPolicy" if task.zoo.get("policy") == "CnnPolicy" else "MlpPolicy"
    model = model_class(policy, env, device="cpu", seed=seed, verbose=0, **settings)
    inner = model.get_env()
    while hasattr(inner, "venv"):
        inner = inner.venv
    timed(inner, "step_wait", timers, "env_step")
    if adapter.kind == "rollout":
        timed(model.policy, "forward", timers, "act")  # the rollout's forward (training calls evaluate_actions)
        timed(model.rollout_buffer, "add", timers, "store")
    else:
        timed(model, "_sample_action", timers, "act")
        timed(model, "_store_transition", timers, "store")
    timed(model, "train", timers, "update")
    timers["evaluation"] = 0.0
    eval_env = vec_env(1, seed + 10_000, False) if eval_freq else None

    def evaluate() -> None:
        began = time.process_time()
        sync_envs_normalization(model.get_env(), eval_env)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=EVAL_EPISODES, deterministic=True)
        timers["evaluation"] += time.process_time() - began
        evaluations.append((model.num_timesteps, time.perf_counter() - start, float(mean)))

    class EvaluateAfterUpdate(BaseCallback):
        """Evaluates at the start of a rollout (after the previous update) once ``eval_freq`` env steps passed."""

        next_eval = eval_freq

        def _on_rollout_start(self) -> None:
            if self.model.num_timesteps >= self.next_eval:
                while self.next_eval <= self.model.num_timesteps:
                    self.next_eval += eval_freq
                evaluate()

        def _on_step(self) -> bool:
            return True

    model.learn(total_timesteps=steps, callback=EvaluateAfterUpdate() if eval_freq else None)
    if eval_freq and (not evaluations or evaluations[-1][0] != model.num_timesteps):
        evaluate()  # the final policy, as rlcore's Trainer does
    result = RunResult(time.perf_counter() - start, time.process_time() - start_cpu, int(model.num_timesteps),
                       timers, evaluations, f"torch {torch.get_num_threads()}", "autograd, float32")
    if eval_freq:
        final_env = vec_env(1, 20_000 + seed, False)
        sync_envs_normalization(model.get_env(), final_env)
        result.final_evaluation = float(evaluate_policy(model, final_env, n_eval_episodes=FINAL_EPISODES,
                                                        deterministic=True)[0])
    return result


RUNNERS: dict[str, Callable[[Task, int, int, int], RunResult]] = {"rlcore": run_rlcore, "sb3": run_sb3}


# ----------------------------------------------------------------------------------------------- the budgets
def period(task: Task) -> int:
    """Env steps between updates: a rollout (on-policy) or a training period (off-policy)."""
    if ALGORITHMS[task.algo].kind == "rollout":
        default_n_steps = 5 if task.algo == "a2c" else 2048
        return task.n_envs * int(task.zoo.get("n_steps", default_n_steps))
    return task.n_envs * int(task.zoo.get("train_freq", 4))


def throughput_steps(task: Task, steps: int) -> int:
    """``steps`` rounded up to whole periods (at least one update), after the zoo's ``learning_starts``."""
    starts = int(task.zoo.get("learning_starts", 100 if ALGORITHMS[task.algo].kind == "replay" else 0))
    return starts + max(1, math.ceil(steps / period(task))) * period(task)


def eval_frequency(task: Task) -> int:
    """Learning mode: ``budget / EVALUATIONS`` rounded up to whole periods."""
    return math.ceil(task.budget / EVALUATIONS / period(task)) * period(task)


def warmup(task: Task) -> Task:
    """A tiny version of the task (short rollouts, early learning), run untimed first by each library."""
    zoo = {**task.zoo, "n_envs": min(task.n_envs, 4)}
    if ALGORITHMS[task.algo].kind == "rollout":
        zoo["n_steps"] = min(int(zoo.get("n_steps", 2048)), 16)
        if "batch_size" in zoo:
            zoo["batch_size"] = min(int(zoo["batch_size"]), zoo["n_steps"] * zoo["n_envs"])
    else:
        zoo.update(learning_starts=0, train_freq=min(int(zoo.get("train_freq", 4)), 8), gradient_steps=2)
    return Task(task.algo, task.env, zoo, task.zoo_score, task.source, task.env_wrapper)


# ---------------------------------------------------------------------------------------- one task (a child)
class ThreadDefaults:
    """torch's and the BLAS pool's thread counts at start-up, put back before each SB3 run (rlcore's
    ``threads="auto"`` sets them process-wide)."""

    def __init__(self) -> None:
        import torch
        from threadpoolctl import threadpool_info

        self.torch = torch.get_num_threads()
        self.blas = max((pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"), default=1)

    def restore(self) -> None:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(self.torch)
        threadpool_limits(limits=self.blas, user_api="blas")


def run_task(task: Task, mode: str, seeds: int, steps: int, threads: str, first_seed: int = 0) -> dict[str, Any]:
    """Both libraries on ``task`` with seeds ``first_seed, ..., first_seed + seeds - 1``, the seeds alternating which
    goes first; the task's JSON result."""
    import gymnasium
    import stable_baselines3
    import torch

    import rlcore

    warnings.filterwarnings("ignore")
    defaults = ThreadDefaults()
    load_before = os.getloadavg()
    run_steps = throughput_steps(task, steps) if mode == "throughput" else task.budget
    eval_freq = eval_frequency(task) if mode == "learning" else 0
    small = warmup(task)
    for runner in RUNNERS.values():
        defaults.restore()
        runner(small, 10_000, throughput_steps(small, 1), 0)
    target = reference(task)
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNNERS}
    for seed in range(first_seed, first_seed + seeds):
        order = list(RUNNERS) if seed % 2 == 0 else list(reversed(RUNNERS))
        for name in order:
            if name == "sb3" and threads == "default":
                defaults.restore()
            result = RUNNERS[name](task, seed, run_steps, eval_freq)
            per_seed[name].append({"seed": seed, **result.to_json(target)})
            print(f"{task.name} [{mode}, threads {threads}] seed {seed} {name}: "
                  f"{result.env_steps / result.seconds:,.0f} env steps/s"
                  + (f", final return {result.final_evaluation:.1f}" if result.final_evaluation is not None else ""),
                  file=sys.stderr, flush=True)
    line: dict[str, Any] = {
        "suite": "zoo_suite", "mode": mode, "task": task.name, "algo": task.algo, "env": task.env,
        "source": task.source, "threads": threads, "seeds": seeds, "first_seed": first_seed,
        "env_steps": run_steps, **comparison(per_seed), "rlcore_envs": rlcore_envs(task),
        "reference": target, "eval_freq": eval_freq, "settings": task.zoo, "rlcore_config": rlcore_config(task),
        "deviations": task.deviations,
        "load_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)], "cpu": cpu_description(),
        "versions": {"rlcore": rlcore.__version__, "sb3": stable_baselines3.__version__, "torch": torch.__version__,
                     "gymnasium": gymnasium.__version__, "python": platform.python_version()},
    }
    if mode == "learning":
        line.update(learning_verdict(line))
    return line


def comparison(per_seed: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Each library's :func:`summarize` of its runs (:meth:`RunResult.to_json` with their ``seed``), and the ratios
    of their medians: rlcore's env steps/s over SB3's, SB3's CPU seconds over rlcore's."""
    summary = {name: summarize(runs) for name, runs in per_seed.items()}
    ratio = summary["rlcore"]["steps_per_s"] / summary["sb3"]["steps_per_s"]
    cpu_ratio = summary["sb3"]["cpu_seconds"] / summary["rlcore"]["cpu_seconds"]
    return {"ratio": round(ratio, 3), "cpu_ratio": round(cpu_ratio, 3), **summary}


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over seeds (steps/s, CPU seconds, seconds per part) and every seed's figures (``per_seed``: each
    run's :meth:`RunResult.to_json`)."""
    parts = {key: round(statistics.median(seed["parts_cpu_seconds"][key] for seed in per_seed), 3)
             for key in per_seed[0]["parts_cpu_seconds"]}
    finals = [seed["final_return"] for seed in per_seed if seed["final_return"] is not None]
    reached = [seed["seconds_to_reference"] for seed in per_seed]
    return {
        "steps_per_s": round(statistics.median(seed["steps_per_s"] for seed in per_seed), 1),
        "cpu_steps_per_s": round(statistics.median(seed["cpu_steps_per_s"] for seed in per_seed), 1),
        "cpu_seconds": round(statistics.median(seed["cpu_seconds"] for seed in per_seed), 3),
        "parts_cpu_seconds": parts,
        "final_return_mean": round(statistics.fmean(finals), 2) if finals else None,
        "final_returns": finals,
        "seeds_reaching_reference": sum(value is not None for value in reached),
        "median_seconds_to_reference": median_or_none(reached),
        "per_seed": per_seed,
    }


def median_or_none(values: list[float | None]) -> float | None:
    """The median counting a missing value (never reached) as infinite; None when that median is infinite."""
    if not values:
        return None
    median = statistics.median(value if value is not None else math.inf for value in values)
    return None if math.isinf(median) else median


def learning_verdict(summary: dict[str, Any]) -> dict[str, Any]:
    """Whether rlcore's mean final return is at least SB3's worst seed, and the time-to-reference ratio."""
    ours, theirs = summary["rlcore"], summary["sb3"]
    within = (ours["final_return_mean"] is not None and bool(theirs["final_returns"])
              and ours["final_return_mean"] >= min(theirs["final_returns"]))
    ours_time, theirs_time = ours["median_seconds_to_reference"], theirs["median_seconds_to_reference"]
    time_ratio = theirs_time / ours_time if ours_time is not None and theirs_time is not None else None
    return {"returns_within_sb3_spread": within,
            "time_to_reference_ratio": round(time_ratio, 3) if time_ratio is not None else None}


# ------------------------------------------------------------------------------------------ the whole suite
def child_environment(threads: str) -> dict[str, str]:
    """The child's environment: thread variables at 1 (``one``) or absent (``default``)."""
    env = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    if threads == "one":
        env.update({name: "1" for name in THREAD_VARIABLES})
    return env


def run_suite(tasks: list[Task], mode: str, seeds: int, steps: int, thread_settings: list[str], out: Path,
              first_seed: int = 0) -> None:
    """Each task under each thread setting in a child process; their JSON lines go to stdout and ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    for task in tasks:
        for threads in thread_settings:
            command = [sys.executable, str(Path(__file__).resolve()), "--worker", task.name, "--mode", mode,
                       "--seeds", str(seeds), "--first-seed", str(first_seed), "--steps", str(steps),
                       "--threads", threads]
            completed = subprocess.run(command, env=child_environment(threads), stdout=subprocess.PIPE, text=True,
                                       check=False)
            lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
            if completed.returncode != 0 or not lines:
                print(f"{task.name} [{threads}] failed with exit code {completed.returncode}", file=sys.stderr)
                continue
            print(lines[-1], flush=True)
            with out.open("a") as handle:
                handle.write(lines[-1] + "\n")


def merge(lines: list[dict[str, Any]]) -> dict[str, Any]:
    """One line pooling the seeds of ``lines``, runs of one task (mode, threads, env steps) with other seeds, e.g. in
    parallel processes (``--first-seed``): medians, ratios and the learning verdict over all their seeds."""
    kinds = {(line["mode"], line["task"], line["threads"], line["env_steps"]) for line in lines}
    if len(kinds) != 1:
        raise SystemExit(f"--merge takes runs of one task, mode, thread setting and length; got {sorted(kinds)}")
    per_seed: dict[str, list[dict[str, Any]]] = {name: [] for name in RUNNERS}
    for line in lines:
        for name in RUNNERS:  # lines written before runs recorded their seed: first_seed (or 0) on
            per_seed[name] += [{**run, "seed": run.get("seed", line.get("first_seed", 0) + index)}
                               for index, run in enumerate(line[name]["per_seed"])]
    seeds = [run["seed"] for run in per_seed["rlcore"]]
    if len(set(seeds)) != len(seeds):
        raise SystemExit(f"--merge: seed(s) {sorted({s for s in seeds if seeds.count(s) > 1})} in more than one line")
    for runs in per_seed.values():
        runs.sort(key=lambda run: run["seed"])
    merged = {**lines[0], **comparison(per_seed), "seeds": len(seeds), "first_seed": min(seeds),
              "merged_from": len(lines), "load_before_after": [line["load_before_after"] for line in lines]}
    if merged["mode"] == "learning":
        merged.update(learning_verdict(merged))
    return merged


# ---------------------------------------------------------------------------------------------------- table
def read_results(paths: list[Path]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """The latest line per ``(mode, task, threads)`` of the result files."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for path in paths:
        if path.exists():
            for text in path.read_text().splitlines():
                if text.strip():
                    line = json.loads(text)
                    latest[(line["mode"], line["task"], line["threads"])] = line
    return latest


def table(results: dict[tuple[str, str, str], dict[str, Any]]) -> str:
    """The markdown summary: one row per task of the suite ("not measured" where no run is on record), then the
    medians per algorithm over the measured tasks ("tasks": measured of the suite's)."""
    rows = ["| task | source | env steps | rlcore steps/s (1 thread) | SB3 steps/s | ratio, 1 thread | CPU-time "
            "ratio, 1 thread | ratio, defaults | where rlcore's CPU time goes (env / act / store / update / other, "
            "1 thread) | final return rlcore (seeds) | SB3 (seeds) | within SB3's spread | time to reference, ratio |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    ratios: dict[tuple[str, str], list[float]] = {}
    suite_tasks: dict[str, int] = {}
    for task in TASKS:
        if task.algo not in ALGORITHMS:
            continue
        suite_tasks[task.algo] = suite_tasks.get(task.algo, 0) + 1
        one = results.get(("throughput", task.name, "one"))
        default = results.get(("throughput", task.name, "default"))
        learned = results.get(("learning", task.name, "one")) or results.get(("learning", task.name, "default"))
        if one is None and default is None and learned is None:
            rows.append(f"| `{task.name}` | {task.source} | not measured |" + " - |" * 10)
            continue
        for threads, line in (("one", one), ("default", default)):
            if line is not None:
                ratios.setdefault((task.algo, threads), []).append(line["ratio"])
                ratios.setdefault((task.algo, f"{threads}, CPU time"), []).append(line["cpu_ratio"])
        cells = [f"`{task.name}`", task.source]
        cells += [f"{one['env_steps']:,}", f"{one['rlcore']['steps_per_s']:,.0f}", f"{one['sb3']['steps_per_s']:,.0f}",
                  f"**{one['ratio']:.2f}x**", f"{one['cpu_ratio']:.2f}x"] if one else ["-"] * 5
        cells.append(f"{default['ratio']:.2f}x" if default else "-")
        cells.append(parts_cell(one["rlcore"]["parts_cpu_seconds"]) if one else "-")
        if learned:
            cells += [returns_cell(learned["rlcore"]), returns_cell(learned["sb3"]),
                      "yes" if learned["returns_within_sb3_spread"] else "**no**",
                      f"{learned['time_to_reference_ratio']:.2f}x" if learned["time_to_reference_ratio"] else "-"]
        else:
            cells += [not_run_cell(task, one)] + ["-"] * 3
        rows.append("| " + " | ".join(cells) + " |")
    settings = ("one", "one, CPU time", "default", "default, CPU time")
    summary = ["", "| algorithm | tasks | " + " | ".join(f"median ratio ({name}) | lowest ({name})"
                                                  for name in settings) + " |", "|---" * (2 + 2 * len(settings)) + "|"]
    for algo in ALGORITHMS:
        found = [ratios.get((algo, name), []) for name in settings]
        if any(found):
            summary.append(f"| {algo} | {max(map(len, found))} of {suite_tasks[algo]} | " + " | ".join(
                f"{statistics.median(values):.2f}x | {min(values):.2f}x" if values else "- | -" for values in found)
                + " |")
    return "\n".join(rows + summary)


def not_run_cell(task: Task, throughput: dict[str, Any] | None) -> str:
    """``not run``, with what learning mode would cost: both libraries' training time for the zoo's budget over
    :data:`LEARNING_SEEDS` seeds at the throughput row's env steps/s (one thread; evaluations not counted), in
    core-hours."""
    if throughput is None:
        return "not run"
    hours = LEARNING_SEEDS * sum(task.budget / throughput[name]["steps_per_s"] for name in RUNNERS) / 3600
    return f"not run (~{hours:,.0f} core-hours)" if hours >= 1 else f"not run (~{60 * hours:.0f} core-minutes)"


def parts_cell(parts: dict[str, float]) -> str:
    total = sum(max(value, 0.0) for value in parts.values()) or 1.0
    keys = ("env_step", "act", "store", "update", "other")
    return " / ".join(f"{100 * max(parts.get(key, 0.0), 0.0) / total:.0f}%" for key in keys)


def returns_cell(summary: dict[str, Any]) -> str:
    finals = summary["final_returns"]
    return f"{statistics.fmean(finals):.1f} ({', '.join(f'{value:.0f}' for value in finals)})" if finals else "-"


def write_table(paths: list[Path]) -> None:
    """Replaces the text between the suite's markers in docs/performance.md by the table of ``paths``."""
    text = DOC.read_text()
    begin, end = text.index(TABLE_BEGIN) + len(TABLE_BEGIN), text.index(TABLE_END)
    DOC.write_text(text[:begin] + "\n" + table(read_results(paths)) + "\n" + text[end:])


# ------------------------------------------------------------------------------------------------------ main
def select(names: str | None) -> list[Task]:
    if not names:
        return [task for task in TASKS if task.algo in ALGORITHMS]
    by_name = {task.name: task for task in TASKS}
    chosen = []
    for name in names.split(","):
        if name in by_name:
            chosen.append(by_name[name])
        elif name in ALGORITHMS:
            chosen += [task for task in TASKS if task.algo == name]
        else:
            raise SystemExit(f"unknown task {name!r}; tasks: {', '.join(by_name)} (or an algorithm name)")
    return chosen


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--mode", choices=("throughput", "learning"), default="throughput")
    parser.add_argument("--tasks", help="comma-separated task names (ppo/Acrobot-v1) or algorithms (dqn); "
                                        "default: all")
    parser.add_argument("--threads", choices=("one", "1", "default", "both"), default="both",
                        help="one (or 1): one thread for both libraries; default: no thread variable; both")
    parser.add_argument("--seeds", type=int, help="seeds per library (default: 2 throughput, 3 learning)")
    parser.add_argument("--first-seed", type=int, default=0,
                        help="the first seed (default 0): runs of other seeds in parallel processes, then --merge")
    parser.add_argument("--steps", type=int, help="throughput mode: env steps per run, rounded up to whole periods "
                                                   f"(default 20,000; {QUICK_STEPS:,} with --quick)")
    parser.add_argument("--quick", action="store_true", help=f"a short subset: {', '.join(QUICK)} (unless --tasks)")
    parser.add_argument("--out", type=Path, help="result file (default: benchmarks/results/zoo_suite-<mode>.jsonl)")
    parser.add_argument("--table", action="store_true", help="rewrite docs/performance.md's table from the results")
    parser.add_argument("--list", action="store_true", help="the tasks, their budgets and reference scores")
    parser.add_argument("--gymnasium-envs", action="store_true",
                        help="rlcore steps gymnasium's env objects, not its batched classic-control envs or "
                             "leaner BipedalWalkers")
    parser.add_argument("--merge", type=Path, nargs="+", metavar="FILE",
                        help="pool the last line of each result file (one task's runs of other seeds) into one line, "
                             "appended to --out (default: the mode's result file)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.threads = "one" if args.threads == "1" else args.threads
    if args.gymnasium_envs:
        os.environ[GYMNASIUM_ENVS_VARIABLE] = "1"
    args.steps = args.steps or (QUICK_STEPS if args.quick else 20_000)
    if args.quick and not args.tasks:
        args.tasks = ",".join(QUICK)
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    if args.list:
        for task in select(args.tasks):
            print(f"{task.name:40s} {task.source:14s} n_envs {task.n_envs:3d}  budget {task.budget:>11,}  "
                  f"throughput {throughput_steps(task, args.steps):>7,}  reference {reference(task)}")
        return
    if args.merge:
        merged = merge([json.loads(path.read_text().splitlines()[-1]) for path in args.merge])
        out = args.out or RESULTS / f"zoo_suite-{merged['mode']}.jsonl"
        with out.open("a") as handle:
            handle.write(json.dumps(merged) + "\n")
        print(json.dumps(merged))
        return
    if args.table:
        write_table([RESULTS / "zoo_suite-throughput.jsonl", RESULTS / "zoo_suite-learning.jsonl"])
        return
    seeds = args.seeds or (2 if args.mode == "throughput" else LEARNING_SEEDS)
    if args.worker:
        (task,) = select(args.worker)
        print(json.dumps(run_task(task, args.mode, seeds, args.steps, args.threads, args.first_seed)), flush=True)
        return
    threads = ["one", "default"] if args.threads == "both" else [args.threads]
    run_suite(select(args.tasks), args.mode, seeds, args.steps, threads,
              args.out or RESULTS / f"zoo_suite-{args.mode}.jsonl", args.first_seed)


if __name__ == "__main__":
    main()
