"""CartPole-v1 learned through every way a user can hand over an env (issue 17; slow, CI runs the async vector env
in next-step autoreset mode): a ``gym.make_vec`` vector env (sync and async, next-step and same-step autoreset), an
env instance and ``wrappers=``, each with PPO's CartPole preset, to the preset's level (the best periodic
deterministic evaluation >= 475, as tests/test_learning_pg.py asks of the registered id). And the Dict-observation
gridworld ``rlcore/DictGrid-v0`` learned by PPO from a factory and by DQN from the id, with the settings of
``benchmarks/dict_grid_vs_sb3.py`` (where SB3's ``MultiInputPolicy`` PPO runs side by side)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import pytest
from gymnasium.envs.classic_control import CartPoleEnv
from gymnasium.vector import AutoresetMode

from envs.dict_grid import DictGridEnv
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


DICT_GRID_PPO = {"n_steps": 64, "batch_size": 128, "n_epochs": 4, "learning_rate": 1e-3, "gamma": 0.95,
                 "gae_lambda": 0.95, "ent_coef": 0.01, "clip_range": 0.2, "vf_coef": 0.5, "max_grad_norm": 0.5}
DICT_GRID_DQN = {"learning_rate": 5e-4, "buffer_size": 50_000, "learning_starts": 1_000, "batch_size": 64,
                 "gamma": 0.95, "train_freq": 4, "target_update_interval": 500, "exploration_fraction": 0.3,
                 "exploration_final_eps": 0.05}


def dict_grid_with_time_limit() -> gym.Env:
    return gym.wrappers.TimeLimit(DictGridEnv(), 20)


def dict_grid_final_evaluation(algo: str, env: Any, num_envs: int, budget: int, settings: dict[str, Any]) -> float:
    """The mean return of 200 deterministic episodes after ``budget`` env steps (seed 0); a policy that ignores the
    flag averages 0, the best one 1."""
    config = TrainConfig(total_env_steps=budget, num_envs=num_envs, seed=0, eval_freq=budget, eval_episodes=200,
                         log_dir=None, progress_bar=False, checkpoint_freq=0)
    trainer = Trainer(algo, env, config, settings)
    trainer.run()
    return trainer.history[-1]["eval/mean_reward"]


@pytest.mark.slow
def test_ppo_learns_the_dict_gridworld_from_a_factory() -> None:
    # SB3's MultiInputPolicy PPO averaged 0.59 over seeds 0-2 at this budget (benchmarks/results/dict_grid_vs_sb3.jsonl)
    assert dict_grid_final_evaluation("ppo", dict_grid_with_time_limit, 8, 100_000, DICT_GRID_PPO) >= 0.5


@pytest.mark.slow
def test_dqn_learns_the_dict_gridworld() -> None:
    assert dict_grid_final_evaluation("dqn", "rlcore/DictGrid-v0", 1, 30_000, DICT_GRID_DQN) >= 0.9
