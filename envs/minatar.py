"""MinAtar (Young & Tian, 2019): five miniature Atari games on a 10x10 grid, as gymnasium envs.

Registered ids (when the ``minatar`` package is installed: ``pip install -e ".[pixels]"``)::

    rlcore/MinAtar-Asterix-v0   rlcore/MinAtar-Breakout-v0   rlcore/MinAtar-Freeway-v0
    rlcore/MinAtar-Seaquest-v0  rlcore/MinAtar-SpaceInvaders-v0

Each wraps ``minatar.Environment`` directly (not minatar's own gym module, which imports
seaborn and cannot be seeded through gymnasium), with MinAtar's defaults: sticky actions with
probability 0.1 and difficulty ramping. Choices made here:

- **Observations** are MinAtar's state as it is: ``Box(0, 1, (10, 10, C), bool)``, channel-last, one
  channel per object kind (``C`` = 4 Breakout and Asterix, 7 Freeway, 10 Seaquest, 6 SpaceInvaders).
  Bool rather than uint8 0/1 because rlcore's CNNs scale uint8 images by 1/255 (Atari's 0-255 pixels)
  and take bool and [0, 1] floats as they are.
- **Actions** are the full set of 6 (no-op, left, up, right, down, fire), as in the MinAtar paper, so
  every game has the same action space; ``use_minimal_action_set=True`` keeps only the game's useful
  ones (e.g. 3 in Breakout: no-op, left, right, as gymnax's default; rlcore's PPO preset for Breakout
  sets it through ``env_kwargs``).
- **Time limit**: ``max_episode_steps=10_000`` (a truncation). MinAtar has none, and a good Breakout
  player never loses the ball.
- **Randomness** comes only from ``self.np_random``: at every reset the game's ``RandomState`` (used for
  the game's events and for sticky actions) is rebuilt on ``np_random``'s own bit generator, so a seed
  fixes the whole run, and rlcore's exact resume (:class:`rlcore.env.ReplayableEnv`, which restores
  ``np_random`` and re-steps the actions) rebuilds an episode exactly.

The ``minatar`` import (it pulls matplotlib and seaborn, ~1.5 s) happens when the first env is made,
not when ``envs`` is imported.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rlcore.env import MINATAR_GAMES, MINATAR_MAX_EPISODE_STEPS

GAMES = MINATAR_GAMES
"""rlcore's name of each game -> minatar's module name (registered by :mod:`rlcore.env`)."""

MAX_EPISODE_STEPS = MINATAR_MAX_EPISODE_STEPS

RENDER_SCALE = 16
"""Pixels per grid cell of ``render_mode="rgb_array"`` frames (160x160)."""

_PALETTE = np.array([
    [230, 230, 230], [230, 90, 60], [120, 120, 120], [70, 150, 230], [240, 200, 60],
    [90, 200, 90], [200, 90, 200], [60, 200, 200], [250, 140, 40], [160, 110, 60],
], dtype=np.uint8)
"""Colour of each channel in rendered frames (later channels are drawn over earlier ones)."""


class MinAtarEnv(gym.Env[np.ndarray, np.int64]):
    """One MinAtar game.

    Args:
        game: minatar's module name (``breakout``, ``space_invaders``, ``asterix``, ``freeway``,
            ``seaquest``) or rlcore's name (``Breakout``, ``SpaceInvaders``, ...).
        sticky_action_prob: Probability that the previous action is repeated instead (MinAtar: 0.1).
        difficulty_ramping: Let the games speed up over an episode (MinAtar's default).
        use_minimal_action_set: Only the game's useful actions instead of all 6.
        render_mode: ``None`` or ``"rgb_array"`` (``[160, 160, 3]`` uint8 frames).

    Shapes: observations ``[10, 10, C]`` bool; actions an integer in ``[0, n)`` with ``n = 6``
    (or the minimal set's size).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 15}

    def __init__(
        self,
        game: str = "breakout",
        *,
        sticky_action_prob: float = 0.1,
        difficulty_ramping: bool = True,
        use_minimal_action_set: bool = False,
        render_mode: str | None = None,
    ) -> None:
        module = GAMES.get(game, game)
        if module not in GAMES.values():
            raise ValueError(f"unknown MinAtar game {game!r}; choose one of {sorted(GAMES)} "
                             f"(or minatar's names {sorted(GAMES.values())})")
        if not 0.0 <= sticky_action_prob <= 1.0:
            raise ValueError(f"sticky_action_prob must be in [0, 1], got {sticky_action_prob}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        try:
            from minatar import Environment
        except ImportError as error:  # pragma: no cover - the ids are only registered when minatar exists
            raise ImportError('MinAtar envs need the minatar package: pip install -e ".[pixels]"') from error
        self.game_name = module
        self.render_mode = render_mode
        self._game = Environment(module, sticky_action_prob=sticky_action_prob,
                                 difficulty_ramping=difficulty_ramping)
        self._actions = (list(self._game.minimal_action_set()) if use_minimal_action_set
                         else list(range(self._game.num_actions())))
        self.observation_space = spaces.Box(0, 1, tuple(self._game.state_shape()), np.bool_)
        self.action_space = spaces.Discrete(len(self._actions))

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        # the game's draws (events and sticky actions) now advance np_random's own generator
        game_random = np.random.RandomState(self.np_random.bit_generator)
        self._game.random = game_random
        self._game.env.random = game_random
        self._game.last_action = 0  # minatar keeps it across resets; a sticky first action must not leak
        self._game.reset()
        return self._game.state(), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an integer in [0, {self.action_space.n}), got {action!r}")
        reward, terminal = self._game.act(self._actions[int(action)])
        return self._game.state(), float(reward), bool(terminal), False, {}

    def render(self) -> np.ndarray | None:
        """A ``[160, 160, 3]`` uint8 frame of the grid (``render_mode="rgb_array"``), else None."""
        if self.render_mode != "rgb_array":
            return None
        state = self._game.state()
        frame = np.zeros((*state.shape[:2], 3), dtype=np.uint8)
        for channel in range(state.shape[2]):
            frame[state[:, :, channel]] = _PALETTE[channel % len(_PALETTE)]
        return frame.repeat(RENDER_SCALE, axis=0).repeat(RENDER_SCALE, axis=1)
