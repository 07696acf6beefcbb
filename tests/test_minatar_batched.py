"""The batched MinAtar Breakout and Freeway (envs/minatar_breakout.py, envs/minatar_freeway.py) against the minatar
package, step by step, and their PCG64 generators (envs/_pcg64.py) against numpy's."""

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numba
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from runs import run_until_killed

pytest.importorskip("minatar")

from envs._pcg64 import Generators, legacy_randint, next_double, next_uint64  # noqa: E402
from envs.minatar_asterix import AsterixVectorEnv  # noqa: E402
from envs.minatar_breakout import BreakoutVectorEnv  # noqa: E402
from envs.minatar_freeway import FreewayVectorEnv  # noqa: E402
from envs.minatar_seaquest import SeaquestVectorEnv  # noqa: E402
from envs.minatar_space_invaders import SpaceInvadersVectorEnv  # noqa: E402
from envs.minatar_vector import STEP_ALL_DIGEST, MinAtarVectorEnv, define_step_all  # noqa: E402
from rlcore.env import get_replay_states, make_vec_env, restore_replay_states  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "rlcore/MinAtar-Breakout-v0"
FREEWAY_ID = "rlcore/MinAtar-Freeway-v0"
INVADERS_ID = "rlcore/MinAtar-SpaceInvaders-v0"
ASTERIX_ID = "rlcore/MinAtar-Asterix-v0"
SEAQUEST_ID = "rlcore/MinAtar-Seaquest-v0"


@numba.njit
def _draws(state: np.ndarray, inc: np.ndarray, has_uint32: np.ndarray, uinteger: np.ndarray, kinds: np.ndarray,
           row: int) -> np.ndarray:
    out = np.zeros(len(kinds))
    for index, kind in enumerate(kinds):
        if kind == 0:
            out[index] = float(next_uint64(state, inc, row) >> np.uint64(40))
        elif kind == 1:
            out[index] = next_double(state, inc, row)
        elif kind == 2:
            out[index] = legacy_randint(state, inc, has_uint32, uinteger, row, 0, 2)
        elif kind == 3:
            out[index] = legacy_randint(state, inc, has_uint32, uinteger, row, 1, 6)
        else:
            out[index] = legacy_randint(state, inc, has_uint32, uinteger, row, 0, 1)
    return out


def test_pcg64_generators_draw_what_numpy_draws_and_round_trip_its_state() -> None:
    generators = Generators(3)
    kinds = np.random.default_rng(0).integers(0, 5, 500)
    for row, seed in enumerate((0, 5, 2**40 + 3)):
        generators.seed(row, seed)
        reference = np.random.PCG64(np.random.SeedSequence(seed))
        legacy = np.random.RandomState(reference)  # what minatar draws through: rand() and randint()
        expected = [float(reference.random_raw() >> 40) if kind == 0 else legacy.rand() if kind == 1
                    else float(legacy.randint(2)) if kind == 2 else float(legacy.randint(1, 6)) if kind == 3
                    else float(legacy.randint(1)) for kind in kinds]
        drawn = _draws(generators.state, generators.inc, generators.has_uint32, generators.uinteger, kinds, row)
        assert drawn.tolist() == expected
        assert generators.numpy_state(row) == reference.state
    moved = Generators(1)
    moved.load(0, generators.numpy_state(2))
    assert moved.numpy_state(0) == generators.numpy_state(2)


def _reference(num_envs: int, env_id: str = ENV_ID, **kwargs: object) -> SyncVectorEnv:
    """The minatar package's game through gymnasium's sync vector env, as rlcore vectorized it before."""
    return SyncVectorEnv([lambda: gym.make(env_id, **kwargs)] * num_envs, autoreset_mode=AutoresetMode.SAME_STEP)


def _ball_follower(obs: np.ndarray, rng: np.random.Generator, num_actions: int, noise: float) -> np.ndarray:
    """Moves the paddle towards the ball (clears whole walls of bricks), with ``noise`` of random actions."""
    ball_x = obs[:, :, :, 1].any(axis=1).argmax(axis=1)
    paddle_x = obs[:, 9, :, 0].argmax(axis=1)
    left, right = (1, 2) if num_actions == 3 else (1, 3)
    actions = np.where(ball_x < paddle_x, left, np.where(ball_x > paddle_x, right, 0))
    random = rng.random(len(obs)) < noise
    return np.where(random, rng.integers(0, num_actions, len(obs)), actions)


def _climber(obs: np.ndarray, rng: np.random.Generator, num_actions: int, noise: float) -> np.ndarray:
    """Freeway: up, with ``noise`` of random actions."""
    up = 1 if num_actions == 3 else 2
    return np.where(rng.random(len(obs)) < noise, rng.integers(0, num_actions, len(obs)), up)


def _assert_same_trajectories(env_id: str, kwargs: dict, policy: Callable[..., np.ndarray], steps: int,
                              num_envs: int = 12) -> tuple[float, int]:
    """Steps the minatar package's game and rlcore's batched one with ``policy``'s actions; every output must be the
    same. Returns the reference's total reward and number of ended episodes."""
    reference, batched = _reference(num_envs, env_id, **kwargs), make_vec_env(env_id, num_envs, env_kwargs=kwargs)
    assert isinstance(batched, MinAtarVectorEnv)
    assert batched.single_action_space == reference.single_action_space
    assert batched.single_observation_space == reference.single_observation_space
    obs, _ = reference.reset(seed=[31 + i for i in range(num_envs)])
    assert np.array_equal(batched.reset(seed=31)[0], obs)
    rng = np.random.default_rng(1)
    rewards, ends = 0.0, 0
    for step in range(steps):
        actions = policy(obs, rng, int(reference.single_action_space.n), noise=0.2)
        expected, got = reference.step(actions), batched.step(actions)
        for name, want, have in zip(("obs", "reward", "terminated", "truncated"), expected[:4], got[:4]):
            assert np.array_equal(want, have), f"{name} differs at step {step}"
        ended = expected[2] | expected[3]
        if ended.any():
            assert np.array_equal(got[4]["_final_obs"], ended)
            for env in np.flatnonzero(ended):
                assert np.array_equal(got[4]["final_obs"][env], expected[4]["final_obs"][env])
        obs = expected[0]
        rewards += float(expected[1].sum())
        ends += int(ended.sum())
    return rewards, ends


@pytest.mark.parametrize("kwargs", [{}, {"use_minimal_action_set": True, "max_episode_steps": 300},
                                    {"sticky_action_prob": 0.0, "max_episode_steps": 2_000}])
def test_batched_breakout_gives_the_minatar_packages_trajectories(kwargs: dict) -> None:
    rewards, ends = _assert_same_trajectories(ENV_ID, kwargs, _ball_follower, 2_500)
    assert ends > 20 and rewards > 30 * 12, (ends, rewards)  # walls were cleared (30 bricks) and episodes ended


@pytest.mark.parametrize("kwargs", [{}, {"use_minimal_action_set": True, "max_episode_steps": 700}])
def test_batched_freeway_gives_the_minatar_packages_trajectories(kwargs: dict) -> None:
    rewards, ends = _assert_same_trajectories(FREEWAY_ID, kwargs, _climber, 2_600)
    assert ends >= 12 and rewards > 10 * 12, (ends, rewards)  # crossings (new car speeds) and whole episodes


def _single_games(env_id: str, vector_class: type) -> tuple[gym.Env, BreakoutVectorEnv | FreewayVectorEnv]:
    """A minatar game (unwrapped: no time limit) and the batched env of one env, both reset."""
    reference, batched = gym.make(env_id, max_episode_steps=None).unwrapped, vector_class(1)
    reference.reset(seed=0)
    batched.reset(seed=0)
    return reference, batched


def _one_step_of_both(reference: gym.Env, batched: BreakoutVectorEnv | FreewayVectorEnv, state: dict,
                      action: int) -> tuple[float, bool]:
    """Puts ``state`` (which the minatar game already holds) and the game's generator into the batched env, then
    steps both with ``action``: reward, end and observation must agree. Returns the reward and the end."""
    batched.restore_replay_states([{**state, "rng": reference.np_random.bit_generator.state}])
    obs, reward, terminated, _, _ = reference.step(action)
    got_obs, got_reward, got_terminated, _, info = batched.step(np.array([action]))
    assert got_reward[0] == reward and got_terminated[0] == terminated
    assert np.array_equal(info["final_obs"][0] if terminated else got_obs[0], obs)
    if terminated:
        reference.reset()
    return float(reward), bool(terminated)


def _gunner(obs: np.ndarray, rng: np.random.Generator, num_actions: int, noise: float) -> np.ndarray:
    """Space Invaders: fire, with ``noise`` of random actions (which move the cannon)."""
    fire = 3 if num_actions == 4 else 5
    return np.where(rng.random(len(obs)) < 2 * noise, rng.integers(0, num_actions, len(obs)), fire)


@pytest.mark.parametrize("kwargs", [{}, {"use_minimal_action_set": True, "difficulty_ramping": False}])
def test_batched_space_invaders_gives_the_minatar_packages_trajectories(kwargs: dict) -> None:
    rewards, ends = _assert_same_trajectories(INVADERS_ID, kwargs, _gunner, 2_000)
    assert ends > 100 and rewards > 1_000, (ends, rewards)  # aliens hit and cannons lost (clearing: the test below)


def _wanderer(obs: np.ndarray, rng: np.random.Generator, num_actions: int, noise: float) -> np.ndarray:
    """Asterix: random moves (``noise`` unused: every action is random)."""
    return rng.integers(0, num_actions, len(obs))


@pytest.mark.parametrize("kwargs", [{}, {"use_minimal_action_set": True, "difficulty_ramping": False}])
def test_batched_asterix_gives_the_minatar_packages_trajectories(kwargs: dict) -> None:
    rewards, ends = _assert_same_trajectories(ASTERIX_ID, kwargs, _wanderer, 2_000)
    assert ends > 50 and rewards > 50, (ends, rewards)  # treasures taken and enemies met


def _diver(obs: np.ndarray, rng: np.random.Generator, num_actions: int, noise: float) -> np.ndarray:
    """Seaquest: dives and fires, surfaces when the oxygen gauge (channel 7) is half gone, else random moves."""
    low_oxygen = obs[:, 9, :, 7].sum(axis=1) <= 5
    actions = np.where(low_oxygen, 2, np.where(rng.random(len(obs)) < 0.5, 5, rng.integers(0, 6, len(obs))))
    return np.where(rng.random(len(obs)) < noise, rng.integers(0, num_actions, len(obs)), actions)


@pytest.mark.parametrize("kwargs", [{}, {"difficulty_ramping": False, "max_episode_steps": 500}])
def test_batched_seaquest_gives_the_minatar_packages_trajectories(kwargs: dict) -> None:
    rewards, ends = _assert_same_trajectories(SEAQUEST_ID, kwargs, _diver, 3_000)
    assert ends > 30 and rewards > 100, (ends, rewards)  # enemies shot and subs lost


def test_batched_breakout_moves_like_minatar_from_any_state() -> None:
    """Random game states (bricks anywhere or none, the ball anywhere, a strike pending or not) reach every branch
    of the rules: each is put into a minatar game and into the batched env, and one step must agree."""
    rng = np.random.default_rng(4)
    reference, batched = _single_games(ENV_ID, BreakoutVectorEnv)
    branches = set()
    for _ in range(3_000):
        game = reference._game.env
        bricks = (rng.random((10, 10)) < rng.choice([0.0, 0.05, 0.5])).astype(float)
        bricks[9] = 0
        fields = {"ball_x": int(rng.integers(10)), "ball_y": int(rng.integers(9)), "ball_dir": int(rng.integers(4)),
                  "pos": int(rng.integers(10)), "strike": int(rng.integers(2)), "last_action": int(rng.integers(6))}
        fields.update(last_x=fields["ball_x"], last_y=fields["ball_y"], steps=0)
        for name in ("ball_x", "ball_y", "ball_dir", "pos", "last_x", "last_y"):
            setattr(game, name, fields[name])
        game.strike, game.brick_map, game.terminal = bool(fields["strike"]), bricks.copy(), False
        reference._game.last_action = fields["last_action"]
        state = {"game": fields, "bricks": bricks.astype(int).reshape(-1).tolist()}
        reward, terminated = _one_step_of_both(reference, batched, state, int(rng.integers(6)))
        branches.add((reward, terminated, not bricks.any()))
    assert {(1.0, False, False), (0.0, True, False), (0.0, False, True)} <= branches, branches


def test_batched_freeway_moves_like_minatar_from_any_state() -> None:
    """Random Freeway states (cars anywhere at any speed and timer, the chicken on any row and ready to move or not,
    the clock near its end or not) reach every branch: each goes into a minatar game and into the batched env, and
    one step must agree."""
    rng = np.random.default_rng(5)
    reference, batched = _single_games(FREEWAY_ID, FreewayVectorEnv)
    branches = set()
    for _ in range(3_000):
        game = reference._game.env
        speeds = rng.integers(1, 6, 8) * rng.choice([-1, 1], 8)
        cars = [[int(rng.integers(10)), row + 1, int(rng.integers(abs(speed) + 1)), int(speed)]
                for row, speed in enumerate(speeds)]
        fields = {"pos": int(rng.integers(10)), "move_timer": int(rng.integers(4)),
                  "terminate_timer": int(rng.choice([0, 1, 2500])), "last_action": int(rng.integers(6)), "steps": 0}
        game.cars, game.pos, game.move_timer = [list(car) for car in cars], fields["pos"], fields["move_timer"]
        game.terminate_timer, game.terminal = fields["terminate_timer"], False
        reference._game.last_action = fields["last_action"]
        state = {"game": fields, "cars": np.ravel(cars).tolist()}
        reward, terminated = _one_step_of_both(reference, batched, state, int(rng.integers(6)))
        moved_down = fields["pos"] == 8 and fields["move_timer"] == 0 and reference._game.last_action == 4
        hit = not terminated and game.pos == 9 and fields["pos"] not in (0, 9) and reward == 0 and not moved_down
        branches.add((reward, terminated, hit))
    assert {(1.0, False, False), (0.0, True, False), (0.0, False, True), (0.0, False, False)} <= branches, branches


def test_batched_space_invaders_moves_like_minatar_from_any_state() -> None:
    """Random Space Invaders states (aliens, bullets and shots anywhere, the block heading either way and about to
    move or fire or not, ramping on or off) reach every branch: each goes into a minatar game and into the batched
    env, and one step must agree."""
    rng = np.random.default_rng(6)
    reference, batched = _single_games(INVADERS_ID, SpaceInvadersVectorEnv)
    branches = set()
    for _ in range(3_000):
        game = reference._game.env
        maps = (rng.random((3, 10, 10)) < rng.choice([0.02, 0.1, 0.3], 3)[:, None, None]).astype(float)
        maps[0, rng.integers(10), rng.integers(10)] = 1.0  # MinAtar's aliens fire only when one exists
        fields = {"pos": int(rng.integers(10)), "alien_dir": int(rng.choice([-1, 1])),
                  "enemy_move_interval": int(rng.integers(6, 13)), "alien_move_timer": int(rng.integers(3)),
                  "alien_shot_timer": int(rng.integers(3)), "ramp_index": int(rng.integers(3)),
                  "shot_timer": int(rng.integers(6)), "ramping": int(rng.integers(2)),
                  "last_action": int(rng.integers(6)), "steps": 0}
        game.alien_map, game.f_bullet_map, game.e_bullet_map = maps[0].copy(), maps[1].copy(), maps[2].copy()
        for name in ("pos", "alien_dir", "enemy_move_interval", "alien_move_timer", "alien_shot_timer",
                     "ramp_index", "shot_timer"):
            setattr(game, name, fields[name])
        game.ramping, game.terminal = bool(fields["ramping"]), False
        reference._game.last_action = fields["last_action"]
        state = {"game": fields, "maps": maps.astype(int).reshape(-1).tolist()}
        reward, terminated = _one_step_of_both(reference, batched, state, int(rng.integers(6)))
        refilled = not terminated and game.alien_map[0:4, 2:8].all() and not maps[0, 0:4, 2:8].all()
        branches.add((reward > 0, terminated, refilled))
    assert {(True, False, False), (False, True, False), (True, False, True)} <= branches, branches


def test_batched_asterix_moves_like_minatar_from_any_state() -> None:
    """Random Asterix states (enemies and treasures in any lanes, the player anywhere, spawns, moves and the ramp due
    or not, every lane taken or not) reach every branch: each goes into a minatar game and into the batched env, and
    one step must agree."""
    rng = np.random.default_rng(7)
    reference, batched = _single_games(ASTERIX_ID, AsterixVectorEnv)
    branches = set()
    for _ in range(3_000):
        game = reference._game.env
        alive = rng.random(8) < rng.choice([0.3, 0.8, 1.0])
        entities = [[int(rng.integers(10)), int(lane_alive), int(rng.integers(2)), int(rng.random() < 0.4)]
                    for lane_alive in alive]
        fields = {"player_x": int(rng.integers(10)), "player_y": int(rng.integers(1, 9)),
                  "spawn_speed": int(rng.integers(1, 11)), "spawn_timer": int(rng.integers(2)),
                  "move_speed": int(rng.integers(1, 6)), "move_timer": int(rng.integers(2)),
                  "ramp_timer": int(rng.integers(-1, 2)), "ramp_index": int(rng.integers(4)),
                  "ramping": int(rng.integers(2)), "last_action": int(rng.integers(6)), "steps": 0}
        game.entities = [[x, lane + 1, bool(right), bool(treasure)] if live else None
                         for lane, (x, live, right, treasure) in enumerate(entities)]
        for name in ("player_x", "player_y", "spawn_speed", "spawn_timer", "move_speed", "move_timer", "ramp_timer",
                     "ramp_index"):
            setattr(game, name, fields[name])
        game.ramping, game.terminal = bool(fields["ramping"]), False
        reference._game.last_action = fields["last_action"]
        state = {"game": fields, "entities": np.ravel(entities).tolist()}
        reward, terminated = _one_step_of_both(reference, batched, state, int(rng.integers(6)))
        branches.add((reward > 0, terminated, bool(alive.all()) and fields["spawn_timer"] == 0))
    assert {(True, False, False), (False, True, False), (False, False, True)} <= branches, branches


def _random_entries(rng: np.random.Generator, count: int, timers: int, rows: tuple[int, int]) -> list[list[int]]:
    """``count`` Seaquest list entries at distinct cells: ``[x, y, moves right, *timers]``."""
    cells = rng.choice(10 * (rows[1] - rows[0]), count, replace=False)
    return [[int(cell % 10), int(rows[0] + cell // 10), int(rng.integers(2)), *rng.integers(0, 3, timers).tolist()]
            for cell in cells]


def test_batched_seaquest_moves_like_minatar_from_any_state() -> None:
    """Random Seaquest states (bullets, fish, subs and divers anywhere, the sub at any depth with any oxygen and
    divers, spawns and shots due or not, ramping on or off) reach every branch: each goes into a minatar game and into
    the batched env, and one step must agree."""
    rng = np.random.default_rng(8)
    reference, batched = _single_games(SEAQUEST_ID, SeaquestVectorEnv)
    branches = set()
    for _ in range(4_000):
        game = reference._game.env
        lists = {"f_bullets": _random_entries(rng, int(rng.integers(4)), 0, (0, 9)),
                 "e_bullets": _random_entries(rng, int(rng.integers(4)), 0, (1, 9)),
                 "e_fish": _random_entries(rng, int(rng.integers(6)), 1, (1, 9)),
                 "e_subs": _random_entries(rng, int(rng.integers(6)), 2, (1, 9)),
                 "divers": _random_entries(rng, int(rng.integers(4)), 1, (1, 9))}
        sub_x = int(rng.integers(10))
        fields = {"oxygen": int(rng.choice([0, 1, 57, 200])), "diver_count": int(rng.integers(-1, 7)), "sub_x": sub_x,
                  "sub_y": int(rng.choice([0, 0, 1, int(rng.integers(9))])),
                  "sub_or": 1 if sub_x == 9 else 0 if sub_x == 0 else int(rng.integers(2)),
                  "e_spawn_speed": int(rng.integers(1, 21)), "e_spawn_timer": int(rng.integers(2)),
                  "d_spawn_timer": int(rng.integers(2)), "move_speed": int(rng.integers(2, 6)),
                  "ramp_index": int(rng.integers(3)), "shot_timer": int(rng.integers(2)),
                  "surface": int(rng.integers(2)), "ramping": int(rng.integers(2)),
                  "last_action": int(rng.integers(6)), "steps": 0}
        fields.update({name: len(entries) for name, entries in lists.items()})
        for name, entries in lists.items():
            setattr(game, name, [[*entry[:2], bool(entry[2]), *entry[3:]] for entry in entries])
        for name in ("oxygen", "diver_count", "sub_x", "sub_y", "e_spawn_speed", "e_spawn_timer", "d_spawn_timer",
                     "move_speed", "ramp_index", "shot_timer"):
            setattr(game, name, fields[name])
        game.sub_or, game.surface = bool(fields["sub_or"]), bool(fields["surface"])
        game.ramping, game.terminal = bool(fields["ramping"]), False
        reference._game.last_action = fields["last_action"]
        padded = np.zeros((5, 64, 5), dtype=np.int64)
        for which, entries in enumerate(lists.values()):
            for index, entry in enumerate(entries):
                padded[which, index, :len(entry)] = entry
        state = {"game": fields, "lists": padded.reshape(-1).tolist()}
        reward, terminated = _one_step_of_both(reference, batched, state, int(rng.integers(6)))
        surfaced_with_six = fields["sub_y"] == 0 and not fields["surface"] and fields["diver_count"] == 6
        branches.add((reward > 0, terminated, surfaced_with_six))
    assert {(True, False, False), (False, True, False), (True, False, True)} <= branches, branches


@pytest.mark.parametrize("env_id", [ENV_ID, FREEWAY_ID, INVADERS_ID, ASTERIX_ID, SEAQUEST_ID])
def test_batched_minatar_restores_its_envs_exactly_and_checks_actions(env_id: str) -> None:
    actions = np.random.default_rng(2).integers(0, 6, (90, 4))
    actions[:, :2] = np.where(actions[:, :2] % 2 == 0, 2, actions[:, :2])  # Freeway: two envs mostly climb
    envs = make_vec_env(env_id, 4)
    envs.reset(seed=3)
    for step_actions in actions[:50]:
        envs.step(step_actions)
    states = get_replay_states(envs)
    expected = [envs.step(step_actions) for step_actions in actions[50:]]
    fresh = make_vec_env(env_id, 4)
    restore_replay_states(fresh, states)
    for step_actions, want in zip(actions[50:], expected):
        for a, b in zip(want[:4], fresh.step(step_actions)[:4]):
            assert np.array_equal(a, b)
    with pytest.raises(ValueError, match=r"integers in \[0, 6\)"):
        envs.step(np.array([0, 1, 2, 6]))
    with pytest.raises(ValueError, match="plays breakout"):
        BreakoutVectorEnv(2, game="freeway")
    with pytest.raises(ValueError, match="plays freeway"):
        FreewayVectorEnv(2, game="Breakout")


def test_every_games_step_is_the_one_template_compiled_under_its_own_file() -> None:
    """One step loop for the five games, each compiled in its game's module (so numba caches it per game file)."""
    games = (BreakoutVectorEnv, FreewayVectorEnv, SpaceInvadersVectorEnv, AsterixVectorEnv, SeaquestVectorEnv)
    codes = [game.step_all.py_func.__code__ for game in games]
    assert len({(code.co_code, code.co_names, code.co_consts) for code in codes}) == 1
    assert {game.step_all.py_func.__qualname__ for game in games} == {f"_step_all_{STEP_ALL_DIGEST}"}
    assert [Path(code.co_filename).name for code in codes] == [
        f"minatar_{name}.py" for name in ("breakout", "freeway", "space_invaders", "asterix", "seaquest")]
    with pytest.raises(NameError, match=r"lacking_rules must define \['STEPS', '_act', '_render', '_reset_game'\]"):
        define_step_all({"__name__": "lacking_rules", "__file__": "lacking_rules.py", "LAST_ACTION": 0})


def test_make_vec_env_keeps_the_single_env_for_one_env_async_or_wrappers() -> None:
    assert isinstance(make_vec_env(ENV_ID, 1), SyncVectorEnv)
    assert isinstance(make_vec_env(ENV_ID, 2, wrappers=[lambda env: env]), SyncVectorEnv)
    assert isinstance(gym.make_vec(ENV_ID, 3), BreakoutVectorEnv)  # gymnasium users get it too
    assert isinstance(gym.make_vec(FREEWAY_ID, 3), FreewayVectorEnv)
    assert isinstance(gym.make_vec(INVADERS_ID, 3), SpaceInvadersVectorEnv)
    assert isinstance(gym.make_vec(ASTERIX_ID, 3), AsterixVectorEnv)
    assert isinstance(gym.make_vec(SEAQUEST_ID, 3), SeaquestVectorEnv)


def test_ppo_on_batched_breakout_resumes_exactly(tmp_path: Path) -> None:
    settings = {"features_extractor": "small_cnn", "net_arch": [], "n_steps": 16, "batch_size": 64, "n_epochs": 1}

    def config(folder: str) -> TrainConfig:
        return TrainConfig(total_env_steps=256, num_envs=4, seed=2, eval_freq=0, checkpoint_freq=128,
                           log_dir=str(tmp_path / folder), progress_bar=False, device="cpu",
                           env_kwargs={"use_minimal_action_set": True})

    reference = Trainer("ppo", ENV_ID, config("a"), settings)
    assert isinstance(reference.envs, BreakoutVectorEnv)
    reference.run()
    partial = Trainer("ppo", ENV_ID, config("b"), settings)
    run_until_killed(partial, 128)
    resumed = Trainer.resume(partial.run_dir)
    resumed.run()
    for a, b in zip(reference.algo.policy.parameters(), resumed.algo.policy.parameters()):
        assert torch.equal(a, b)


def test_a_time_limit_of_none_is_the_registered_one_batched_or_not() -> None:
    """gymnasium.make reads max_episode_steps=None as the registered limit; the batched env read it as none."""
    single = gym.make("rlcore/MinAtar-Breakout-v0", max_episode_steps=None)
    batched = make_vec_env("rlcore/MinAtar-Breakout-v0", 2, env_kwargs={"max_episode_steps": None})
    assert single.spec.max_episode_steps == batched.unwrapped.max_episode_steps == 10_000
    single.close()
    batched.close()
