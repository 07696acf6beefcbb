"""Corridor: walk right to reach the goal; a tabular sanity-check task."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces


class CorridorEnv(gym.Env[np.int64, np.int64]):
    """A corridor of ``length`` cells; reaching the right end pays 1 and ends the episode.

    Observations are the agent's cell index; actions are ``0`` (left) and ``1`` (right).
    The optimal return is 1.0 after ``length - 1`` steps; a random walk rarely gets there
    within the time limit for long corridors, so it tests exploration and bootstrapping.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, length: int = 8) -> None:
        if length < 2:
            raise ValueError(f"length must be at least 2, got {length}")
        self.length = length
        self.observation_space = spaces.Discrete(length)
        self.action_space = spaces.Discrete(2)
        self._position = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.int64, dict[str, Any]]:
        super().reset(seed=seed)
        self._position = 0
        return np.int64(self._position), {}

    def step(self, action: np.int64) -> tuple[np.int64, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be 0 or 1, got {action!r}")
        move = 1 if action == 1 else -1
        self._position = min(max(self._position + move, 0), self.length - 1)
        terminated = self._position == self.length - 1
        return np.int64(self._position), float(terminated), terminated, False, {}
