"""Tabular Q-learning and SARSA: the update maths on hand-made transitions, acting, persistence,
config validation, and learning checks through the Trainer with the shipped presets."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlcore.agent import Agent, load
from rlcore.algos.base import UnsupportedSpaceError
from rlcore.algos.tabular import QLearning, Sarsa, TabularConfig
from rlcore.checkpoint import pack_state, unpack_state
from rlcore.presets import load_preset
from rlcore.settings import config_from_dict
from rlcore.trainer import TrainConfig, Trainer

ALGOS = {"q_learning": QLearning, "sarsa": Sarsa}
PRESET_ENVS = ("FrozenLake-v1", "Taxi-v4", "CliffWalking-v1")


# ----------------------------------------------------------------------------- helpers
def make_algo(
    algo: str = "q_learning",
    n_states: int = 4,
    n_actions: int = 3,
    *,
    num_envs: int = 1,
    seed: int = 0,
    obs_start: int = 0,
    action_start: int = 0,
    **config: Any,
) -> QLearning | Sarsa:
    return ALGOS[algo](
        spaces.Discrete(n_states, start=obs_start),
        spaces.Discrete(n_actions, start=action_start),
        TabularConfig(**config),
        seed=seed,
        num_envs=num_envs,
    )


def transition(obs, action, reward, next_obs, terminated=None, truncated=None) -> dict[str, np.ndarray]:
    """A vector-step transition as the collector builds it."""
    count = len(obs)
    return {
        "obs": np.asarray(obs, dtype=np.int64),
        "action": np.asarray(action, dtype=np.int64),
        "reward": np.asarray(reward, dtype=np.float32),
        "next_obs": np.asarray(next_obs, dtype=np.int64),
        "terminated": np.asarray(terminated if terminated is not None else [False] * count),
        "truncated": np.asarray(truncated if truncated is not None else [False] * count),
    }


def random_transitions(algo, rng: np.random.Generator, count: int) -> dict[str, np.ndarray]:
    """A random vector step in ``algo``'s spaces, acting with its behaviour policy."""
    start = algo.obs_start
    obs = rng.integers(start, start + algo.num_states, count)
    return transition(
        obs,
        algo.act(torch.from_numpy(obs)).numpy(),
        rng.normal(size=count),
        rng.integers(start, start + algo.num_states, count),
        rng.random(count) < 0.2,
        rng.random(count) < 0.1,
    )


def checkpoint_roundtrip(state: Any) -> Any:
    """What a checkpoint does to a state dict: tensors + JSON skeleton, and back."""
    tensors, skeleton = pack_state(state)
    return unpack_state(tensors, json.loads(json.dumps(skeleton, allow_nan=False)))


def train(algo: str, env: str, seed: int = 0, **overrides: Any) -> Trainer:
    """Trains with the shipped preset (no evaluation, logging or checkpoints); returns the Trainer."""
    preset = load_preset(algo, env)
    total = overrides.pop("total_env_steps", preset["train"]["total_env_steps"])
    config = TrainConfig(
        total_env_steps=total,
        num_envs=preset["train"]["num_envs"],
        seed=seed,
        eval_freq=0,
        log_dir=None,
        progress_bar=False,
        checkpoint_freq=0,
    )
    trainer = Trainer(algo, env, config, algo_config={**preset["algo"], **overrides})
    trainer.run()
    return trainer


def capped_cliff_walking() -> gym.Env:
    """CliffWalking-v1 has no time limit; a looping greedy policy must not hang the evaluation."""
    return gym.make("CliffWalking-v1", max_episode_steps=100)


def greedy_return(trainer: Trainer, env: str) -> float:
    agent = trainer.agent()
    if env == "CliffWalking-v1":  # deterministic: one episode is the greedy path
        return agent.evaluate(1, env=capped_cliff_walking)["mean_reward"]
    episodes = 1000 if env == "FrozenLake-v1" else 100
    return agent.evaluate(episodes)["mean_reward"]


# ------------------------------------------------------------------------ update maths
def test_q_learning_single_update_matches_hand_computation() -> None:
    algo = make_algo(learning_rate=0.5, gamma=0.9, initial_q=0.25)
    algo.q_table[2] = torch.tensor([1.0, 3.0, -2.0], dtype=torch.float64)
    algo.q_table[1, 2] = 4.0
    before = algo.q_table.clone()
    metrics = algo.observe(transition([1], [2], [1.5], [2]))
    # target = 1.5 + 0.9 * max(1, 3, -2) = 4.2; Q = 4 + 0.5 * (4.2 - 4) = 4.1
    assert algo.q_table[1, 2].item() == pytest.approx(4.1, abs=1e-12)
    changed = before != algo.q_table
    assert changed.sum().item() == 1
    assert set(metrics) == {"train/td_error_abs_mean", "rollout/exploration_rate", "train/learning_rate"}
    assert metrics["train/td_error_abs_mean"] == pytest.approx(0.2)
    assert metrics["train/learning_rate"] == 0.5
    assert algo.q_table.dtype == torch.float64


def test_termination_stops_bootstrapping_but_truncation_does_not() -> None:
    algo = make_algo(learning_rate=1.0, gamma=0.5, num_envs=3)
    algo.q_table[3] = torch.tensor([2.0, 8.0, 0.0], dtype=torch.float64)
    algo.observe(
        transition([0, 1, 2], [0, 0, 0], [1.0, 1.0, 1.0], [3, 3, 3], [True, False, False], [False, True, False])
    )
    assert algo.q_table[0, 0].item() == 1.0  # terminated: target = r
    assert algo.q_table[1, 0].item() == 5.0  # truncated: r + gamma * max Q(true final obs)
    assert algo.q_table[2, 0].item() == 5.0  # ongoing


def test_duplicate_pairs_in_one_step_compose_sequentially() -> None:
    alpha, gamma, q0 = 0.5, 0.9, 1.0
    algo = make_algo(learning_rate=alpha, gamma=gamma, initial_q=q0, num_envs=3)
    algo.observe(transition([0, 0, 1], [1, 1, 1], [10.0, -4.0, 2.0], [2, 3, 2], [False, True, False]))
    t1, t2 = 10.0 + gamma * q0, -4.0
    expected = (1 - alpha) ** 2 * q0 + alpha * (1 - alpha) * t1 + alpha * t2
    assert algo.q_table[0, 1].item() == pytest.approx(expected, abs=1e-12)
    assert algo.q_table[1, 1].item() == pytest.approx(q0 + alpha * (2.0 + gamma * q0 - q0), abs=1e-12)
    # Same as two single-env steps in env order (their targets do not depend on each other here).
    single = make_algo(learning_rate=alpha, gamma=gamma, initial_q=q0)
    single.observe(transition([0], [1], [10.0], [2]))
    single.observe(transition([0], [1], [-4.0], [3], [True]))
    assert single.q_table[0, 1].item() == pytest.approx(expected, abs=1e-12)


def test_targets_use_the_table_before_the_vector_step() -> None:
    algo = make_algo(learning_rate=1.0, gamma=1.0, num_envs=2)
    # env 0 updates Q(0, 0) to 5; env 1 bootstraps from state 0, whose max was 0 before the step.
    algo.observe(transition([0, 1], [0, 0], [5.0, 1.0], [3, 0], [True, False]))
    assert algo.q_table[0, 0].item() == 5.0
    assert algo.q_table[1, 0].item() == 1.0


def test_discrete_start_offsets() -> None:
    algo = make_algo(n_states=3, n_actions=2, obs_start=5, action_start=-1, learning_rate=1.0, gamma=1.0)
    algo.observe(transition([6], [0], [2.0], [7], [True]))  # row 1, column 1
    assert algo.q_table[1, 1].item() == 2.0
    assert algo.q_table.sum().item() == 2.0
    assert algo.act(torch.tensor([6]), deterministic=True).tolist() == [0]
    assert algo.act(torch.tensor([5]), deterministic=True).tolist() == [-1]  # tie: lowest index
    actions = algo.act(torch.tensor([5, 6, 7] * 20)).numpy()
    assert set(actions.tolist()) <= {-1, 0}
    with pytest.raises(ValueError, match="observation"):
        algo.act(torch.tensor([4]))
    with pytest.raises(ValueError, match="action"):
        algo.observe(transition([5], [1], [0.0], [6]))


# ---------------------------------------------------------------------------- acting
def test_greedy_ties_take_lowest_index_and_behaviour_ties_are_random() -> None:
    algo = make_algo(n_actions=4, exploration_initial_eps=0.0, exploration_final_eps=0.0)
    algo.q_table[0] = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    obs = torch.zeros(400, dtype=torch.int64)
    assert set(algo.act(obs, deterministic=True).tolist()) == {1}
    counts = np.bincount(algo.act(obs).numpy(), minlength=4)
    assert counts[0] == counts[2] == 0  # epsilon 0: only the greedy actions
    assert counts[1] > 150 and counts[3] > 150  # ties broken at random


def test_epsilon_one_is_uniform_and_schedules_follow_progress() -> None:
    algo = make_algo(
        n_actions=4,
        learning_rate=0.5,
        final_learning_rate=0.1,
        learning_rate_fraction=0.5,
        exploration_initial_eps=1.0,
        exploration_final_eps=0.2,
        exploration_fraction=0.25,
    )
    algo.q_table[0, 2] = 10.0
    counts = np.bincount(algo.act(torch.zeros(4000, dtype=torch.int64)).numpy(), minlength=4)
    assert counts.min() > 850  # uniform: ~1000 each
    algo.set_progress(100, 1000)
    assert algo.exploration_rate == pytest.approx(1.0 - 0.8 * 0.4)
    assert algo.learning_rate == pytest.approx(0.5 - 0.4 * 0.2)
    algo.set_progress(800, 1000)
    assert algo.exploration_rate == pytest.approx(0.2)
    assert algo.learning_rate == pytest.approx(0.1)
    metrics = algo.observe(transition([0], [0], [0.0], [1]))
    assert metrics["rollout/exploration_rate"] == pytest.approx(0.2)
    assert metrics["train/learning_rate"] == pytest.approx(0.1)
    constant = make_algo(learning_rate=0.3)
    constant.set_progress(900, 1000)
    assert constant.learning_rate == 0.3


# ------------------------------------------------------------------------------- SARSA
def test_sarsa_bootstraps_from_the_cached_next_action_and_then_takes_it() -> None:
    algo = make_algo("sarsa", n_states=5, n_actions=4, num_envs=3, learning_rate=1.0, gamma=0.5,
                     exploration_initial_eps=1.0, exploration_final_eps=1.0)
    algo.q_table[3] = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    algo.q_table[4] = torch.tensor([10.0, 20.0, 30.0, 40.0], dtype=torch.float64)
    algo.observe(transition([0, 1, 2], [0, 0, 0], [1.0, 1.0, 1.0], [3, 4, 4], [False, False, True]))
    next_actions = algo.cached_actions
    assert next_actions is not None and next_actions.shape == (3,)
    expected_0 = 1.0 + 0.5 * algo.q_table[3, next_actions[0]].item()
    expected_1 = 1.0 + 0.5 * algo.q_table[4, next_actions[1]].item()
    assert algo.q_table[0, 0].item() == expected_0
    assert algo.q_table[1, 0].item() == expected_1
    assert algo.q_table[2, 0].item() == 1.0  # terminated: target = r
    # Greedy calls (evaluation) neither use nor clear the cache.
    assert algo.act(torch.tensor([3, 4, 0]), deterministic=True).tolist() == [3, 3, 0]
    assert algo.cached_actions is not None
    # Env 2's episode ended: it acts on its reset observation and gets a fresh action.
    actions = algo.act(torch.tensor([3, 4, 0]))
    assert actions[:2].tolist() == next_actions[:2].tolist()
    assert algo.cached_actions is None  # used once


def test_sarsa_next_action_is_epsilon_greedy_and_truncated_envs_draw_fresh() -> None:
    algo = make_algo("sarsa", n_states=5, n_actions=4, num_envs=2, learning_rate=1.0, gamma=1.0,
                     exploration_initial_eps=0.0, exploration_final_eps=0.0)
    algo.q_table[3] = torch.tensor([1.0, 2.0, 9.0, 4.0], dtype=torch.float64)
    algo.observe(transition([0, 1], [0, 0], [0.0, 0.0], [3, 3], [False, False], [False, True]))
    assert algo.cached_actions.tolist() == [2, 2]  # greedy with epsilon 0
    assert algo.q_table[0, 0].item() == 9.0
    assert algo.q_table[1, 0].item() == 9.0  # truncation still bootstraps
    algo.q_table[3, 3] = 50.0  # the greedy action in state 3 is now 3
    # Env 0 takes its cached a'. Env 1's episode ended: its reset observation happens to equal
    # next_obs, but the cached a' was never meant to be executed, so it acts afresh.
    assert algo.act(torch.tensor([3, 3])).tolist() == [2, 3]
    # An observation that is not the cached next state also gets a fresh action.
    algo.observe(transition([0, 0], [0, 0], [0.0, 0.0], [3, 3]))
    assert algo.cached_actions.tolist() == [3, 3]
    algo.q_table[1] = torch.tensor([0.0, 7.0, 0.0, 0.0], dtype=torch.float64)
    assert algo.act(torch.tensor([1, 3])).tolist() == [1, 3]


def test_sarsa_batch_size_change_draws_fresh_actions() -> None:
    algo = make_algo("sarsa", num_envs=2)
    algo.observe(transition([0, 1], [0, 0], [0.0, 0.0], [2, 3]))
    assert algo.act(torch.tensor([2])).shape == (1,)
    assert algo.cached_actions is None


# ------------------------------------------------------------------------- persistence
@pytest.mark.parametrize("algo_name", sorted(ALGOS))
def test_state_dict_round_trip_continues_identically(algo_name: str) -> None:
    config = {"learning_rate": 0.3, "final_learning_rate": 0.05, "exploration_final_eps": 0.3}
    original = make_algo(algo_name, n_states=6, n_actions=3, num_envs=4, seed=1, obs_start=2, **config)
    rng = np.random.default_rng(0)
    for step in range(30):
        original.set_progress(step * 4, 400)
        original.observe(random_transitions(original, rng, 4))
    restored = make_algo(algo_name, n_states=6, n_actions=3, num_envs=4, seed=99, obs_start=2, **config)
    restored.load_state_dict(checkpoint_roundtrip(original.state_dict()))
    assert torch.equal(restored.q_table, original.q_table)
    if algo_name == "sarsa":
        assert original.cached_actions is not None
        assert torch.equal(restored.cached_actions, original.cached_actions)
    for step in range(30, 60):
        batch = random_transitions(original, rng, 4)  # uses original's generator: replay it on the copy
        obs = torch.from_numpy(batch["obs"])
        np.testing.assert_array_equal(restored.act(obs).numpy(), batch["action"])
        for algo in (original, restored):
            algo.set_progress(step * 4, 400)
            algo.observe(batch)
        assert torch.equal(restored.q_table, original.q_table)
    assert restored.updates == original.updates == 240
    assert torch.equal(restored.generator.get_state(), original.generator.get_state())


def test_state_dict_rejects_a_table_of_another_shape() -> None:
    state = make_algo(n_states=4).state_dict()
    with pytest.raises(ValueError, match="shape"):
        make_algo(n_states=5).load_state_dict(state)


def test_agent_save_and_load(tmp_path) -> None:
    algo = make_algo("sarsa", n_states=16, n_actions=4, num_envs=2)
    rng = np.random.default_rng(1)
    for _ in range(20):
        algo.observe(random_transitions(algo, rng, 2))
    Agent(algo, env="FrozenLake-v1").save(tmp_path / "agent")
    loaded = load(tmp_path / "agent")
    assert isinstance(loaded.algo, Sarsa) and loaded.algo.config == algo.config
    assert torch.equal(loaded.algo.q_table, algo.q_table)
    states = np.arange(16)
    np.testing.assert_array_equal(loaded.predict(states), Agent(algo).predict(states))
    assert loaded.predict(3) == Agent(algo).predict(3)


def test_trainer_resume_continues_exactly(tmp_path) -> None:
    """Constant schedules, so a shorter run + resume must equal one long run (SARSA: the cache too)."""
    settings = {"seed": 3, "num_envs": 4, "eval_freq": 0, "progress_bar": False, "log_interval": 500}
    algo_config = {"learning_rate": 0.5, "exploration_initial_eps": 0.2, "exploration_final_eps": 0.2}
    straight = Trainer("sarsa", "CliffWalking-v1", TrainConfig(total_env_steps=2000, log_dir=None, checkpoint_freq=0,
                                                               **settings), algo_config)
    straight.run()
    first = Trainer("sarsa", "CliffWalking-v1",
                    TrainConfig(total_env_steps=1000, log_dir=str(tmp_path), checkpoint_freq=1000, **settings),
                    algo_config, run_dir=tmp_path / "run")
    first.run()
    resumed = Trainer.resume(tmp_path / "run", total_env_steps=2000)
    resumed.run()
    assert torch.equal(resumed.algo.q_table, straight.algo.q_table)


def test_training_is_reproducible() -> None:
    runs = [train("q_learning", "Taxi-v4", seed=5, total_env_steps=3000).algo.q_table for _ in range(2)]
    assert torch.equal(runs[0], runs[1])
    other = train("q_learning", "Taxi-v4", seed=6, total_env_steps=3000).algo.q_table
    assert not torch.equal(runs[0], other)


# -------------------------------------------------------------------- config and spaces
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("learning_rate", 0.0),
        ("learning_rate", 1.5),
        ("learning_rate", float("nan")),
        ("learning_rate", "1e-3"),
        ("final_learning_rate", -0.1),
        ("learning_rate_fraction", 1.1),
        ("gamma", -0.01),
        ("gamma", 1.01),
        ("exploration_fraction", -1.0),
        ("exploration_initial_eps", 2.0),
        ("exploration_final_eps", -0.5),
        ("initial_q", float("inf")),
        ("initial_q", None),
    ],
)
def test_invalid_config_names_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        TabularConfig(**{field: value})


def test_config_accepts_ints_and_unknown_fields_are_refused() -> None:
    config = TabularConfig(learning_rate=1, gamma=1, initial_q=0)
    assert isinstance(config.learning_rate, float) and isinstance(config.gamma, float)
    with pytest.raises(ValueError, match="epsilon"):
        config_from_dict(TabularConfig, {"epsilon": 0.1})


@pytest.mark.parametrize("algo_class", [QLearning, Sarsa])
def test_box_spaces_are_refused(algo_class) -> None:
    box = spaces.Box(-1.0, 1.0, (3,))
    with pytest.raises(UnsupportedSpaceError, match="observation"):
        algo_class(box, spaces.Discrete(2), TabularConfig())
    with pytest.raises(UnsupportedSpaceError, match="action"):
        algo_class(spaces.Discrete(2), box, TabularConfig())
    with pytest.raises(UnsupportedSpaceError):
        Trainer(algo_class.name, "CartPole-v1", TrainConfig(log_dir=None, progress_bar=False))


@pytest.mark.parametrize("algo_name", sorted(ALGOS))
def test_presets_exist_and_are_valid(algo_name: str) -> None:
    for env in PRESET_ENVS:
        preset = load_preset(algo_name, env)
        assert preset["train"] and preset["algo"], (algo_name, env)
        TabularConfig(**preset["algo"])
        TrainConfig(**preset["train"])


# ------------------------------------------------------------------- learning checks
def test_q_learning_frozen_lake_is_near_optimal() -> None:
    trainer = train("q_learning", "FrozenLake-v1")
    assert greedy_return(trainer, "FrozenLake-v1") >= 0.70  # success rate; the optimum is ~0.74


def test_q_learning_taxi() -> None:
    trainer = train("q_learning", "Taxi-v4")
    assert greedy_return(trainer, "Taxi-v4") >= 7.0


def test_q_learning_cliff_walking_takes_the_optimal_path() -> None:
    trainer = train("q_learning", "CliffWalking-v1")
    assert greedy_return(trainer, "CliffWalking-v1") == -13.0
    assert trainer.agent().predict(36) == 0  # up from the start, then right along the cliff edge


def test_sarsa_cliff_walking_takes_a_safe_path() -> None:
    trainer = train("sarsa", "CliffWalking-v1")
    result = greedy_return(trainer, "CliffWalking-v1")
    assert -17.0 <= result < -13.0  # reaches the goal, not along the cliff edge (measured: -17)


def test_sarsa_taxi() -> None:
    trainer = train("sarsa", "Taxi-v4")
    assert greedy_return(trainer, "Taxi-v4") >= 7.0


def test_sarsa_frozen_lake() -> None:
    trainer = train("sarsa", "FrozenLake-v1")
    assert greedy_return(trainer, "FrozenLake-v1") >= 0.70


@pytest.mark.slow
@pytest.mark.parametrize("algo_name", sorted(ALGOS))
@pytest.mark.parametrize("env", PRESET_ENVS)
def test_presets_learn_on_other_seeds(algo_name: str, env: str) -> None:
    thresholds = {"FrozenLake-v1": 0.70, "Taxi-v4": 7.0}
    for seed in (1, 2, 3):
        result = greedy_return(train(algo_name, env, seed=seed), env)
        if env == "CliffWalking-v1":
            assert result == -13.0 if algo_name == "q_learning" else -17.0 <= result < -13.0, (seed, result)
        else:
            assert result >= thresholds[env], (seed, result)
