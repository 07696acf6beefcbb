"""Deterministic evaluation of a policy over whole episodes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from gymnasium.vector import VectorEnv
from torch import Tensor

from rlcore.env import EnvSpec, make_vec_env

logger = logging.getLogger(__name__)


def evaluate_policy(
    act: Callable[[Tensor], Tensor],
    env: EnvSpec | VectorEnv,
    n_episodes: int = 10,
    *,
    seed: int = 10_000,
    env_kwargs: dict[str, Any] | None = None,
    device: str | torch.device = "cpu",
    max_episode_steps: int = 10_000,
) -> dict[str, float]:
    """Runs ``n_episodes`` complete episodes, one per sub-env, all stepped together.

    Each evaluation with the same ``seed`` sees the same initial states, so evaluation
    never depends on (or disturbs) the training run's randomness.

    Args:
        act: Observations ``[E, *obs_shape]`` -> actions ``[E, ...]`` (the greedy policy).
        env: An env spec, or a vector env with exactly ``n_episodes`` sub-envs (reused).
        max_episode_steps: Episodes still running after this many steps are cut there (with a
            warning), so a policy that loops in an env without a time limit cannot hang evaluation.

    Returns:
        ``eval/mean_reward``, ``eval/std_reward``, ``eval/mean_ep_length``.
    """
    if n_episodes < 1:
        raise ValueError(f"n_episodes must be >= 1, got {n_episodes}")
    owns_envs = not isinstance(env, VectorEnv)
    envs = make_vec_env(env, n_episodes, env_kwargs=env_kwargs) if owns_envs else env
    if envs.num_envs != n_episodes:
        raise ValueError(f"the evaluation vector env has {envs.num_envs} sub-envs; expected n_episodes={n_episodes}")
    try:
        returns, lengths = _run_episodes(act, envs, seed, torch.device(device), max_episode_steps)
    finally:
        if owns_envs:
            envs.close()
    return {
        "eval/mean_reward": float(returns.mean()),
        "eval/std_reward": float(returns.std()),
        "eval/mean_ep_length": float(lengths.mean()),
    }


def _run_episodes(
    act: Callable[[Tensor], Tensor], envs: VectorEnv, seed: int, device: torch.device, max_episode_steps: int
) -> tuple[np.ndarray, np.ndarray]:
    count = envs.num_envs
    obs, _ = envs.reset(seed=[seed + i for i in range(count)])
    returns = np.zeros(count)
    lengths = np.zeros(count, dtype=np.int64)
    running = np.ones(count, dtype=bool)
    for _ in range(max_episode_steps):
        if not running.any():
            break
        with torch.no_grad():
            action = act(torch.from_numpy(obs).to(device)).cpu().numpy()
        obs, reward, terminated, truncated, _ = envs.step(action)
        returns += reward * running
        lengths += running
        running &= ~(terminated | truncated)
    if running.any():
        logger.warning(
            "evaluation cut %d of %d episodes at max_episode_steps=%d (the env has no time limit and the "
            "policy did not finish); their returns so far are counted", running.sum(), count, max_episode_steps
        )
    return returns, lengths
