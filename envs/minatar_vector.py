"""The Python side of rlcore's batched MinAtar games: one vector env class whose subclasses bring a game's kernels.

The ``<Game>VectorEnv`` classes of ``envs/minatar_<game>.py`` (Breakout, Freeway, SpaceInvaders, Asterix,
Seaquest) are the vector implementations of the five ``rlcore/MinAtar-<Game>-v0`` ids (their gymnasium
``vector_entry_point``):
``rlcore.make_vec_env`` and ``gymnasium.make_vec`` use them for several envs instead of one ``minatar`` game object
per sub-env in a ``SyncVectorEnv``. Each steps every env in one compiled call (its module's numba kernels: MinAtar's
rules over arrays of game states) and gives the same trajectories as that sync vector env of
:class:`envs.minatar.MinAtarEnv` for the same seeds and actions (tested step by step): each env draws from its own
copy of numpy's PCG64 generator (:mod:`envs._pcg64`) exactly what the single env draws from ``np_random`` (one
uniform per step for sticky actions, and the game's own draws).

Semantics are those of rlcore's vector envs (:func:`rlcore.env.make_vec_env`): same-step autoreset (an env
whose episode ends returns its next episode's first observation, the last one in ``info["final_obs"]`` with the
mask ``info["_final_obs"]``), the time limit as a truncation, ``reset(seed=s)`` seeding env ``i`` with ``s + i``.
For exact resume, :meth:`MinAtarVectorEnv.replay_states` gives each env's whole state as plain data (the game and
its generator) and :meth:`MinAtarVectorEnv.restore_replay_states` puts it back.

The step over all envs (sticky action, the game's ``act``, the frame count, the observation, the same-step reset)
is written once, :data:`STEP_ALL_SOURCE`, and compiled into each game module by :func:`define_step_all`, so that
each game's step calls that game's rules directly: numba caches neither a kernel that takes the rules as a function
argument nor a closure over them, and one step branching on a game id at run time made Breakout's step ~1.9x slower
(30 against 16 us for 64 envs).

Observations ``bool [N, 10, 10, C]``; actions: all 6 of MinAtar's (no-op, left, up, right, down, fire), or with
``use_minimal_action_set`` the game's own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, ClassVar

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space

from envs._pcg64 import Generators, next_double
from rlcore.env import MINATAR_GAMES, MINATAR_MAX_EPISODE_STEPS, StatefulVectorEnv

GRID = 10
FULL_ACTIONS = 6

STEP_ALL_SOURCE = """
def _step_all(actions, sticky_prob, max_steps, game, board, rng_state, rng_inc, has_uint32, uinteger, obs, final_obs,
              reward, terminated, truncated):
    \"\"\"One step of every env with MinAtar's action ids ``actions [N]``, then a same-step reset where it ended.\"\"\"
    for row in range(actions.shape[0]):
        action = actions[row]
        if next_double(rng_state, rng_inc, row) < sticky_prob:  # drawn every step, as minatar.Environment.act
            action = game[row, LAST_ACTION]
        game[row, LAST_ACTION] = action
        reward[row], terminated[row] = _act(row, action, game, board, rng_state, rng_inc, has_uint32, uinteger)
        game[row, STEPS] += 1
        truncated[row] = game[row, STEPS] >= max_steps
        _render(row, game, board, obs[row])
        if terminated[row] or truncated[row]:
            final_obs[row] = obs[row]
            _reset_game(row, game, board, rng_state, rng_inc, has_uint32, uinteger)
            _render(row, game, board, obs[row])
"""
"""The step of every env, the same for every game; the names it reads are the game module's (see
:func:`define_step_all`)."""

STEP_ALL_NAMES = ("LAST_ACTION", "STEPS", "_act", "_render", "_reset_game")
"""What :data:`STEP_ALL_SOURCE` reads from the game module (besides :func:`envs._pcg64.next_double`, the
sticky-action draw): the ``game`` columns of the last action and the frame count, and the kernels ``_act(row,
action, game, board, *generators) -> (reward, terminal)``, ``_render(row, game, board, out)`` and
``_reset_game(row, game, board, *generators)``."""


STEP_ALL_DIGEST = hashlib.sha256(STEP_ALL_SOURCE.encode()).hexdigest()[:12]
"""A digest of :data:`STEP_ALL_SOURCE`, in each compiled step's name: numba names its cache files by the function
(and keys them on its bytecode, which leaves out the names and constants the code reads), so an edit of the source
is a new kernel, never an old one loaded from the cache."""


def define_step_all(module_globals: dict[str, Any]) -> Callable[..., None]:
    """:data:`STEP_ALL_SOURCE` compiled in a game module's namespace (its ``globals()``), as that module's own
    ``_step_all`` kernel: its names resolve to that game's rules (and ``next_double`` to
    :func:`envs._pcg64.next_double` unless the module has that name), and numba caches it beside that module's other
    kernels (numba's cache is per source file: the code is compiled under the module's file name, and named with
    :data:`STEP_ALL_DIGEST`). A traceback through the step names lines of the game's file: the lines of this
    source, counted from its first.

    Raises:
        NameError: The module lacks one of :data:`STEP_ALL_NAMES`.
    """
    missing = [name for name in STEP_ALL_NAMES if name not in module_globals]
    if missing:
        raise NameError(f"{module_globals['__name__']} must define {missing} before define_step_all(globals())")
    module_globals.setdefault("next_double", next_double)
    exec(compile(STEP_ALL_SOURCE, module_globals["__file__"], "exec"), module_globals)  # noqa: S102 (our own source)
    step_all = module_globals["_step_all"]
    step_all.__qualname__ = f"_step_all_{STEP_ALL_DIGEST}"
    return numba.njit(cache=True)(step_all)


class MinAtarVectorEnv(StatefulVectorEnv):
    """``num_envs`` games of one MinAtar game stepped together (see the module docstring); a subclass names the game.

    Args:
        num_envs: Envs ``N``.
        game: The subclass's game (the registered id passes it; minatar's or rlcore's name).
        sticky_action_prob: Probability that an env repeats its previous action instead (MinAtar: 0.1).
        difficulty_ramping: Let the game speed up over an episode (MinAtar's default; Breakout and Freeway do not
            ramp).
        use_minimal_action_set: Only the game's useful actions instead of all 6.
        max_episode_steps: The time limit (a truncation); None: the registered 10,000, as ``gymnasium.make``
            reads it for one env.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}
    GAME: ClassVar[str]
    """minatar's module name of the game."""
    CHANNELS: ClassVar[int]
    GAME_FIELDS: ClassVar[tuple[str, ...]]
    """The columns of the ``game [N, F]`` int64 array (the game's scalars)."""
    BOARD: ClassVar[tuple[str, tuple[int, ...], type]]
    """The game's other array: its name in :meth:`replay_states`, its shape per env and dtype."""
    MINIMAL_ACTIONS: ClassVar[np.ndarray]
    """The game's useful actions among MinAtar's 6."""
    RAMPING_FIELD: ClassVar[int | None] = None
    """The ``game`` column holding ``difficulty_ramping`` (1 or 0) for a game that ramps; its kernels keep it."""
    reset_game: ClassVar[Callable[..., None]]
    """Kernel ``(row, game, board, *generators)``: a new episode in env ``row``."""
    render: ClassVar[Callable[..., None]]
    """Kernel ``(row, game, board, out)``: env ``row``'s observation into ``out [10, 10, C]``."""
    step_all: ClassVar[Callable[..., None]]
    """Kernel ``(actions, sticky_prob, max_steps, game, board, *generators, obs, final_obs, reward, terminated,
    truncated)``: one step of every env with MinAtar's action ids, then a same-step reset where it ended."""

    def __init__(self, num_envs: int = 1, game: str | None = None, *, sticky_action_prob: float = 0.1,
                 difficulty_ramping: bool = True, use_minimal_action_set: bool = False,
                 max_episode_steps: int | None = MINATAR_MAX_EPISODE_STEPS, render_mode: str | None = None) -> None:
        name = type(self).__name__
        if game is not None and MINATAR_GAMES.get(game, game) != self.GAME:
            raise ValueError(f"{name} plays {self.GAME}, got game={game!r}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        if render_mode is not None:
            raise ValueError(f"{name} does not render (render_mode={render_mode!r}); render one MinAtar env made "
                             "with gymnasium.make")
        self.num_envs = num_envs
        self.sticky_action_prob = float(sticky_action_prob)
        self.difficulty_ramping = difficulty_ramping
        # None is the registered limit, as gymnasium.make reads max_episode_steps=None for the single env
        self.max_episode_steps = int(max_episode_steps if max_episode_steps is not None else MINATAR_MAX_EPISODE_STEPS)
        self._actions = self.MINIMAL_ACTIONS if use_minimal_action_set else np.arange(FULL_ACTIONS, dtype=np.int64)
        self.single_observation_space = spaces.Box(0, 1, (GRID, GRID, self.CHANNELS), np.bool_)
        self.single_action_space = spaces.Discrete(len(self._actions))
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._board_name, board_shape, board_dtype = self.BOARD
        self._game = np.zeros((num_envs, len(self.GAME_FIELDS)), dtype=np.int64)
        self._board = np.zeros((num_envs, *board_shape), dtype=board_dtype)
        if self.RAMPING_FIELD is not None:
            self._game[:, self.RAMPING_FIELD] = int(difficulty_ramping)
        self._rng = Generators(num_envs)
        self._obs = np.zeros((num_envs, GRID, GRID, self.CHANNELS), dtype=np.bool_)
        self._final_obs = np.zeros_like(self._obs)
        self._reward = np.zeros(num_envs, dtype=np.float64)
        self._terminated = np.zeros(num_envs, dtype=np.bool_)
        self._truncated = np.zeros(num_envs, dtype=np.bool_)
        self._started = False

    def _state_arrays(self) -> tuple[np.ndarray, ...]:
        """``game, board`` and the generators' arrays, in the kernels' order."""
        rng = self._rng
        return self._game, self._board, rng.state, rng.inc, rng.has_uint32, rng.uinteger

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts a new episode in every env; ``seed``: an int (env ``i`` gets ``seed + i``), one per env, or None
        (an unseeded env continues its generator; fresh entropy before its first seed)."""
        self._rng.reseed(seed, self._started)
        for row in range(self.num_envs):
            self.reset_game(row, *self._state_arrays())
            self.render(row, self._game, self._board, self._obs[row])
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
        self.step_all(self._actions[actions], self.sticky_action_prob, self.max_episode_steps,
                      *self._state_arrays(), self._obs, self._final_obs, self._reward, self._terminated,
                      self._truncated)
        info: dict[str, Any] = {}
        ended = self._terminated | self._truncated
        if ended.any():
            info = {"final_obs": self._final_obs.copy(), "_final_obs": ended}
        return self._obs.copy(), self._reward.copy(), self._terminated.copy(), self._truncated.copy(), info

    # --- exact resume -------------------------------------------------------------------------------
    def replay_states(self) -> list[dict[str, Any]]:
        """Each env's whole state as plain data: its game's scalars and board, and its generator."""
        return [{"game": dict(zip(self.GAME_FIELDS, self._game[row].tolist(), strict=True)),
                 self._board_name: self._board[row].reshape(-1).tolist(), "rng": self._rng.numpy_state(row)}
                for row in range(self.num_envs)]

    def restore_replay_states(self, states: list[dict[str, Any]]) -> np.ndarray:
        """Puts back :meth:`replay_states`; returns the observation ``[N, 10, 10, C]``."""
        if len(states) != self.num_envs:
            raise ValueError(f"got {len(states)} env states for {self.num_envs} envs")
        for row, state in enumerate(states):
            self._game[row] = [int(state["game"][name]) for name in self.GAME_FIELDS]
            self._board[row] = np.asarray(state[self._board_name], dtype=np.int64).reshape(self._board.shape[1:])
            self._rng.load(row, state["rng"])
            self.render(row, self._game, self._board, self._obs[row])
        self._started = True
        return self._obs.copy()
