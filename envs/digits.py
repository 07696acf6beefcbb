"""Digits: read handwritten digits (scikit-learn's 8x8 images); naming each one earns reward.

The images come from a fixed split of scikit-learn's digits (:func:`rlcore.backbones.data.digits_split`):
by default the ``test`` images, which ``rlcore pretrain cnn`` never trains on, so a pretrained digit
CNN helps here only as far as it generalises.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium import spaces

from envs.labelled import LabelledSamplesEnv

EPISODE_LENGTH = 10
TARGET_FRACTION = 0.9
TARGET_RETURN = TARGET_FRACTION * EPISODE_LENGTH
"""The env's target: 90% of an episode's digits named (9 of 10)."""


class DigitsEnv(LabelledSamplesEnv):
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

    action_meaning = "a digit"

    def __init__(self, split: str = "test", episode_length: int = EPISODE_LENGTH) -> None:
        from rlcore.backbones.data import digits_split

        super().__init__(episode_length)
        self.images, self.labels = digits_split(split)
        self.split = split
        self.observation_space = spaces.Box(0, 255, (1, 8, 8), np.uint8)
        self.action_space = spaces.Discrete(10)

    def num_samples(self) -> int:
        return len(self.labels)

    def observation(self, index: int) -> np.ndarray:
        return self.images[index].copy()

    def label(self, index: int) -> int:
        return int(self.labels[index])

    def sample_info(self, index: int) -> dict[str, Any]:
        return {"label": self.label(index)}
