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


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "FrozenLake-v1"])
def test_lean_sync_vector_step_matches_gymnasium(env_id: str) -> None:
    """rlcore's sync vector env gives gymnasium's SyncVectorEnv's results (same-step autoreset), episode ends and
    ``final_obs``/``final_info`` included."""
    import numpy as np
    from gymnasium.vector import AutoresetMode, SyncVectorEnv

    from rlcore.env import ReplayableEnv

    ours = make_vec_env(env_id, num_envs=3, vectorization="sync", batched=False)  # not envs/classic_control.py's
    theirs = SyncVectorEnv([lambda: ReplayableEnv(gym.make(env_id))] * 3, autoreset_mode=AutoresetMode.SAME_STEP)
    for left, right in zip(ours.reset(seed=5), theirs.reset(seed=5), strict=True):
        assert np.array_equal(left, right) if isinstance(left, np.ndarray) else left.keys() == right.keys()
    ours.action_space.seed(1)
    ends = 0
    for _ in range(300):
        actions = ours.action_space.sample()
        left, right = ours.step(actions), theirs.step(actions)
        for mine, expected in zip(left[:4], right[:4], strict=True):
            assert mine.dtype == expected.dtype and np.array_equal(mine, expected)
        assert left[4].keys() == right[4].keys()
        if "final_obs" in right[4]:
            ends += 1
            for index in np.flatnonzero(right[4]["_final_obs"]):
                assert np.array_equal(left[4]["final_obs"][index], right[4]["final_obs"][index])
    assert ends > 0
