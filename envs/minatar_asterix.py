"""MinAtar Asterix for many envs at once: the game's rules as one numba kernel over arrays of game states.

``AsterixVectorEnv`` is the vector implementation of ``rlcore/MinAtar-Asterix-v0`` (see :mod:`envs.minatar_vector`
for what it shares with the other batched games: seeding, same-step autoreset, exact resume). The rules are
MinAtar's ``asterix.py``: the player moves in rows 1-8; every ``spawn_speed`` frames an enemy or (one in three) a
treasure enters one of 8 free lanes (rows 1-8) from the left or the right and crosses it one cell every
``move_speed`` frames; touching a treasure scores 1, touching an enemy ends the episode. With difficulty ramping,
every 101 frames spawns come one frame sooner and, every other time, moves too (down to every frame).

Randomness as the single env draws it from ``np_random`` (through MinAtar's ``RandomState``), at each spawn: the
side (``rand() < 1/2``), treasure or not (``rand() < 1/3``), then the lane among the free ones (``randint``, no draw
when one lane is free, no lane when none is).

State: ``game [N, 11]`` int64 (:data:`GAME_FIELDS`) and ``entities [N, 8, 4]`` int64, one row per lane: ``x, alive,
moves right, treasure``. Observations ``bool [N, 10, 10, 4]``: player, enemy, trail, treasure;
actions: all 6 of MinAtar's, or with ``use_minimal_action_set`` Asterix's 5 (no-op, left, up, right, down).
"""

from __future__ import annotations

import numba
import numpy as np

from envs._pcg64 import legacy_randint, next_double
from envs.minatar_vector import MinAtarVectorEnv, define_step_all

GRID = 10
CHANNELS = 4
PLAYER, ENEMY, TRAIL, TREASURE = range(4)
"""Observation channels, as MinAtar's Asterix."""
MINIMAL_ACTIONS = np.array([0, 1, 2, 3, 4], dtype=np.int64)
"""Asterix's useful actions among MinAtar's 6: no-op, left, up, right, down."""
LEFT, UP, RIGHT, DOWN = 1, 2, 3, 4
LANES = 8
RAMP_INTERVAL = 100
INIT_SPAWN_SPEED = 10
INIT_MOVE_INTERVAL = 5

# one row of int64 per env: the game's scalars
(PLAYER_X, PLAYER_Y, SPAWN_SPEED, SPAWN_TIMER, MOVE_SPEED, MOVE_TIMER, RAMP_TIMER, RAMP_INDEX, RAMPING,
 LAST_ACTION, STEPS) = range(11)
GAME_FIELDS = ("player_x", "player_y", "spawn_speed", "spawn_timer", "move_speed", "move_timer", "ramp_timer",
               "ramp_index", "ramping", "last_action", "steps")
X, ALIVE, MOVES_RIGHT, IS_TREASURE = range(4)
"""An entity's columns (its row is its lane: the grid's row ``lane + 1``)."""


@numba.njit(cache=True)
def _reset_game(row: int, game: np.ndarray, entities: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
                has_uint32: np.ndarray, uinteger: np.ndarray) -> None:
    """MinAtar's ``Env.reset`` for env ``row`` (its previous action forgotten, as the single env does; the ramping
    setting kept)."""
    entities[row] = 0
    game[row, PLAYER_X] = 5
    game[row, PLAYER_Y] = 5
    game[row, SPAWN_SPEED] = INIT_SPAWN_SPEED
    game[row, SPAWN_TIMER] = INIT_SPAWN_SPEED
    game[row, MOVE_SPEED] = INIT_MOVE_INTERVAL
    game[row, MOVE_TIMER] = INIT_MOVE_INTERVAL
    game[row, RAMP_TIMER] = RAMP_INTERVAL
    game[row, RAMP_INDEX] = 0
    game[row, LAST_ACTION] = 0
    game[row, STEPS] = 0


@numba.njit(cache=True)
def _render(row: int, game: np.ndarray, entities: np.ndarray, out: np.ndarray) -> None:
    """MinAtar's ``Env.state`` of env ``row`` into ``out [10, 10, 4]``."""
    out[:] = False
    out[game[row, PLAYER_Y], game[row, PLAYER_X], PLAYER] = True
    for lane in range(LANES):
        if entities[row, lane, ALIVE]:
            x = entities[row, lane, X]
            out[lane + 1, x, TREASURE if entities[row, lane, IS_TREASURE] else ENEMY] = True
            back_x = x - 1 if entities[row, lane, MOVES_RIGHT] else x + 1
            if 0 <= back_x < GRID:
                out[lane + 1, back_x, TRAIL] = True


@numba.njit(cache=True)
def _spawn(row: int, entities: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray, has_uint32: np.ndarray,
           uinteger: np.ndarray) -> None:
    """MinAtar's ``_spawn_entity``: an enemy or a treasure in a free lane, at the side it will cross from."""
    moves_right = next_double(rng_state, rng_inc, row) < 0.5
    is_treasure = next_double(rng_state, rng_inc, row) < 1.0 / 3.0
    free = 0
    for lane in range(LANES):
        free += entities[row, lane, ALIVE] == 0
    if free == 0:
        return
    pick = legacy_randint(rng_state, rng_inc, has_uint32, uinteger, row, 0, free)
    for lane in range(LANES):
        if entities[row, lane, ALIVE] == 0:
            if pick == 0:
                entities[row, lane, X] = 0 if moves_right else GRID - 1
                entities[row, lane, ALIVE] = 1
                entities[row, lane, MOVES_RIGHT] = moves_right
                entities[row, lane, IS_TREASURE] = is_treasure
                return
            pick -= 1


@numba.njit(cache=True)
def _meet(row: int, lane: int, game: np.ndarray, entities: np.ndarray) -> tuple[float, bool]:
    """An entity on the player's cell: a treasure is taken (``(1, False)``), an enemy ends the episode."""
    if entities[row, lane, X] != game[row, PLAYER_X] or lane + 1 != game[row, PLAYER_Y]:
        return 0.0, False
    if entities[row, lane, IS_TREASURE]:
        entities[row, lane, ALIVE] = 0
        return 1.0, False
    return 0.0, True


@numba.njit(cache=True)
def _ramp(row: int, game: np.ndarray) -> None:
    """Difficulty ramping: every ``RAMP_INTERVAL + 1`` frames, spawns one frame sooner and, every other time,
    moves too."""
    if game[row, RAMP_TIMER] >= 0:
        game[row, RAMP_TIMER] -= 1
        return
    if game[row, MOVE_SPEED] > 1 and game[row, RAMP_INDEX] % 2:
        game[row, MOVE_SPEED] -= 1
    if game[row, SPAWN_SPEED] > 1:
        game[row, SPAWN_SPEED] -= 1
    game[row, RAMP_INDEX] += 1
    game[row, RAMP_TIMER] = RAMP_INTERVAL


@numba.njit(cache=True)
def _act(row: int, action: int, game: np.ndarray, entities: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
         has_uint32: np.ndarray, uinteger: np.ndarray) -> tuple[float, bool]:
    """MinAtar's ``asterix.Env.act`` for env ``row``: ``(reward, terminal)``."""
    if game[row, SPAWN_TIMER] == 0:
        _spawn(row, entities, rng_state, rng_inc, has_uint32, uinteger)
        game[row, SPAWN_TIMER] = game[row, SPAWN_SPEED]
    if action == LEFT:
        game[row, PLAYER_X] = max(0, game[row, PLAYER_X] - 1)
    elif action == RIGHT:
        game[row, PLAYER_X] = min(GRID - 1, game[row, PLAYER_X] + 1)
    elif action == UP:
        game[row, PLAYER_Y] = max(1, game[row, PLAYER_Y] - 1)
    elif action == DOWN:
        game[row, PLAYER_Y] = min(LANES, game[row, PLAYER_Y] + 1)
    reward, terminal = 0.0, False
    for lane in range(LANES):
        if entities[row, lane, ALIVE]:
            gained, caught = _meet(row, lane, game, entities)
            reward, terminal = reward + gained, terminal or caught
    if game[row, MOVE_TIMER] == 0:
        game[row, MOVE_TIMER] = game[row, MOVE_SPEED]
        for lane in range(LANES):
            if entities[row, lane, ALIVE]:
                entities[row, lane, X] += 1 if entities[row, lane, MOVES_RIGHT] else -1
                if not 0 <= entities[row, lane, X] < GRID:
                    entities[row, lane, ALIVE] = 0
                    continue
                gained, caught = _meet(row, lane, game, entities)
                reward, terminal = reward + gained, terminal or caught
    game[row, SPAWN_TIMER] -= 1
    game[row, MOVE_TIMER] -= 1
    if game[row, RAMPING] and (game[row, SPAWN_SPEED] > 1 or game[row, MOVE_SPEED] > 1):
        _ramp(row, game)
    return reward, terminal


_step_all = define_step_all(globals())


class AsterixVectorEnv(MinAtarVectorEnv):
    """``num_envs`` MinAtar Asterix games stepped together (see the module docstring and
    :class:`~envs.minatar_vector.MinAtarVectorEnv` for the arguments)."""

    GAME, CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS = "asterix", CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS
    BOARD = ("entities", (LANES, 4), np.int64)
    RAMPING_FIELD = RAMPING
    reset_game, render, step_all = staticmethod(_reset_game), staticmethod(_render), staticmethod(_step_all)
