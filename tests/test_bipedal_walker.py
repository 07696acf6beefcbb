"""envs/bipedal_walker.py: rlcore's leaner BipedalWalker step gives gymnasium's trajectories bit for bit."""

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("Box2D")

import envs.bipedal_walker as leaner  # noqa: E402
import rlcore.env  # noqa: E402
from rlcore.env import make_vec_env  # noqa: E402


def actions(rng: np.random.Generator, steps: int, dtype: type) -> np.ndarray:
    """Random actions ``[steps, 4]`` beyond the bounds (the motors clip them), with rows of exact zeros and ones."""
    drawn = rng.uniform(-1.3, 1.3, (steps, 4)).astype(dtype)
    drawn[::37] = 0.0  # sign 0: no motor speed
    drawn[5::41] = 1.0
    return drawn


@pytest.mark.parametrize("env_id", ["BipedalWalker-v3", "BipedalWalkerHardcore-v3"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_leaner_step_reproduces_gymnasiums_step_through_many_episodes(env_id: str, dtype: type) -> None:
    reference = gym.make(env_id)
    build = rlcore.env._leaner_step_builder(env_id)  # what make_vec_env builds its sub-envs with
    assert build is not None
    ours = build()
    assert type(ours.unwrapped) is leaner.BipedalWalker and ours.unwrapped.hardcore == reference.unwrapped.hardcore
    rng = np.random.default_rng(7)
    first, _ = reference.reset(seed=3)
    assert np.array_equal(first, ours.reset(seed=3)[0])
    endings = 0
    for step, action in enumerate(actions(rng, 2500, dtype)):
        expected, got = reference.step(action), ours.step(action.copy())
        assert np.array_equal(expected[0], got[0]) and expected[0].dtype == got[0].dtype, step
        assert expected[1] == got[1] and type(expected[1]) is type(got[1]), (step, expected[1], got[1])
        assert expected[2:4] == got[2:4], step
        if expected[2] or expected[3]:
            endings += 1
            seed = int(rng.integers(10_000))
            assert np.array_equal(reference.reset(seed=seed)[0], ours.reset(seed=seed)[0])
    assert endings >= 3  # terminations (falls) and fresh terrains were compared too


def test_make_vec_env_steps_the_leaner_class_for_a_plain_id_and_gymnasiums_otherwise() -> None:
    fast = make_vec_env("BipedalWalkerHardcore-v3", 3)
    plain = make_vec_env("BipedalWalkerHardcore-v3", 3, batched=False)
    assert all(type(env.unwrapped) is leaner.BipedalWalker for env in fast.envs)
    assert fast.envs[0].spec.max_episode_steps == 2000 and fast.envs[0].unwrapped.hardcore
    assert all(type(env.unwrapped) is not leaner.BipedalWalker for env in plain.envs)
    wrapped = make_vec_env("BipedalWalker-v3", 1, wrappers=[gym.wrappers.ClipAction])
    assert type(wrapped.envs[0].unwrapped) is not leaner.BipedalWalker
    rng = np.random.default_rng(0)
    observations = [fast.reset(seed=11)[0], plain.reset(seed=11)[0]]
    assert np.array_equal(*observations)
    for action in actions(rng, 400, np.float32).reshape(-1, 1, 4).repeat(3, axis=1):
        (obs_a, reward_a, term_a, trunc_a, info_a), (obs_b, reward_b, term_b, trunc_b, info_b) = (
            fast.step(action), plain.step(action))
        assert np.array_equal(obs_a, obs_b) and np.array_equal(reward_a, reward_b)
        assert np.array_equal(term_a, term_b) and np.array_equal(trunc_a, trunc_b)
        if "final_obs" in info_a:
            assert all(np.array_equal(a, b) for a, b in zip(info_a["final_obs"], info_b["final_obs"]) if a is not None)


def test_another_gymnasium_step_falls_back_to_gymnasiums_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert leaner.faster_step_refusal() is None
    name = next(iter(leaner.CHECKED_AGAINST))
    monkeypatch.setitem(leaner.CHECKED_AGAINST, name, "0" * 16)
    rlcore.env._leaner_step_applies.cache_clear()
    try:
        assert "is not the code its kernel was checked against" in leaner.faster_step_refusal()
        envs = make_vec_env("BipedalWalker-v3", 2)
        assert all(type(env.unwrapped) is not leaner.BipedalWalker for env in envs.envs)
    finally:
        rlcore.env._leaner_step_applies.cache_clear()
