"""Every environment under ``envs/`` must pass gymnasium's checker, and bad ids get a helpful error."""

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

import envs  # noqa: F401  (registers the rlcore/* ids)
from rlcore.env import make_env, make_vec_env

RLCORE_ENV_IDS = sorted(env_id for env_id in gym.registry if env_id.startswith("rlcore/"))


@pytest.mark.parametrize("env_id", RLCORE_ENV_IDS)
def test_env_passes_gymnasium_checker(env_id: str) -> None:
    check_env(gym.make(env_id).unwrapped, skip_render_check=True)


def test_at_least_one_env_is_registered() -> None:
    assert RLCORE_ENV_IDS, "no rlcore/* environment was registered by envs/"


def test_unknown_id_lists_rlcore_ids() -> None:
    with pytest.raises(gym.error.Error, match="rlcore/Corridor-v0"):
        make_env("NoSuchEnv-v9")


def test_env_class_and_factory_are_accepted() -> None:
    from envs.corridor import CorridorEnv

    assert make_vec_env(CorridorEnv, 2).num_envs == 2
    assert make_vec_env(lambda: CorridorEnv(length=4), 1).single_observation_space.n == 4


def test_non_env_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not a gymnasium.Env"):
        make_env(lambda: 42)


def test_evaluation_of_a_looping_policy_in_an_env_without_time_limit_ends() -> None:
    import torch

    from rlcore.evaluation import evaluate_policy

    always_up = lambda obs: torch.zeros(obs.shape[0], dtype=torch.int64)  # noqa: E731  walks into the wall
    metrics = evaluate_policy(always_up, "CliffWalking-v1", 2, max_episode_steps=50)
    assert metrics["eval/mean_ep_length"] == 50 and metrics["eval/mean_reward"] == -50
