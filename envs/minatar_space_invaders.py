"""MinAtar Space Invaders for many envs at once: the game's rules as one numba kernel over arrays of game states.

``SpaceInvadersVectorEnv`` is the vector implementation of ``rlcore/MinAtar-SpaceInvaders-v0`` (see
:mod:`envs.minatar_vector` for what it shares with the other batched games: seeding, same-step autoreset, exact
resume). The rules are MinAtar's ``space_invaders.py``: a cannon on the bottom row moves left and right and fires
(one shot every 5 frames); a 4x6 block of aliens moves sideways, one row down at a wall, faster as it thins out,
and the nearest alien column fires every 10 frames; each alien hit scores 1; a cleared block comes back (with
difficulty ramping, moving one frame faster each time, down to every 6 frames); the episode ends when the cannon
is hit or the aliens reach it. The game draws nothing: each env's generator gives one uniform per step for sticky
actions.

State: ``game [N, 10]`` int64 (:data:`GAME_FIELDS`) and ``maps [N, 3, 10, 10]`` uint8: aliens, the cannon's bullets
and the aliens' bullets. Observations ``bool [N, 10, 10, 6]``: cannon, alien, alien moving left, alien moving right,
the cannon's bullets, the aliens' bullets; actions: all 6 of MinAtar's, or with ``use_minimal_action_set`` Space
Invaders' 4 (no-op, left, right, fire).
"""

from __future__ import annotations

import numba
import numpy as np

from envs.minatar_vector import MinAtarVectorEnv, define_step_all

GRID = 10
CHANNELS = 6
CANNON, ALIEN, ALIEN_LEFT, ALIEN_RIGHT, CANNON_BULLET, ALIEN_BULLET = range(6)
"""Observation channels, as MinAtar's Space Invaders."""
ALIENS, CANNON_BULLETS, ALIEN_BULLETS = range(3)
"""The maps of ``maps [N, 3, 10, 10]``."""
MINIMAL_ACTIONS = np.array([0, 1, 3, 5], dtype=np.int64)
"""Space Invaders' useful actions among MinAtar's 6: no-op, left, right, fire."""
LEFT, RIGHT, FIRE = 1, 3, 5
SHOT_COOL_DOWN = 5
ENEMY_MOVE_INTERVAL = 12
ENEMY_SHOT_INTERVAL = 10
FASTEST_MOVE_INTERVAL = 6
"""With difficulty ramping, each cleared block moves one frame faster, while its interval is above this."""

# one row of int64 per env: the game's scalars
(POS, ALIEN_DIR, MOVE_INTERVAL, MOVE_TIMER, ALIEN_SHOT_TIMER, RAMP_INDEX, SHOT_TIMER, RAMPING, LAST_ACTION,
 STEPS) = range(10)
GAME_FIELDS = ("pos", "alien_dir", "enemy_move_interval", "alien_move_timer", "alien_shot_timer", "ramp_index",
               "shot_timer", "ramping", "last_action", "steps")


@numba.njit(cache=True)
def _fill_aliens(aliens: np.ndarray) -> None:
    """The starting block: rows 0-3, columns 2-7."""
    aliens[0:4, 2:8] = 1


@numba.njit(cache=True)
def _reset_game(row: int, game: np.ndarray, maps: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
                has_uint32: np.ndarray, uinteger: np.ndarray) -> None:
    """MinAtar's ``Env.reset`` for env ``row`` (its previous action forgotten, as the single env does; the ramping
    setting kept)."""
    maps[row] = 0
    _fill_aliens(maps[row, ALIENS])
    game[row, POS] = 5
    game[row, ALIEN_DIR] = -1
    game[row, MOVE_INTERVAL] = ENEMY_MOVE_INTERVAL
    game[row, MOVE_TIMER] = ENEMY_MOVE_INTERVAL
    game[row, ALIEN_SHOT_TIMER] = ENEMY_SHOT_INTERVAL
    game[row, RAMP_INDEX] = 0
    game[row, SHOT_TIMER] = 0
    game[row, LAST_ACTION] = 0
    game[row, STEPS] = 0


@numba.njit(cache=True)
def _render(row: int, game: np.ndarray, maps: np.ndarray, out: np.ndarray) -> None:
    """MinAtar's ``Env.state`` of env ``row`` into ``out [10, 10, 6]``."""
    out[:] = False
    out[GRID - 1, game[row, POS], CANNON] = True
    moving = ALIEN_LEFT if game[row, ALIEN_DIR] < 0 else ALIEN_RIGHT
    for y in range(GRID):
        for x in range(GRID):
            alien = maps[row, ALIENS, y, x] != 0
            out[y, x, ALIEN] = alien
            out[y, x, moving] = alien
            out[y, x, CANNON_BULLET] = maps[row, CANNON_BULLETS, y, x] != 0
            out[y, x, ALIEN_BULLET] = maps[row, ALIEN_BULLETS, y, x] != 0


@numba.njit(cache=True)
def _shift_rows(grid: np.ndarray, down: bool, wrap: bool) -> None:
    """Moves every row of ``grid [10, 10]`` one row down (or up) in place; the row moving off wraps around (as
    ``np.roll``) or is dropped, leaving zeros."""
    for x in range(GRID):
        if down:
            leaving = grid[GRID - 1, x]
            for y in range(GRID - 1, 0, -1):
                grid[y, x] = grid[y - 1, x]
            grid[0, x] = leaving if wrap else 0
        else:
            leaving = grid[0, x]
            for y in range(GRID - 1):
                grid[y, x] = grid[y + 1, x]
            grid[GRID - 1, x] = leaving if wrap else 0


@numba.njit(cache=True)
def _move_aliens(aliens: np.ndarray, direction: int) -> bool:
    """The block's move (``np.roll`` as MinAtar: one row down at a wall it heads into, else one column sideways,
    wrapping around); returns whether it turned."""
    column = 0 if direction < 0 else GRID - 1
    if aliens[:, column].any():
        _shift_rows(aliens, True, True)
        return True
    for y in range(GRID):
        if direction > 0:
            leaving = aliens[y, GRID - 1]
            for x in range(GRID - 1, 0, -1):
                aliens[y, x] = aliens[y, x - 1]
            aliens[y, 0] = leaving
        else:
            leaving = aliens[y, 0]
            for x in range(GRID - 1):
                aliens[y, x] = aliens[y, x + 1]
            aliens[y, GRID - 1] = leaving
    return False


@numba.njit(cache=True)
def _alien_fires(aliens: np.ndarray, bullets: np.ndarray, pos: int) -> None:
    """MinAtar's ``_nearest_alien``: the lowest alien of the column nearest the cannon (the left one of two at the same
    distance) fires; nothing when there is no alien."""
    for distance in range(GRID):
        for x in (pos - distance, pos + distance):
            if 0 <= x < GRID and aliens[:, x].any():
                lowest = GRID - 1
                while aliens[lowest, x] == 0:
                    lowest -= 1
                bullets[lowest, x] = 1
                return


@numba.njit(cache=True)
def _act(row: int, action: int, game: np.ndarray, maps: np.ndarray, rng_state: np.ndarray,
         rng_inc: np.ndarray, has_uint32: np.ndarray, uinteger: np.ndarray) -> tuple[float, bool]:
    """MinAtar's ``space_invaders.Env.act`` for env ``row``: ``(reward, terminal)``. It draws nothing; it takes the
    generators as every game's ``_act`` does (``envs.minatar_vector.STEP_ALL_SOURCE`` calls them alike)."""
    aliens, shots, bullets = maps[row, ALIENS], maps[row, CANNON_BULLETS], maps[row, ALIEN_BULLETS]
    pos = game[row, POS]
    if action == FIRE and game[row, SHOT_TIMER] == 0:
        shots[GRID - 1, pos] = 1
        game[row, SHOT_TIMER] = SHOT_COOL_DOWN
    elif action == LEFT:
        pos = max(0, pos - 1)
    elif action == RIGHT:
        pos = min(GRID - 1, pos + 1)
    game[row, POS] = pos
    _shift_rows(shots, False, False)
    _shift_rows(bullets, True, False)
    terminal = bullets[GRID - 1, pos] != 0 or aliens[GRID - 1, pos] != 0
    if game[row, MOVE_TIMER] == 0:
        game[row, MOVE_TIMER] = min(np.count_nonzero(aliens), game[row, MOVE_INTERVAL])
        reaches_bottom = aliens[GRID - 1].any()
        if _move_aliens(aliens, game[row, ALIEN_DIR]):
            game[row, ALIEN_DIR] = -game[row, ALIEN_DIR]
            terminal = terminal or reaches_bottom
        terminal = terminal or aliens[GRID - 1, pos] != 0
    if game[row, ALIEN_SHOT_TIMER] == 0:
        game[row, ALIEN_SHOT_TIMER] = ENEMY_SHOT_INTERVAL
        _alien_fires(aliens, bullets, pos)
    reward = 0.0
    for y in range(GRID):
        for x in range(GRID):
            if aliens[y, x] != 0 and shots[y, x] != 0:
                reward += 1.0
                aliens[y, x] = 0
                shots[y, x] = 0
    if game[row, SHOT_TIMER] > 0:
        game[row, SHOT_TIMER] -= 1
    game[row, MOVE_TIMER] -= 1
    game[row, ALIEN_SHOT_TIMER] -= 1
    if not aliens.any():
        if game[row, MOVE_INTERVAL] > FASTEST_MOVE_INTERVAL and game[row, RAMPING]:
            game[row, MOVE_INTERVAL] -= 1
            game[row, RAMP_INDEX] += 1
        _fill_aliens(aliens)
    return reward, terminal


_step_all = define_step_all(globals())


class SpaceInvadersVectorEnv(MinAtarVectorEnv):
    """``num_envs`` MinAtar Space Invaders games stepped together (see the module docstring and
    :class:`~envs.minatar_vector.MinAtarVectorEnv` for the arguments)."""

    GAME, CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS = "space_invaders", CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS
    BOARD = ("maps", (3, GRID, GRID), np.uint8)
    RAMPING_FIELD = RAMPING
    reset_game, render, step_all = staticmethod(_reset_game), staticmethod(_render), staticmethod(_step_all)
