"""gymnasium's LunarLander (discrete and continuous) with a leaner ``step``: the same Box2D calls, less Python.

``rlcore.make_vec_env("LunarLander-v3", n)`` (and ``LunarLanderContinuous-v3``), with ``"sync"`` vectorization and
no wrappers, builds its sub-envs from :class:`LunarLander` here (a subclass of gymnasium's; the registered spec
otherwise unchanged), as it does the BipedalWalkers (:mod:`envs.bipedal_walker`).

Where gymnasium's step goes (measured here, session 34, 2-core EPYC): Box2D's world step ~40 us, and ~55 us
(discrete) to ~85 us (continuous) of Python around it: ``np.clip``/``np.abs``/``np.sign`` on single numbers
(~2-4 us each), arithmetic on numpy scalars, ``np.sqrt`` of Python floats, two separate draws of the engines'
dispersion, repeated Box2D attribute reads. Here the same operations run on Python floats in the same order (the
same IEEE doubles), the two draws are one call for both (the same generator stream), and each Box2D property is
read once.

Bit for bit the same trajectories (``tests/test_lunar_lander.py``: observations, rewards and their type, flags,
through many episodes of both versions): numpy's scalar types are kept where they show, i.e. the reward is a
``numpy.float64`` whenever gymnasium's is (its shaping goes through ``np.sqrt``, the continuous engines' powers
through ``np.clip``) and an ``int`` on the terminal +-100.

The leaner step applies only while gymnasium's ``LunarLander.step`` is the code it was checked against
(:data:`CHECKED_AGAINST`); an env with wind or turbulence (``enable_wind=True``) steps through gymnasium's own code.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.envs.box2d import lunar_lander as gymnasium_lander

from rlcore.kernels.selection import first_edited

CHECKED_AGAINST: dict[str, str] = {"gymnasium.envs.box2d.lunar_lander.LunarLander.step": "1247966407e082a5"}
"""The fingerprint (:func:`rlcore.kernels.selection.fingerprint`) of gymnasium's step this one reproduces (gymnasium
1.4's)."""

_SCALE, _FPS = gymnasium_lander.SCALE, gymnasium_lander.FPS
_HALF_WIDTH = gymnasium_lander.VIEWPORT_W / _SCALE / 2
_HALF_HEIGHT = gymnasium_lander.VIEWPORT_H / _SCALE / 2
_LEG_DOWN = gymnasium_lander.LEG_DOWN / _SCALE
_MAIN_OFFSET = gymnasium_lander.MAIN_ENGINE_Y_LOCATION / _SCALE
_MAIN_POWER, _SIDE_POWER = gymnasium_lander.MAIN_ENGINE_POWER, gymnasium_lander.SIDE_ENGINE_POWER
_SIDE_AWAY, _SIDE_HEIGHT = gymnasium_lander.SIDE_ENGINE_AWAY, gymnasium_lander.SIDE_ENGINE_HEIGHT


def faster_step_refusal() -> str | None:
    """Why :class:`LunarLander` must not stand in for gymnasium's (its step was edited since), else None."""
    return first_edited([gymnasium_lander.LunarLander.step], CHECKED_AGAINST)


class LunarLander(gymnasium_lander.LunarLander):
    """gymnasium's ``LunarLander`` (``continuous=True``: LunarLanderContinuous) with :meth:`step` rewritten (see the
    module docstring); construction, reset, rendering and every attribute are gymnasium's."""

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """One step of 1/50 s: the engines' impulses from ``action`` (``[2]`` in [-1, 1], or 0-3), the physics;
        returns the observation ``[8]`` float32, the reward, terminated, truncated (False: the time limit is a
        wrapper's) and an empty info, exactly as gymnasium's ``step``."""
        if self.enable_wind or self.render_mode is not None:  # wind, particles: gymnasium's own code
            return super().step(action)
        assert self.lander is not None, "You forgot to call reset()"
        lander = self.lander
        main_fires, side_fires = self._engines(action)
        numpy_powers = self.continuous and (main_fires is not None or side_fires is not None)  # np.clip's scalars
        angle = lander.angle
        tip0, tip1 = math.sin(angle), math.cos(angle)
        side0, side1 = -tip1, tip0
        draw0, draw1 = self.np_random.uniform(-1.0, +1.0, 2).tolist()  # the two draws of gymnasium's list
        dispersion0, dispersion1 = draw0 / _SCALE, draw1 / _SCALE

        m_power = s_power = 0.0
        if main_fires is not None:
            m_power = main_fires
            position = lander.position
            ox = tip0 * (_MAIN_OFFSET + 2 * dispersion0) + side0 * dispersion1
            oy = -tip1 * (_MAIN_OFFSET + 2 * dispersion0) - side1 * dispersion1
            impulse_pos = (position[0] + ox, position[1] + oy)
            lander.ApplyLinearImpulse((-ox * _MAIN_POWER * m_power, -oy * _MAIN_POWER * m_power), impulse_pos, True)
        if side_fires is not None:
            direction, s_power = side_fires
            position = lander.position
            away = 3 * dispersion1 + direction * _SIDE_AWAY / _SCALE
            ox = tip0 * dispersion0 + side0 * away
            oy = -tip1 * dispersion0 - side1 * away
            impulse_pos = (position[0] + ox - tip0 * 17 / _SCALE, position[1] + oy + tip1 * _SIDE_HEIGHT / _SCALE)
            lander.ApplyLinearImpulse((-ox * _SIDE_POWER * s_power, -oy * _SIDE_POWER * s_power), impulse_pos, True)

        self.world.Step(1.0 / _FPS, 6 * 30, 2 * 30)

        position, velocity = lander.position, lander.linearVelocity
        x, y = position[0], position[1]
        vx, vy = velocity[0], velocity[1]
        legs = self.legs
        state = [
            (x - _HALF_WIDTH) / _HALF_WIDTH,
            (y - (self.helipad_y + _LEG_DOWN)) / _HALF_HEIGHT,
            vx * _HALF_WIDTH / _FPS,
            vy * _HALF_HEIGHT / _FPS,
            lander.angle,
            20.0 * lander.angularVelocity / _FPS,
            1.0 if legs[0].ground_contact else 0.0,
            1.0 if legs[1].ground_contact else 0.0,
        ]
        s0, s1, s2, s3, s4, _, s6, s7 = state
        shaping = (-100 * math.sqrt(s0 * s0 + s1 * s1) - 100 * math.sqrt(s2 * s2 + s3 * s3) - 100 * abs(s4)
                   + 10 * s6 + 10 * s7)
        previous = self.prev_shaping
        self.prev_shaping = np.float64(shaping)  # gymnasium's is np.sqrt's numpy scalar
        reward: Any = 0.0 if previous is None else shaping - float(previous)
        reward -= m_power * 0.30
        reward -= s_power * 0.03
        if previous is not None or numpy_powers:  # where gymnasium's reward is a numpy scalar
            reward = np.float64(reward)
        terminated = False
        if self.game_over or abs(s0) >= 1.0:
            terminated, reward = True, -100
        if not lander.awake:
            terminated, reward = True, +100
        return np.array(state, dtype=np.float32), reward, terminated, False, {}

    def _engines(self, action: Any) -> tuple[float | None, tuple[Any, float] | None]:
        """``(main engine power or None, (side direction, power) or None)`` for ``action``, as gymnasium's step reads
        it (continuous: clipped to [-1, 1] as doubles)."""
        if self.continuous:
            values = np.asarray(action)
            main, side = float(values[0]), float(values[1])
            main = -1.0 if main < -1.0 else 1.0 if main > 1.0 else main  # np.clip's, NaN kept
            side = -1.0 if side < -1.0 else 1.0 if side > 1.0 else side
            main_power = (main + 1.0) * 0.5 if main > 0.0 else None  # np.clip(main, 0, 1) is main there
            side_fires = (1.0 if side > 0.0 else -1.0, abs(side)) if abs(side) > 0.5 else None
            return main_power, side_fires
        if not ((type(action) is int or type(action) is np.int64) and 0 <= action < 4):
            assert self.action_space.contains(action), f"{action!r} ({type(action)}) invalid "
        main_power = 1.0 if action == 2 else None
        side_fires = (action - 2, 1.0) if action in [1, 3] else None
        return main_power, side_fires
