"""gymnasium's BipedalWalker (and its Hardcore version) with a leaner ``step``: the same Box2D calls, less Python.

``rlcore.make_vec_env("BipedalWalker-v3", n)`` (and ``BipedalWalkerHardcore-v3``), with ``"sync"`` vectorization and
no wrappers, builds its sub-envs from :class:`BipedalWalker` here (a subclass of gymnasium's, registered spec
otherwise unchanged: time limit, ``hardcore`` kwarg, gymnasium's wrappers), where gymnasium's ``step`` was ~70% of
rlcore's time on rl-zoo's PPO and A2C settings, and the peers step the same Python objects.

Where gymnasium's step (~140 us on this project's 2-core EPYC) goes: Box2D's world step ~35%, the ten lidar ray casts
with their Python callbacks ~25%, and the Python around them: sixteen numpy calls on single numbers for the motors and
the energy penalty (``np.sign``, ``np.abs``, ``np.clip``, ~1.5 us each), a ``sin``/``cos`` pair per lidar ray, and
repeated attribute lookups. Here the motor commands are three array operations on the action, the lidar's offsets are
constants, and the rest reads each Box2D property once: ~105 us a step (1.3x). The ten ray casts then took ~45 of
~155 us a step (measured in session 34 on another 2-core EPYC, a Zen 3): they now run in numba against the static
terrain's shapes (:mod:`envs.bipedal_lidar`, Box2D's float32 arithmetic reproduced; Box2D's casts stay
the reference for a world it does not cover): ~108 us a step where the same code with Box2D's casts took ~155.

Bit for bit the same trajectories (``tests/test_bipedal_walker.py`` steps both side by side through many episodes of
both versions): the same Box2D calls in the same order with the same arguments, and the same float operations in the
same precision, where numpy's scalar rules matter:

- ``MOTORS_TORQUE * np.clip(np.abs(a), 0, 1)`` of a float32 action is a float32 product (a Python int is a "weak"
  scalar), element by element the same on the whole array as on each element; the motor's torque is that value as
  a Python float, as gymnasium's ``float(...)``;
- the energy penalty ``0.00035 * MOTORS_TORQUE * clip`` is subtracted from the reward one joint at a time in the
  same order, so the reward turns into a float32 numpy scalar at the first subtraction, as gymnasium's does;
- the lidar's end points add the same doubles (``sin(1.5 i / 10) * LIDAR_RANGE``, computed once) to the same hull
  position, rounded to float32 as Box2D takes them.

The lidar callbacks' own ``fraction``, ``p1`` and ``p2`` (read only by ``render``) are set only when rendering.
The fast step applies only while gymnasium's ``BipedalWalker.step``, ``reset`` (which defines the lidar's callback)
and ``_generate_terrain`` are the code they were checked against (:data:`CHECKED_AGAINST`, fingerprints of their
source): with another gymnasium version whose code changed, :func:`faster_step_refusal` says why and
``make_vec_env`` builds gymnasium's own env.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from gymnasium.envs.box2d import bipedal_walker as gymnasium_walker

from envs import bipedal_lidar
from rlcore.kernels.selection import first_edited

CHECKED_AGAINST: dict[str, str] = {"gymnasium.envs.box2d.bipedal_walker.BipedalWalker.step": "3e810c85d672e315",
                                   "gymnasium.envs.box2d.bipedal_walker.BipedalWalker.reset": "21f209e39270f735",
                                   "gymnasium.envs.box2d.bipedal_walker.BipedalWalker._generate_terrain":
                                       "e8713bcfb46a523e"}
"""The fingerprints (:func:`rlcore.kernels.selection.fingerprint`) of gymnasium's step this one reproduces, of the
reset that defines the lidar's callback (which fixtures it sees, where it clips) and of the terrain's generation
(which bodies hold the lidar's shapes), those of gymnasium 1.4, the version they were checked against."""

_JOINT_SPEEDS = np.array([gymnasium_walker.SPEED_HIP, gymnasium_walker.SPEED_KNEE,
                          gymnasium_walker.SPEED_HIP, gymnasium_walker.SPEED_KNEE])
"""Each joint's motor speed per unit of ``sign(action)``: hip, knee, hip, knee."""
_LIDAR_OFFSETS = [(math.sin(1.5 * i / 10.0) * gymnasium_walker.LIDAR_RANGE,
                   math.cos(1.5 * i / 10.0) * gymnasium_walker.LIDAR_RANGE) for i in range(10)]
"""Each lidar ray's end relative to the hull: ``(+dx, -dy)``."""
_LIDAR_ENDS = np.array([(dx, -dy) for dx, dy in _LIDAR_OFFSETS])
"""The same as an array ``[10, 2]`` of the offsets added to the hull's position."""
_FINISH_X = (gymnasium_walker.TERRAIN_LENGTH - gymnasium_walker.TERRAIN_GRASS) * gymnasium_walker.TERRAIN_STEP
_ENERGY_COST = 0.00035 * gymnasium_walker.MOTORS_TORQUE
_FPS, _SCALE = gymnasium_walker.FPS, gymnasium_walker.SCALE
_SPEED_HIP, _SPEED_KNEE = gymnasium_walker.SPEED_HIP, gymnasium_walker.SPEED_KNEE
_VIEWPORT_W, _VIEWPORT_H = gymnasium_walker.VIEWPORT_W, gymnasium_walker.VIEWPORT_H


def faster_step_refusal() -> str | None:
    """Why :class:`BipedalWalker` must not stand in for gymnasium's (its step was edited since), else None."""
    walker = gymnasium_walker.BipedalWalker
    return first_edited([walker.step, walker.reset, walker._generate_terrain], CHECKED_AGAINST)


class BipedalWalker(gymnasium_walker.BipedalWalker):
    """gymnasium's ``BipedalWalker`` (``hardcore=True``: the Hardcore version) with :meth:`step` rewritten (see the
    module docstring); construction, reset, terrain, rendering and every attribute are gymnasium's."""

    _geometry: bipedal_lidar.TerrainGeometry | None = None
    _geometry_of: Any = None  # the terrain list _geometry was read from
    _lidar_points: np.ndarray = np.empty(0)

    def step(self, action: np.ndarray) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """One step of 1/50 s: the 4 motors' commands from ``action`` ``[4]``, the physics, the lidar; returns the
        observation ``[24]`` float32, the reward, terminated, truncated (False: the time limit is a wrapper's) and
        an empty info, exactly as gymnasium's ``step``."""
        assert self.hull is not None
        action = np.asarray(action)
        clipped = np.minimum(np.abs(action), 1)  # np.clip(np.abs(action), 0, 1), ~2.5 us sooner
        speeds = (_JOINT_SPEEDS * np.sign(action)).tolist()
        torques = (gymnasium_walker.MOTORS_TORQUE * clipped).tolist()
        joints = self.joints
        for joint, speed, torque in zip(joints, speeds, torques):
            joint.motorSpeed = speed  # a Python float already (tolist), as gymnasium's float(...)
            joint.maxMotorTorque = torque
        self.world.Step(1.0 / _FPS, 6 * 30, 2 * 30)

        hull = self.hull
        pos = hull.position
        vel = hull.linearVelocity
        x, y = pos[0], pos[1]
        observation = np.empty(24, np.float32)
        geometry = self._terrain_geometry()
        if geometry is None:  # the reference: Box2D's casts with gymnasium's callbacks
            for lidar, (dx, dy) in zip(self.lidar, _LIDAR_OFFSETS):
                lidar.fraction = 1.0
                lidar.p1 = pos
                lidar.p2 = (x + dx, y - dy)
                self.world.RayCast(lidar, lidar.p1, lidar.p2)
            observation[14:] = [lidar.fraction for lidar in self.lidar]
        else:
            self._cast_lidar(geometry, pos, x, y, observation[14:])

        hip_a, knee_a, hip_b, knee_b = joints
        angle = hull.angle
        observation[:14] = [
            angle,
            2.0 * hull.angularVelocity / _FPS,
            0.3 * vel.x * (_VIEWPORT_W / _SCALE) / _FPS,
            0.3 * vel.y * (_VIEWPORT_H / _SCALE) / _FPS,
            hip_a.angle,
            hip_a.speed / _SPEED_HIP,
            knee_a.angle + 1.0,
            knee_a.speed / _SPEED_KNEE,
            1.0 if self.legs[1].ground_contact else 0.0,
            hip_b.angle,
            hip_b.speed / _SPEED_HIP,
            knee_b.angle + 1.0,
            knee_b.speed / _SPEED_KNEE,
            1.0 if self.legs[3].ground_contact else 0.0,
        ]
        self.scroll = pos.x - _VIEWPORT_W / _SCALE / 5

        shaping = 130 * x / _SCALE
        shaping -= 5.0 * abs(angle)
        reward: Any = 0
        if self.prev_shaping is not None:
            reward = shaping - self.prev_shaping
        self.prev_shaping = shaping
        for penalty in _ENERGY_COST * clipped:  # joint by joint, in the action's precision, as gymnasium's loop
            reward -= penalty

        terminated = False
        if self.game_over or x < 0:
            reward = -100
            terminated = True
        if x > _FINISH_X:
            terminated = True
        if self.render_mode == "human":
            self.render()
        return observation, reward, terminated, False, {}

    def _terrain_geometry(self) -> bipedal_lidar.TerrainGeometry | None:
        """The lidar's view of the current terrain (read once per terrain), or None: cast through Box2D."""
        if self._geometry_of is not self.terrain:
            self._geometry = bipedal_lidar.walker_terrain_geometry(self)
            self._lidar_points = np.empty((len(_LIDAR_ENDS), 2), np.float32)
            self._geometry_of = self.terrain
        return self._geometry

    def _cast_lidar(self, geometry: bipedal_lidar.TerrainGeometry, pos: Any, x: float, y: float,
                    fractions: np.ndarray) -> None:
        """The ten rays' fractions into ``fractions`` (``float32 [10]``) by :func:`envs.bipedal_lidar.cast_rays`.
        When rendering (the only reader of the lidar callbacks' ``fraction``, ``p1`` and ``p2``), each callback's
        attributes are set as Box2D's casts set them."""
        bipedal_lidar.cast_rays(x, y, _LIDAR_ENDS, *geometry, fractions, self._lidar_points)
        if self.render_mode is None:
            return
        for lidar, fraction, point, (dx, dy) in zip(self.lidar, fractions.tolist(), self._lidar_points.tolist(),
                                                    _LIDAR_OFFSETS):
            lidar.fraction = fraction
            lidar.p1 = pos
            lidar.p2 = (x + dx, y - dy) if point[0] != point[0] else tuple(point)  # NaN: no hit
