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
Session 35 (the same Zen 3): a float32 or float64 action's motor commands and energy penalties in one numba call
(:func:`_motor_commands`; the numpy expressions took ~5 us), the float32 reward's four subtractions in another, the
lidar's edges sorted so each ray scans only the ~15 it can reach, and a leaner contact listener: Box2D's world step
(~67 us, its 180 velocity and 60 position iterations) is now ~80% of the ~85 us step.

Bit for bit the same trajectories (``tests/test_bipedal_walker.py`` steps both side by side through many episodes of
both versions): the same Box2D calls in the same order with the same arguments, and the same float operations in the
same precision, where numpy's scalar rules matter:

- ``MOTORS_TORQUE * np.clip(np.abs(a), 0, 1)`` of a float32 action is a float32 product (a Python int is a "weak"
  scalar), element by element the same on the whole array as on each element; the motor's torque is that value as
  a Python float, as gymnasium's ``float(...)``;
- the energy penalty ``0.00035 * MOTORS_TORQUE * clip`` is subtracted from the reward one joint at a time in the
  same order, so the reward turns into a float32 numpy scalar at the first subtraction, as gymnasium's does
  (:func:`_motor_commands` and :func:`_minus_penalties` compute these in numba for float32 and float64 actions of
  shape ``[4]``, tested against numpy's expressions on zeros of both signs, infinities and NaN; any other action
  takes the numpy expressions);
- the lidar's end points add the same doubles (``sin(1.5 i / 10) * LIDAR_RANGE``, computed once) to the same hull
  position, rounded to float32 as Box2D takes them.

The lidar callbacks' own ``fraction``, ``p1`` and ``p2`` (read only by ``render``) are set only when rendering.

Resets (~4.5 ms each in gymnasium's code, and Hardcore's walker falls every ~70 steps early in training) take ~2 ms:
the terrain's ~200-230 static bodies are made through pybox2d's two underlying calls instead of its keyword-handling
``CreateStaticBody`` (~6.5 -> ~2 us a body), the terrain loop runs on Python floats (the heights become the numpy
float64s gymnasium's ``np.sign`` makes of them at the end), the clouds' 110 draws are taken in one call, and the
contact listener fetches each contact's bodies once. The same draws from the same stream, the same bodies made in
the same order, the same attributes (``tests/test_bipedal_walker.py`` compares the world, the terrain and cloud lists
with their types and the random generator's state after each of 80 resets of each version).

All this applies only while gymnasium's ``BipedalWalker.step``, ``reset`` (which defines the lidar's callback),
``_generate_terrain``, ``_generate_clouds`` and ``ContactDetector`` are the code they were checked against
(:data:`CHECKED_AGAINST`, fingerprints of their source): with another gymnasium version whose code changed,
:func:`faster_step_refusal` says why and ``make_vec_env`` builds gymnasium's own env.
"""

from __future__ import annotations

import math
from typing import Any

import Box2D
import numba
import numpy as np
from gymnasium.envs.box2d import bipedal_walker as gymnasium_walker

from envs import bipedal_lidar
from rlcore.kernels.selection import first_edited

CHECKED_AGAINST: dict[str, str] = {"gymnasium.envs.box2d.bipedal_walker.BipedalWalker.step": "3e810c85d672e315",
                                   "gymnasium.envs.box2d.bipedal_walker.BipedalWalker.reset": "21f209e39270f735",
                                   "gymnasium.envs.box2d.bipedal_walker.BipedalWalker._generate_terrain":
                                       "e8713bcfb46a523e",
                                   "gymnasium.envs.box2d.bipedal_walker.BipedalWalker._generate_clouds":
                                       "867e3b9e6cadd6be",
                                   "gymnasium.envs.box2d.bipedal_walker.ContactDetector.BeginContact":
                                       "4c1719cd8bb1ee87",
                                   "gymnasium.envs.box2d.bipedal_walker.ContactDetector.EndContact":
                                       "be58e1ddf41783fc"}
"""The fingerprints (:func:`rlcore.kernels.selection.fingerprint`) of gymnasium's step this one reproduces, of the
reset that defines the lidar's callback (which fixtures it sees, where it clips), of the terrain's and clouds'
generation (which bodies hold the lidar's shapes; the random draws) and of the contact listener, those of gymnasium
1.4, the version they were checked against."""

_JOINT_SPEEDS = np.array([gymnasium_walker.SPEED_HIP, gymnasium_walker.SPEED_KNEE,
                          gymnasium_walker.SPEED_HIP, gymnasium_walker.SPEED_KNEE])
"""Each joint's motor speed per unit of ``sign(action)``: hip, knee, hip, knee."""
_LIDAR_OFFSETS = [(math.sin(1.5 * i / 10.0) * gymnasium_walker.LIDAR_RANGE,
                   math.cos(1.5 * i / 10.0) * gymnasium_walker.LIDAR_RANGE) for i in range(10)]
"""Each lidar ray's end relative to the hull: ``(+dx, -dy)``."""
_LIDAR_ENDS = np.array([(dx, -dy) for dx, dy in _LIDAR_OFFSETS])
"""The same as an array ``[10, 2]`` of the offsets added to the hull's position."""
_FINISH_X = (gymnasium_walker.TERRAIN_LENGTH - gymnasium_walker.TERRAIN_GRASS) * gymnasium_walker.TERRAIN_STEP
_MOTORS_TORQUE = gymnasium_walker.MOTORS_TORQUE
_ENERGY_COST = 0.00035 * _MOTORS_TORQUE
_FPS, _SCALE = gymnasium_walker.FPS, gymnasium_walker.SCALE
_SPEED_HIP, _SPEED_KNEE = gymnasium_walker.SPEED_HIP, gymnasium_walker.SPEED_KNEE
_VIEWPORT_W, _VIEWPORT_H = gymnasium_walker.VIEWPORT_W, gymnasium_walker.VIEWPORT_H
_TERRAIN_STEP, _TERRAIN_LENGTH = gymnasium_walker.TERRAIN_STEP, gymnasium_walker.TERRAIN_LENGTH
_TERRAIN_HEIGHT, _TERRAIN_GRASS = gymnasium_walker.TERRAIN_HEIGHT, gymnasium_walker.TERRAIN_GRASS
_TERRAIN_STARTPAD = gymnasium_walker.TERRAIN_STARTPAD
_GRASS, _STUMP, _STAIRS, _PIT, _STATES = range(5)  # the terrain generator's states, as gymnasium numbers them
_OBSTACLE_COLORS = ((255, 255, 255), (153, 153, 153))
_GROUND_COLORS = ((76, 255, 76), (76, 204, 76))
"""The ground edges' colours, alternating from the first edge."""
_GROUND_FILL = (102, 153, 76)
_STATIC_BODY = Box2D.b2BodyDef(type=Box2D.b2_staticBody)
"""What ``world.CreateStaticBody(fixtures=...)`` defines a terrain body with (the fixture is created after it)."""
_CLOUD_OFFSETS = [(15 * _TERRAIN_STEP * math.sin(3.14 * 2 * a / 5), 5 * _TERRAIN_STEP * math.cos(3.14 * 2 * a / 5))
                  for a in range(5)]
"""Each cloud vertex's offset from the cloud's anchor before its random jitter (gymnasium's expressions)."""
_CLOUD_Y = _VIEWPORT_H / _SCALE * 3 / 4


@numba.njit(cache=True)
def _sign(value: float) -> float:
    """``np.sign`` of one float: +-1, 0 for either zero, NaN for NaN."""
    return 1.0 if value > 0 else (-1.0 if value < 0 else (0.0 if value == 0 else value))


@numba.njit(cache=True)
def _motor_commands(action: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """For a float32 or float64 ``action`` ``[4]``: each joint's motor speed (``speed * sign(a)``), torque
    (``MOTORS_TORQUE * min(|a|, 1)``) and energy penalty (``0.00035 * MOTORS_TORQUE * min(|a|, 1)``), each product
    in the action's precision as numpy's array expressions in gymnasium's step compute it, as Python floats."""
    one, torque, cost = action.dtype.type(1), action.dtype.type(_MOTORS_TORQUE), action.dtype.type(_ENERGY_COST)
    c0, c1, c2, c3 = abs(action[0]), abs(action[1]), abs(action[2]), abs(action[3])
    c0, c1, c2, c3 = (one if c0 > one else c0, one if c1 > one else c1, one if c2 > one else c2,
                      one if c3 > one else c3)  # min(|a|, 1), NaN kept
    return ((_SPEED_HIP * _sign(action[0]), _SPEED_KNEE * _sign(action[1]), _SPEED_HIP * _sign(action[2]),
             _SPEED_KNEE * _sign(action[3])),
            (float(torque * c0), float(torque * c1), float(torque * c2), float(torque * c3)),
            (float(cost * c0), float(cost * c1), float(cost * c2), float(cost * c3)))


@numba.njit(cache=True)
def _minus_float32(reward: float, p0: float, p1: float, p2: float, p3: float) -> float:
    """``reward - p0 - p1 - p2 - p3`` as numpy computes it for a Python-number reward and float32 penalties: the
    reward rounded to float32, then each subtraction in float32."""
    total = np.float32(reward)
    for penalty in (p0, p1, p2, p3):
        total = total - np.float32(penalty)
    return total


def _minus_penalties(reward: Any, penalties: Any, precision: str) -> Any:
    """gymnasium's ``reward -= penalty`` for each joint's energy penalty, in order, with numpy's scalar rules: a
    float32 action's penalties (``precision`` ``"f"``, Python floats from :func:`_motor_commands`) turn the reward
    into a float32 scalar at the first, a float64 action's (``"d"``) into a float64 scalar; any other
    ``penalties`` are numpy's own array (``precision`` ``""``)."""
    if precision == "f":
        return np.float32(_minus_float32(reward, *penalties))
    if precision == "d":
        return np.float64(reward - penalties[0] - penalties[1] - penalties[2] - penalties[3])
    for penalty in penalties:
        reward -= penalty
    return reward


class _ContactDetector(Box2D.b2.contactListener):
    """gymnasium's ``ContactDetector``: a contact touching the hull ends the episode (``game_over``), one touching a
    lower leg sets that leg's ``ground_contact`` while it lasts. The same decisions with each contact's two bodies
    fetched once (gymnasium's fetches them up to six times, ~0.7 us each through pybox2d) and compared by their
    Box2D pointers (``this``; pybox2d's ``==`` compares the same pointers after two ``isinstance`` checks)."""

    def __init__(self, env: BipedalWalker) -> None:
        Box2D.b2.contactListener.__init__(self)
        self.env = env

    def BeginContact(self, contact: Any) -> None:  # noqa: N802 (Box2D's name)
        env = self.env
        first, second = contact.fixtureA.body.this, contact.fixtureB.body.this
        hull = env.hull.this
        if hull in (first, second):
            env.game_over = True
        for leg in (env.legs[1], env.legs[3]):
            if leg.this in (first, second):
                leg.ground_contact = True

    def EndContact(self, contact: Any) -> None:  # noqa: N802 (Box2D's name)
        first, second = contact.fixtureA.body.this, contact.fixtureB.body.this
        legs = self.env.legs
        for leg in (legs[1], legs[3]):
            if leg.this in (first, second):
                leg.ground_contact = False


def faster_step_refusal() -> str | None:
    """Why :class:`BipedalWalker` must not stand in for gymnasium's (its step was edited since), else None."""
    walker = gymnasium_walker.BipedalWalker
    if not hasattr(Box2D.b2World, "_b2World__CreateBody") or not hasattr(Box2D.b2Body, "_b2Body__CreateFixture"):
        return "this pybox2d has no b2World.__CreateBody / b2Body.__CreateFixture (the terrain's leaner build)"
    detector = gymnasium_walker.ContactDetector
    return first_edited([walker.step, walker.reset, walker._generate_terrain, walker._generate_clouds,
                         detector.BeginContact, detector.EndContact], CHECKED_AGAINST)


class BipedalWalker(gymnasium_walker.BipedalWalker):
    """gymnasium's ``BipedalWalker`` (``hardcore=True``: the Hardcore version) with :meth:`step`, the terrain's and
    clouds' generation and the contact listener rewritten (see the module docstring); construction, the rest of
    ``reset``, rendering and every attribute are gymnasium's."""

    _geometry: bipedal_lidar.TerrainGeometry | None = None
    _geometry_of: Any = None  # the terrain list _geometry was read from
    _lidar_points: np.ndarray = np.empty(0)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        """gymnasium's ``reset`` (with the leaner terrain and clouds below), then its contact listener replaced by
        the leaner :class:`_ContactDetector`; returns the first observation ``[24]`` and an empty info."""
        observation, info = super().reset(seed=seed, options=options)
        self.world.contactListener_bug_workaround = _ContactDetector(self)
        self.world.contactListener = self.world.contactListener_bug_workaround
        return observation, info

    def _generate_terrain(self, hardcore: bool) -> None:
        """gymnasium's ``_generate_terrain`` with less Python (~2.7 -> ~0.9 ms a Hardcore terrain): the same random
        draws in the same order, the same static bodies and fixtures created in the same order, the same doubles
        and the same attributes (``terrain`` and its colours, ``terrain_x``, ``terrain_y`` holding numpy float64s
        as gymnasium's ``np.sign`` leaves them, ``terrain_poly``). Each body is made by pybox2d's ``__CreateBody``
        and ``__CreateFixture``, which its ``CreateStaticBody(fixtures=...)`` calls after ~5 us of keyword handling;
        ``uniform(-1, 1)`` is ``2 d - 1`` of the same draw ``d`` (numpy's ``low + (high - low) d``, exact here);
        the drawn integers are the same values as Python ints, so every height stays a Python float."""
        random, polygon = self.np_random, self.fd_polygon
        obstacles: list[Any] = []

        def add_obstacle(vertices: list[tuple[Any, Any]]) -> None:
            polygon.shape.vertices = vertices
            body = self._static_body(polygon)
            body.color1, body.color2 = _OBSTACLE_COLORS
            obstacles.append(body)

        step = _TERRAIN_STEP
        state, counter = _GRASS, _TERRAIN_STARTPAD
        velocity, y, oneshot = 0.0, _TERRAIN_HEIGHT, False
        stair_steps = stair_width = stair_height = 0
        original_y = 0.0
        xs: list[float] = []
        ys: list[float] = []
        for i in range(_TERRAIN_LENGTH):
            x = i * step
            xs.append(x)
            if state == _GRASS and not oneshot:
                below = _TERRAIN_HEIGHT - y
                velocity = 0.8 * velocity + 0.01 * ((below > 0.0) - (below < 0.0))  # 0.01 * np.sign(below)
                if i > _TERRAIN_STARTPAD:
                    velocity += (2.0 * random.random() - 1.0) / _SCALE
                y += velocity
            elif state == _PIT and oneshot:
                counter = int(random.integers(3, 5))
                pit = [(x, y), (x + step, y), (x + step, y - 4 * step), (x, y - 4 * step)]
                add_obstacle(pit)
                add_obstacle([(p[0] + step * counter, p[1]) for p in pit])
                counter += 2
                original_y = y
            elif state == _PIT and not oneshot:
                y = original_y
                if counter > 1:
                    y -= 4 * step
            elif state == _STUMP and oneshot:
                counter = int(random.integers(1, 3))
                add_obstacle([(x, y), (x + counter * step, y), (x + counter * step, y + counter * step),
                              (x, y + counter * step)])
            elif state == _STAIRS and oneshot:
                stair_height = +1 if random.random() > 0.5 else -1
                stair_width = int(random.integers(4, 5))
                stair_steps = int(random.integers(3, 5))
                original_y = y
                for s in range(stair_steps):
                    add_obstacle([(x + (s * stair_width) * step, y + (s * stair_height) * step),
                                  (x + ((1 + s) * stair_width) * step, y + (s * stair_height) * step),
                                  (x + ((1 + s) * stair_width) * step, y + (-1 + s * stair_height) * step),
                                  (x + (s * stair_width) * step, y + (-1 + s * stair_height) * step)])
                counter = stair_steps * stair_width
            elif state == _STAIRS and not oneshot:
                n = (stair_steps * stair_width - counter - stair_height) / stair_width
                y = original_y + (n * stair_height) * step
            oneshot = False
            ys.append(y)
            counter -= 1
            if counter == 0:
                counter = int(random.integers(_TERRAIN_GRASS // 2, _TERRAIN_GRASS))
                state = int(random.integers(1, _STATES)) if state == _GRASS and hardcore else _GRASS
                oneshot = True
        self._build_ground(xs, ys, obstacles)

    def _build_ground(self, xs: list[float], ys: list[float], obstacles: list[Any]) -> None:
        """The ground's edge bodies between consecutive terrain points, after the ``obstacles``' bodies, and the
        terrain lists as gymnasium's ``_generate_terrain`` leaves them (``terrain`` reversed: edges, then
        obstacles, each last-made first)."""
        edge = self.fd_edge
        shape = edge.shape
        if shape.hasVertex0 or shape.hasVertex3:  # gymnasium's ``shape.vertices = [a, b]`` clears both
            shape.hasVertex0 = shape.hasVertex3 = False
        heights = [np.float64(y) for y in ys]  # gymnasium's y turns into a numpy float64 at its first np.sign
        bodies, polygons = obstacles, []
        for i in range(len(xs) - 1):
            shape.vertex1 = (xs[i], ys[i])
            shape.vertex2 = (xs[i + 1], ys[i + 1])
            body = self._static_body(edge)
            body.color1 = body.color2 = _GROUND_COLORS[i % 2]
            bodies.append(body)
            polygons.append(([(xs[i], heights[i]), (xs[i + 1], heights[i + 1]), (xs[i + 1], 0), (xs[i], 0)],
                             _GROUND_FILL))
        bodies.reverse()
        self.terrain, self.terrain_x, self.terrain_y, self.terrain_poly = bodies, xs, heights, polygons

    def _static_body(self, fixture: Any) -> Any:
        """``world.CreateStaticBody(fixtures=fixture)`` through pybox2d's two underlying calls (~2 us instead of
        ~6.5: the same body and fixture, without the keyword handling)."""
        body = self.world._b2World__CreateBody(_STATIC_BODY)
        body._b2Body__CreateFixture(fixture)
        return body

    def _generate_clouds(self) -> None:
        """gymnasium's ``_generate_clouds``: ten clouds of five jittered vertices from the same draws, taken in one
        call (``uniform(0, high)`` of a draw ``d`` is ``high d``, exact, as numpy's ``0 + (high - 0) d``)."""
        count = _TERRAIN_LENGTH // 20
        draws = iter(self.np_random.random(count * (1 + 2 * len(_CLOUD_OFFSETS))).tolist())
        jitter = 5 * _TERRAIN_STEP
        self.cloud_poly = []
        for _ in range(count):
            x = (_TERRAIN_LENGTH * next(draws)) * _TERRAIN_STEP
            poly = [(x + dx + jitter * next(draws), _CLOUD_Y + dy + jitter * next(draws)) for dx, dy in _CLOUD_OFFSETS]
            self.cloud_poly.append((poly, min(p[0] for p in poly), max(p[0] for p in poly)))

    def step(self, action: np.ndarray) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        """One step of 1/50 s: the 4 motors' commands from ``action`` ``[4]``, the physics, the lidar; returns the
        observation ``[24]`` float32, the reward, terminated, truncated (False: the time limit is a wrapper's) and
        an empty info, exactly as gymnasium's ``step``."""
        assert self.hull is not None
        action = np.asarray(action)
        precision = action.dtype.char if action.shape == (4,) and action.dtype.char in ("f", "d") else ""
        if precision:  # float32 / float64 [4]: one numba call
            speeds, torques, penalties = _motor_commands(action)
        else:  # any other dtype or shape, by numpy's rules
            clipped = np.minimum(np.abs(action), 1)  # np.clip(np.abs(action), 0, 1), ~2.5 us sooner
            speeds = (_JOINT_SPEEDS * np.sign(action)).tolist()
            torques = (_MOTORS_TORQUE * clipped).tolist()
            penalties = _ENERGY_COST * clipped
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
        reward = _minus_penalties(reward, penalties, precision)

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
