"""gymnasium's classic-control envs for many envs at once: each env's rules as one numba kernel over arrays of states.

``rlcore.make_vec_env("CartPole-v1", n)`` (and ``Acrobot-v1``, ``MountainCar-v0``, ``MountainCarContinuous-v0``,
``Pendulum-v1``), with no ``env_kwargs``, no wrappers and ``"sync"`` vectorization, builds a
:class:`ClassicControlVectorEnv` instead of a ``SyncVectorEnv`` of ``n`` gymnasium envs: one compiled call steps every
env (~0.4-1.4 us per env step at 8-16 envs, the call's overhead included, where gymnasium's Python ``step`` and its
wrappers cost 4-36 us; ``make_vec_env(..., batched=False)`` or a ``gym.make`` factory keeps gymnasium's). The
trajectories are
gymnasium's, bit for bit, for the same seeds and actions (``tests/test_classic_control_batched.py`` steps both side
by side through many episodes):

- the dynamics are each env's ``step`` written again with the same float operations in the same order and in the
  same precision, including where numpy's scalar rules mix float32 into float64 (Pendulum's ``u**2`` and
  ``3.0 / (m * l**2) * u`` are float32 products; MountainCarContinuous keeps its state in float32 after its first
  step, and compares float32 values with Python floats in float32, as numpy 2 does);
- ``x ** 2`` of a numpy scalar is the C library's ``pow(x, 2.0)``, which differs from ``x * x`` in ~0.1% of
  doubles: the kernels take the exponent ``2.0`` as an argument, so LLVM cannot fold ``pow`` into a product;
- each env draws its reset state from its own copy of numpy's PCG64 generator (:mod:`envs._pcg64`), seeded as
  gymnasium seeds ``np_random``, with numpy's ``uniform`` formula (``low + (high - low) * next_double``);
- Acrobot's first observation after a reset takes ``cos``/``sin`` of its float32 state in float32, which numpy
  computes with its own SIMD routines: those rows are observed with numpy, outside the kernel.

Semantics are those of rlcore's vector envs (:func:`rlcore.env.make_vec_env`): same-step autoreset (an ended env
returns its next episode's first observation, the last one in ``info["final_obs"]`` with the mask
``info["_final_obs"]``), the registered time limit as a truncation (``TimeLimit``: a step can be terminated and
truncated at once), ``reset(seed=s)`` seeding env ``i`` with ``s + i``. :meth:`ClassicControlVectorEnv.replay_states`
gives each env's state as plain data for exact resume; :meth:`~ClassicControlVectorEnv.restore_replay_states` also
takes the ``{"reset", "actions"}`` records of a run made with gymnasium's envs (it replays them in a gymnasium env).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import gymnasium as gym
import numba
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers import TimeLimit

from envs._pcg64 import Generators, next_double
from rlcore.env import ReplayableEnv, StatefulVectorEnv

POW_EXPONENT = 2.0
"""Passed to the kernels at run time: ``x ** exponent`` then calls the C library's ``pow`` as numpy's scalars do."""

# --- CartPole-v1 (gymnasium/envs/classic_control/cartpole.py) ------------------------------------------------------
CARTPOLE_GRAVITY, CARTPOLE_MASSCART, CARTPOLE_MASSPOLE, CARTPOLE_LENGTH = 9.8, 1.0, 0.1, 0.5
CARTPOLE_TOTAL_MASS = CARTPOLE_MASSPOLE + CARTPOLE_MASSCART
CARTPOLE_POLEMASS_LENGTH = CARTPOLE_MASSPOLE * CARTPOLE_LENGTH
CARTPOLE_FORCE, CARTPOLE_TAU = 10.0, 0.02
CARTPOLE_THETA_LIMIT = 12 * 2 * math.pi / 360
CARTPOLE_X_LIMIT = 2.4


@numba.njit(cache=True)
def _cartpole_reset(row: int, state: np.ndarray, fresh: np.ndarray, rng_state: np.ndarray,
                    rng_inc: np.ndarray) -> None:
    for column in range(4):  # np_random.uniform(low=-0.05, high=0.05, size=(4,))
        state[row, column] = -0.05 + (0.05 - -0.05) * next_double(rng_state, rng_inc, row)
    fresh[row] = True


@numba.njit(cache=True)
def _cartpole_step(row: int, action: int, state: np.ndarray, fresh: np.ndarray, two: float) -> tuple[float, bool]:
    x, x_dot, theta, theta_dot = state[row, 0], state[row, 1], state[row, 2], state[row, 3]
    force = CARTPOLE_FORCE if action == 1 else -CARTPOLE_FORCE
    costheta, sintheta = np.cos(theta), np.sin(theta)
    temp = (force + CARTPOLE_POLEMASS_LENGTH * (theta_dot * theta_dot) * sintheta) / CARTPOLE_TOTAL_MASS
    thetaacc = (CARTPOLE_GRAVITY * sintheta - costheta * temp) / (
        CARTPOLE_LENGTH * (4.0 / 3.0 - CARTPOLE_MASSPOLE * (costheta * costheta) / CARTPOLE_TOTAL_MASS))
    xacc = temp - CARTPOLE_POLEMASS_LENGTH * thetaacc * costheta / CARTPOLE_TOTAL_MASS
    x = x + CARTPOLE_TAU * x_dot
    x_dot = x_dot + CARTPOLE_TAU * xacc
    theta = theta + CARTPOLE_TAU * theta_dot
    theta_dot = theta_dot + CARTPOLE_TAU * thetaacc
    state[row, 0], state[row, 1], state[row, 2], state[row, 3] = x, x_dot, theta, theta_dot
    terminated = (x < -CARTPOLE_X_LIMIT or x > CARTPOLE_X_LIMIT or theta < -CARTPOLE_THETA_LIMIT
                  or theta > CARTPOLE_THETA_LIMIT)
    return 1.0, terminated


# --- Acrobot-v1 (acrobot.py: "book" dynamics, no torque noise, one RK4 step of dt = 0.2) ---------------------------
ACROBOT_TORQUES = np.array([-1.0, 0.0, 1.0])
ACROBOT_M1 = ACROBOT_M2 = ACROBOT_L1 = 1.0
ACROBOT_LC1 = ACROBOT_LC2 = 0.5
ACROBOT_I1 = ACROBOT_I2 = 1.0
ACROBOT_G = 9.8
ACROBOT_LC1_SQ, ACROBOT_LC2_SQ, ACROBOT_L1_SQ = ACROBOT_LC1**2, ACROBOT_LC2**2, ACROBOT_L1**2  # Python floats' pow
ACROBOT_MAX_VEL_1, ACROBOT_MAX_VEL_2 = 4 * math.pi, 9 * math.pi
ACROBOT_DT = 0.2 - 0  # rk4's t[1] - t[0]
ACROBOT_DT2 = ACROBOT_DT / 2.0
ACROBOT_DT6 = ACROBOT_DT / 6.0


@numba.njit(cache=True)
def _acrobot_reset(row: int, state: np.ndarray, fresh: np.ndarray, rng_state: np.ndarray,
                   rng_inc: np.ndarray) -> None:
    for column in range(4):  # np_random.uniform(low=-0.1, high=0.1, size=(4,)).astype(np.float32)
        state[row, column] = np.float32(-0.1 + (0.1 - -0.1) * next_double(rng_state, rng_inc, row))
    fresh[row] = True


@numba.njit(cache=True)
def _acrobot_observe(row: int, state: np.ndarray, fresh: np.ndarray, obs: np.ndarray) -> None:
    """The observation of a stepped (float64) state; a fresh float32 state is observed with numpy (module docstring)."""
    theta1, theta2 = state[row, 0], state[row, 1]
    obs[row, 0], obs[row, 1] = np.float32(np.cos(theta1)), np.float32(np.sin(theta1))
    obs[row, 2], obs[row, 3] = np.float32(np.cos(theta2)), np.float32(np.sin(theta2))
    obs[row, 4], obs[row, 5] = np.float32(state[row, 2]), np.float32(state[row, 3])


@numba.njit(cache=True)
def _acrobot_derivs(theta1: float, theta2: float, dtheta1: float, dtheta2: float, a: float,
                    two: float) -> tuple[float, float, float, float]:
    """``AcrobotEnv._dsdt`` (its fifth derivative, the torque's, is 0)."""
    m1, m2, l1, lc1, lc2, i1, i2, g = (ACROBOT_M1, ACROBOT_M2, ACROBOT_L1, ACROBOT_LC1, ACROBOT_LC2, ACROBOT_I1,
                                       ACROBOT_I2, ACROBOT_G)
    d1 = m1 * ACROBOT_LC1_SQ + m2 * (ACROBOT_L1_SQ + ACROBOT_LC2_SQ + 2 * l1 * lc2 * np.cos(theta2)) + i1 + i2
    d2 = m2 * (ACROBOT_LC2_SQ + l1 * lc2 * np.cos(theta2)) + i2
    phi2 = m2 * lc2 * g * np.cos(theta1 + theta2 - np.pi / 2.0)
    phi1 = (-m2 * l1 * lc2 * dtheta2**two * np.sin(theta2) - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * np.sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * np.cos(theta1 - np.pi / 2) + phi2)
    ddtheta2 = ((a + d2 / d1 * phi1 - m2 * l1 * lc2 * dtheta1**two * np.sin(theta2) - phi2)
                / (m2 * ACROBOT_LC2_SQ + i2 - d2**two / d1))
    ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
    return dtheta1, dtheta2, ddtheta1, ddtheta2


@numba.njit(cache=True)
def _wrap(x: float, low: float, high: float) -> float:
    diff = high - low
    while x > high:
        x = x - diff
    while x < low:
        x = x + diff
    return x


@numba.njit(cache=True)
def _clip(x: float, low: float, high: float) -> float:
    """``np.clip`` of a scalar, which is also Python's ``min(max(x, low), high)`` (Acrobot's ``bound``): a NaN stays."""
    if x < low:
        return low
    if x > high:
        return high
    return x


@numba.njit(cache=True)
def _acrobot_step(row: int, action: int, state: np.ndarray, fresh: np.ndarray, two: float) -> tuple[float, bool]:
    a = ACROBOT_TORQUES[action]
    y0, y1, y2, y3 = state[row, 0], state[row, 1], state[row, 2], state[row, 3]
    k1 = _acrobot_derivs(y0, y1, y2, y3, a, two)
    k2 = _acrobot_derivs(y0 + ACROBOT_DT2 * k1[0], y1 + ACROBOT_DT2 * k1[1], y2 + ACROBOT_DT2 * k1[2],
                         y3 + ACROBOT_DT2 * k1[3], a + ACROBOT_DT2 * 0.0, two)
    k3 = _acrobot_derivs(y0 + ACROBOT_DT2 * k2[0], y1 + ACROBOT_DT2 * k2[1], y2 + ACROBOT_DT2 * k2[2],
                         y3 + ACROBOT_DT2 * k2[3], a + ACROBOT_DT2 * 0.0, two)
    k4 = _acrobot_derivs(y0 + ACROBOT_DT * k3[0], y1 + ACROBOT_DT * k3[1], y2 + ACROBOT_DT * k3[2],
                         y3 + ACROBOT_DT * k3[3], a + ACROBOT_DT * 0.0, two)
    new = (y0 + ACROBOT_DT6 * (k1[0] + 2 * k2[0] + 2 * k3[0] + k4[0]),
           y1 + ACROBOT_DT6 * (k1[1] + 2 * k2[1] + 2 * k3[1] + k4[1]),
           y2 + ACROBOT_DT6 * (k1[2] + 2 * k2[2] + 2 * k3[2] + k4[2]),
           y3 + ACROBOT_DT6 * (k1[3] + 2 * k2[3] + 2 * k3[3] + k4[3]))
    state[row, 0] = _wrap(new[0], -np.pi, np.pi)
    state[row, 1] = _wrap(new[1], -np.pi, np.pi)
    state[row, 2] = _clip(new[2], -ACROBOT_MAX_VEL_1, ACROBOT_MAX_VEL_1)
    state[row, 3] = _clip(new[3], -ACROBOT_MAX_VEL_2, ACROBOT_MAX_VEL_2)
    fresh[row] = False
    terminated = -np.cos(state[row, 0]) - np.cos(state[row, 1] + state[row, 0]) > 1.0
    return (0.0 if terminated else -1.0), terminated


def _acrobot_observe_fresh(state: np.ndarray) -> np.ndarray:
    """Observations ``float32 [R, 6]`` of freshly reset float32 states ``[R, 4]``: numpy's float32 ``cos``/``sin``,
    as ``AcrobotEnv._get_ob`` computes them on its float32 reset state."""
    s = state.astype(np.float32)
    return np.stack([np.cos(s[:, 0]), np.sin(s[:, 0]), np.cos(s[:, 1]), np.sin(s[:, 1]), s[:, 2], s[:, 3]], axis=1)


# --- MountainCar-v0 (mountain_car.py) ------------------------------------------------------------------------------
MOUNTAIN_MIN_POSITION, MOUNTAIN_MAX_POSITION, MOUNTAIN_MAX_SPEED = -1.2, 0.6, 0.07
MOUNTAIN_RESET_LOW, MOUNTAIN_RESET_HIGH = -0.6, -0.4


@numba.njit(cache=True)
def _mountain_reset(row: int, state: np.ndarray, fresh: np.ndarray, rng_state: np.ndarray,
                    rng_inc: np.ndarray) -> None:
    # np.array([np_random.uniform(low=-0.6, high=-0.4), 0])
    draw = next_double(rng_state, rng_inc, row)
    state[row, 0] = MOUNTAIN_RESET_LOW + (MOUNTAIN_RESET_HIGH - MOUNTAIN_RESET_LOW) * draw
    state[row, 1] = 0.0
    fresh[row] = True


@numba.njit(cache=True)
def _float32_observe(row: int, state: np.ndarray, fresh: np.ndarray, obs: np.ndarray) -> None:
    for column in range(obs.shape[1]):
        obs[row, column] = np.float32(state[row, column])


@numba.njit(cache=True)
def _mountain_car_step(row: int, action: int, state: np.ndarray, fresh: np.ndarray, two: float) -> tuple[float, bool]:
    position, velocity = state[row, 0], state[row, 1]
    velocity += (action - 1) * 0.001 + np.cos(3 * position) * (-0.0025)
    velocity = _clip(velocity, -MOUNTAIN_MAX_SPEED, MOUNTAIN_MAX_SPEED)
    position += velocity
    position = _clip(position, MOUNTAIN_MIN_POSITION, MOUNTAIN_MAX_POSITION)
    if position == MOUNTAIN_MIN_POSITION and velocity < 0:
        velocity = 0.0
    state[row, 0], state[row, 1] = position, velocity
    fresh[row] = False
    return -1.0, position >= 0.5 and velocity >= 0.0


# --- MountainCarContinuous-v0 (continuous_mountain_car.py) --------------------------------------------------------
@numba.njit(cache=True)
def _above(x: float, x_is_float32: bool, limit: float) -> bool:
    """``x > limit`` for a numpy scalar ``x`` and a Python float ``limit``: numpy 2 compares a float32 in float32."""
    return np.float32(x) > np.float32(limit) if x_is_float32 else x > limit


@numba.njit(cache=True)
def _below(x: float, x_is_float32: bool, limit: float) -> bool:
    return np.float32(x) < np.float32(limit) if x_is_float32 else x < limit


@numba.njit(cache=True)
def _add_then_bound(x: float, delta: float, in_float32: bool, low: float, high: float) -> tuple[float, bool]:
    """``x += delta`` (in float32 for a float32 ``x``, ``delta`` cast first), then ``if x > high: x = high`` and
    ``if x < low: x = low`` with the Python float bounds, as the env writes them: the value and whether it is still
    a float32 (a bound that replaced it is a Python float)."""
    value = np.float64(np.float32(x) + np.float32(delta)) if in_float32 else x + delta
    if _above(value, in_float32, high):
        return high, False
    if _below(value, in_float32, low):
        return low, False
    return value, in_float32


@numba.njit(cache=True)
def _continuous_mountain_step(row: int, action: float, state: np.ndarray, fresh: np.ndarray,
                              two: float) -> tuple[float, bool]:
    """Its state is float64 after a reset and float32 after a step, and numpy's scalar rules decide each operation's
    precision (a Python float meeting a float32 is cast to float32 first); each value's flag says which it is."""
    state_is_float32 = not fresh[row]
    position, velocity = state[row, 0], state[row, 1]
    a32 = np.float32(action)
    # force = min(max(action[0], -1.0), 1.0): the float32 action, or the Python float bound
    force, force_is_float32 = np.float64(a32), True
    if a32 < -1.0:
        force, force_is_float32 = -1.0, False
    if _below(1.0, force_is_float32, force):  # 1.0 < force
        force, force_is_float32 = 1.0, False
    # velocity += force * power - 0.0025 * math.cos(3 * position)
    if state_is_float32:
        cosine = math.cos(np.float64(np.float32(3) * np.float32(position)))
    else:
        cosine = math.cos(3 * position)
    pull = 0.0025 * cosine
    if force_is_float32:
        change = np.float64(np.float32(np.float32(force) * np.float32(0.0015)) - np.float32(pull))
    else:
        change = force * 0.0015 - pull
    velocity, _ = _add_then_bound(velocity, change, state_is_float32, -MOUNTAIN_MAX_SPEED, MOUNTAIN_MAX_SPEED)
    position, position_is_float32 = _add_then_bound(position, velocity, state_is_float32, MOUNTAIN_MIN_POSITION,
                                                    MOUNTAIN_MAX_POSITION)
    at_wall = (np.float32(position) == np.float32(MOUNTAIN_MIN_POSITION) if position_is_float32
               else position == MOUNTAIN_MIN_POSITION)
    if at_wall and velocity < 0:
        velocity = 0.0
    at_goal = (np.float32(position) >= np.float32(0.45) if position_is_float32 else position >= 0.45)
    terminated = at_goal and velocity >= 0
    reward = (100.0 if terminated else 0.0) - math.pow(np.float64(a32), two) * 0.1
    state[row, 0], state[row, 1] = np.float32(position), np.float32(velocity)
    fresh[row] = False
    return reward, terminated


# --- Pendulum-v1 (pendulum.py, g = 10.0) ---------------------------------------------------------------------------
PENDULUM_MAX_SPEED, PENDULUM_MAX_TORQUE, PENDULUM_DT, PENDULUM_G, PENDULUM_M, PENDULUM_L = 8, 2.0, 0.05, 10.0, 1.0, 1.0


@numba.njit(cache=True)
def _pendulum_reset(row: int, state: np.ndarray, fresh: np.ndarray, rng_state: np.ndarray,
                    rng_inc: np.ndarray) -> None:
    # np_random.uniform(low=-high, high=high) with high = [pi, 1.0]
    state[row, 0] = -np.pi + (np.pi - -np.pi) * next_double(rng_state, rng_inc, row)
    state[row, 1] = -1.0 + (1.0 - -1.0) * next_double(rng_state, rng_inc, row)
    fresh[row] = True


@numba.njit(cache=True)
def _pendulum_observe(row: int, state: np.ndarray, fresh: np.ndarray, obs: np.ndarray) -> None:
    theta, theta_dot = state[row, 0], state[row, 1]
    obs[row, 0], obs[row, 1], obs[row, 2] = np.float32(np.cos(theta)), np.float32(np.sin(theta)), np.float32(theta_dot)


@numba.njit(cache=True)
def _pendulum_step(row: int, action: float, state: np.ndarray, fresh: np.ndarray, two: float) -> tuple[float, bool]:
    th, thdot = state[row, 0], state[row, 1]
    g, m, length, dt = PENDULUM_G, PENDULUM_M, PENDULUM_L, PENDULUM_DT
    u = np.float32(_clip(np.float32(action), np.float32(-PENDULUM_MAX_TORQUE), np.float32(PENDULUM_MAX_TORQUE)))
    two32 = np.float32(two)
    angle = ((th + np.pi) % (2 * np.pi)) - np.pi
    costs = angle**two + 0.1 * thdot**two + np.float64(np.float32(0.001) * u**two32)
    torque_term = np.float64(np.float32(3.0 / (m * length**2)) * u)
    newthdot = thdot + (3 * g / (2 * length) * np.sin(th) + torque_term) * dt
    newthdot = _clip(newthdot, -PENDULUM_MAX_SPEED, PENDULUM_MAX_SPEED)
    state[row, 0], state[row, 1] = th + newthdot * dt, newthdot
    fresh[row] = False
    return -costs, False


# --- the vector env --------------------------------------------------------------------------------------------------
CARTPOLE, ACROBOT, MOUNTAIN_CAR, CONTINUOUS_MOUNTAIN_CAR, PENDULUM = range(5)
"""Each env's number in the kernels' dispatch (one compiled, cached loop for all of them; actions come as float64,
which holds both the integer actions and the float32 ones exactly)."""


@numba.njit(cache=True)
def _step_one(kind: int, row: int, action: float, state: np.ndarray, fresh: np.ndarray,
              two: float) -> tuple[float, bool]:
    if kind == CARTPOLE:
        return _cartpole_step(row, int(action), state, fresh, two)
    if kind == ACROBOT:
        return _acrobot_step(row, int(action), state, fresh, two)
    if kind == MOUNTAIN_CAR:
        return _mountain_car_step(row, int(action), state, fresh, two)
    if kind == CONTINUOUS_MOUNTAIN_CAR:
        return _continuous_mountain_step(row, action, state, fresh, two)
    return _pendulum_step(row, action, state, fresh, two)


@numba.njit(cache=True)
def _reset_one(kind: int, row: int, state: np.ndarray, fresh: np.ndarray, rng_state: np.ndarray,
               rng_inc: np.ndarray) -> None:
    if kind == CARTPOLE:
        _cartpole_reset(row, state, fresh, rng_state, rng_inc)
    elif kind == ACROBOT:
        _acrobot_reset(row, state, fresh, rng_state, rng_inc)
    elif kind == PENDULUM:
        _pendulum_reset(row, state, fresh, rng_state, rng_inc)
    else:
        _mountain_reset(row, state, fresh, rng_state, rng_inc)


@numba.njit(cache=True)
def _observe_one(kind: int, row: int, state: np.ndarray, fresh: np.ndarray, obs: np.ndarray) -> None:
    if kind == ACROBOT:
        _acrobot_observe(row, state, fresh, obs)
    elif kind == PENDULUM:
        _pendulum_observe(row, state, fresh, obs)
    else:
        _float32_observe(row, state, fresh, obs)


@numba.njit(cache=True)
def _step_all(kind: int, actions: np.ndarray, two: float, max_steps: int, state: np.ndarray, fresh: np.ndarray,
              elapsed: np.ndarray, rng_state: np.ndarray, rng_inc: np.ndarray, obs: np.ndarray, final_obs: np.ndarray,
              reward: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> None:
    """Steps every env of kind ``kind`` with its action ``actions [N]``; an env whose episode ends (terminated, or its
    ``max_steps``-th step: the ``TimeLimit`` truncation) keeps its last observation in ``final_obs`` and starts its
    next episode."""
    for row in range(actions.shape[0]):
        reward[row], terminated[row] = _step_one(kind, row, actions[row], state, fresh, two)
        _observe_one(kind, row, state, fresh, obs)
        elapsed[row] += 1
        truncated[row] = elapsed[row] >= max_steps
        if terminated[row] or truncated[row]:
            final_obs[row] = obs[row]
            _reset_one(kind, row, state, fresh, rng_state, rng_inc)
            elapsed[row] = 0
            _observe_one(kind, row, state, fresh, obs)


class Rules(NamedTuple):
    """One env's number in the kernels' dispatch, its state's width, and (Acrobot) the numpy observation of fresh
    states."""

    kind: int
    state_size: int
    observe_fresh: Callable[[np.ndarray], np.ndarray] | None = None


RULES: dict[str, Rules] = {
    "CartPole-v0": Rules(CARTPOLE, 4),
    "CartPole-v1": Rules(CARTPOLE, 4),
    "Acrobot-v1": Rules(ACROBOT, 4, _acrobot_observe_fresh),
    "MountainCar-v0": Rules(MOUNTAIN_CAR, 2),
    "MountainCarContinuous-v0": Rules(CONTINUOUS_MOUNTAIN_CAR, 2),
    "Pendulum-v1": Rules(PENDULUM, 2),
}
"""The gymnasium ids with a batched implementation here, at their default ``gym.make`` arguments."""


class ClassicControlVectorEnv(StatefulVectorEnv):
    """``num_envs`` copies of gymnasium's ``env_id`` stepped together (see the module docstring).

    Args:
        env_id: One of :data:`RULES`.
        num_envs: Envs ``N``; observations come back as ``float32 [N, obs_dim]``.
    """

    metadata: dict[str, Any] = {"autoreset_mode": AutoresetMode.SAME_STEP, "render_modes": []}

    def __init__(self, env_id: str, num_envs: int = 1) -> None:
        if env_id not in RULES:
            raise ValueError(f"no batched implementation of {env_id!r}; these have one: {sorted(RULES)}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        probe = gym.make(env_id)
        self.env_id, self.rules, self.num_envs = env_id, RULES[env_id], num_envs
        self.single_observation_space = probe.observation_space
        self.single_action_space = probe.action_space
        self.max_episode_steps = int(probe.spec.max_episode_steps)  # type: ignore[union-attr]
        probe.close()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.render_mode = None
        self._discrete = isinstance(self.single_action_space, spaces.Discrete)
        self._state = np.zeros((num_envs, self.rules.state_size), dtype=np.float64)
        self._fresh = np.ones(num_envs, dtype=np.bool_)
        self._elapsed = np.zeros(num_envs, dtype=np.int64)
        self._rng = Generators(num_envs)
        obs_dim = self.single_observation_space.shape[0]  # type: ignore[index]
        self._obs = np.zeros((num_envs, obs_dim), dtype=np.float32)
        self._final_obs = np.zeros_like(self._obs)
        self._reward = np.zeros(num_envs, dtype=np.float64)
        self._terminated = np.zeros(num_envs, dtype=np.bool_)
        self._truncated = np.zeros(num_envs, dtype=np.bool_)
        self._started = False

    def reset(self, *, seed: int | list[int | None] | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Starts a new episode in every env; ``seed``: an int (env ``i`` gets ``seed + i``), one per env, or None
        (an unseeded env continues its generator; fresh entropy before its first seed)."""
        if options:
            raise ValueError(f"the batched {self.env_id} takes no reset options (got {options!r}); build gymnasium's "
                             "envs instead (rlcore.make_vec_env with a wrapper, or gymnasium.vector.SyncVectorEnv)")
        self._rng.reseed(seed, self._started)
        for row in range(self.num_envs):
            _reset_one(self.rules.kind, row, self._state, self._fresh, self._rng.state, self._rng.inc)
            self._elapsed[row] = 0
            _observe_one(self.rules.kind, row, self._state, self._fresh, self._obs)
        self._observe_fresh(np.ones(self.num_envs, dtype=np.bool_))
        self._started = True
        return self._obs.copy(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Steps every env with ``actions`` (``[N]`` integers, or ``[N, 1]`` floats, cast to float32 as the action
        space's dtype); ended envs start their next episode in the same step."""
        if not self._started:
            raise gym.error.ResetNeeded("call reset() before step()")
        actions = self._check_actions(actions)
        _step_all(self.rules.kind, actions, POW_EXPONENT, self.max_episode_steps, self._state, self._fresh,
                  self._elapsed, self._rng.state, self._rng.inc, self._obs, self._final_obs, self._reward,
                  self._terminated, self._truncated)
        info: dict[str, Any] = {}
        ended = self._terminated | self._truncated
        if ended.any():
            self._observe_fresh(ended)
            info = {"final_obs": self._final_obs.copy(), "_final_obs": ended, "final_info": {}, "_final_info": ended}
        return self._obs.copy(), self._reward.copy(), self._terminated.copy(), self._truncated.copy(), info

    def _check_actions(self, actions: Any) -> np.ndarray:
        if self._discrete:
            actions = np.asarray(actions).reshape(-1)
            n = int(self.single_action_space.n)  # type: ignore[attr-defined]
            if actions.shape != (self.num_envs,) or actions.dtype.kind not in "iu":
                raise ValueError(f"actions must be {self.num_envs} integers, got {actions!r}")
            if actions.min() < 0 or actions.max() >= n:
                raise ValueError(f"actions must be integers in [0, {n}), got {actions.tolist()}")
            return actions.astype(np.float64)
        actions = np.asarray(actions, dtype=np.float32)
        if actions.shape not in ((self.num_envs, 1), (self.num_envs,)):
            raise ValueError(f"actions must have shape ({self.num_envs}, 1), got {actions.shape}")
        return actions.reshape(-1).astype(np.float64)

    def _observe_fresh(self, rows: np.ndarray) -> None:
        if self.rules.observe_fresh is not None and rows.any():
            self._obs[rows] = self.rules.observe_fresh(self._state[rows])

    # --- exact resume -------------------------------------------------------------------------------
    def replay_states(self) -> list[dict[str, Any]]:
        """Each env's whole state as plain data: its physical state, whether it is fresh from a reset, the steps of its
        episode and its generator."""
        return [{"state": self._state[row].tolist(), "fresh": bool(self._fresh[row]),
                 "elapsed": int(self._elapsed[row]), "rng": self._rng.numpy_state(row)} for row in range(self.num_envs)]

    def restore_replay_states(self, states: list[dict[str, Any]]) -> np.ndarray:
        """Puts back :meth:`replay_states`, or the ``{"reset", "actions"}`` records of gymnasium envs wrapped in
        :class:`~rlcore.env.ReplayableEnv` (replayed in one such env); returns the observation ``[N, obs_dim]``."""
        if len(states) != self.num_envs:
            raise ValueError(f"got {len(states)} env states for {self.num_envs} envs")
        for row, state in enumerate(states):
            if "reset" in state:
                state = self._replayed(state)
            self._state[row] = np.asarray(state["state"], dtype=np.float64)
            self._fresh[row] = bool(state["fresh"])
            self._elapsed[row] = int(state["elapsed"])
            self._rng.load(row, state["rng"])
            _observe_one(self.rules.kind, row, self._state, self._fresh, self._obs)
        self._observe_fresh(self._fresh.copy())
        self._started = True
        return self._obs.copy()

    def _replayed(self, record: dict[str, Any]) -> dict[str, Any]:
        """A gymnasium env's episode record, replayed, as :meth:`replay_states` gives it."""
        env = ReplayableEnv(gym.make(self.env_id))
        try:
            env.restore_replay_state(record)
            elapsed, wrapper = 0, env.env
            while isinstance(wrapper, gym.Wrapper):
                if isinstance(wrapper, TimeLimit):
                    elapsed = wrapper._elapsed_steps
                wrapper = wrapper.env
            inner = env.unwrapped
            physical = np.asarray(inner.state)
            # fresh: Acrobot's state is float32 until its first step, MountainCarContinuous's float64
            fresh = {"Acrobot-v1": physical.dtype != np.float64,
                     "MountainCarContinuous-v0": physical.dtype == np.float64}.get(self.env_id,
                                                                                  len(record["actions"]) == 0)
            return {"state": physical.astype(np.float64).tolist(), "fresh": bool(fresh), "elapsed": int(elapsed),
                    "rng": inner.np_random.bit_generator.state}
        finally:
            env.close()
