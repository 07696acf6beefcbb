"""Tic-tac-toe as a gymnasium env (``rlcore/TicTacToe-v0``) with numba rules for search.

State row ``int64 [4]``: stones of the player to move (9-bit mask, cell ``3 * row + col``), the
opponent's stones, moves played, status (0 running, 1 the last mover won, 2 draw). Actions are
cells ``0 .. 8``, as in OpenSpiel's ``tic_tac_toe``.
"""

from __future__ import annotations

import numba
import numpy as np

from envs._board import BoardGameEnv
from rlcore.search.native import NativeKernel
from rlcore.search.tree import random_below

LINES = np.array([0b000000111, 0b000111000, 0b111000000, 0b001001001, 0b010010010, 0b100100100,
                  0b100010001, 0b001010100], dtype=np.int64)
"""The eight winning lines as cell masks."""
FULL = np.int64(0b111111111)


@numba.njit(cache=True)
def _wins(stones: np.int64) -> bool:
    for line in LINES:  # noqa: SIM110  (a plain loop: numba has no any() over generators)
        if stones & line == line:
            return True
    return False


@numba.njit(cache=True)
def step(state: np.ndarray, action: int, out: np.ndarray) -> tuple[float, bool]:
    """Plays ``action`` (a free cell) at ``state`` into ``out``; returns (reward to the mover, game over)."""
    mover = state[0] | (np.int64(1) << action)
    moves = state[2] + 1
    won = _wins(mover)
    out[0], out[1], out[2] = state[1], mover, moves
    out[3] = 1 if won else (2 if moves == 9 else 0)
    return (1.0 if won else 0.0), out[3] != 0


@numba.njit(cache=True)
def to_play(state: np.ndarray) -> int:
    return int(state[2] % 2)


@numba.njit(cache=True)
def legal(state: np.ndarray, out: np.ndarray) -> int:
    if state[3] != 0:
        return 0
    free = ~(state[0] | state[1]) & FULL
    count = 0
    for cell in range(9):
        if free >> cell & 1:
            out[count] = cell
            count += 1
    return count


@numba.njit(cache=True)
def rollout(state: np.ndarray, rng: np.ndarray, b: int, gamma: float) -> float:
    """Uniformly random play to the end; the result for the player to move at ``state``, discounted by ``gamma``
    per move after the first."""
    if state[3] == 1:
        return -1.0
    mine, theirs, moves = state[0], state[1], state[2]
    sign = 1.0
    while moves < 9:
        free = ~(mine | theirs) & FULL
        pick = random_below(rng, b, 9 - moves)
        for cell in range(9):
            if free >> cell & 1:
                if pick == 0:
                    mine |= np.int64(1) << cell
                    break
                pick -= 1
        moves += 1
        if _wins(mine):
            return sign
        mine, theirs, sign = theirs, mine, -sign * gamma
    return 0.0


@numba.njit(cache=True)
def encode(state: np.ndarray, out: np.ndarray) -> None:
    """``out``: ``float32 [3, 3, 3]``: own stones, opponent's stones, ones if the second player moves."""
    for cell in range(9):
        out[0, cell // 3, cell % 3] = state[0] >> cell & 1
        out[1, cell // 3, cell % 3] = state[1] >> cell & 1
    out[2, :, :] = state[2] % 2


KERNEL = NativeKernel(step=step, to_play=to_play, legal=legal, rollout=rollout, encode=encode,
                      state_size=4, num_actions=9, obs_shape=(3, 3, 3))


class TicTacToeEnv(BoardGameEnv):
    """Tic-tac-toe for two players on one env; see :mod:`envs._board` for the conventions."""

    kernel = KERNEL
    initial = np.zeros(4, np.int64)
    rows = cols = 3

    def board(self, state: np.ndarray) -> np.ndarray:
        first, second = (state[0], state[1]) if state[2] % 2 == 0 else (state[1], state[0])
        cells = np.zeros(9, np.int8)
        for cell in range(9):
            cells[cell] = 1 if first >> cell & 1 else (2 if second >> cell & 1 else 0)
        return cells.reshape(3, 3)
