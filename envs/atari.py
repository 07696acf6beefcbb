"""Atari 2600 games through ale-py, with the standard preprocessing, as ``rlcore/Atari-<Game>-v0``.

Registered (when ``ale_py`` and ``cv2`` are installed: ``pip install -e ".[pixels]"`` or ``".[atari]"``; the ROMs
ship with ale-py) for the games in :data:`GAMES`; any other ALE game is one call away::

    rlcore.train("ppo", "rlcore/Atari-Breakout-v0", num_envs=8, ...)
    rlcore.train("ppo", lambda: make_atari("Asterix"), ...)

:func:`make_atari` builds ``gym.make("ALE/<Game>-v5", frameskip=1)`` and wraps it in the usual stack
(Machado et al., 2018; SB3's and CleanRL's frame processing, without their training-only episodic lives, reward
clipping or fire reset):

1. sticky actions: at every emulator frame the previous action is repeated with probability 0.25;
2. gymnasium's ``AtariPreprocessing``: up to 30 no-op actions at reset, frame skip 4 (max-pooling the
   last two frames), 84x84 grayscale, ``terminal_on_life_loss=False``, uint8 pixels (not scaled);
3. ``FrameStackObservation(4)``: observations ``Box(0, 255, (4, 84, 84), uint8)``, channel-first, which
   rlcore's automatic encoder turns into a NatureCNN (pixels scaled by 1/255 inside the network).

Actions are ALE's minimal set for the game (``full_action_space=True`` for all 18). Episodes are truncated
by ALE v5's limit of 108,000 emulator frames (27,000 agent steps).

**Sticky actions are drawn in Python from ``np_random``** (:class:`StickyActions`), with ALE's own
``repeat_action_probability`` set to 0. The semantics are ALE's (per frame; the previous action starts as
NOOP at every reset), but the draws come from the env's ``np_random``, like the no-op count of
``AtariPreprocessing``. Without them the emulator is deterministic, so every random choice of an episode
flows through ``np_random`` and rlcore's exact resume (:class:`rlcore.env.ReplayableEnv`) rebuilds Atari
episodes too. With ALE's internal sticky actions that would need a ROM reload per episode (~90 ms).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from rlcore.env import ATARI_GAMES

GAMES = ATARI_GAMES
"""Games registered as ``rlcore/Atari-<Game>-v0`` (by :mod:`rlcore.env`)."""


class StickyActions(gym.Wrapper):
    """At each step, repeats the previous action with probability ``prob`` instead of taking the new one.

    Meant directly around an ALE env with ``frameskip=1`` (so "step" means "emulator frame", as in ALE's
    ``repeat_action_probability``). The draws use ``env.unwrapped.np_random``; the previous action is 0
    (NOOP) after every reset.

    Args:
        env: The env to wrap (Discrete actions).
        prob: Probability of repeating the previous action, in ``[0, 1]``.
    """

    def __init__(self, env: gym.Env, prob: float = 0.25) -> None:
        super().__init__(env)
        if not 0.0 <= prob <= 1.0:
            raise ValueError(f"sticky action probability must be in [0, 1], got {prob}")
        self.prob = float(prob)
        self._previous: Any = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self._previous = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action: Any) -> Any:
        if self.prob == 0.0 or self.env.unwrapped.np_random.random() >= self.prob:
            self._previous = action
        return self.env.step(self._previous)


def make_atari(
    game: str = "Breakout",
    *,
    sticky_action_prob: float = 0.25,
    noop_max: int = 30,
    frame_skip: int = 4,
    screen_size: int = 84,
    frame_stack: int = 4,
    terminal_on_life_loss: bool = False,
    full_action_space: bool = False,
    render_mode: str | None = None,
) -> gym.Env:
    """One preprocessed Atari env (see the module docstring for the stack).

    Args:
        game: ALE's name of the game, e.g. ``"Breakout"`` or ``"MontezumaRevenge"`` (``ALE/<game>-v5``).
        sticky_action_prob: Per-frame probability of repeating the previous action (0.25 as ALE v5).
        noop_max: At most this many no-ops at reset (a uniform draw in ``[1, noop_max]``; 0 disables).
        frame_skip: Emulator frames per agent step.
        screen_size: Side of the square grayscale frame.
        frame_stack: Frames stacked along the first axis.
        terminal_on_life_loss: End the episode on every life lost (off, as in Machado et al.). This is gymnasium's
            ``AtariPreprocessing`` option: the next ``reset()`` starts a new game, so an agent never plays its later
            lives and evaluation scores first lives only; SB3's ``EpisodicLifeEnv`` (a training-only wrapper) goes on
            with the same game instead.
        full_action_space: All 18 actions instead of the game's minimal set.
        render_mode: Passed to ALE (``"rgb_array"`` for videos).

    Returns:
        An env with observations ``[frame_stack, screen_size, screen_size]`` uint8 and ``Discrete`` actions.

    Raises:
        ImportError: Without ale-py or opencv-python-headless (``pip install -e ".[pixels]"``).
        gymnasium.error.Error: For a game ALE does not know.
    """
    try:
        import ale_py
        import cv2  # noqa: F401  (AtariPreprocessing resizes with it)
    except ImportError as error:
        raise ImportError('Atari envs need ale-py and opencv-python-headless: pip install -e ".[pixels]"') from error
    gym.register_envs(ale_py)
    env = gym.make(f"ALE/{game}-v5", frameskip=1, repeat_action_probability=0.0,
                   full_action_space=full_action_space, render_mode=render_mode)
    if sticky_action_prob > 0.0:
        env = StickyActions(env, sticky_action_prob)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=noop_max, frame_skip=frame_skip, screen_size=screen_size,
                                          terminal_on_life_loss=terminal_on_life_loss, grayscale_obs=True,
                                          scale_obs=False)
    return gym.wrappers.FrameStackObservation(env, frame_stack)
