"""Tests every registered algorithm gets without anyone writing them: each runs its own ``Example`` (a small env and
quick settings declared on the class) and must

- save and load to an agent that acts identically,
- resume after a kill exactly as if never stopped,
- give the same run for the same seed,
- refuse a space it does not handle with :class:`UnsupportedSpaceError` naming the space.

An algorithm registered in this file (a tiny epsilon-greedy bandit learner) gets the same tests, as any new
algorithm does by being registered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from runs import run_until_killed
from torch import Tensor

import rlcore
from rlcore.agent import build_algorithm
from rlcore.algos.base import (
    ALGORITHMS,
    Algorithm,
    Example,
    PlanningAlgorithm,
    TransitionAlgorithm,
    UnsupportedSpaceError,
    get_algo_class,
    register_algo,
)
from rlcore.api import split_settings
from rlcore.checkpoint import pack_state
from rlcore.env import make_vec_env
from rlcore.trainer import TrainConfig, Trainer


# ------------------------------------------------------------------------------------------ a tiny extra algorithm
@dataclass(frozen=True)
class BanditConfig:
    epsilon: float = 0.2
    """Probability of a uniformly random action."""
    step_size: float = 0.1
    """How far each value moves towards an observed reward."""


class TinyBandit(TransitionAlgorithm[BanditConfig]):
    """Ignores observations and learns each action's mean reward (an epsilon-greedy bandit)."""

    config_class: ClassVar[type] = BanditConfig
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete)
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)
    flat_box_only: ClassVar[bool] = False
    example: ClassVar[Example | None] = Example("CartPole-v1", {"total_env_steps": 300, "num_envs": 2})

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, config: BanditConfig, *,
                 device: str | torch.device = "cpu", seed: int = 0, num_envs: int = 1) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        self.values = torch.zeros(int(action_space.n))  # type: ignore[attr-defined]

    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        greedy = self.values.argmax().expand(len(obs))
        if deterministic:
            return greedy.clone()
        explore = torch.rand(len(obs), generator=self.generator) < self.config.epsilon
        random = torch.randint(len(self.values), (len(obs),), generator=self.generator)
        return torch.where(explore, random, greedy)

    def observe(self, transition: dict[str, Any]) -> dict[str, float]:
        for action, reward in zip(np.asarray(transition["action"]), np.asarray(transition["reward"])):
            self.values[int(action)] += self.config.step_size * (float(reward) - self.values[int(action)])
        return {"train/value_max": float(self.values.max())}

    def state_dict(self) -> dict[str, Any]:
        return {**self._base_state(), "values": self.values.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_base_state(state)
        self.values = state["values"].clone()


TINY = "tiny_bandit_test"


@pytest.fixture(scope="module", autouse=True)
def tiny_algorithm_registered():
    """Registers :class:`TinyBandit` for this module's tests only (the registry is global)."""
    register_algo(TINY)(TinyBandit)
    yield
    ALGORITHMS.pop(TINY, None)


def registered_names() -> list[str]:
    get_algo_class("dqn")  # imports the built-in algorithms
    return sorted(ALGORITHMS) + [TINY]


NAMES = registered_names()


# ------------------------------------------------------------------------------------------ helpers
def example_trainer(name: str, log_dir: Path | None, *, callbacks: list | None = None, **overrides: Any) -> Trainer:
    example = get_algo_class(name).example
    assert example is not None, f"{name} declares no Example: every registered algorithm needs one"
    assert "total_env_steps" in example.settings, f"{name}'s Example sets no total_env_steps"
    total = example.settings["total_env_steps"]
    loop = {"eval_freq": total // 2, "eval_episodes": 2, "checkpoint_freq": total // 2, "progress_bar": False,
            "log_dir": str(log_dir) if log_dir is not None else None, "seed": 3, "device": "cpu",
            "log_interval": max(total // 4, 1), **overrides}
    train_settings, algo_settings = split_settings(name, example.env, {**example.settings, **loop})
    return Trainer(name, example.env, TrainConfig(**train_settings), algo_settings, callbacks=callbacks)


def fingerprint(algo: Algorithm[Any]) -> tuple[str, dict[str, Tensor]]:
    """Everything in the algorithm's state: the JSON skeleton and every tensor."""
    tensors, skeleton = pack_state(algo.state_dict())
    return json.dumps(skeleton, sort_keys=True, default=str), tensors


def assert_same_state(a: Algorithm[Any], b: Algorithm[Any]) -> None:
    skeleton_a, tensors_a = fingerprint(a)
    skeleton_b, tensors_b = fingerprint(b)
    assert skeleton_a == skeleton_b
    assert tensors_a.keys() == tensors_b.keys()
    for key in tensors_a:
        assert torch.equal(tensors_a[key], tensors_b[key]), key


def greedy_actions(algo: Algorithm[Any], env_id: str, seed: int = 11) -> np.ndarray:
    """Deterministic actions: on sampled observations, or (planners) planned from envs reset with ``seed``."""
    if isinstance(algo, PlanningAlgorithm):
        envs = make_vec_env(env_id, 2)
        try:
            envs.reset(seed=seed)
            return algo.plan(envs, deterministic=True).numpy()
        finally:
            envs.close()
    space = algo.observation_space
    space.seed(seed)
    observations = np.stack([space.sample() for _ in range(16)])
    return algo.actor(deterministic=True)(torch.as_tensor(observations)).cpu().numpy()


# ------------------------------------------------------------------------------------------ the tests
@pytest.mark.parametrize("name", NAMES)
def test_save_and_load_give_an_agent_that_acts_identically(name: str, tmp_path: Path) -> None:
    trainer = example_trainer(name, tmp_path / "run")
    agent = trainer.run()
    agent.save(tmp_path / "agent")
    loaded = rlcore.load(tmp_path / "agent")
    assert loaded.name == name and type(loaded.algo) is type(agent.algo)
    assert_same_state(agent.algo, loaded.algo)
    assert np.array_equal(greedy_actions(agent.algo, trainer.env_spec), greedy_actions(loaded.algo, trainer.env_spec))


@pytest.mark.parametrize("name", NAMES)
def test_a_killed_run_resumes_exactly_as_if_never_stopped(name: str, tmp_path: Path) -> None:
    reference = example_trainer(name, tmp_path / "a")
    reference.run()
    killed = example_trainer(name, tmp_path / "b")
    total, halfway = killed.config.total_env_steps, killed.config.checkpoint_freq
    run_until_killed(killed, halfway)
    assert halfway <= killed.env_steps < total, "the Example is too short to stop half-way"
    resumed = Trainer.resume(killed.run_dir)
    assert resumed.env_steps == killed.env_steps
    resumed.run()
    assert resumed.env_steps == reference.env_steps
    assert_same_state(reference.algo, resumed.algo)
    assert [h["eval/mean_reward"] for h in reference.history] == [h["eval/mean_reward"] for h in resumed.history]


@pytest.mark.parametrize("name", NAMES)
def test_the_same_seed_gives_the_same_run(name: str) -> None:
    first = example_trainer(name, None, eval_freq=0, checkpoint_freq=0)
    first.run()
    second = example_trainer(name, None, eval_freq=0, checkpoint_freq=0)
    second.run()
    assert_same_state(first.algo, second.algo)


UNSUPPORTED_SPACES = [spaces.Text(5), spaces.Sequence(spaces.Discrete(2)), spaces.Graph(spaces.Box(0, 1, (2,)), None)]


@pytest.mark.parametrize("name", NAMES)
def test_an_unsupported_space_gives_the_named_error(name: str) -> None:
    algo_class = get_algo_class(name)
    example_env = gym.make(algo_class.example.env)  # type: ignore[union-attr]
    try:
        observation_space, action_space = example_env.observation_space, example_env.action_space
    finally:
        example_env.close()
    bad = next(space for space in UNSUPPORTED_SPACES if not algo_class.fits(space, action_space))
    with pytest.raises(UnsupportedSpaceError, match=f"{name} cannot handle the observation space"):
        build_algorithm(name, bad, action_space, None)
    bad_action = next(space for space in UNSUPPORTED_SPACES if not algo_class.fits(observation_space, space))
    with pytest.raises(UnsupportedSpaceError, match=f"{name} cannot handle the action space"):
        build_algorithm(name, observation_space, bad_action, None)


def test_the_tiny_algorithm_is_registered_and_so_gets_every_test_above() -> None:
    assert TINY in NAMES and ALGORITHMS[TINY] is TinyBandit
    assert {"dqn", "ppo", "a2c", "reinforce", "q_learning", "sarsa", "mcts", "alphazero"} <= set(NAMES)
