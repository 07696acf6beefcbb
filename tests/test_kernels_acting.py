"""The compiled collecting step (rlcore/kernels/acting.py) against the numpy/torch path it replaces."""

import logging

import numba
import numpy as np
import pytest
import torch
from gymnasium import spaces

from rlcore.algos.a2c import A2C, A2CConfig
from rlcore.algos.ppo import PPO, PPOConfig
from rlcore.kernels import acting
from rlcore.kernels.selection import CHECKED_AGAINST


@numba.njit(error_model="numpy")
def _tanh_array(values: np.ndarray) -> np.ndarray:
    out = np.empty_like(values)
    for i in range(values.size):
        out[i] = np.float32(acting.tanh(np.float64(values[i])))
    return out


def test_tanh_is_within_one_float32_ulp_of_numpys_and_keeps_nan_and_signs() -> None:
    tiny = np.geomspace(1e-38, 1.0, 20_000)
    x = np.concatenate([np.linspace(-12, 12, 400_001), tiny, -tiny, [0.0, -0.0, np.inf, -np.inf, np.nan]])
    x = x.astype(np.float32)
    got, want = _tanh_array(x), np.tanh(x)
    assert np.isnan(got[-1])
    finite = ~np.isnan(want)
    ulps = np.abs(got[finite] - want[finite]) / np.spacing(np.abs(want[finite]))
    assert ulps.max() <= 1.0
    assert np.array_equal(np.signbit(got[finite]), np.signbit(want[finite]))


OBS = spaces.Box(-5.0, 5.0, (5,), np.float32)


def algorithm(kind: type, action_space: spaces.Space, **settings) -> A2C | PPO:
    config_class = A2CConfig if kind is A2C else PPOConfig
    algo = kind(OBS, action_space, config_class(**settings), num_envs=6, seed=3)
    algo.generator = torch.Generator().manual_seed(11)
    return algo


def fast_and_reference(kind: type, action_space: spaces.Space, **settings) -> tuple[A2C | PPO, A2C | PPO]:
    """Two identical algorithms (same seed: same parameters and draws), the second on the reference step (built
    apart, not deep-copied: a copy's kernel views copies of the parameters)."""
    fast, reference = algorithm(kind, action_space, **settings), algorithm(kind, action_space, **settings)
    assert fast._fused_explore and torch.equal(fast.optimizer.flat_params, reference.optimizer.flat_params)
    reference._fused_explore = False
    return fast, reference


CASES = [
    (A2C, spaces.Discrete(4), {"normalize_obs": True}),
    (A2C, spaces.Box(-1.0, 1.0, (2,), np.float32), {"normalize_obs": True, "log_std_init": -0.5}),
    (PPO, spaces.Discrete(3), {"net_arch": (16, 32, 8), "activation": "relu"}),
    (PPO, spaces.Box(-2.0, 2.0, (3,), np.float32), {"net_arch": (32,), "vf_arch": (16, 16)}),
    (A2C, spaces.Box(-1.0, 1.0, (2,), np.float32), {"normalize_obs": True, "use_sde": True, "log_std_init": -1.0}),
    (PPO, spaces.Box(-2.0, 2.0, (3,), np.float32), {"use_sde": True, "sde_sample_freq": 2, "net_arch": (),
                                                      "activation": "relu"}),
]


@pytest.mark.parametrize(("kind", "action_space", "settings"), CASES,
                         ids=["a2c-categorical-normalized", "a2c-gaussian-normalized", "ppo-relu-3-layers",
                              "ppo-gaussian-other-critic", "a2c-gsde-normalized", "ppo-gsde-linear-resampled"])
def test_compiled_collecting_step_matches_the_reference_step(kind, action_space, settings) -> None:
    fast, reference = fast_and_reference(kind, action_space, **settings)
    rng = np.random.default_rng(0)
    for step in range(5):
        obs = (rng.normal(size=(6, 5)) * (1 + step)).astype(np.float32 if step % 2 else np.float64)
        if step == 3:
            obs = torch.from_numpy(obs)  # what the collector passes
        env_action, extras = fast.explore(obs)
        want_action, want = reference.explore(obs)
        assert set(extras) == set(want)
        assert extras["obs"].dtype == want["obs"].dtype  # float32 when normalized, else the raw obs as given
        torch.testing.assert_close(extras["obs"], want["obs"], rtol=0, atol=0)  # the same float32 operations
        assert extras["action"].dtype == want["action"].dtype and extras["action"].shape == want["action"].shape
        torch.testing.assert_close(extras["action"], want["action"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(env_action, want_action, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(extras["log_prob"], want["log_prob"], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(extras["value"], want["value"], rtol=1e-5, atol=1e-5)
        if fast.obs_normalizer is not None:  # the statistics merge in the same float64 order: bit for bit
            for name in ("mean", "var"):
                assert torch.equal(getattr(fast.obs_normalizer.stats, name),
                                   getattr(reference.obs_normalizer.stats, name))
            assert fast.obs_normalizer.stats.count == reference.obs_normalizer.stats.count
            probe = torch.as_tensor(rng.normal(size=(2, 5)), dtype=torch.float32)  # the cache normalize() uses
            assert torch.equal(fast.obs_normalizer.normalize(probe), reference.obs_normalizer.normalize(probe))


def test_compiled_reward_scaling_matches_the_reward_normalizer() -> None:
    from rlcore.normalize import RewardNormalizer

    fast, reference = RewardNormalizer(5, 0.97, clip=2.0), RewardNormalizer(5, 0.97, clip=2.0)
    rng = np.random.default_rng(0)
    for _ in range(40):
        reward = (rng.normal(size=5) * 3).astype(np.float32)
        ended = rng.random(5) < 0.2
        got = fast.update_and_normalize_compiled(reward, ended)
        want = reference.update_and_normalize(torch.from_numpy(reward), torch.from_numpy(ended)).numpy()
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=0)
        assert np.abs(got).max() <= 2.0
        assert torch.equal(fast.returns, reference.returns)  # the same float64 operations, element by element
        for name in ("mean", "var"):  # the batch sums run in another order than numpy's pairwise reduce
            np.testing.assert_allclose(float(getattr(fast.stats, name)), float(getattr(reference.stats, name)),
                                       rtol=1e-12)
        assert fast.stats.mean.shape == reference.stats.mean.shape == ()
        assert fast.stats.count == reference.stats.count


def test_compiled_step_follows_parameters_updated_in_place() -> None:
    fast, reference = fast_and_reference(A2C, spaces.Discrete(4))
    with torch.no_grad():  # as the optimizer and load_state_dict do: in place, in the flat buffer
        for algo in (fast, reference):
            algo.optimizer.flat_params.mul_(1.5).add_(0.01)
    obs = np.random.default_rng(1).normal(size=(6, 5)).astype(np.float32)
    torch.testing.assert_close(fast.explore(obs)[1]["value"], reference.explore(obs)[1]["value"], rtol=1e-5,
                               atol=1e-5)


def test_nan_observations_reach_the_outputs_as_in_the_reference() -> None:
    fast = algorithm(A2C, spaces.Box(-1.0, 1.0, (2,), np.float32))
    obs = np.zeros((6, 5), np.float32)
    obs[2, 1] = np.nan
    _, extras = fast.explore(obs)
    assert torch.isnan(extras["value"][2]) and not torch.isnan(extras["value"][[0, 1, 3, 4, 5]]).any()


def test_the_reference_step_runs_where_the_compiled_one_does_not_apply(caplog, monkeypatch) -> None:
    algo = algorithm(A2C, spaces.Discrete(4))
    mask = torch.tensor([[True, False, True, True]] * 6)
    calls = []
    monkeypatch.setattr(algo._kernel, "explore_fused", lambda *args: calls.append(args))
    algo.explore(np.zeros((6, 5), np.float32), action_mask=mask)  # masks: the reference path
    algo.explore(np.zeros((6, 5), np.float16))  # another dtype: the reference path
    assert calls == []
    with caplog.at_level(logging.INFO, logger="rlcore.kernels"):
        monkeypatch.setitem(CHECKED_AGAINST, "rlcore.normalize.RunningMeanStd.update", "0" * 16)
        edited = algorithm(A2C, spaces.Discrete(4), normalize_obs=True)
    assert not edited._fused_explore
    assert "RunningMeanStd.update is not the code its kernel was checked against" in caplog.text
    assert not algorithm(A2C, spaces.Discrete(4), fast_path=False)._fused_explore


def test_training_with_the_compiled_step_follows_the_reference() -> None:
    """Ten A2C updates on Pendulum through each path: the same draws, parameters within float32 rounding."""
    import gymnasium as gym

    def train(fused: bool) -> torch.Tensor:
        envs = gym.make_vec("Pendulum-v1", num_envs=4, vectorization_mode="sync")
        algo = A2C(envs.single_observation_space, envs.single_action_space,
                   A2CConfig(n_steps=5, normalize_obs=True, normalize_reward=True), num_envs=4, seed=0)
        algo._fused_explore = algo._fused_explore and fused
        obs, _ = envs.reset(seed=0)
        for _ in range(10):
            for _ in range(5):
                action, extras = algo.explore(obs)
                next_obs, reward, terminated, truncated, _ = envs.step(action.numpy())
                algo.store({**extras, "reward": reward.astype(np.float32), "terminated": terminated,
                            "truncated": truncated, "next_obs": next_obs})
                obs = next_obs
            algo.update(torch.as_tensor(obs))
        envs.close()
        return algo.optimizer.flat_params.clone()

    fused, reference = train(True), train(False)
    torch.testing.assert_close(fused, reference, rtol=1e-4, atol=1e-5)


def test_the_compiled_gsde_step_takes_the_single_noise_matrix_for_one_env() -> None:
    """SB3's rule, as the reference's: a batch of one row (or of another size than the envs) uses the single matrix."""
    space, config = spaces.Box(-1.0, 1.0, (2,), np.float32), A2CConfig(use_sde=True, log_std_init=-0.5)
    fast, reference = (A2C(OBS, space, config, num_envs=1, seed=3) for _ in range(2))
    assert fast._fused_explore
    reference._fused_explore = False
    for algo in (fast, reference):
        algo.generator = torch.Generator().manual_seed(11)
    obs = np.random.default_rng(0).normal(size=(1, 5)).astype(np.float32)
    (_, got), (_, want) = fast.explore(obs), reference.explore(obs)
    torch.testing.assert_close(got["action"], want["action"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got["log_prob"], want["log_prob"], rtol=1e-5, atol=1e-5)
    latent = torch.tanh(reference.policy.actor[2](torch.tanh(reference.policy.actor[0](torch.from_numpy(obs)))))
    single = reference.distribution.exploration_matrix
    torch.testing.assert_close(want["action"] - reference.policy(torch.from_numpy(obs))[0][:, :2], latent @ single)
