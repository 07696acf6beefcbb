"""Connect Four (7 columns, 6 rows) as a gymnasium env (``rlcore/ConnectFour-v0``) with bitboard rules.

State row ``int64 [4]``: stones of the player to move, all stones, moves played, status (0 running,
1 the last mover won, 2 draw). Bit ``7 * col + row`` is the cell in column ``col``, ``row`` from the
bottom; bit 6 of each column stays empty so that line tests never wrap. Actions are columns
``0 .. 6``, as in OpenSpiel's ``connect_four``.
"""

from __future__ import annotations

import numba
import numpy as np

from envs._board import BoardGameEnv
from rlcore.search.native import NativeKernel
from rlcore.search.tree import random_below

ROWS, COLS = 6, 7


@numba.njit(cache=True)
def _wins(stones: np.int64) -> bool:
    """Four in a row vertically (shift 1), horizontally (7) or diagonally (6, 8)."""
    for shift in (1, 7, 6, 8):
        pairs = stones & (stones >> shift)
        if pairs & (pairs >> (2 * shift)):
            return True
    return False


@numba.njit(cache=True)
def _open(mask: np.int64, col: int) -> bool:
    return (mask >> (7 * col + ROWS - 1)) & 1 == 0


@numba.njit(cache=True)
def _drop(mine: np.int64, mask: np.int64, col: int) -> tuple[np.int64, np.int64]:
    """The mover's stones and all stones after dropping a stone in ``col``."""
    new_mask = mask | (mask + (np.int64(1) << (7 * col)))
    return mine | (new_mask ^ mask), new_mask


@numba.njit(cache=True)
def step(state: np.ndarray, action: int, out: np.ndarray) -> tuple[float, bool]:
    """Drops a stone in column ``action`` (not full) into ``out``; returns (reward to the mover, game over)."""
    mover, mask = _drop(state[0], state[1], action)
    moves = state[2] + 1
    won = _wins(mover)
    out[0], out[1], out[2] = mover ^ mask, mask, moves
    out[3] = 1 if won else (2 if moves == ROWS * COLS else 0)
    return (1.0 if won else 0.0), out[3] != 0


@numba.njit(cache=True)
def to_play(state: np.ndarray) -> int:
    return int(state[2] % 2)


@numba.njit(cache=True)
def legal(state: np.ndarray, out: np.ndarray) -> int:
    if state[3] != 0:
        return 0
    count = 0
    for col in range(COLS):
        if _open(state[1], col):
            out[count] = col
            count += 1
    return count


@numba.njit(cache=True)
def rollout(state: np.ndarray, rng: np.ndarray, b: int, gamma: float) -> float:
    """Uniformly random play to the end; the result for the player to move at ``state``, discounted by ``gamma``
    per move after the first."""
    if state[3] == 1:
        return -1.0
    mine, mask, moves = state[0], state[1], state[2]
    sign = 1.0
    columns = np.empty(COLS, np.int64)
    while moves < ROWS * COLS:
        count = 0
        for col in range(COLS):
            if _open(mask, col):
                columns[count] = col
                count += 1
        mover, mask = _drop(mine, mask, columns[random_below(rng, b, count)])
        moves += 1
        if _wins(mover):
            return sign
        mine, sign = mover ^ mask, -sign * gamma
    return 0.0


@numba.njit(cache=True)
def encode(state: np.ndarray, out: np.ndarray) -> None:
    """``out``: ``float32 [3, 6, 7]`` (row 0 = top): own stones, opponent's stones, ones if the second
    player moves."""
    theirs = state[0] ^ state[1]
    for col in range(COLS):
        for row in range(ROWS):
            bit = 7 * col + row
            out[0, ROWS - 1 - row, col] = state[0] >> bit & 1
            out[1, ROWS - 1 - row, col] = theirs >> bit & 1
    out[2, :, :] = state[2] % 2


KERNEL = NativeKernel(step=step, to_play=to_play, legal=legal, rollout=rollout, encode=encode,
                      state_size=4, num_actions=COLS, obs_shape=(3, ROWS, COLS))


class ConnectFourEnv(BoardGameEnv):
    """Connect Four for two players on one env; see :mod:`envs._board` for the conventions."""

    kernel = KERNEL
    initial = np.zeros(4, np.int64)
    rows, cols = ROWS, COLS

    def board(self, state: np.ndarray) -> np.ndarray:
        theirs = state[0] ^ state[1]
        first, second = (state[0], theirs) if state[2] % 2 == 0 else (theirs, state[0])
        cells = np.zeros((ROWS, COLS), np.int8)
        for col in range(COLS):
            for row in range(ROWS):
                bit = 7 * col + row
                cells[ROWS - 1 - row, col] = 1 if first >> bit & 1 else (2 if second >> bit & 1 else 0)
        return cells
