"""What rlcore's labelling envs share: one labelled sample per step, the action names its label.

:class:`LabelledSamplesEnv` holds the episode (``episode_length`` steps, each showing a sample drawn uniformly with
``self.np_random``, reward 1 when the action names the label of the sample shown, else 0) and its checks; a subclass
brings the samples (:class:`envs.digits.DigitsEnv`: images, :class:`envs.text.TextTopicEnv`: sentences).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class LabelledSamplesEnv(gym.Env[np.ndarray, np.int64]):
    """Shows ``episode_length`` samples, one per step; naming a sample's label pays 1, else 0. The episode
    terminates after ``episode_length`` steps; ``info`` holds what :meth:`sample_info` says of the shown sample and,
    after a step, whether the answer was ``correct``.

    A subclass sets ``observation_space`` and ``action_space`` (Discrete: the labels) and defines
    :meth:`num_samples`, :meth:`observation`, :meth:`label` and :meth:`sample_info`.

    Args:
        episode_length: Samples per episode (``>= 1``).
    """

    metadata: dict[str, Any] = {"render_modes": []}
    action_meaning: str = "a label"
    """What an action names, for the error a bad action gets (e.g. ``"a digit"``)."""

    def __init__(self, episode_length: int) -> None:
        if not isinstance(episode_length, int | np.integer) or episode_length < 1:
            raise ValueError(f"episode_length must be an integer >= 1, got {episode_length!r}")
        self.episode_length = int(episode_length)
        self._current = 0
        self._t = 0

    def num_samples(self) -> int:
        """How many samples there are to draw from."""
        raise NotImplementedError

    def observation(self, index: int) -> np.ndarray:
        """Sample ``index``'s observation (a fresh array)."""
        raise NotImplementedError

    def label(self, index: int) -> int:
        """Sample ``index``'s label: the action that names it."""
        raise NotImplementedError

    def sample_info(self, index: int) -> dict[str, Any]:
        """What ``info`` says of sample ``index`` while it is shown."""
        raise NotImplementedError

    def _draw(self) -> tuple[np.ndarray, dict[str, Any]]:
        self._current = int(self.np_random.integers(self.num_samples()))
        return self.observation(self._current), self.sample_info(self._current)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self._t = 0
        return self._draw()

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            labels = self.action_space.n  # type: ignore[attr-defined]
            raise ValueError(f"action must be {self.action_meaning} in [0, {labels}), got {action!r}")
        if self._t >= self.episode_length:
            raise RuntimeError("the episode has ended; call reset() before step()")
        correct = int(action) == self.label(self._current)
        self._t += 1
        obs, info = self._draw()
        return obs, float(correct), self._t >= self.episode_length, False, {**info, "correct": correct}
