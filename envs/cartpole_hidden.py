"""CartPole with the velocities hidden: a partially observable control task."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.envs.classic_control.cartpole import CartPoleEnv

from envs.hidden_state import ObservesPart

VISIBLE = np.array([0, 2])
"""Indices of CartPole's state that stay visible: cart position and pole angle (not their velocities)."""


class CartPoleNoVelocityEnv(ObservesPart, CartPoleEnv):
    """CartPole-v1's dynamics, rewards and terminations, observing only ``[x, theta]``.

    The full state is ``[x, x_dot, theta, theta_dot]``; the observation drops both velocities,
    so a policy must infer them from successive observations (frame differences, an LSTM, ...).
    A memoryless policy can still balance the pole for a while from the angle alone, but
    not reliably for 500 steps.

    Observations: float32 ``[2]`` = ``[cart position, pole angle]``. Actions: ``Discrete(2)``
    (push left, push right). Registered with CartPole-v1's time limit of 500 steps.
    """

    visible = VISIBLE

    def __init__(self, render_mode: str | None = None, **kwargs: Any) -> None:
        super().__init__(render_mode=render_mode, **kwargs)
        self.hide_observation()
