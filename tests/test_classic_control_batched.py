"""The batched classic-control envs (envs/classic_control.py) against gymnasium's own envs, step by step, exactly."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.vector import SyncVectorEnv

from envs.classic_control import RULES, ClassicControlVectorEnv
from rlcore.env import get_replay_states, make_vec_env, restore_replay_states

IDS = ["CartPole-v1", "Acrobot-v1", "MountainCar-v0", "MountainCarContinuous-v0", "Pendulum-v1"]
OLD_CARTPOLE = pytest.param("CartPole-v0", marks=pytest.mark.filterwarnings("ignore:.*CartPole-v0 is out of date"))
NUM_ENVS = 6


def actions_for(env_id: str, obs: np.ndarray, rng: np.random.Generator, step: int) -> np.ndarray:
    """Random actions mixed with ones that end episodes both ways (pumping energy along the velocity, so Acrobot and
    the mountain cars reach their goals; a pole balanced to the time limit), and out-of-range forces and torques."""
    n = obs.shape[0]
    pumping = np.arange(n) < n // 2  # these envs head for the goal (to the time limit: the others, at random)
    if env_id == "Acrobot-v1":
        return np.where(pumping & (rng.random(n) < 0.85), np.where(obs[:, 5] > 0, 2, 0), rng.integers(0, 3, n))
    if env_id == "MountainCar-v0":
        return np.where(pumping & (rng.random(n) < 0.8), np.where(obs[:, 1] > 0, 2, 0), rng.integers(0, 3, n))
    if env_id.startswith("CartPole"):
        return np.where(pumping, (obs[:, 2] + obs[:, 3] > 0).astype(np.int64), rng.integers(0, 2, n))
    if env_id == "MountainCarContinuous-v0":
        pump = np.where(obs[:, 1:2] > 0, 1.0, -1.0) * rng.uniform(0.5, 1.6, (n, 1))
        return np.where(pumping[:, None], pump, rng.uniform(-1.5, 1.5, (n, 1))).astype(np.float32)
    return rng.uniform(-2.5, 2.5, (n, 1)).astype(np.float32)


def assert_same_step(reference: tuple, batched: tuple) -> None:
    for name, expected, got in zip(("obs", "reward", "terminated", "truncated"), reference[:4], batched[:4]):
        np.testing.assert_array_equal(got, expected, err_msg=name)
        assert got.dtype == np.asarray(expected).dtype, name
    ended = reference[2] | reference[3]
    assert batched[4].keys() == reference[4].keys()
    if ended.any():
        np.testing.assert_array_equal(batched[4]["_final_obs"], ended)
        np.testing.assert_array_equal(batched[4]["final_obs"][ended], np.stack(reference[4]["final_obs"][ended]))


@pytest.mark.parametrize("env_id", [*IDS, OLD_CARTPOLE])
def test_batched_env_steps_exactly_as_gymnasiums_envs(env_id: str) -> None:
    reference, batched = make_vec_env(env_id, NUM_ENVS, batched=False), make_vec_env(env_id, NUM_ENVS)
    assert isinstance(reference, SyncVectorEnv) and isinstance(batched, ClassicControlVectorEnv)
    assert batched.single_observation_space == reference.single_observation_space
    assert batched.single_action_space == reference.single_action_space
    obs, _ = reference.reset(seed=11)
    np.testing.assert_array_equal(batched.reset(seed=11)[0], obs)
    rng, terminations, truncations = np.random.default_rng(0), 0, 0
    for step in range(2_500):
        actions = actions_for(env_id, obs, rng, step)
        expected = reference.step(actions)
        assert_same_step(expected, batched.step(actions))
        obs = expected[0]
        terminations, truncations = terminations + expected[2].sum(), truncations + expected[3].sum()
    assert truncations > 0 and (terminations > 10 or env_id == "Pendulum-v1"), (terminations, truncations)


@pytest.mark.parametrize("env_id", ["Acrobot-v1", "MountainCarContinuous-v0"])
def test_a_resumed_batched_env_continues_exactly(env_id: str) -> None:
    """Mid-episode states (and freshly reset ones, whose precision differs) put back into a new batched env continue
    as the original; so do the episode records of gymnasium's envs (a checkpoint made before the batched path)."""
    reference, batched = make_vec_env(env_id, NUM_ENVS, batched=False), make_vec_env(env_id, NUM_ENVS)
    obs, _ = reference.reset(seed=5)
    batched.reset(seed=5)
    rng = np.random.default_rng(1)
    for step in range(333):
        actions = actions_for(env_id, obs, rng, step)
        obs = reference.step(actions)[0]
        batched.step(actions)
    from_batched, from_gymnasium = make_vec_env(env_id, NUM_ENVS), make_vec_env(env_id, NUM_ENVS)
    np.testing.assert_array_equal(restore_replay_states(from_batched, get_replay_states(batched)), obs)
    np.testing.assert_array_equal(restore_replay_states(from_gymnasium, get_replay_states(reference)), obs)
    for step in range(1_200):
        actions = actions_for(env_id, obs, rng, step)
        expected = reference.step(actions)
        for env in (batched, from_batched, from_gymnasium):
            assert_same_step(expected, env.step(actions))
        obs = expected[0]


def test_seeds_follow_gymnasiums_rules() -> None:
    env = ClassicControlVectorEnv("CartPole-v1", 3)
    first, _ = env.reset(seed=[4, None, 9])
    np.testing.assert_array_equal(first[[0, 2]], make_vec_env("CartPole-v1", 1, batched=False).reset(seed=4)[0].tolist()
                                  + make_vec_env("CartPole-v1", 1, batched=False).reset(seed=9)[0].tolist())
    again, _ = env.reset(seed=[4, None, 9])
    np.testing.assert_array_equal(again[[0, 2]], first[[0, 2]])
    assert not np.array_equal(again[1], first[1])  # an unseeded env goes on drawing from its generator


def test_only_plain_ids_are_batched() -> None:
    assert isinstance(make_vec_env("Pendulum-v1", 1), ClassicControlVectorEnv)
    assert isinstance(make_vec_env("Pendulum-v1", 2, env_kwargs={"g": 9.81}), SyncVectorEnv)
    assert isinstance(make_vec_env("CartPole-v1", 2, wrappers=[lambda env: env]), SyncVectorEnv)
    assert isinstance(make_vec_env("CartPole-v1", 2, batched=False), SyncVectorEnv)
    assert set(RULES) >= set(IDS)


def test_bad_actions_and_options_get_clear_errors() -> None:
    env = ClassicControlVectorEnv("Acrobot-v1", 2)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"integers in \[0, 3\)"):
        env.step(np.array([0, 3]))
    with pytest.raises(ValueError, match="2 integers"):
        env.step(np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="no reset options"):
        env.reset(options={"low": -0.2, "high": 0.2})
    pendulum = ClassicControlVectorEnv("Pendulum-v1", 2)
    pendulum.reset(seed=0)
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        pendulum.step(np.zeros((3, 1), dtype=np.float32))
    with pytest.raises(ValueError, match="no batched implementation"):
        ClassicControlVectorEnv("LunarLander-v3", 2)
