"""Pendulum with the angular velocity hidden: a partially observable continuous-control task (rl-zoo's
``PendulumNoVel-v1``)."""

from __future__ import annotations

import numpy as np
from gymnasium.envs.classic_control.pendulum import PendulumEnv

from envs.hidden_state import ObservesPart

VISIBLE = np.array([0, 1])
"""Indices of Pendulum's observation that stay visible: ``cos(theta)`` and ``sin(theta)`` (not ``theta_dot``)."""


class PendulumNoVelocityEnv(ObservesPart, PendulumEnv):
    """Pendulum-v1's dynamics and rewards, observing only ``[cos(theta), sin(theta)]``.

    Pendulum's observation is ``[cos(theta), sin(theta), theta_dot]``; without the angular velocity a policy must
    infer it from successive observations (an LSTM, a Transformer window, frame differences).

    Observations: float32 ``[2]``. Actions: ``Box(-2, 2, (1,))`` (torque). Registered with Pendulum-v1's time limit
    of 200 steps.
    """

    visible = VISIBLE

    def __init__(self, render_mode: str | None = None, g: float = 10.0) -> None:
        super().__init__(render_mode=render_mode, g=g)
        self.hide_observation()
