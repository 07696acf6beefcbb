"""DictGrid: a gridworld whose observation is a ``Dict`` of a small image and a flag, learnable only with both.

The agent starts in the middle of a ``size x size`` grid; two goals sit in two random, distinct corners. The image
(``uint8 [3, size, size]``, channels: the agent, goal 0, goal 1; 255 where present) shows where everything is; the
flag (``Discrete(2)``) says which goal pays. Reaching the flagged goal pays +1, the other one -1; either ends the
episode (the registered id cuts episodes at 20 steps, a truncation). A policy that ignores the flag scores 0 on
average, one that ignores the image cannot tell where the goals are; the best return is 1 (after ``size - 1``
moves: two along each axis on the default 5x5 grid).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MOVES = np.array([(-1, 0), (1, 0), (0, -1), (0, 1)])
"""Actions 0-3: up, down, left, right (row, column)."""


class DictGridEnv(gym.Env[dict[str, Any], np.int64]):
    """See the module docstring.

    Args:
        size: Cells per side (odd, at least 3).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, size: int = 5) -> None:
        if size < 3 or size % 2 == 0:
            raise ValueError(f"size must be odd and at least 3, got {size}")
        self.size = size
        self.observation_space = spaces.Dict({
            "image": spaces.Box(0, 255, (3, size, size), np.uint8),
            "flag": spaces.Discrete(2),
        })
        self.action_space = spaces.Discrete(len(MOVES))
        last = size - 1
        self._corners = np.array([(0, 0), (0, last), (last, 0), (last, last)])
        self._agent = np.zeros(2, dtype=np.int64)
        self._goals = self._corners[:2].copy()
        self._flag = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[dict[str, Any], dict]:
        super().reset(seed=seed)
        self._agent = np.array([self.size // 2, self.size // 2])
        self._goals = self._corners[self.np_random.choice(len(self._corners), size=2, replace=False)]
        self._flag = int(self.np_random.integers(2))
        return self._observation(), {}

    def step(self, action: np.int64) -> tuple[dict[str, Any], float, bool, bool, dict]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be one of 0..3, got {action!r}")
        self._agent = np.clip(self._agent + MOVES[int(action)], 0, self.size - 1)
        reached = [bool(np.array_equal(self._agent, goal)) for goal in self._goals]
        reward = 0.0
        if reached[self._flag]:
            reward = 1.0
        elif reached[1 - self._flag]:
            reward = -1.0
        return self._observation(), reward, any(reached), False, {}

    def _observation(self) -> dict[str, Any]:
        image = np.zeros((3, self.size, self.size), dtype=np.uint8)
        image[0, self._agent[0], self._agent[1]] = 255
        for channel, (row, column) in enumerate(self._goals, start=1):
            image[channel, row, column] = 255
        return {"image": image, "flag": np.int64(self._flag)}
