"""Action masks: tic-tac-toe against a random player, rlcore's masked PPO and DQN vs unmasked ones and vs
sb3-contrib's ``MaskablePPO``.

``rlcore/TicTacToeVsRandom-v0`` (``envs/tictactoe_masked.py``): an illegal move (an occupied cell) pays -1 and ends
the episode; the env's ``action_masks()`` gives the free cells (sb3-contrib's convention). Runners, each ``--budget``
env steps per seed (DQN ``--dqn-budget``), on the CPU with one torch thread, logging, progress bars and evaluations
off, in an order rotating per seed:

- ``rlcore_ppo_masked`` and ``sb3_contrib_maskable_ppo``: the same settings (:data:`PPO_SETTINGS`, 8 envs, 64x64 tanh
  actor and critic, both libraries' defaults otherwise), both masking;
- ``rlcore_ppo_unmasked``: the same with ``use_action_masks=False``;
- ``rlcore_dqn_masked`` and ``rlcore_dqn_unmasked`` (:data:`DQN_SETTINGS`, 1 env).

Each trained policy plays ``--eval-episodes`` deterministic episodes on the same seeded envs (masked runners get the
env's mask in ``predict(..., action_masks=...)``); measured: mean return, win rate and illegal moves chosen, and env
steps per second of the whole run (construction included). Acceptance: the masked runners choose no illegal move and
beat the unmasked ones; rlcore's masked PPO reaches MaskablePPO's mean return (within 0.05) at >= 2x its env steps/s
(``throughput_ratio``, median over seeds, measured side by side).

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/masked_vs_sb3_contrib.py [--seeds 3] [--budget 50000] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import sb3_contrib  # noqa: E402
import torch  # noqa: E402
from sb3_contrib import MaskablePPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402

import rlcore  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "rlcore/TicTacToeVsRandom-v0"
NUM_ENVS = 8
PPO_SETTINGS: dict[str, Any] = {"n_steps": 64, "batch_size": 128, "n_epochs": 4, "learning_rate": 1e-3,
                                "gamma": 0.99, "gae_lambda": 0.95, "ent_coef": 0.01, "clip_range": 0.2,
                                "vf_coef": 0.5, "max_grad_norm": 0.5}
"""The PPO settings both libraries take under the same name (8 envs)."""
DQN_SETTINGS: dict[str, Any] = {"learning_rate": 5e-4, "buffer_size": 50_000, "learning_starts": 1_000,
                                "batch_size": 64, "gamma": 0.99, "train_freq": 4, "target_update_interval": 500,
                                "exploration_fraction": 0.3, "exploration_final_eps": 0.05}
"""rlcore DQN's settings (1 env)."""
LEVEL_TOLERANCE = 0.05
TARGET_THROUGHPUT_RATIO = 2.0


def evaluate(predict: Callable[[np.ndarray, np.ndarray], Any], episodes: int) -> dict[str, float]:
    """Mean return, win rate and illegal moves of ``episodes`` deterministic episodes (env seeds 10_000 + k)."""
    env = gym.make(ENV_ID)
    returns, illegal = [], 0
    for episode in range(episodes):
        obs, _ = env.reset(seed=10_000 + episode)
        total, done = 0.0, False
        while not done:
            action = int(predict(obs, env.unwrapped.action_masks()))
            obs, reward, terminated, truncated, info = env.step(action)
            illegal += bool(info.get("illegal"))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    wins = float(np.mean(np.array(returns) > 0))
    return {"mean_return": round(float(np.mean(returns)), 3), "win_rate": round(wins, 3), "illegal_moves": illegal}


def rlcore_run(algo: str, masked: bool, seed: int, steps: int, episodes: int) -> dict[str, Any]:
    settings = {**(PPO_SETTINGS if algo == "ppo" else DQN_SETTINGS), "use_action_masks": masked}
    start = time.perf_counter()
    config = TrainConfig(total_env_steps=steps, num_envs=NUM_ENVS if algo == "ppo" else 1, seed=seed, device="cpu",
                         eval_freq=0, checkpoint_freq=0, log_dir=None, progress_bar=False)
    trainer = Trainer(algo, ENV_ID, config, settings)
    trainer.run()
    seconds = time.perf_counter() - start
    agent = trainer.agent()
    if masked:
        result = evaluate(lambda obs, mask: agent.predict(obs, action_masks=mask), episodes)
    else:
        result = evaluate(lambda obs, mask: agent.predict(obs), episodes)
    return {"steps_per_s": round(trainer.env_steps / seconds, 1), **result}


def maskable_ppo_run(seed: int, steps: int, episodes: int) -> dict[str, Any]:
    start = time.perf_counter()
    model = MaskablePPO("MlpPolicy", make_vec_env(ENV_ID, n_envs=NUM_ENVS, seed=seed), device="cpu", seed=seed,
                        verbose=0, **PPO_SETTINGS)
    model.learn(total_timesteps=steps)
    seconds = time.perf_counter() - start
    result = evaluate(lambda obs, mask: model.predict(obs, deterministic=True, action_masks=mask)[0], episodes)
    return {"steps_per_s": round(model.num_timesteps / seconds, 1), **result}


RUNNERS: dict[str, Callable[[int, int, int, int], dict[str, Any]]] = {
    "rlcore_ppo_masked": lambda seed, ppo, dqn, episodes: rlcore_run("ppo", True, seed, ppo, episodes),
    "sb3_contrib_maskable_ppo": lambda seed, ppo, dqn, episodes: maskable_ppo_run(seed, ppo, episodes),
    "rlcore_ppo_unmasked": lambda seed, ppo, dqn, episodes: rlcore_run("ppo", False, seed, ppo, episodes),
    "rlcore_dqn_masked": lambda seed, ppo, dqn, episodes: rlcore_run("dqn", True, seed, dqn, episodes),
    "rlcore_dqn_unmasked": lambda seed, ppo, dqn, episodes: rlcore_run("dqn", False, seed, dqn, episodes),
}


def verdicts(summary: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The acceptance figures that the runners that ran allow."""
    result: dict[str, Any] = {}
    masked = [name for name in summary if name.endswith("_masked") or name == "sb3_contrib_maskable_ppo"]
    result["masked_choose_no_illegal_move"] = all(summary[name]["illegal_moves"] == 0 for name in masked)
    result["masked_beat_unmasked"] = {
        algo: summary[f"rlcore_{algo}_masked"]["mean_return"] > summary[f"rlcore_{algo}_unmasked"]["mean_return"]
        for algo in ("ppo", "dqn") if f"rlcore_{algo}_masked" in summary and f"rlcore_{algo}_unmasked" in summary}
    if "rlcore_ppo_masked" in summary and "sb3_contrib_maskable_ppo" in summary:
        ours, theirs = summary["rlcore_ppo_masked"], summary["sb3_contrib_maskable_ppo"]
        ratio = ours["steps_per_s"] / theirs["steps_per_s"]
        result["throughput_ratio"] = round(ratio, 3)
        result["level_gap"] = round(ours["mean_return"] - theirs["mean_return"], 3)
        result["rlcore_reaches_maskable_ppo_level_at_2x"] = (
            ours["mean_return"] >= theirs["mean_return"] - LEVEL_TOLERANCE and ratio >= TARGET_THROUGHPUT_RATIO)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--budget", type=int, default=50_000, help="PPO env steps per run")
    parser.add_argument("--dqn-budget", type=int, default=30_000, help="DQN env steps per run")
    parser.add_argument("--eval-episodes", type=int, default=300)
    parser.add_argument("--runners", default=",".join(RUNNERS), help="comma-separated subset of: " + ", ".join(RUNNERS))
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    args = parser.parse_args(argv)
    seeds, budget, dqn_budget, episodes = ((1, 2_048, 2_000, 10) if args.quick else
                                           (args.seeds, args.budget, args.dqn_budget, args.eval_episodes))
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    names = args.runners.split(",")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for seed in range(seeds):
        for name in names[seed % len(names):] + names[:seed % len(names)]:
            runs[name].append(RUNNERS[name](seed, budget, dqn_budget, episodes))
            print(f"seed {seed} {name}: {runs[name][-1]}", file=sys.stderr, flush=True)
    summary = {name: {"mean_return": round(statistics.fmean(run["mean_return"] for run in values), 3),
                      "win_rate": round(statistics.fmean(run["win_rate"] for run in values), 3),
                      "illegal_moves": sum(run["illegal_moves"] for run in values),
                      "steps_per_s": statistics.median(run["steps_per_s"] for run in values)}
               for name, values in runs.items()}
    print(json.dumps({
        "benchmark": "masked_vs_sb3_contrib",
        "env": ENV_ID,
        **summary,
        **verdicts(summary),
        "per_seed": runs,
        "ppo_settings": {"num_envs": NUM_ENVS, **PPO_SETTINGS}, "ppo_budget": budget,
        "dqn_settings": {"num_envs": 1, **DQN_SETTINGS}, "dqn_budget": dqn_budget,
        "eval_episodes": episodes, "seeds": seeds,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "sb3_contrib": sb3_contrib.__version__,
                     "python": platform.python_version(), "torch_threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
