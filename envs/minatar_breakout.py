"""MinAtar Breakout for many envs at once: the game's rules as one numba kernel over arrays of game states.

``BreakoutVectorEnv`` is the vector implementation of ``rlcore/MinAtar-Breakout-v0`` (its gymnasium
``vector_entry_point``): ``rlcore.make_vec_env`` and ``gymnasium.make_vec`` use it for several envs instead of
one ``minatar`` game object per sub-env in a ``SyncVectorEnv``. It steps every env in one compiled call and gives
the same trajectories as that sync vector env of :class:`envs.minatar.MinAtarEnv` for the same seeds and actions
(tested step by step): the rules are MinAtar's ``breakout.py``, and each env draws from its own copy of numpy's
PCG64 generator (:mod:`envs._pcg64`) exactly what the single env draws from ``np_random`` (one uniform per step
for sticky actions, one bit per reset for the ball's side).

Semantics are those of rlcore's vector envs (:func:`rlcore.env.make_vec_env`): same-step autoreset (an env
whose episode ends returns its next episode's first observation, the last one in ``info["final_obs"]`` with the
mask ``info["_final_obs"]``), the time limit as a truncation, ``reset(seed=s)`` seeding env ``i`` with ``s + i``.
For exact resume, :meth:`BreakoutVectorEnv.replay_states` gives each env's whole state as plain data (the game and
its generator) and :meth:`BreakoutVectorEnv.restore_replay_states` puts it back.

Observations ``bool [N, 10, 10, 4]`` (paddle, ball, trail, bricks); actions: all 6 of MinAtar's (no-op, left,
up, right, down, fire), or with ``use_minimal_action_set`` Breakout's 3 (no-op, left, right).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs._pcg64 import Generators, next_double, next_uint32
from rlcore.env import MINATAR_MAX_EPISODE_STEPS, StatefulVectorEnv

GRID = 10
CHANNELS = 4
PADDLE, BALL, TRAIL, BRICK = 0, 1, 2, 3
"""Observation channels, as MinAtar's Breakout."""
FULL_ACTIONS = 6
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
    right_side = next_uint32(rng_state, rng_inc, has_uint32, uinteger, row) & np.uint64(1)  # randint(2)
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
def _act(row: int, action: int, game: np.ndarray, bricks: np.ndarray) -> tuple[float, bool]:
    """MinAtar's ``breakout.Env.act`` for env ``row``: ``(reward, terminal)``."""
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


@numba.njit(cache=True)
def _step_all(actions: np.ndarray, sticky_prob: float, max_steps: int, game: np.ndarray, bricks: np.ndarray,
              rng_state: np.ndarray, rng_inc: np.ndarray, has_uint32: np.ndarray, uinteger: np.ndarray,
              obs: np.ndarray, final_obs: np.ndarray, reward: np.ndarray, terminated: np.ndarray,
              truncated: np.ndarray) -> None:
    """One step of every env with MinAtar's action ids ``actions [N]``, then a same-step reset where it ended."""
    for row in range(actions.shape[0]):
        action = actions[row]
        if next_double(rng_state, rng_inc, row) < sticky_prob:  # drawn every step, as minatar.Environment.act
            action = game[row, LAST_ACTION]
        game[row, LAST_ACTION] = action
        reward[row], terminated[row] = _act(row, action, game, bricks)
        game[row, STEPS] += 1
        truncated[row] = game[row, STEPS] >= max_steps
        _render(row, game, bricks, obs[row])
        if terminated[row] or truncated[row]:
            final_obs[row] = obs[row]
            _reset_game(row, game, bricks, rng_state, rng_inc, has_uint32, uinteger)
            _render(row, game, bricks, obs[row])


class BreakoutVectorEnv(StatefulVectorEnv):
    """``num_envs`` MinAtar Breakout games stepped together (see the module docstring).

    Args:
        num_envs: Envs ``N``.
        game: Must be ``"breakout"`` (the registered id passes it).
        sticky_action_prob: Probability that an env repeats its previous action instead (MinAtar: 0.1).
        difficulty_ramping: Accepted for the id's signature; Breakout does not ramp.
        use_minimal_action_set: Only no-op, left and right instead of all 6 actions.
        max_episode_steps: The time limit (a truncation).
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, num_envs: int = 1, game: str = "breakout", *, sticky_action_prob: float = 0.1,
                 difficulty_ramping: bool = True, use_minimal_action_set: bool = False,
                 max_episode_steps: int | None = MINATAR_MAX_EPISODE_STEPS, render_mode: str | None = None) -> None:
        if game not in ("breakout", "Breakout"):
            raise ValueError(f"BreakoutVectorEnv plays breakout, got game={game!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        if render_mode is not None:
            raise ValueError(f"BreakoutVectorEnv does not render (render_mode={render_mode!r}); render one "
                             "rlcore/MinAtar-Breakout-v0 env made with gymnasium.make")
        self.num_envs = num_envs
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = difficulty_ramping
        self.max_episode_steps = int(max_episode_steps) if max_episode_steps is not None else np.iinfo(np.int64).max
        self._actions = MINIMAL_ACTIONS if use_minimal_action_set else np.arange(FULL_ACTIONS, dtype=np.int64)
        self.single_observation_space = spaces.Box(0, 1, (GRID, GRID, CHANNELS), np.bool_)
        self.single_action_space = spaces.Discrete(len(self._actions))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._game = np.zeros((num_envs, len(GAME_FIELDS)), dtype=np.int64)
        self._bricks = np.zeros((num_envs, GRID, GRID), dtype=np.uint8)
        self._rng = Generators(num_envs)
        self._obs = np.zeros((num_envs, GRID, GRID, CHANNELS), dtype=np.bool_)
        self._final_obs = np.zeros_like(self._obs)
        self._reward = np.zeros(num_envs, dtype=np.float64)
        self._terminated = np.zeros(num_envs, dtype=np.bool_)
        self._truncated = np.zeros(num_envs, dtype=np.bool_)
        self._started = False

    def _kernel_arrays(self) -> tuple[np.ndarray, ...]:
        rng = self._rng
        return self._game, self._bricks, rng.state, rng.inc, rng.has_uint32, rng.uinteger

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts a new episode in every env; ``seed``: an int (env ``i`` gets ``seed + i``), one per env, or None
        (an unseeded env continues its generator; fresh entropy before its first seed)."""
        self._rng.reseed(seed, self._started)
        for row in range(self.num_envs):
            _reset_game(row, *self._kernel_arrays())
            _render(row, self._game, self._bricks, self._obs[row])
        self._started = True
        return self._obs.copy(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every env with ``actions [N]``; ended envs start their next episode in the same step."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        actions = np.asarray(actions).reshape(-1)
        if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
            raise ValueError(f"actions must be {self.num_envs} integers, got {actions!r}")
        if actions.min() < 0 or actions.max() >= len(self._actions):
            raise ValueError(f"actions must be integers in [0, {len(self._actions)}), got {actions.tolist()}")
        _step_all(self._actions[actions], self.sticky_action_prob, self.max_episode_steps, *self._kernel_arrays(),
                  self._obs, self._final_obs, self._reward, self._terminated, self._truncated)
        info: dict[str, Any] = {}
        ended = self._terminated | self._truncated
        if ended.any():
            info = {"final_obs": self._final_obs.copy(), "_final_obs": ended}
        return self._obs.copy(), self._reward.copy(), self._terminated.copy(), self._truncated.copy(), info

    # --- exact resume -------------------------------------------------------------------------------
    def replay_states(self) -> list[dict[str, Any]]:
        """Each env's whole state as plain data: its game's scalars and bricks, and its generator."""
        return [{"game": dict(zip(GAME_FIELDS, self._game[row].tolist())),
                 "bricks": self._bricks[row].reshape(-1).tolist(), "rng": self._rng.numpy_state(row)}
                for row in range(self.num_envs)]

    def restore_replay_states(self, states: list[dict[str, Any]]) -> np.ndarray:
        """Puts back :meth:`replay_states`; returns the observation ``[N, 10, 10, 4]``."""
        if len(states) != self.num_envs:
            raise ValueError(f"got {len(states)} env states for {self.num_envs} envs")
        for row, state in enumerate(states):
            self._game[row] = [int(state["game"][name]) for name in GAME_FIELDS]
            self._bricks[row] = np.asarray(state["bricks"], dtype=np.uint8).reshape(GRID, GRID)
            self._rng.load(row, state["rng"])
            _render(row, self._game, self._bricks, self._obs[row])
        self._started = True
        return self._obs.copy()
