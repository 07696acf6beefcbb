"""envs/bipedal_walker.py: rlcore's leaner BipedalWalker step gives gymnasium's trajectories bit for bit."""

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

pytest.importorskip("Box2D")

import envs.bipedal_walker as leaner  # noqa: E402
import rlcore.env  # noqa: E402
from envs import bipedal_lidar  # noqa: E402
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


def test_make_vec_env_steps_the_leaner_class_for_an_id_and_gymnasiums_with_batched_false() -> None:
    fast = make_vec_env("BipedalWalkerHardcore-v3", 3)
    plain = make_vec_env("BipedalWalkerHardcore-v3", 3, batched=False)
    assert all(type(env.unwrapped) is leaner.BipedalWalker for env in fast.envs)
    assert fast.envs[0].spec.max_episode_steps == 2000 and fast.envs[0].unwrapped.hardcore
    assert all(type(env.unwrapped) is not leaner.BipedalWalker for env in plain.envs)
    wrapped = make_vec_env("BipedalWalker-v3", 1, wrappers=[gym.wrappers.ClipAction])  # wrappers see the same env
    assert type(wrapped.envs[0].unwrapped) is leaner.BipedalWalker
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


def box2d_cast(env: leaner.BipedalWalker, start: tuple[float, float], end: tuple[float, float]) -> tuple[float, Any]:
    """The reference: one of gymnasium's lidar callbacks through Box2D's ``world.RayCast``; (fraction, hit point)."""
    callback = type(env.lidar[0])()
    callback.fraction, callback.p2 = 1.0, None
    env.world.RayCast(callback, start, end)
    return callback.fraction, None if callback.p2 is None else tuple(callback.p2)


@pytest.mark.parametrize("hardcore", [False, True])
def test_the_numba_lidar_gives_box2ds_ray_casts_bit_for_bit(hardcore: bool) -> None:
    env = leaner.BipedalWalker(hardcore=hardcore)
    env.reset(seed=5)
    geometry = bipedal_lidar.terrain_geometry(env.world)
    assert geometry is not None and len(geometry.edges) == 199 and (len(geometry.polygons) > 0) == hardcore
    rng = np.random.default_rng(0)
    fractions, points = np.empty(10, np.float32), np.empty((10, 2), np.float32)
    hits = polygon_hits = 0
    for _ in range(300):  # hulls anywhere over the terrain, rays in every direction (the lidar's and beyond)
        x, y = float(np.float32(rng.uniform(0.0, 90.0))), float(np.float32(rng.uniform(0.0, 12.0)))
        angles, lengths = rng.uniform(-np.pi, np.pi, 10), rng.uniform(0.1, 8.0, 10)
        offsets = np.stack([np.sin(angles) * lengths, np.cos(angles) * lengths], axis=1)
        bipedal_lidar.cast_rays(x, y, offsets, *geometry, fractions, points)
        for fraction, point, (dx, dy) in zip(fractions.tolist(), points.tolist(), offsets.tolist()):
            expected_fraction, expected_point = box2d_cast(env, (x, y), (x + dx, y + dy))
            assert fraction == expected_fraction
            assert tuple(point) == expected_point if expected_point is not None else np.isnan(point).all()
            hits += fraction < 1.0
        without_polygons = np.empty_like(fractions)
        bipedal_lidar.cast_rays(x, y, offsets, *geometry._replace(polygons=geometry.polygons[:0]),
                                without_polygons, np.empty_like(points))
        polygon_hits += int((without_polygons != fractions).sum())
    assert hits > 500 and (polygon_hits > 20) == hardcore  # the obstacles' polygons were hit too


def test_the_lidar_callbacks_hold_box2ds_values_when_rendering() -> None:
    reference = gym.make("BipedalWalkerHardcore-v3").unwrapped
    ours = leaner.BipedalWalker(hardcore=True, render_mode="rgb_array")
    reference.reset(seed=2), ours.reset(seed=2)
    for action in actions(np.random.default_rng(3), 200, np.float32):
        reference.step(action), ours.step(action)
        for expected, got in zip(reference.lidar, ours.lidar):
            assert (expected.fraction, tuple(expected.p1), tuple(expected.p2)) == (got.fraction, tuple(got.p1),
                                                                                    tuple(got.p2))


def test_a_world_the_numba_lidar_does_not_cover_casts_through_box2d(monkeypatch: pytest.MonkeyPatch) -> None:
    import Box2D

    world = Box2D.b2World()
    world.CreateStaticBody(fixtures=Box2D.b2FixtureDef(shape=Box2D.b2EdgeShape(vertices=[(0, 0), (1, 0)])))
    assert bipedal_lidar.terrain_geometry(world) is not None
    moving = world.CreateDynamicBody(position=(1, 1), fixtures=Box2D.b2FixtureDef(shape=Box2D.b2CircleShape(radius=1)))
    assert bipedal_lidar.terrain_geometry(world) is None  # a moving body in the lidar's category
    moving.fixtures[0].filterData.categoryBits = 0x0020  # out of the lidar's category, as the walker's own parts
    assert bipedal_lidar.terrain_geometry(world) is not None
    edge = Box2D.b2FixtureDef(shape=Box2D.b2EdgeShape(vertices=[(0, 0), (1, 0)]))
    world.CreateStaticBody(position=(2, 0), fixtures=edge)
    assert bipedal_lidar.terrain_geometry(world) is None  # a static body away from the origin

    # With the reference casts the step is still gymnasium's.
    monkeypatch.setattr(bipedal_lidar, "walker_terrain_geometry", lambda walker: None)
    reference, ours = gym.make("BipedalWalker-v3").unwrapped, leaner.BipedalWalker()
    assert np.array_equal(reference.reset(seed=4)[0], ours.reset(seed=4)[0])
    for action in actions(np.random.default_rng(5), 300, np.float32):
        expected, got = reference.step(action), ours.step(action)
        assert np.array_equal(expected[0], got[0]) and expected[1:4] == got[1:4]
    assert ours._geometry is None


def rows(array: np.ndarray) -> list[tuple[float, ...]]:
    return sorted(map(tuple, array.reshape(len(array), -1).tolist()))


def test_the_walkers_terrain_geometry_is_the_worlds() -> None:
    env = leaner.BipedalWalker(hardcore=True)
    for seed in range(4):
        env.reset(seed=seed)
        fast, read = bipedal_lidar.walker_terrain_geometry(env), bipedal_lidar.terrain_geometry(env.world)
        assert len(fast.polygons) > 0
        for name in ("edges", "edge_x"):  # the same shapes (in another order)
            assert rows(getattr(fast, name)) == rows(getattr(read, name)), name
        assert rows(np.concatenate([fast.polygons.reshape(len(fast.polygons), -1), fast.polygon_sizes[:, None],
                                    fast.polygon_x], axis=1)) == rows(np.concatenate(
            [read.polygons.reshape(len(read.polygons), -1), read.polygon_sizes[:, None], read.polygon_x], axis=1))
    import Box2D

    env.world.CreateDynamicBody(position=(30, 8), fixtures=Box2D.b2FixtureDef(shape=Box2D.b2CircleShape(radius=1)))
    assert bipedal_lidar.walker_terrain_geometry(env) is None  # a body besides the walker's: the world read whole


def test_the_numba_lidar_steps_aside_where_box2d_may_round_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    env = leaner.BipedalWalker()
    env.reset(seed=0)
    assert bipedal_lidar.walker_terrain_geometry(env) is not None
    monkeypatch.setattr(bipedal_lidar, "SAME_ARITHMETIC", False)  # e.g. aarch64
    assert bipedal_lidar.walker_terrain_geometry(env) is None and bipedal_lidar.terrain_geometry(env.world) is None


def world_contents(env: Any) -> list[tuple[Any, ...]]:
    """Every body of ``env``'s world in Box2D's order: type, pose, its fixtures' shapes and properties, colours."""
    contents = []
    for body in env.world.bodies:
        for fixture in body.fixtures:
            shape, data = fixture.shape, fixture.filterData
            contents.append((body.type, tuple(body.position), body.angle, type(shape).__name__,
                             tuple(map(tuple, shape.vertices)), fixture.friction, fixture.density,
                             data.categoryBits, data.maskBits, getattr(body, "color1", None),
                             getattr(body, "color2", None)))
    return contents


def types(values: list[Any]) -> list[type]:
    return [type(value) for value in values]


@pytest.mark.parametrize("hardcore", [False, True])
def test_the_leaner_terrain_and_clouds_are_gymnasiums(hardcore: bool) -> None:
    reference, ours = gym.make("BipedalWalker-v3", hardcore=hardcore).unwrapped, leaner.BipedalWalker(hardcore=hardcore)
    obstacles = 0
    for seed in range(40):
        for reset_seed in (seed, None):  # seeded, then drawn on from the same stream
            assert np.array_equal(reference.reset(seed=reset_seed)[0], ours.reset(seed=reset_seed)[0])
            assert ours.terrain_x == reference.terrain_x and types(ours.terrain_x) == types(reference.terrain_x)
            assert ours.terrain_y == reference.terrain_y and types(ours.terrain_y) == types(reference.terrain_y)
            assert ours.terrain_poly == reference.terrain_poly
            assert [types(poly) for poly, _ in ours.terrain_poly] == [types(poly) for poly, _ in reference.terrain_poly]
            assert ours.cloud_poly == reference.cloud_poly
            assert world_contents(ours) == world_contents(reference)
            assert [(body.color1, body.color2) for body in ours.terrain] == [
                (body.color1, body.color2) for body in reference.terrain]
            assert ours.np_random.bit_generator.state == reference.np_random.bit_generator.state
            obstacles += len(ours.terrain) - (len(ours.terrain_x) - 1)
    assert (obstacles > 100) == hardcore  # Hardcore's stumps, stairs and pits were compared too
    geometry = bipedal_lidar.walker_terrain_geometry(ours)
    for polygon, size, extent in zip(geometry.polygons, geometry.polygon_sizes, geometry.polygon_x):
        assert extent.tolist() == [polygon[:size, 0].min(), polygon[:size, 0].max()]


def test_the_leaner_contact_detector_replaces_gymnasiums_after_each_reset() -> None:
    env = leaner.BipedalWalker()
    for seed in range(2):
        env.reset(seed=seed)
        assert type(env.world.contactListener) is leaner._ContactDetector and env.world.contactListener.env is env
    hull_on_ground = env.world.contactListener
    env.hull.position = (env.hull.position[0], 3.4)  # the hull put on the ground (3.33 high): game over
    for _ in range(10):
        env.step(np.zeros(4))
    assert env.game_over and hull_on_ground is env.world.contactListener


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_motor_commands_and_energy_penalties_follow_numpys_scalar_rules(dtype: type) -> None:
    special = np.array([0.0, -0.0, 1.0, -1.0, 1.5, -3.0, 0.3, -0.7, np.inf, -np.inf, np.nan, 1e-30, 0.99999994], dtype)
    rng = np.random.default_rng(0)
    rows = np.concatenate([rng.choice(special, (300, 4)), rng.uniform(-1.2, 1.2, (300, 4)).astype(dtype)])
    speed = [gym.envs.box2d.bipedal_walker.SPEED_HIP, gym.envs.box2d.bipedal_walker.SPEED_KNEE] * 2
    torque = gym.envs.box2d.bipedal_walker.MOTORS_TORQUE
    for action in rows:
        speeds, torques, penalties = leaner._motor_commands(action)
        # gymnasium's step: float(SPEED * np.sign(a)), float(MOTORS_TORQUE * np.clip(np.abs(a), 0, 1)), and
        # reward -= 0.00035 * MOTORS_TORQUE * np.clip(np.abs(a), 0, 1) joint by joint
        expected_speeds = [float(s * np.sign(a)) for s, a in zip(speed, action)]
        expected_torques = [float(torque * np.clip(np.abs(a), 0, 1)) for a in action]
        assert np.array_equal(speeds, expected_speeds, equal_nan=True)
        assert np.array_equal(np.signbit(speeds), np.signbit(expected_speeds))
        assert np.array_equal(torques, expected_torques, equal_nan=True)
        precision = np.dtype(dtype).char
        for start in (0, 0.1234567891, -3.3):
            expected: Any = start
            for a in action:
                expected -= 0.00035 * torque * np.clip(np.abs(a), 0, 1)
            got = leaner._minus_penalties(start, penalties, precision)
            assert type(got) is type(expected) and (got == expected or (np.isnan(got) and np.isnan(expected)))


@pytest.mark.parametrize("dtype", [np.float16, np.int64])
def test_other_action_types_step_by_numpys_rules(dtype: type) -> None:
    reference, ours = gym.make("BipedalWalker-v3"), rlcore.env._leaner_step_builder("BipedalWalker-v3")()
    reference.reset(seed=1), ours.reset(seed=1)
    rng = np.random.default_rng(2)
    for step in range(200):
        action = rng.uniform(-1.5, 1.5, 4).round(int(dtype is np.float16)).astype(dtype)
        expected, got = reference.step(action), ours.step(action.copy())
        assert np.array_equal(expected[0], got[0]) and expected[1] == got[1], step
        assert type(expected[1]) is type(got[1]) and expected[2:4] == got[2:4], step
        if expected[2]:
            reference.reset(seed=step), ours.reset(seed=step)
