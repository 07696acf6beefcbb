"""MinAtar Seaquest for many envs at once: the game's rules as one numba kernel over arrays of game states.

``SeaquestVectorEnv`` is the vector implementation of ``rlcore/MinAtar-Seaquest-v0`` (see :mod:`envs.minatar_vector`
for what it shares with the other batched games: seeding, same-step autoreset, exact resume). The rules are
MinAtar's ``seaquest.py``: a submarine shoots enemy fish and subs (1 point each) that cross the sea's rows 1-8,
picks up divers (up to 6), and must surface (row 0) before its oxygen (200 frames) runs out; surfacing with no diver
ends the episode, with 6 divers it scores the oxygen left (``oxygen * 10 // 200``); enemy subs fire every 11 frames;
touching an enemy or its bullet ends the episode. With difficulty ramping each surfacing brings spawns one frame
sooner and, every other time, enemies move faster. MinAtar's own quirks are kept: a sub that leaves the sea or is
shot still fires in that frame, and surfacing with 6 divers leaves the diver count at -1.

Randomness as the single env draws it from ``np_random`` (through MinAtar's ``RandomState``): per enemy spawn the side
(``rand() < 1/2``), sub or fish (``rand() < 1/3``) and the row (``randint(1, 9)``); per diver spawn the side and the
row.

MinAtar keeps its objects in Python lists, iterated backwards while entries are removed by value (``list.remove``);
here each list is an array of up to :data:`CAPACITY` entries in the same order, and an entry is removed where it
stands. The two differ only when a list holds two entries equal in every field (position, direction and timers).

State: ``game [N, 20]`` int64 (:data:`GAME_FIELDS`, the lists' lengths among them) and ``lists [N, 5, CAPACITY, 5]``
int64: friendly bullets ``(x, y, faces right)``, enemy bullets ``(x, y, moves right)``, fish ``(x, y, moves right,
move timer)``, subs ``(x, y, moves right, move timer, shot timer)`` and divers ``(x, y, moves right, move timer)``.
Observations ``bool [N, 10, 10, 10]``: sub front, sub back, friendly bullet, trail, enemy bullet, fish, enemy sub,
oxygen gauge, diver gauge, diver; actions: all 6 of MinAtar's (Seaquest uses them all).
"""

from __future__ import annotations

import numba
import numpy as np

from envs._pcg64 import legacy_randint, next_double
from envs.minatar_vector import MinAtarVectorEnv, define_step_all

GRID = 10
CHANNELS = 10
SUB_FRONT, SUB_BACK, FRIENDLY_BULLET, TRAIL, ENEMY_BULLET, ENEMY_FISH, ENEMY_SUB, OXYGEN_GAUGE, DIVER_GAUGE, DIVER = (
    range(10))
"""Observation channels, as MinAtar's Seaquest."""
MINIMAL_ACTIONS = np.arange(6, dtype=np.int64)
"""Seaquest uses all of MinAtar's 6 actions."""
LEFT, UP, RIGHT, DOWN, FIRE = 1, 2, 3, 4, 5
RAMP_INTERVAL = 100
MAX_OXYGEN = 200
INIT_SPAWN_SPEED = 20
DIVER_SPAWN_SPEED = 30
INIT_MOVE_INTERVAL = 5
SHOT_COOL_DOWN = 5
ENEMY_SHOT_INTERVAL = 10
DIVER_MOVE_INTERVAL = 5
MAX_DIVERS = 6
CAPACITY = 64
"""Entries per list: far more than play reaches (a fuller list raises instead of dropping an object)."""
F_BULLETS, E_BULLETS, FISH, SUBS, DIVERS = range(5)
"""The lists of ``lists [N, 5, CAPACITY, 5]``."""
X, Y, RIGHTWARD, MOVE_TIMER, SHOT_TIMER = range(5)
"""An entry's columns (bullets use the first three, fish and divers four)."""

# one row of int64 per env: the game's scalars
(OXYGEN, DIVER_COUNT, SUB_X, SUB_Y, SUB_OR, E_SPAWN_SPEED, E_SPAWN_TIMER, D_SPAWN_TIMER, MOVE_SPEED, RAMP_INDEX,
 SHOT, SURFACE, RAMPING, LENGTHS, LAST_ACTION, STEPS) = (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 18, 19)
"""``LENGTHS + list`` is that list's length."""
GAME_FIELDS = ("oxygen", "diver_count", "sub_x", "sub_y", "sub_or", "e_spawn_speed", "e_spawn_timer",
               "d_spawn_timer", "move_speed", "ramp_index", "shot_timer", "surface", "ramping", "f_bullets",
               "e_bullets", "e_fish", "e_subs", "divers", "last_action", "steps")


@numba.njit(cache=True)
def _append(row: int, game: np.ndarray, lists: np.ndarray, which: int, x: int, y: int, rightward: int, move_timer: int,
            shot_timer: int) -> None:
    """Appends an entry to list ``which`` of env ``row``."""
    length = game[row, LENGTHS + which]
    if length == CAPACITY:
        raise ValueError("a MinAtar Seaquest list is full (CAPACITY entries)")
    lists[row, which, length, X], lists[row, which, length, Y] = x, y
    lists[row, which, length, RIGHTWARD], lists[row, which, length, MOVE_TIMER] = rightward, move_timer
    lists[row, which, length, SHOT_TIMER] = shot_timer
    game[row, LENGTHS + which] = length + 1


@numba.njit(cache=True)
def _delete(row: int, game: np.ndarray, lists: np.ndarray, which: int, index: int) -> None:
    """Removes entry ``index`` of list ``which`` of env ``row``, the later entries moving up one place."""
    length = game[row, LENGTHS + which]
    for later in range(index + 1, length):
        for column in range(5):
            lists[row, which, later - 1, column] = lists[row, which, later, column]
    game[row, LENGTHS + which] = length - 1


@numba.njit(cache=True)
def _find(row: int, game: np.ndarray, lists: np.ndarray, which: int, x: int, y: int) -> int:
    """The first entry of list ``which`` at ``(x, y)``, or -1."""
    for index in range(game[row, LENGTHS + which]):
        if lists[row, which, index, X] == x and lists[row, which, index, Y] == y:
            return index
    return -1


@numba.njit(cache=True)
def _reset_game(row: int, game: np.ndarray, lists: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
                has_uint32: np.ndarray, uinteger: np.ndarray) -> None:
    """MinAtar's ``Env.reset`` for env ``row`` (its previous action forgotten, as the single env does; the ramping
    setting kept)."""
    game[row, OXYGEN] = MAX_OXYGEN
    game[row, DIVER_COUNT] = 0
    game[row, SUB_X], game[row, SUB_Y], game[row, SUB_OR] = 5, 0, 0
    game[row, LENGTHS:LENGTHS + 5] = 0
    game[row, E_SPAWN_SPEED] = INIT_SPAWN_SPEED
    game[row, E_SPAWN_TIMER] = INIT_SPAWN_SPEED
    game[row, D_SPAWN_TIMER] = DIVER_SPAWN_SPEED
    game[row, MOVE_SPEED] = INIT_MOVE_INTERVAL
    game[row, RAMP_INDEX] = 0
    game[row, SHOT] = 0
    game[row, SURFACE] = 1
    game[row, LAST_ACTION] = 0
    game[row, STEPS] = 0


@numba.njit(cache=True)
def _draw_with_trails(row: int, game: np.ndarray, lists: np.ndarray, which: int, channel: int,
                      out: np.ndarray) -> None:
    """List ``which``'s entries in ``channel``, each with a trail behind it."""
    for index in range(game[row, LENGTHS + which]):
        x, y = lists[row, which, index, X], lists[row, which, index, Y]
        out[y, x, channel] = True
        back_x = x - 1 if lists[row, which, index, RIGHTWARD] else x + 1
        if 0 <= back_x < GRID:
            out[y, back_x, TRAIL] = True


@numba.njit(cache=True)
def _render(row: int, game: np.ndarray, lists: np.ndarray, out: np.ndarray) -> None:
    """MinAtar's ``Env.state`` of env ``row`` into ``out [10, 10, 10]``."""
    out[:] = False
    sub_x, sub_y = game[row, SUB_X], game[row, SUB_Y]
    out[sub_y, sub_x, SUB_FRONT] = True
    out[sub_y, (sub_x - 1 if game[row, SUB_OR] else sub_x + 1) % GRID, SUB_BACK] = True
    for x in range(max(0, game[row, OXYGEN]) * 10 // MAX_OXYGEN):
        out[GRID - 1, x, OXYGEN_GAUGE] = True
    for x in range(GRID - 1 - game[row, DIVER_COUNT], GRID - 1):
        out[GRID - 1, x, DIVER_GAUGE] = True
    for which, channel in ((F_BULLETS, FRIENDLY_BULLET), (E_BULLETS, ENEMY_BULLET)):
        for index in range(game[row, LENGTHS + which]):
            out[lists[row, which, index, Y], lists[row, which, index, X], channel] = True
    _draw_with_trails(row, game, lists, FISH, ENEMY_FISH, out)
    _draw_with_trails(row, game, lists, SUBS, ENEMY_SUB, out)
    _draw_with_trails(row, game, lists, DIVERS, DIVER, out)


@numba.njit(cache=True)
def _spawn_enemy(row: int, game: np.ndarray, lists: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
                 has_uint32: np.ndarray, uinteger: np.ndarray) -> None:
    """MinAtar's ``_spawn_enemy``: a fish or (one in three) a sub on a random row, unless that row has an enemy going
    the other way."""
    rightward = 1 if next_double(rng_state, rng_inc, row) < 0.5 else 0
    is_sub = next_double(rng_state, rng_inc, row) < 1.0 / 3.0
    y = legacy_randint(rng_state, rng_inc, has_uint32, uinteger, row, 1, 9)
    for which in (SUBS, FISH):
        for index in range(game[row, LENGTHS + which]):
            if lists[row, which, index, Y] == y and lists[row, which, index, RIGHTWARD] != rightward:
                return
    x = 0 if rightward else GRID - 1
    if is_sub:
        _append(row, game, lists, SUBS, x, y, rightward, game[row, MOVE_SPEED], ENEMY_SHOT_INTERVAL)
    else:
        _append(row, game, lists, FISH, x, y, rightward, game[row, MOVE_SPEED], 0)


@numba.njit(cache=True)
def _spawn_diver(row: int, game: np.ndarray, lists: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
                 has_uint32: np.ndarray, uinteger: np.ndarray) -> None:
    """MinAtar's ``_spawn_diver``: a diver on a random row, from a random side."""
    rightward = 1 if next_double(rng_state, rng_inc, row) < 0.5 else 0
    y = legacy_randint(rng_state, rng_inc, has_uint32, uinteger, row, 1, 9)
    _append(row, game, lists, DIVERS, 0 if rightward else GRID - 1, y, rightward, DIVER_MOVE_INTERVAL, 0)


@numba.njit(cache=True)
def _move_sub(row: int, action: int, game: np.ndarray, lists: np.ndarray) -> None:
    """The player's action: fire (every 5 frames at most) or move (turning the sub)."""
    if action == FIRE and game[row, SHOT] == 0:
        _append(row, game, lists, F_BULLETS, game[row, SUB_X], game[row, SUB_Y], game[row, SUB_OR], 0, 0)
        game[row, SHOT] = SHOT_COOL_DOWN
    elif action == LEFT:
        game[row, SUB_X], game[row, SUB_OR] = max(0, game[row, SUB_X] - 1), 0
    elif action == RIGHT:
        game[row, SUB_X], game[row, SUB_OR] = min(GRID - 1, game[row, SUB_X] + 1), 1
    elif action == UP:
        game[row, SUB_Y] = max(0, game[row, SUB_Y] - 1)
    elif action == DOWN:
        game[row, SUB_Y] = min(GRID - 2, game[row, SUB_Y] + 1)


@numba.njit(cache=True)
def _friendly_bullets(row: int, game: np.ndarray, lists: np.ndarray) -> float:
    """The sub's bullets move (last first); one leaving the sea goes, one on a fish or else a sub takes it: the
    points."""
    reward = 0.0
    for index in range(game[row, LENGTHS + F_BULLETS] - 1, -1, -1):
        lists[row, F_BULLETS, index, X] += 1 if lists[row, F_BULLETS, index, RIGHTWARD] else -1
        x, y = lists[row, F_BULLETS, index, X], lists[row, F_BULLETS, index, Y]
        if not 0 <= x < GRID:
            _delete(row, game, lists, F_BULLETS, index)
            continue
        for target in (FISH, SUBS):
            hit = _find(row, game, lists, target, x, y)
            if hit >= 0:
                _delete(row, game, lists, target, hit)
                _delete(row, game, lists, F_BULLETS, index)
                reward += 1.0
                break
    return reward


@numba.njit(cache=True)
def _divers(row: int, game: np.ndarray, lists: np.ndarray) -> None:
    """Divers move (last first); the sub picks up one on its cell while it holds fewer than 6."""
    sub_x, sub_y = game[row, SUB_X], game[row, SUB_Y]
    for index in range(game[row, LENGTHS + DIVERS] - 1, -1, -1):
        diver = lists[row, DIVERS, index]
        if diver[X] == sub_x and diver[Y] == sub_y and game[row, DIVER_COUNT] < MAX_DIVERS:
            _delete(row, game, lists, DIVERS, index)
            game[row, DIVER_COUNT] += 1
        elif diver[MOVE_TIMER] == 0:
            diver[MOVE_TIMER] = DIVER_MOVE_INTERVAL
            diver[X] += 1 if diver[RIGHTWARD] else -1
            if not 0 <= diver[X] < GRID:
                _delete(row, game, lists, DIVERS, index)
            elif diver[X] == sub_x and diver[Y] == sub_y and game[row, DIVER_COUNT] < MAX_DIVERS:
                _delete(row, game, lists, DIVERS, index)
                game[row, DIVER_COUNT] += 1
        else:
            diver[MOVE_TIMER] -= 1


@numba.njit(cache=True)
def _enemies(row: int, game: np.ndarray, lists: np.ndarray, which: int) -> tuple[float, bool]:
    """Fish or enemy subs move (last first): ``(points, the sub was hit)``. One on the sub's cell, before or after its
    move, ends the episode; one leaving the sea goes; one moving onto a friendly bullet is shot. Subs fire every
    11 frames, even in the frame they go."""
    reward, terminal = 0.0, False
    sub_x, sub_y = game[row, SUB_X], game[row, SUB_Y]
    for index in range(game[row, LENGTHS + which] - 1, -1, -1):
        enemy = lists[row, which, index]  # a view: its list changes only at the end, when it goes
        gone = False
        terminal = terminal or (enemy[X] == sub_x and enemy[Y] == sub_y)
        if enemy[MOVE_TIMER] == 0:
            enemy[MOVE_TIMER] = game[row, MOVE_SPEED]
            enemy[X] += 1 if enemy[RIGHTWARD] else -1
            if not 0 <= enemy[X] < GRID:
                gone = True
            elif enemy[X] == sub_x and enemy[Y] == sub_y:
                terminal = True
            else:
                shot = _find(row, game, lists, F_BULLETS, enemy[X], enemy[Y])
                if shot >= 0:
                    _delete(row, game, lists, F_BULLETS, shot)
                    reward += 1.0
                    gone = True
        else:
            enemy[MOVE_TIMER] -= 1
        if which == SUBS:
            if enemy[SHOT_TIMER] == 0:
                enemy[SHOT_TIMER] = ENEMY_SHOT_INTERVAL
                _append(row, game, lists, E_BULLETS, enemy[X], enemy[Y], enemy[RIGHTWARD], 0, 0)
            else:
                enemy[SHOT_TIMER] -= 1
        if gone:
            _delete(row, game, lists, which, index)
    return reward, terminal


@numba.njit(cache=True)
def _enemy_bullets(row: int, game: np.ndarray, lists: np.ndarray) -> bool:
    """Enemy bullets move (last first); one on the sub's cell, before or after, hits it; one leaving the sea goes."""
    terminal = False
    sub_x, sub_y = game[row, SUB_X], game[row, SUB_Y]
    for index in range(game[row, LENGTHS + E_BULLETS] - 1, -1, -1):
        bullet = lists[row, E_BULLETS, index]
        terminal = terminal or (bullet[X] == sub_x and bullet[Y] == sub_y)
        bullet[X] += 1 if bullet[RIGHTWARD] else -1
        if not 0 <= bullet[X] < GRID:
            _delete(row, game, lists, E_BULLETS, index)
        elif bullet[X] == sub_x and bullet[Y] == sub_y:
            terminal = True
    return terminal


@numba.njit(cache=True)
def _surface(row: int, game: np.ndarray) -> float:
    """MinAtar's ``_surface``: with 6 divers, points for the oxygen left; oxygen refilled, a diver used up (MinAtar's
    count goes to -1 after 6), and with ramping the enemies come sooner and, every other time, faster."""
    game[row, SURFACE] = 1
    reward = 0.0
    if game[row, DIVER_COUNT] == MAX_DIVERS:
        game[row, DIVER_COUNT] = 0
        reward = float(game[row, OXYGEN] * 10 // MAX_OXYGEN)
    game[row, OXYGEN] = MAX_OXYGEN
    game[row, DIVER_COUNT] -= 1
    if game[row, RAMPING] and (game[row, E_SPAWN_SPEED] > 1 or game[row, MOVE_SPEED] > 2):
        if game[row, MOVE_SPEED] > 2 and game[row, RAMP_INDEX] % 2:
            game[row, MOVE_SPEED] -= 1
        if game[row, E_SPAWN_SPEED] > 1:
            game[row, E_SPAWN_SPEED] -= 1
        game[row, RAMP_INDEX] += 1
    return reward


@numba.njit(cache=True)
def _act(row: int, action: int, game: np.ndarray, lists: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray,
         has_uint32: np.ndarray, uinteger: np.ndarray) -> tuple[float, bool]:
    """MinAtar's ``seaquest.Env.act`` for env ``row``: ``(reward, terminal)``."""
    if game[row, E_SPAWN_TIMER] == 0:
        _spawn_enemy(row, game, lists, rng_state, rng_inc, has_uint32, uinteger)
        game[row, E_SPAWN_TIMER] = game[row, E_SPAWN_SPEED]
    if game[row, D_SPAWN_TIMER] == 0:
        _spawn_diver(row, game, lists, rng_state, rng_inc, has_uint32, uinteger)
        game[row, D_SPAWN_TIMER] = DIVER_SPAWN_SPEED
    _move_sub(row, action, game, lists)
    reward = _friendly_bullets(row, game, lists)
    _divers(row, game, lists)
    points, terminal = _enemies(row, game, lists, SUBS)
    reward += points
    terminal = _enemy_bullets(row, game, lists) or terminal
    points, hit = _enemies(row, game, lists, FISH)
    reward, terminal = reward + points, terminal or hit
    for timer in (E_SPAWN_TIMER, D_SPAWN_TIMER, SHOT):
        if game[row, timer] > 0:
            game[row, timer] -= 1
    terminal = terminal or game[row, OXYGEN] <= 0
    if game[row, SUB_Y] > 0:
        game[row, OXYGEN] -= 1
        game[row, SURFACE] = 0
    elif not game[row, SURFACE]:
        if game[row, DIVER_COUNT] == 0:
            terminal = True
        else:
            reward += _surface(row, game)
    return reward, terminal


_step_all = define_step_all(globals())


class SeaquestVectorEnv(MinAtarVectorEnv):
    """``num_envs`` MinAtar Seaquest games stepped together (see the module docstring and
    :class:`~envs.minatar_vector.MinAtarVectorEnv` for the arguments)."""

    GAME, CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS = "seaquest", CHANNELS, GAME_FIELDS, MINIMAL_ACTIONS
    BOARD = ("lists", (5, CAPACITY, 5), np.int64)
    RAMPING_FIELD = RAMPING
    reset_game, render, step_all = staticmethod(_reset_game), staticmethod(_render), staticmethod(_step_all)
