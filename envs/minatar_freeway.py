"""MinAtar Freeway for many envs at once: the game's rules as one numba kernel over arrays of game states.

``FreewayVectorEnv`` is the vector implementation of ``rlcore/MinAtar-Freeway-v0`` (see :mod:`envs.minatar_vector`
for what it shares with the other batched games: seeding, same-step autoreset, exact resume).
The rules are MinAtar's ``freeway.py``: the chicken (column 4) starts on the bottom row and moves up or down one row
at most every 3 frames; reaching the top row scores 1, puts it back on the bottom row and draws new car speeds and
directions; a car on the chicken's cell sends it back to the bottom row. Eight cars, one per road row 1-8, move one
cell every ``|speed|`` frames (speed 1-5, its sign the direction) and wrap around; each leaves a trail behind it in
the channel of its speed. An episode ends after 2,501 frames.

Randomness as the single env draws it from ``np_random`` (through MinAtar's ``RandomState``): at a reset and after
each score, 8 speeds (``randint(1, 6, 8)``: masked 32-bit draws) and then 8 directions (``sign(rand(8) - 0.5)``:
doubles). A direction draw of exactly 0.5 (probability 2**-53) gives MinAtar a car of speed 0 with no trail
channel of its own; here such a car moves as MinAtar's (one cell left every frame) and draws no trail.

State: ``game [N, 5]`` int64 (:data:`GAME_FIELDS`) and ``cars [N, 8, 4]`` int64, one row per car: ``x, y, timer,
speed``. Observations ``bool [N, 10, 10, 7]``: chicken, car, then the trails of speeds 1-5; actions: all 6 of
MinAtar's, or with ``use_minimal_action_set`` Freeway's 3 (no-op, up, down).
"""

from __future__ import annotations

import numba
import numpy as np

from envs._pcg64 import legacy_randint, next_double
from envs.minatar_vector import MinAtarVectorEnv, define_step_all

GRID = 10
CHANNELS = 7
CHICKEN, CAR, TRAIL_SPEED_1 = 0, 1, 2
"""Observation channels, as MinAtar's Freeway (the trail of speed ``s`` is channel ``1 + s``)."""
# one row of int64 per env: the game's scalars
POS, MOVE_TIMER, TERMINATE_TIMER, LAST_ACTION, STEPS = range(5)
GAME_FIELDS = ("pos", "move_timer", "terminate_timer", "last_action", "steps")
X, Y, TIMER, SPEED = range(4)
"""A car's columns."""
MINIMAL_ACTIONS = np.array([0, 2, 4], dtype=np.int64)
"""Freeway's useful actions among MinAtar's 6: no-op, up, down."""
UP, DOWN = 2, 4
CHICKEN_COLUMN = 4
PLAYER_SPEED = 3
"""Frames between two moves of the chicken."""
TIME_LIMIT = 2500
"""The episode ends when this many frames have passed after the first (2,501 frames)."""
CARS = 8


@numba.njit(cache=True)
def _randomize_cars(row: int, cars: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray, has_uint32: np.ndarray,
                    uinteger: np.ndarray, initialize: bool) -> None:
    """MinAtar's ``_randomize_cars``: new speeds and directions (and with ``initialize``, the cars at column 0)."""
    speeds = np.empty(CARS, dtype=np.int64)
    for car in range(CARS):
        speeds[car] = legacy_randint(rng_state, rng_inc, has_uint32, uinteger, row, 1, 6)
    for car in range(CARS):
        draw = next_double(rng_state, rng_inc, row) - 0.5
        speed = speeds[car] * (1 if draw > 0.0 else -1 if draw < 0.0 else 0)
        if initialize:
            cars[row, car, X], cars[row, car, Y] = 0, car + 1
        cars[row, car, TIMER], cars[row, car, SPEED] = abs(speed), speed


@numba.njit(cache=True)
def _reset_game(row: int, game: np.ndarray, cars: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
                has_uint32: np.ndarray, uinteger: np.ndarray) -> None:
    """MinAtar's ``Env.reset`` for env ``row`` (its previous action forgotten, as the single env does)."""
    _randomize_cars(row, cars, rng_state, rng_inc, has_uint32, uinteger, True)
    game[row, POS] = GRID - 1
    game[row, MOVE_TIMER] = PLAYER_SPEED
    game[row, TERMINATE_TIMER] = TIME_LIMIT
    game[row, LAST_ACTION] = 0
    game[row, STEPS] = 0


@numba.njit(cache=True)
def _render(row: int, game: np.ndarray, cars: np.ndarray, out: np.ndarray) -> None:
    """MinAtar's ``Env.state`` of env ``row`` into ``out [10, 10, 7]``."""
    out[:] = False
    out[game[row, POS], CHICKEN_COLUMN, CHICKEN] = True
    for car in range(CARS):
        x, y, speed = cars[row, car, X], cars[row, car, Y], cars[row, car, SPEED]
        out[y, x, CAR] = True
        back_x = (x - 1 if speed > 0 else x + 1) % GRID
        if speed != 0:
            out[y, back_x, CAR + abs(speed)] = True


@numba.njit(cache=True)
def _act(row: int, action: int, game: np.ndarray, cars: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
         has_uint32: np.ndarray, uinteger: np.ndarray) -> tuple[float, bool]:
    """MinAtar's ``freeway.Env.act`` for env ``row``: ``(reward, terminal)``."""
    reward = 0.0
    if game[row, MOVE_TIMER] == 0 and action in (UP, DOWN):
        game[row, MOVE_TIMER] = PLAYER_SPEED
        game[row, POS] = max(0, game[row, POS] - 1) if action == UP else min(GRID - 1, game[row, POS] + 1)
    if game[row, POS] == 0:
        reward += 1.0
        _randomize_cars(row, cars, rng_state, rng_inc, has_uint32, uinteger, False)
        game[row, POS] = GRID - 1
    for car in range(CARS):
        if cars[row, car, X] == CHICKEN_COLUMN and cars[row, car, Y] == game[row, POS]:
            game[row, POS] = GRID - 1
        if cars[row, car, TIMER] == 0:
            cars[row, car, TIMER] = abs(cars[row, car, SPEED])
            cars[row, car, X] = (cars[row, car, X] + (1 if cars[row, car, SPEED] > 0 else -1)) % GRID
            if cars[row, car, X] == CHICKEN_COLUMN and cars[row, car, Y] == game[row, POS]:
                game[row, POS] = GRID - 1
        else:
            cars[row, car, TIMER] -= 1
    if game[row, MOVE_TIMER] > 0:
        game[row, MOVE_TIMER] -= 1
    game[row, TERMINATE_TIMER] -= 1
    return reward, game[row, TERMINATE_TIMER] < 0


_step_all = define_step_all(globals())


class FreewayVectorEnv(MinAtarVectorEnv):
    """``num_envs`` MinAtar Freeway games stepped together (see the module docstring and
    :class:`~envs.minatar_vector.MinAtarVectorEnv` for the arguments)."""

    GAME, CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS = "freeway", CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS
    BOARD = ("cars", (CARS, 4), np.int64)
    reset_game, render, step_all = staticmethod(_reset_game), staticmethod(_render), staticmethod(_step_all)
