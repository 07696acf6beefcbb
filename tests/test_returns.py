"""GAE and discounted returns against values worked out by hand, terminations vs truncations."""

import pytest
import torch

from rlcore.returns import discounted_returns, gae, next_state_values

F, T = False, True


def column(*values) -> torch.Tensor:
    """A [T, 1] tensor (one env)."""
    return torch.tensor(values, dtype=torch.float32 if isinstance(values[0], float) else torch.bool).reshape(-1, 1)


def test_next_state_values_use_the_final_observation_value_at_truncations() -> None:
    values = column(1.0, 2.0, 3.0)
    truncated = column(F, T, F)
    truncated_values = column(0.0, 9.0, 0.0)
    result = next_state_values(values, torch.tensor([4.0]), truncated, truncated_values)
    assert result.flatten().tolist() == [2.0, 9.0, 4.0]


def test_gae_by_hand_across_a_termination() -> None:
    # 3 steps; the episode terminates at step 1 (index 1), a new one starts at step 2
    rewards, values = column(1.0, 2.0, 3.0), column(0.5, 1.0, 2.0)
    terminated = column(F, T, F)
    next_values = next_state_values(values, torch.tensor([4.0]), column(F, F, F), column(0.0, 0.0, 0.0))
    gamma, lam = 0.9, 0.8
    advantages, returns = gae(rewards, values, next_values, terminated, terminated, gamma, lam)
    d2 = 3.0 + 0.9 * 4.0 - 2.0             # bootstraps from V(s_T)
    d1 = 2.0 + 0.0 - 1.0                   # terminated: no bootstrap
    d0 = 1.0 + 0.9 * 1.0 - 0.5
    a2, a1 = d2, d1                        # the chain is cut after the termination
    a0 = d0 + 0.9 * 0.8 * a1
    assert advantages.flatten().tolist() == pytest.approx([a0, a1, a2])
    assert returns.flatten().tolist() == pytest.approx([a0 + 0.5, a1 + 1.0, a2 + 2.0])


def test_gae_bootstraps_from_the_final_observation_at_a_truncation() -> None:
    rewards, values = column(1.0, 1.0), column(0.0, 0.0)
    truncated = column(T, F)
    next_values = next_state_values(values, torch.tensor([0.0]), truncated, column(10.0, 0.0))
    advantages, _ = gae(rewards, values, next_values, column(F, F), truncated, 0.5, 1.0)
    # step 0 was truncated: delta = 1 + 0.5 * V(final) = 6, and the chain is cut (step 1 is a new episode)
    assert advantages.flatten().tolist() == pytest.approx([6.0, 1.0])


def test_gae_with_lambda_one_is_the_discounted_return_minus_the_value() -> None:
    generator = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    episode_end = torch.zeros(6, 3, dtype=torch.bool)
    episode_end[2, 1] = True
    terminated = episode_end.clone()
    last_value = torch.randn(3, generator=generator)
    next_values = next_state_values(values, last_value, torch.zeros_like(episode_end), torch.zeros(6, 3))
    advantages, _ = gae(rewards, values, next_values, terminated, episode_end, 0.97, 1.0)
    returns = discounted_returns(rewards, next_values, terminated, episode_end, 0.97)
    assert torch.allclose(advantages, returns - values, atol=1e-5)


def test_discounted_returns_by_hand() -> None:
    # env 0: terminates at step 1; env 1: truncated at step 0 (V(final) = 10), then runs to the rollout end (V = 2)
    rewards = torch.tensor([[1.0, 1.0], [2.0, 1.0], [3.0, 1.0]])
    terminated = torch.tensor([[F, F], [T, F], [F, F]])
    truncated = torch.tensor([[F, T], [F, F], [F, F]])
    values = torch.zeros(3, 2)
    truncated_values = torch.tensor([[0.0, 10.0], [0.0, 0.0], [0.0, 0.0]])
    next_values = next_state_values(values, torch.tensor([5.0, 2.0]), truncated, truncated_values)
    returns = discounted_returns(rewards, next_values, terminated, terminated | truncated, 0.5)
    expected_env0 = [1.0 + 0.5 * 2.0, 2.0, 3.0 + 0.5 * 5.0]
    expected_env1 = [1.0 + 0.5 * 10.0, 1.0 + 0.5 * (1.0 + 0.5 * 2.0), 1.0 + 0.5 * 2.0]
    assert returns[:, 0].tolist() == pytest.approx(expected_env0)
    assert returns[:, 1].tolist() == pytest.approx(expected_env1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("steps, envs", [(1, 1), (5, 16), (8, 3), (64, 4)])
def test_host_paths_give_the_torch_paths_values_exactly(dtype: torch.dtype, steps: int, envs: int) -> None:
    """next_state_values and gae compute CPU rollouts in numpy: bit for bit what their torch ops give."""
    from rlcore.returns import _gae_torch, _next_state_values_torch

    generator = torch.Generator().manual_seed(steps * envs)
    rewards, values, truncated_values = (torch.randn(steps, envs, generator=generator, dtype=dtype) for _ in range(3))
    last_value = torch.randn(envs, generator=generator, dtype=dtype)
    terminated = torch.rand(steps, envs, generator=generator) < 0.2
    truncated = ~terminated & (torch.rand(steps, envs, generator=generator) < 0.2)
    next_values = next_state_values(values, last_value, truncated, truncated_values)
    assert torch.equal(next_values, _next_state_values_torch(values, last_value, truncated, truncated_values))
    assert next_values.dtype == dtype
    for gamma, lam in ((0.99, 1.0), (0.9, 0.8), (0.98, 0.0)):
        host = gae(rewards, values, next_values, terminated, terminated | truncated, gamma, lam)
        reference = _gae_torch(rewards, values, next_values, terminated, terminated | truncated, gamma, lam)
        for ours, theirs in zip(host, reference):
            assert ours.dtype == theirs.dtype == dtype
            assert torch.equal(ours, theirs)
