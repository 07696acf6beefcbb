"""Tic-tac-toe against a random opponent with action masks (sb3-contrib's ``action_masks()`` convention).

The agent plays X and moves first; the opponent answers with a uniformly random free cell (drawn from the env's
``np_random``). Actions are cells ``0 .. 8`` (``3 * row + column``). Winning pays +1, losing -1, a draw 0; playing an
occupied cell is illegal: it pays -1 and ends the episode. :meth:`TicTacToeVsRandomEnv.action_masks` gives the free
cells, so a masked policy never plays an illegal move while an unmasked one has to learn which cells are free. The
observation is ``float32 [27]``: one-hot per cell of (empty, X, O).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

LINES = np.array([(0, 1, 2), (3, 4, 5), (6, 7, 8), (0, 3, 6), (1, 4, 7), (2, 5, 8), (0, 4, 8), (2, 4, 6)])
EMPTY, AGENT, OPPONENT = 0, 1, 2


class TicTacToeVsRandomEnv(gym.Env[np.ndarray, np.int64]):
    """See the module docstring."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self) -> None:
        self.observation_space = spaces.Box(0.0, 1.0, (27,), np.float32)
        self.action_space = spaces.Discrete(9)
        self._board = np.zeros(9, dtype=np.int64)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._board[:] = EMPTY
        return self._observation(), {}

    def action_masks(self) -> np.ndarray:
        """The legal moves: the free cells, bool ``[9]``."""
        return self._board == EMPTY

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict]:
        cell = int(action)
        if not 0 <= cell < 9:
            raise ValueError(f"action must be a cell 0..8, got {action!r}")
        if self._board[cell] != EMPTY:
            return self._observation(), -1.0, True, False, {"illegal": True}
        self._board[cell] = AGENT
        if self._wins(AGENT):
            return self._observation(), 1.0, True, False, {}
        free = np.flatnonzero(self._board == EMPTY)
        if free.size == 0:
            return self._observation(), 0.0, True, False, {}
        self._board[free[self.np_random.integers(free.size)]] = OPPONENT
        if self._wins(OPPONENT):
            return self._observation(), -1.0, True, False, {}
        return self._observation(), 0.0, not (self._board == EMPTY).any(), False, {}

    def _wins(self, player: int) -> bool:
        return bool((self._board[LINES] == player).all(axis=1).any())

    def _observation(self) -> np.ndarray:
        return np.eye(3, dtype=np.float32)[self._board].reshape(27)
