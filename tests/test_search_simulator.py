"""Simulator adapters: a snapshot, including the random-number state, replays identically, and the
live env is never touched; envs that cannot be snapshotted are clear errors; MCTS plans with them."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from rlcore.search import MCTS, MCTSConfig, SnapshotError, make_simulator
from rlcore.search.simulator import AtariSimulator, ClassicControlSimulator, GymSimulator, ToyTextSimulator

ADAPTED = [
    ("FrozenLake-v1", {"is_slippery": True}, ToyTextSimulator),
    ("CliffWalking-v1", {"is_slippery": True}, ToyTextSimulator),
    ("Taxi-v4", {"is_rainy": True, "fickle_passenger": True}, ToyTextSimulator),
    ("Blackjack-v1", {}, ToyTextSimulator),
    ("CartPole-v1", {}, ClassicControlSimulator),
    ("MountainCar-v0", {}, ClassicControlSimulator),
    ("Acrobot-v1", {}, ClassicControlSimulator),
]


def fingerprint(sim: GymSimulator, snapshot: Any) -> str:
    """Everything observable about a snapshot, as text (arrays included)."""
    sim.restore(snapshot, sim.twin)
    unwrapped = sim.twin.unwrapped
    engine = unwrapped.ale.getRAM().tobytes().hex() if hasattr(unwrapped, "ale") else ""
    return repr((sorted((k, repr(v)) for k, v in snapshot.fields.items()), snapshot.elapsed_steps, snapshot.done,
                 repr(snapshot.rng_state), engine))


def replay(sim: GymSimulator, start: Any, actions: np.ndarray) -> list[tuple[float, bool, str]]:
    trace, state = [], start
    for action in actions:
        state, reward, done = sim.step(state, int(action))
        trace.append((reward, done, fingerprint(sim, state)))
        if done:
            break
    return trace


def live_trace(sim: GymSimulator, env: gym.Env, actions: np.ndarray) -> list[tuple[float, bool, str]]:
    trace = []
    for action in actions:
        _, reward, terminated, truncated, _ = env.step(int(action) + sim.action_start)
        done = bool(terminated or truncated)
        trace.append((float(reward), done, fingerprint(sim, sim.snapshot(env, done))))
        if done:
            break
    return trace


def check_replays_identically(env: gym.Env, sim: GymSimulator, warmup: int, steps: int) -> None:
    rng = np.random.default_rng(0)
    env.reset(seed=7)
    for action in rng.integers(sim.num_actions, size=warmup):
        _, _, terminated, truncated, _ = env.step(int(action) + sim.action_start)
        if terminated or truncated:
            env.reset(seed=8)
    start = sim.snapshot(env)
    actions = rng.integers(sim.num_actions, size=steps)
    first = replay(sim, start, actions)
    assert first == replay(sim, start, actions), "a snapshot does not replay identically"
    assert first == live_trace(sim, env, actions), "the simulator diverges from the live env"
    assert len(first) == 1 or len({entry[2] for entry in first}) > 1, "nothing changed; the test checked nothing"


@pytest.mark.parametrize(("env_id", "kwargs", "adapter"), ADAPTED, ids=[entry[0] for entry in ADAPTED])
def test_snapshot_restore_replays_identically(env_id: str, kwargs: dict[str, Any], adapter: type) -> None:
    env = gym.make(env_id, **kwargs)
    sim = make_simulator(env)
    assert type(sim) is adapter
    check_replays_identically(env, sim, warmup=3, steps=40)


def test_atari_snapshot_with_sticky_actions_replays_identically() -> None:
    ale_py = pytest.importorskip("ale_py")
    gym.register_envs(ale_py)
    env = gym.make("ALE/Breakout-v5", repeat_action_probability=0.25, frameskip=(2, 5))
    sim = make_simulator(env)
    assert type(sim) is AtariSimulator
    check_replays_identically(env, sim, warmup=20, steps=40)


def test_time_limit_counter_is_part_of_the_state() -> None:
    env = gym.make("CartPole-v1", max_episode_steps=5)
    sim = make_simulator(env)
    env.reset(seed=0)
    state, done = sim.snapshot(env), False
    for _ in range(5):
        assert not done
        state, _, done = sim.step(state, 0 if state.elapsed_steps % 2 else 1)
    assert done and state.elapsed_steps == 5
    with pytest.raises(ValueError, match="over"):
        sim.step(state, 0)


def test_stepping_the_simulator_leaves_the_live_env_alone() -> None:
    env = gym.make("FrozenLake-v1")
    sim = make_simulator(env)
    env.reset(seed=0)
    before = sim.snapshot(env)
    sim.step(before, 2)
    assert fingerprint(sim, sim.snapshot(env)) == fingerprint(sim, before)


@pytest.mark.parametrize(
    ("env_id", "message"),
    [("Pendulum-v1", "Discrete action space"), ("rlcore/Corridor-v0", "cannot snapshot rlcore/Corridor-v0")],
)
def test_unsupported_envs_are_clear_errors(env_id: str, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        make_simulator(gym.make(env_id))


def test_native_games_give_their_own_simulator() -> None:
    env = gym.make("rlcore/ConnectFour-v0")
    assert make_simulator(env) is env.unwrapped.simulator


def test_mcts_plans_through_an_adapter() -> None:
    """Deterministic FrozenLake 4x4: the planner walks to the goal."""
    env = gym.make("FrozenLake-v1", is_slippery=False)
    sim = make_simulator(env)
    mcts = MCTS(sim, MCTSConfig(num_simulations=200, c=1.0, rollout_depth=20), seed=0)
    env.reset(seed=0)
    total, state = 0.0, sim.snapshot(env)
    for _ in range(20):
        action = mcts.choose(state)
        _, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            break
        mcts.advance(action)
        state = None  # continue from the reused tree
    assert total == 1.0


def test_cartpole_planner_holds_the_pole_for_150_steps() -> None:
    env = gym.make("CartPole-v1")
    sim = make_simulator(env)
    mcts = MCTS(sim, MCTSConfig(num_simulations=30, c=1.0, rollout_depth=30), seed=0)
    env.reset(seed=0)
    state, steps = sim.snapshot(env), 0
    for steps in range(1, 151):
        action = mcts.choose(state)
        _, _, terminated, truncated, _ = env.step(action)
        assert not terminated, f"the pole fell after {steps} steps"
        mcts.advance(action)
        state = None
    assert steps == 150
