"""MinAtar Breakout for many envs at once: the game's rules as one numba kernel over arrays of game states.

``BreakoutVectorEnv`` is the vector implementation of ``rlcore/MinAtar-Breakout-v0`` (see
:mod:`envs.minatar_vector` for what it shares with the other batched games: seeding, same-step autoreset, exact
resume). The rules are MinAtar's ``breakout.py``; each env draws from its generator exactly what the single env
draws from ``np_random``: one uniform per step for sticky actions, one bit per reset for the ball's side.

Observations ``bool [N, 10, 10, 4]`` (paddle, ball, trail, bricks); actions: all 6 of MinAtar's (no-op, left,
up, right, down, fire), or with ``use_minimal_action_set`` Breakout's 3 (no-op, left, right).
"""

from __future__ import annotations

import numba
import numpy as np

from envs._pcg64 import legacy_randint
from envs.minatar_vector import MinAtarVectorEnv, define_step_all

GRID = 10
CHANNELS = 4
PADDLE, BALL, TRAIL, BRICK = 0, 1, 2, 3
"""Observation channels, as MinAtar's Breakout."""
MINIMAL_ACTIONS = np.array([0, 1, 3], dtype=np.int64)
"""Breakout's useful actions among MinAtar's 6: no-op, left, right."""

# one row of int64 per env: the game's scalars
BALL_X, BALL_Y, BALL_DIR, POS, LAST_X, LAST_Y, STRIKE, LAST_ACTION, STEPS = range(9)
GAME_FIELDS = ("ball_x", "ball_y", "ball_dir", "pos", "last_x", "last_y", "strike", "last_action", "steps")

_DX = np.array([-1, 1, 1, -1], dtype=np.int64)
_DY = np.array([-1, -1, 1, 1], dtype=np.int64)
"""The ball's move per direction 0..3 (up-left, up-right, down-right, down-left)."""
_BOUNCE_X = np.array([1, 0, 3, 2], dtype=np.int64)
"""Direction after a side wall."""
_BOUNCE_Y = np.array([3, 2, 1, 0], dtype=np.int64)
"""Direction after the ceiling, a brick, or the paddle's middle."""
_BOUNCE_EDGE = np.array([2, 3, 0, 1], dtype=np.int64)
"""Direction after the paddle's edge (the ball arrives diagonally onto it)."""


@numba.njit(cache=True)
def _reset_game(row: int, game: np.ndarray, bricks: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
                has_uint32: np.ndarray, uinteger: np.ndarray) -> None:
    """MinAtar's ``Env.reset`` for env ``row``: the ball starts on row 3 at a random side, heading down."""
    right_side = legacy_randint(rng_state, rng_inc, has_uint32, uinteger, row, 0, 2)
    game[row, BALL_Y] = 3
    game[row, BALL_X], game[row, BALL_DIR] = (9, 3) if right_side else (0, 2)
    game[row, POS] = 4
    game[row, LAST_X], game[row, LAST_Y] = game[row, BALL_X], game[row, BALL_Y]
    game[row, STRIKE] = 0
    game[row, LAST_ACTION] = 0
    game[row, STEPS] = 0
    bricks[row] = 0
    bricks[row, 1:4, :] = 1


@numba.njit(cache=True)
def _render(row: int, game: np.ndarray, bricks: np.ndarray, out: np.ndarray) -> None:
    """MinAtar's ``Env.state`` of env ``row`` into ``out [10, 10, 4]``."""
    out[:] = False
    out[game[row, BALL_Y], game[row, BALL_X], BALL] = True
    out[GRID - 1, game[row, POS], PADDLE] = True
    out[game[row, LAST_Y], game[row, LAST_X], TRAIL] = True
    for y in range(GRID):
        for x in range(GRID):
            out[y, x, BRICK] = bricks[row, y, x] != 0


@numba.njit(cache=True)
def _act(row: int, action: int, game: np.ndarray, bricks: np.ndarray, rng_state: np.ndarray,
         rng_inc: np.ndarray, has_uint32: np.ndarray, uinteger: np.ndarray) -> tuple[float, bool]:
    """MinAtar's ``breakout.Env.act`` for env ``row``: ``(reward, terminal)``. It draws nothing; it takes the
    generators as every game's ``_act`` does (``envs.minatar_vector.STEP_ALL_SOURCE`` calls them alike)."""
    reward = 0.0
    terminal = False
    if action == 1:
        game[row, POS] = max(0, game[row, POS] - 1)
    elif action == 3:
        game[row, POS] = min(GRID - 1, game[row, POS] + 1)
    ball_x, ball_y, direction = game[row, BALL_X], game[row, BALL_Y], game[row, BALL_DIR]
    game[row, LAST_X], game[row, LAST_Y] = ball_x, ball_y
    new_x, new_y = ball_x + _DX[direction], ball_y + _DY[direction]
    strike_toggle = False
    if new_x < 0 or new_x > GRID - 1:
        new_x = min(max(new_x, 0), GRID - 1)
        direction = _BOUNCE_X[direction]
    if new_y < 0:
        new_y = 0
        direction = _BOUNCE_Y[direction]
    elif bricks[row, new_y, new_x] == 1:
        strike_toggle = True
        if not game[row, STRIKE]:
            reward += 1.0
            game[row, STRIKE] = 1
            bricks[row, new_y, new_x] = 0
            new_y = ball_y
            direction = _BOUNCE_Y[direction]
    elif new_y == GRID - 1:
        if not bricks[row].any():
            bricks[row, 1:4, :] = 1
        if ball_x == game[row, POS]:
            direction = _BOUNCE_Y[direction]
            new_y = ball_y
        elif new_x == game[row, POS]:
            direction = _BOUNCE_EDGE[direction]
            new_y = ball_y
        else:
            terminal = True
    if not strike_toggle:
        game[row, STRIKE] = 0
    game[row, BALL_X], game[row, BALL_Y], game[row, BALL_DIR] = new_x, new_y, direction
    return reward, terminal


_step_all = define_step_all(globals())


class BreakoutVectorEnv(MinAtarVectorEnv):
    """``num_envs`` MinAtar Breakout games stepped together (see the module docstring and
    :class:`~envs.minatar_vector.MinAtarVectorEnv` for the arguments)."""

    GAME, CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS = "breakout", CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS
    BOARD = ("bricks", (GRID, GRID), np.uint8)
    reset_game, render, step_all = staticmethod(_reset_game), staticmethod(_render), staticmethod(_step_all)
