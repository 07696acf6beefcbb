"""envs/lunar_lander.py: rlcore's leaner LunarLander step gives gymnasium's trajectories bit for bit."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("Box2D")

import envs.lunar_lander as leaner  # noqa: E402
import rlcore.env  # noqa: E402
from rlcore.env import make_vec_env  # noqa: E402


def continuous_actions(rng: np.random.Generator, steps: int, dtype: type) -> np.ndarray:
    """Random actions ``[steps, 2]`` beyond the bounds (clipped), with the engines' thresholds hit exactly."""
    drawn = rng.uniform(-1.4, 1.4, (steps, 2)).astype(dtype)
    drawn[::29] = 0.0  # main engine off, side engines off
    drawn[3::31] = (1.0, 0.5)  # full main engine, side exactly at its threshold (off)
    drawn[7::37] = (-1.0, -1.0)
    return drawn


def discrete_actions(rng: np.random.Generator, steps: int) -> list[Any]:
    """Random actions 0-3 as Python ints, numpy integers and 0-d arrays."""
    drawn = rng.integers(0, 4, steps)
    return [int(a) if i % 3 == 0 else a if i % 3 == 1 else np.array(a) for i, a in enumerate(drawn)]


def assert_same_trajectory(env_id: str, actions: Any, seed: int, rng: np.random.Generator) -> None:
    reference = gym.make(env_id)
    build = rlcore.env._leaner_step_builder(env_id)  # what make_vec_env builds its sub-envs with
    assert build is not None
    ours = build()
    assert type(ours.unwrapped) is leaner.LunarLander
    assert np.array_equal(reference.reset(seed=seed)[0], ours.reset(seed=seed)[0])
    endings = 0
    for step, action in enumerate(actions):
        expected = reference.step(action.copy() if isinstance(action, np.ndarray) else action)
        got = ours.step(action.copy() if isinstance(action, np.ndarray) else action)
        assert np.array_equal(expected[0], got[0]) and expected[0].dtype == got[0].dtype, step
        assert expected[1] == got[1] and type(expected[1]) is type(got[1]), (step, expected[1], got[1])
        assert expected[2:4] == got[2:4] and expected[4] == got[4], step
        if expected[2] or expected[3]:
            endings += 1
            seed = int(rng.integers(10_000))
            assert np.array_equal(reference.reset(seed=seed)[0], ours.reset(seed=seed)[0])
    assert endings >= 5  # crashes, landings and time limits, and the resets after them, were compared too


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_leaner_continuous_step_reproduces_gymnasiums_through_many_episodes(dtype: type) -> None:
    rng = np.random.default_rng(1)
    assert_same_trajectory("LunarLanderContinuous-v3", continuous_actions(rng, 3000, dtype), 3, rng)


def test_the_leaner_discrete_step_reproduces_gymnasiums_through_many_episodes() -> None:
    rng = np.random.default_rng(2)
    assert_same_trajectory("LunarLander-v3", discrete_actions(rng, 3000), 4, rng)


def test_an_invalid_discrete_action_is_refused_as_gymnasium_refuses_it() -> None:
    env = leaner.LunarLander()
    env.reset(seed=0)
    for action in (4, -1, 1.5, np.array([1, 2])):
        with pytest.raises(AssertionError, match="invalid"):
            env.step(action)


def test_wind_steps_through_gymnasiums_own_code() -> None:
    reference, ours = (cls(continuous=True, enable_wind=True) for cls in (gym.envs.box2d.LunarLander,
                                                                          leaner.LunarLander))
    assert np.array_equal(reference.reset(seed=5)[0], ours.reset(seed=5)[0])
    start = ours.wind_idx
    for action in continuous_actions(np.random.default_rng(3), 200, np.float32):
        expected, got = reference.step(action), ours.step(action)
        assert np.array_equal(expected[0], got[0]) and expected[1] == got[1]
    assert ours.wind_idx == reference.wind_idx != start  # the wind blew


def test_make_vec_env_steps_the_leaner_class_for_a_plain_id_and_gymnasiums_otherwise() -> None:
    fast = make_vec_env("LunarLander-v3", 3)
    plain = make_vec_env("LunarLander-v3", 3, batched=False)
    assert all(type(env.unwrapped) is leaner.LunarLander for env in fast.envs)
    assert fast.envs[0].spec.max_episode_steps == 1000
    assert all(type(env.unwrapped) is not leaner.LunarLander for env in plain.envs)
    assert np.array_equal(fast.reset(seed=11)[0], plain.reset(seed=11)[0])
    for action in np.random.default_rng(0).integers(0, 4, (300, 3)):
        (obs_a, reward_a, term_a, trunc_a, _), (obs_b, reward_b, term_b, trunc_b, _) = (fast.step(action),
                                                                                        plain.step(action))
        assert np.array_equal(obs_a, obs_b) and np.array_equal(reward_a, reward_b)
        assert np.array_equal(term_a, term_b) and np.array_equal(trunc_a, trunc_b)
