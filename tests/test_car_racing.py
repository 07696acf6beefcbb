"""envs/car_racing.py: rlcore's leaner CarRacing renderer gives gymnasium's observations bit for bit."""

import math
from typing import Any

import numpy as np
import pytest

pytest.importorskip("Box2D")
pygame = pytest.importorskip("pygame")

import gymnasium as gym  # noqa: E402

import envs.car_racing as leaner  # noqa: E402
import rlcore.env  # noqa: E402
from rlcore.env import make_vec_env  # noqa: E402


def random_actions(rng: np.random.Generator, count: int, continuous: bool) -> list[Any]:
    if continuous:
        return list(rng.uniform([-1.0, 0.0, 0.0], [1.0, 1.0, 1.0], (count, 3)).astype(np.float32))
    return [int(action) for action in rng.integers(0, 5, count)]


def test_rotations_are_pygames_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    angles = [float(angle) for angle in rng.normal(0.0, 10.0, 300)]
    angles += [quarter * math.pi / 2 for quarter in range(-8, 9)] + [1e-7, -1e-7, math.pi / 2 + 1e-7, 2 * math.pi]
    points = rng.normal(0.0, 300.0, (6, 2))
    for angle in angles:
        x, y = leaner.rotated_like_pygame(points, angle)
        for index, point in enumerate(points):
            expected = pygame.math.Vector2(tuple(point)).rotate_rad(angle)
            assert (x[index], y[index]) == (expected[0], expected[1]), angle


@pytest.mark.parametrize("kwargs", [{"continuous": True}, {"continuous": False, "domain_randomize": True}])
def test_the_leaner_renderer_reproduces_gymnasiums_observations_through_episodes(kwargs: dict[str, Any]) -> None:
    # 60-step episodes: fresh tracks (and, randomized, fresh colours) at each reset; tiles recoloured when visited
    build = rlcore.env._leaner_step_builder("CarRacing-v3")  # what make_vec_env builds its sub-envs with
    assert build is not None
    ours = build(max_episode_steps=60, render_mode="rgb_array", **kwargs)
    reference = gym.make("CarRacing-v3", max_episode_steps=60, render_mode="rgb_array", **kwargs)
    assert type(ours.unwrapped) is leaner.CarRacing
    rng = np.random.default_rng(1)
    for seed in (3, 4):
        assert np.array_equal(ours.reset(seed=seed)[0], reference.reset(seed=seed)[0])
        for step, action in enumerate(random_actions(rng, 60, kwargs["continuous"])):
            (obs_a, reward_a, term_a, trunc_a, _), (obs_b, reward_b, term_b, trunc_b, _) = (
                ours.step(action), reference.step(action))
            assert np.array_equal(obs_a, obs_b), (seed, step)
            assert (reward_a, term_a, trunc_a) == (reward_b, term_b, trunc_b)
            if step % 20 == 0:
                assert np.array_equal(ours.render(), reference.render())  # the video frames too
        assert trunc_a
    assert ours.unwrapped.tile_visited_count > 0


def test_frame_skip_draws_only_the_frames_it_returns_and_returns_gymnasiums() -> None:
    # a 41-step limit ends an episode on the first of two frames, whose observation the skip then draws itself
    build = rlcore.env._leaner_step_builder("CarRacing-v3")
    ours = leaner.FrameSkip(build(max_episode_steps=41), skip=2)
    reference = leaner.FrameSkip(gym.make("CarRacing-v3", max_episode_steps=41), skip=2)
    assert ours._leaner and not reference._leaner
    draws = {"count": 0}
    render_road = ours.unwrapped._render_road

    def counted(*args: Any) -> None:
        draws["count"] += 1
        render_road(*args)

    ours.unwrapped._render_road = counted
    rng = np.random.default_rng(2)
    assert np.array_equal(ours.reset(seed=5)[0], reference.reset(seed=5)[0])
    for step, action in enumerate(random_actions(rng, 21, True)):
        (obs_a, reward_a, term_a, trunc_a, _), (obs_b, reward_b, term_b, trunc_b, _) = (
            ours.step(action), reference.step(action))
        assert np.array_equal(obs_a, obs_b), step
        assert (reward_a, term_a, trunc_a) == (reward_b, term_b, trunc_b)
    assert trunc_a and draws["count"] == 1 + 21  # the reset's, then one per agent step, the episode's last included
    assert ours.unwrapped.render_state
    with pytest.raises(ValueError, match="skip must be >= 1"):
        leaner.FrameSkip(build(), skip=0)


def test_frame_skip_over_an_observation_wrapper_draws_every_frame() -> None:
    build = rlcore.env._leaner_step_builder("CarRacing-v3")
    inner = gym.wrappers.ResizeObservation(build(), (48, 48))  # would be skipped by a re-drawn observation
    assert not leaner.FrameSkip(inner)._leaner


def test_make_vec_env_builds_the_leaner_car_racing_under_wrappers() -> None:
    envs = make_vec_env("CarRacing-v3", 2, wrappers=[leaner.FrameSkip])
    assert all(type(env.unwrapped) is leaner.CarRacing for env in envs.envs)
    assert all(isinstance(env.env, leaner.FrameSkip) and env.env._leaner for env in envs.envs)
    envs.close()
