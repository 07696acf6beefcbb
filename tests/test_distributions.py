"""Action distributions against torch.distributions (their kernels: tests/test_kernels.py)."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import distributions as td

from rlcore.distributions import Bernoulli, Categorical, DiagGaussian, MultiCategorical, make_distribution


def test_gaussian_log_prob_and_entropy_match_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(0)
    dist = DiagGaussian(3, (3,))
    dist.log_std = torch.tensor([-0.5, 0.0, 0.7])
    means = torch.randn(5, 3, generator=generator)
    actions = torch.randn(5, 3, generator=generator)
    reference = td.Normal(means, dist.log_std.exp())
    assert torch.allclose(dist.log_prob(means, actions), reference.log_prob(actions).sum(-1), atol=1e-5)
    assert torch.allclose(dist.entropy(means), reference.entropy().sum(-1), atol=1e-5)


def test_categorical_log_prob_entropy_and_sampling_match_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(1)
    logits = torch.randn(4, 5, generator=generator)
    actions = torch.tensor([0, 4, 2, 1])
    dist, reference = Categorical(5), td.Categorical(logits=logits)
    assert torch.allclose(dist.log_prob(logits, actions), reference.log_prob(actions), atol=1e-6)
    assert torch.allclose(dist.entropy(logits), reference.entropy(), atol=1e-6)
    one_row = torch.tensor([[0.0, 1.0, 2.0]])
    samples = dist.sample(one_row.expand(20_000, 3), torch.Generator().manual_seed(2))
    frequencies = torch.bincount(samples, minlength=3).float() / 20_000
    assert torch.allclose(frequencies, torch.softmax(one_row[0], 0), atol=0.015)


def test_multi_categorical_and_bernoulli_match_torch_distributions() -> None:
    generator = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 2 + 3, generator=generator)
    actions = torch.stack([torch.randint(2, (6,), generator=generator), torch.randint(3, (6,), generator=generator)], 1)
    multi = MultiCategorical([2, 3])
    reference = [td.Categorical(logits=logits[:, :2]), td.Categorical(logits=logits[:, 2:])]
    expected = reference[0].log_prob(actions[:, 0]) + reference[1].log_prob(actions[:, 1])
    assert torch.allclose(multi.log_prob(logits, actions), expected, atol=1e-6)
    assert torch.allclose(multi.entropy(logits), reference[0].entropy() + reference[1].entropy(), atol=1e-6)
    binary_logits = torch.randn(6, 4, generator=generator)
    bits = torch.randint(2, (6, 4), generator=generator).to(torch.int8)
    bernoulli, ref = Bernoulli(4, (4,)), td.Bernoulli(logits=binary_logits)
    assert torch.allclose(bernoulli.log_prob(binary_logits, bits), ref.log_prob(bits.float()).sum(-1), atol=1e-5)
    assert torch.allclose(bernoulli.entropy(binary_logits), ref.entropy().sum(-1), atol=1e-5)
    assert bernoulli.sample(binary_logits, generator).shape == (6, 4)


def test_make_distribution_picks_the_family_and_rejects_other_spaces() -> None:
    assert isinstance(make_distribution(gym.spaces.Discrete(3)), Categorical)
    assert isinstance(make_distribution(gym.spaces.Box(-1, 1, (2,))), DiagGaussian)
    assert isinstance(make_distribution(gym.spaces.MultiDiscrete([2, 3])), MultiCategorical)
    assert isinstance(make_distribution(gym.spaces.MultiBinary(4)), Bernoulli)
    with pytest.raises(TypeError, match="Tuple"):
        make_distribution(gym.spaces.Tuple([gym.spaces.Discrete(2)]))
    with pytest.raises(TypeError, match="floating"):
        make_distribution(gym.spaces.Box(0, 3, (2,), dtype=np.int64))
