"""CartPole with the velocities hidden: a partially observable control task."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

VISIBLE = np.array([0, 2])
"""Indices of CartPole's state that stay visible: cart position and pole angle (not their velocities)."""


class CartPoleNoVelocityEnv(CartPoleEnv):
    """CartPole-v1's dynamics, rewards and terminations, observing only ``[x, theta]``.

    The full state is ``[x, x_dot, theta, theta_dot]``; the observation drops both velocities,
    so a policy must infer them from successive observations (frame differences, an LSTM, ...).
    A memoryless policy can still balance the pole for a while from the angle alone, but
    not reliably for 500 steps.

    Observations: float32 ``[2]`` = ``[cart position, pole angle]``. Actions: ``Discrete(2)``
    (push left, push right). Registered with CartPole-v1's time limit of 500 steps.
    """

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode, **kwargs)
        full = self.observation_space
        self.observation_space = spaces.Box(full.low[VISIBLE], full.high[VISIBLE], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        return obs[VISIBLE], info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[VISIBLE], reward, terminated, truncated, info
