"""Digits: read handwritten digits (scikit-learn's 8x8 images); naming each one earns reward.

The images come from a fixed split of scikit-learn's digits (:func:`rlcore.backbones.data.digits_split`):
by default the ``test`` images, which ``rlcore pretrain cnn`` never trains on, so a pretrained digit
CNN helps here only as far as it generalises.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

EPISODE_LENGTH = 10
TARGET_FRACTION = 0.9
TARGET_RETURN = TARGET_FRACTION * EPISODE_LENGTH
"""The env's target: 90% of an episode's digits named (9 of 10)."""


class DigitsEnv(gym.Env[np.ndarray, np.int64]):
    """Shows ``episode_length`` digit images, one per step; the action names the digit (1 if right, else 0).

    Observations are ``Box(0, 255, (1, 8, 8), uint8)`` (channel-first grey images); actions are
    ``Discrete(10)``. Each step's image is drawn uniformly from the split with ``self.np_random``; the
    episode terminates after ``episode_length`` steps. ``info`` holds the shown ``label`` and, after a step,
    whether the answer was ``correct``. The target is a return of ``0.9 * episode_length``; chance is 0.1
    per step.

    Args:
        split: ``test`` (359 images, default), ``val`` or ``train`` of the fixed split.
        episode_length: Images per episode (``>= 1``).

    Raises:
        ImportError: scikit-learn is not installed (``pip install scikit-learn``).
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, split: str = "test", episode_length: int = EPISODE_LENGTH) -> None:
        from rlcore.backbones.data import digits_split

        if not isinstance(episode_length, int | np.integer) or episode_length < 1:
            raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
        self.images, self.labels = digits_split(split)
        self.split = split
        self.episode_length = int(episode_length)
        self.observation_space = spaces.Box(0, 255, (1, 8, 8), np.uint8)
        self.action_space = spaces.Discrete(10)
        self._current = 0
        self._t = 0

    def _draw(self) -> tuple[np.ndarray, dict[str, Any]]:
        self._current = int(self.np_random.integers(len(self.labels)))
        return self.images[self._current].copy(), {"label": int(self.labels[self._current])}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._draw()

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be a digit in [0, 10), got {action!r}")
        if self._t >= self.episode_length:
            raise RuntimeError("the episode has ended; call reset() before step()")
        correct = int(action) == int(self.labels[self._current])
        self._t += 1
        obs, info = self._draw()
        return obs, float(correct), self._t >= self.episode_length, False, {**info, "correct": correct}
