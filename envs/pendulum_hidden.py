"""Pendulum with the angular velocity hidden: a partially observable continuous-control task (rl-zoo's
``PendulumNoVel-v1``)."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces
from gymnasium.envs.classic_control.pendulum import PendulumEnv

VISIBLE = np.array([0, 1])
"""Indices of Pendulum's observation that stay visible: ``cos(theta)`` and ``sin(theta)`` (not ``theta_dot``)."""


class PendulumNoVelocityEnv(PendulumEnv):
    """Pendulum-v1's dynamics and rewards, observing only ``[cos(theta), sin(theta)]``.

    Pendulum's observation is ``[cos(theta), sin(theta), theta_dot]``; without the angular velocity a policy must
    infer it from successive observations (an LSTM, a Transformer window, frame differences).

    Observations: float32 ``[2]``. Actions: ``Box(-2, 2, (1,))`` (torque). Registered with Pendulum-v1's time limit
    of 200 steps.
    """

    def __init__(self, render_mode: str | None = None, g: float = 10.0) -> None:
        super().__init__(render_mode=render_mode, g=g)
        full = self.observation_space
        self.observation_space = spaces.Box(full.low[VISIBLE], full.high[VISIBLE], dtype=np.float32)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        return obs[VISIBLE], info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = super().step(action)
        return obs[VISIBLE], reward, terminated, truncated, info
