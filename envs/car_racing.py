"""gymnasium's CarRacing with a leaner renderer: the same pixels, less Python.

``rlcore.make_vec_env("CarRacing-v3", n)`` builds its sub-envs from :class:`CarRacing` here (a subclass of gymnasium's,
registered spec otherwise unchanged: time limit, ``continuous``, ``domain_randomize``, ``lap_complete_percent``), with
or without wrappers, where the peers step gymnasium's own object.

Where gymnasium's step goes (~16 ms on this project's 2-core Xeon, ~97% of it drawing the observation): the car's
physics and Box2D's world step take ~0.5 ms; each observation is drawn on a 1000x800 surface and scaled down to 96x96,
and before drawing, ``_render_road`` moves every one of the ~800 polygons of the field, the grass and the road (ten
``Vector2`` rotations and a visibility test each, in Python) to draw the ~50 that can be seen, and the score's font
is loaded from its file and the score drawn anew. Here those transforms are one numpy expression over all the
polygons' vertices, and the visible ones are drawn by the same ``gfxdraw`` calls with the same coordinates
(:func:`rotated_like_pygame` reproduces ``Vector2.rotate_rad`` bit for bit: ``fmod`` into ``[0, 2 pi)``, the
quarter turns exact, else ``cos x - sin y`` and ``sin x + cos y`` with the C library's ``sin`` and ``cos`` of that
angle); the font is loaded once and the score's text drawn once per value: ~2.3x gymnasium's step in all.

:class:`FrameSkip` (rl-zoo's CarRacing wrapper: each action repeated on 2 frames, rewards summed) tells this env not
to draw the frames whose observation it drops; with gymnasium's env it repeats the action and draws every frame.

Bit for bit the same observations, rewards and flags (``tests/test_car_racing.py`` steps both side by side through
episodes of several tracks, with and without the frame skip, and compares ``rgb_array`` renders). All this applies
only while gymnasium's ``CarRacing._render``, ``_render_road``, ``_draw_colored_polygon`` and ``step`` are the code
they were checked against (:data:`CHECKED_AGAINST`): with another gymnasium version whose code changed,
:func:`faster_step_refusal` says why and ``make_vec_env`` builds gymnasium's own env.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pygame
from gymnasium.envs.box2d import car_racing as gymnasium_car_racing
from pygame import gfxdraw

from rlcore.kernels.selection import first_edited

CHECKED_AGAINST: dict[str, str] = {"gymnasium.envs.box2d.car_racing.CarRacing._render": "9734ef04cb9b5f94",
                                   "gymnasium.envs.box2d.car_racing.CarRacing._render_road": "7dba9d7f7d871871",
                                   "gymnasium.envs.box2d.car_racing.CarRacing._draw_colored_polygon":
                                       "81a88763b868f0e4",
                                   "gymnasium.envs.box2d.car_racing.CarRacing.step": "20f06be79d9923d3"}
"""The fingerprints (:func:`rlcore.kernels.selection.fingerprint`) of gymnasium's code this env reproduces: the
renderer's three methods and the step that calls it (gymnasium 1.4's)."""

_REPRODUCED = (gymnasium_car_racing.CarRacing._render, gymnasium_car_racing.CarRacing._render_road,
               gymnasium_car_racing.CarRacing._draw_colored_polygon, gymnasium_car_racing.CarRacing.step)

_TWO_PI, _HALF_PI, _EPSILON = 2.0 * math.pi, math.pi / 2.0, 1e-6
"""``Vector2.rotate_rad``'s constants: ``TWO_PI``, ``M_PI_2`` and a vector's default ``epsilon``."""
_WINDOW_W, _WINDOW_H = gymnasium_car_racing.WINDOW_W, gymnasium_car_racing.WINDOW_H
_STATE_W, _STATE_H = gymnasium_car_racing.STATE_W, gymnasium_car_racing.STATE_H
_VIDEO_W, _VIDEO_H = gymnasium_car_racing.VIDEO_W, gymnasium_car_racing.VIDEO_H
_SCALE, _ZOOM = gymnasium_car_racing.SCALE, gymnasium_car_racing.ZOOM
_FONT: Any = None
"""The score's font (``pygame.font.Font`` of the default font at 42 points), loaded at the first frame drawn."""
_LOW = -gymnasium_car_racing.MAX_SHAPE_DIM
_HIGH_X = gymnasium_car_racing.WINDOW_W + gymnasium_car_racing.MAX_SHAPE_DIM
_HIGH_Y = gymnasium_car_racing.WINDOW_H + gymnasium_car_racing.MAX_SHAPE_DIM


def faster_step_refusal() -> str | None:
    """Why :class:`CarRacing` must not stand in for gymnasium's (its renderer or step was edited since), else None."""
    return first_edited(_REPRODUCED, CHECKED_AGAINST)


def rotated_like_pygame(points: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """``pygame.math.Vector2(p).rotate_rad(angle)`` of every point ``[..., 2]`` (float64), bit for bit: the ``x`` and
    ``y`` arrays ``[...]``."""
    angle = math.fmod(angle, _TWO_PI)
    if angle < 0:
        angle += _TWO_PI
    x, y = points[..., 0], points[..., 1]
    if math.fmod(angle + _EPSILON, _HALF_PI) < 2 * _EPSILON:  # a quarter turn: exact, as pygame special-cases it
        quarter = int((angle + _EPSILON) / _HALF_PI) % 4
        return ((x, y), (-y, x), (-x, -y), (y, -x))[quarter]
    sin, cos = math.sin(angle), math.cos(angle)
    return cos * x - sin * y, sin * x + cos * y


def _field_and_grass() -> np.ndarray:
    """The background field's and the 400 grass patches' corners, ``[401, 4, 2]``, as ``_render_road`` lists them."""
    bounds, size = gymnasium_car_racing.PLAYFIELD, gymnasium_car_racing.GRASS_DIM
    polygons = [[(bounds, bounds), (bounds, -bounds), (-bounds, -bounds), (-bounds, bounds)]]
    for x in range(-20, 20, 2):
        for y in range(-20, 20, 2):
            polygons.append([(size * x + size, size * y + 0), (size * x + 0, size * y + 0),
                             (size * x + 0, size * y + size), (size * x + size, size * y + size)])
    return np.array(polygons, dtype=np.float64)


_FIELD_AND_GRASS = _field_and_grass()


class CarRacing(gymnasium_car_racing.CarRacing):
    """gymnasium's CarRacing, its road drawn from one array transform (see the module docstring).

    :attr:`render_state` False makes the next steps keep the previous observation instead of drawing a new one (set
    by :class:`FrameSkip` for the frames whose observation it drops).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.render_state = True
        self._polygons: np.ndarray | None = None
        """The field's, the grass's and the current track's road polygons ``[P, 4, 2]``; None until drawn."""
        self._road_colors: list[Any] = []
        """Each road polygon's colour array (gymnasium recolours a tile in place when the car first touches it)."""
        self._score: tuple[str, Any] | None = None
        """The last score drawn and its surface."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        self._polygons = None  # a new track
        return super().reset(seed=seed, options=options)

    def _render(self, mode: str) -> Any:
        """gymnasium's ``_render`` for ``state_pixels`` and ``rgb_array``, with the score's font loaded once per
        process and the score's text drawn once per value (gymnasium loads the font file and draws the text anew at
        every frame); ``human`` is gymnasium's own."""
        if mode == "state_pixels" and not self.render_state:
            return self.state  # the step's observation is dropped: nothing drawn, nothing changed
        if mode not in ("state_pixels", "rgb_array") or "t" not in self.__dict__:
            return super()._render(mode)
        pygame.font.init()
        if self.clock is None:
            self.clock = pygame.time.Clock()
        self.surf = pygame.Surface((_WINDOW_W, _WINDOW_H))
        assert self.car is not None
        angle = -self.car.hull.angle
        zoom = 0.1 * _SCALE * max(1 - self.t, 0) + _ZOOM * _SCALE * min(self.t, 1)
        scroll_x = -(self.car.hull.position[0]) * zoom
        scroll_y = -(self.car.hull.position[1]) * zoom
        trans = pygame.math.Vector2((scroll_x, scroll_y)).rotate_rad(angle)
        trans = (_WINDOW_W / 2 + trans[0], _WINDOW_H / 4 + trans[1])
        self._render_road(zoom, trans, angle)
        self.car.draw(self.surf, zoom, trans, angle, mode != "state_pixels")
        self.surf = pygame.transform.flip(self.surf, False, True)
        self._render_indicators(_WINDOW_W, _WINDOW_H)
        text = self._score_text(f"{self.reward:04.0f}")
        text_rect = text.get_rect()
        text_rect.center = (60, _WINDOW_H - _WINDOW_H * 2.5 / 40.0)
        self.surf.blit(text, text_rect)
        if mode == "rgb_array":
            return self._create_image_array(self.surf, (_VIDEO_W, _VIDEO_H))
        return self._create_image_array(self.surf, (_STATE_W, _STATE_H))

    def _score_text(self, score: str) -> Any:
        """The score's surface as gymnasium draws it (white on black, 42-point default font), kept for the last
        value (the score changes every ~10 frames)."""
        if self._score is None or self._score[0] != score:
            global _FONT
            if _FONT is None:
                _FONT = pygame.font.Font(pygame.font.get_default_font(), 42)
            self._score = (score, _FONT.render(score, True, (255, 255, 255), (0, 0, 0)))
        return self._score[1]

    def _road_polygons(self) -> np.ndarray:
        """The field's, the grass's and the road's corners ``[P, 4, 2]`` (the road's taken once per track)."""
        if self._polygons is None:
            road = np.array([[(p[0], p[1]) for p in polygon] for polygon, _ in self.road_poly], dtype=np.float64)
            self._polygons = np.concatenate([_FIELD_AND_GRASS, road.reshape(-1, 4, 2)])
            self._road_colors = [color for _, color in self.road_poly]
        return self._polygons

    def _render_road(self, zoom: float, translation: tuple[float, float], angle: float) -> None:
        """gymnasium's ``_render_road``: the field, then the grass patches and the road tiles that can be seen."""
        polygons = self._road_polygons()
        x, y = rotated_like_pygame(polygons, angle)
        x = x * zoom + translation[0]
        y = y * zoom + translation[1]
        seen = ((x >= _LOW) & (x <= _HIGH_X) & (y >= _LOW) & (y <= _HIGH_Y)).any(axis=1)
        seen[0] = True  # the field is drawn unclipped
        grass_end = len(_FIELD_AND_GRASS)
        for index in np.flatnonzero(seen).tolist():
            color = (self.bg_color if index == 0 else self.grass_color if index < grass_end
                     else [int(c) for c in self._road_colors[index - grass_end]])
            polygon = list(zip(x[index].tolist(), y[index].tolist()))
            gfxdraw.aapolygon(self.surf, polygon, color)
            gfxdraw.filled_polygon(self.surf, polygon, color)


class FrameSkip(gym.Wrapper):
    """Repeats each action on ``skip`` frames and sums their rewards, stopping where the episode ends (rl-zoo's
    CarRacing setting uses 2). Over rlcore's :class:`CarRacing` the frames whose observation is dropped are not
    drawn; over any other env each frame is stepped as it is."""

    def __init__(self, env: gym.Env, skip: int = 2) -> None:
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"skip must be >= 1, got {skip}")
        self.skip = skip
        self._leaner = _over_leaner_car_racing(env)

    def step(self, action: Any) -> Any:
        total = 0.0
        for frame in range(self.skip):
            last = frame == self.skip - 1
            if self._leaner:
                self.env.unwrapped.render_state = last
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                if not last and self._leaner:  # this frame's observation is the one returned after all
                    car_racing = self.env.unwrapped
                    car_racing.render_state = True
                    obs = car_racing.state = car_racing._render("state_pixels")
                break
        if self._leaner:
            self.env.unwrapped.render_state = True
        return obs, total, terminated, truncated, info


_PASS_THROUGH = (gym.wrappers.TimeLimit, gym.wrappers.OrderEnforcing, gym.wrappers.PassiveEnvChecker)
"""Wrappers ``gym.make`` adds, which return the env's observation as it is."""


def _over_leaner_car_racing(env: gym.Env) -> bool:
    """Whether ``env`` is rlcore's :class:`CarRacing` under wrappers that pass its observation through unchanged
    (so that :class:`FrameSkip` may draw a frame's observation itself)."""
    while isinstance(env, gym.Wrapper):
        if not isinstance(env, _PASS_THROUGH):
            return False
        env = env.env
    return isinstance(env, CarRacing)
