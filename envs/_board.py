"""What the two-player board games share: a gymnasium env with a native search simulator.

A game gives its rules as numba kernels (:class:`rlcore.search.native.NativeKernel`); this module
turns them into a gymnasium env whose

- observations are the kernel's encoding seen by the player to move (``float32 [3, rows, cols]``:
  own stones, the opponent's stones, a plane of ones when the second player is to move);
- reward goes to the player who just moved (+1 for a win, 0 otherwise); a game is one episode in
  which the agent plays both sides;
- ``info`` holds the legal moves (``"action_mask"``, ``int8 [A]``) and the player to move
  (``"to_play"``). An illegal move loses at once (reward -1, terminated), so random agents and
  env checkers can play;
- ``simulator`` attribute is a :class:`rlcore.search.simulator.NativeSimulator` over ``int64``
  state rows, so search runs entirely in numba; ``state`` is the current position's row.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlcore.search.native import NativeKernel
from rlcore.search.simulator import NativeSimulator

STATUS = 3
"""Index of the state entry that is 0 while the game runs, 1 after a win, 2 after a draw."""


class BoardGameEnv(gym.Env[np.ndarray, np.int64]):
    """A two-player zero-sum board game; subclasses set ``kernel``, ``rows``, ``cols``, ``initial``
    and implement :meth:`board`."""

    metadata: dict[str, Any] = {"render_modes": ["ansi"], "render_fps": 2}
    kernel: NativeKernel
    initial: np.ndarray
    rows: int
    cols: int
    symbols = (".", "X", "O")

    def __init__(self, render_mode: str | None = None) -> None:
        if render_mode not in (None, "ansi"):
            raise ValueError(f"render_mode must be None or 'ansi', got {render_mode!r}")
        self.render_mode = render_mode
        self.simulator = NativeSimulator(self.kernel, self.initial, STATUS, mirror_symmetric=True,
                                         name=type(self).__name__)
        self.observation_space = spaces.Box(0.0, 1.0, self.kernel.obs_shape, np.float32)
        self.action_space = spaces.Discrete(self.kernel.num_actions)
        self.state = self.simulator.initial_state()

    def board(self, state: np.ndarray) -> np.ndarray:
        """The board as ``int8 [rows, cols]``, top row first: 0 empty, 1 first player, 2 second player."""
        raise NotImplementedError

    def _info(self) -> dict[str, Any]:
        return {"action_mask": self.simulator.action_mask(self.state), "to_play": self.simulator.to_play(self.state)}

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.state = self.simulator.initial_state()
        return self.simulator.observation(self.state), self._info()

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if self.simulator.is_terminal(self.state):
            raise RuntimeError("the game is over; call reset() before step()")
        action = int(action)
        if not 0 <= action < self.action_space.n or not self.simulator.action_mask(self.state)[action]:
            return self.simulator.observation(self.state), -1.0, True, False, {**self._info(), "illegal_action": True}
        self.state, reward, done = self.simulator.step(self.state, action)
        return self.simulator.observation(self.state), reward, done, False, self._info()

    def set_state(self, state: np.ndarray) -> None:
        """Puts the env in ``state`` (a row from ``simulator.step``), e.g. to analyse a position."""
        self.state = np.asarray(state, np.int64).copy()

    def render(self) -> str | None:
        if self.render_mode != "ansi":
            return None
        rows = [" ".join(self.symbols[cell] for cell in row) for row in self.board(self.state)]
        if self.action_space.n == self.cols:  # column moves: number the columns
            rows.append(" ".join(str(col % 10) for col in range(self.cols)))
        return "\n".join(rows) + "\n"

    def winner(self) -> int | None:
        """0 or 1 once a player has won, else None (game running or drawn)."""
        if self.state[STATUS] != 1:
            return None
        return 1 - self.simulator.to_play(self.state)
