"""CartPole-v1 learned through every way a user can hand over an env (issue 17; slow, CI runs the async vector env
in next-step autoreset mode): a ``gym.make_vec`` vector env (sync and async, next-step and same-step autoreset), an
env instance and ``wrappers=``, each with PPO's CartPole preset, to the preset's level (the best periodic
deterministic evaluation >= 475, as tests/test_learning_pg.py asks of the registered id)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.vector import AutoresetMode

from rlcore.presets import load_preset
from rlcore.trainer import TrainConfig, Trainer

PRESET = load_preset("ppo", "CartPole-v1")
LEVEL = 475.0


def best_evaluation(env: Any, *, num_envs: int = 8, budget: int = 100_000, wrappers: list | None = None,
                    **algo_overrides: Any) -> float:
    train = {**PRESET["train"], "num_envs": num_envs, "total_env_steps": budget}
    config = TrainConfig(**train, seed=0, log_dir=None, progress_bar=False, checkpoint_freq=0, stop_at_reward=LEVEL)
    trainer = Trainer("ppo", env, config, {**PRESET["algo"], **algo_overrides}, wrappers=wrappers)
    trainer.run()
    return trainer.best_eval


@pytest.mark.slow
@pytest.mark.parametrize(("mode", "autoreset"), [
    pytest.param("async", AutoresetMode.NEXT_STEP, marks=pytest.mark.ci_slow),
    ("sync", AutoresetMode.NEXT_STEP), ("sync", AutoresetMode.SAME_STEP), ("async", AutoresetMode.SAME_STEP)])
def test_a_make_vec_env_learns_cartpole(mode: str, autoreset: AutoresetMode) -> None:
    envs = gym.make_vec("CartPole-v1", 8, vectorization_mode=mode, vector_kwargs={"autoreset_mode": autoreset})
    assert best_evaluation(envs) >= LEVEL


@pytest.mark.slow
def test_an_env_instance_learns_cartpole() -> None:
    # one env: rollouts of 256 steps, the preset's 8 x 32
    assert best_evaluation(gym.make("CartPole-v1"), num_envs=1, budget=150_000, n_steps=256) >= LEVEL


@pytest.mark.slow
def test_wrappers_give_the_env_class_its_time_limit_and_it_learns_cartpole() -> None:
    # CartPoleEnv has no time limit of its own: without the wrapper a good policy's episodes would never end
    assert best_evaluation(CartPoleEnv, wrappers=[lambda env: gym.wrappers.TimeLimit(env, 500)]) >= LEVEL
