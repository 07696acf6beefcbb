"""Networks that map observations to what an algorithm acts on: Q-values, or action distributions and values."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
import torch
from torch import Tensor, nn

from rlcore.distributions import DiagGaussian, Distribution
from rlcore.nets.base import FeatureExtractor, FlattenExtractor, init_linear, mlp


class QNetwork(nn.Module):
    """Action values ``Q(s, .)`` for a discrete action space, optionally dueling.

    The dueling head (Wang et al., 2016) splits the last hidden layer into a state value
    ``V(s)`` and advantages ``A(s, a)`` and combines them as ``V + A - mean_a A``, which
    keeps ``V`` and ``A`` identifiable.

    Args:
        observation_space: The single-env observation space.
        num_actions: Number of discrete actions ``A``.
        net_arch: Hidden layer widths after the feature extractor.
        dueling: Use the dueling head; otherwise one linear layer outputs ``Q``.
        features: A custom :class:`FeatureExtractor`; flattening/one-hot by default.

    Shapes:
        ``forward``: ``[B, *obs_shape] -> [B, A]``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        num_actions: int,
        net_arch: Sequence[int] = (64, 64),
        *,
        dueling: bool = False,
        activation: str = "relu",
        features: FeatureExtractor | None = None,
    ) -> None:
        super().__init__()
        self.features = features if features is not None else FlattenExtractor(observation_space)
        self.dueling = dueling
        self.num_actions = num_actions
        if dueling:
            self.body = mlp(self.features.out_dim, net_arch, None, activation)
            width = net_arch[-1] if net_arch else self.features.out_dim
            self.value_head = nn.Linear(width, 1)
            self.advantage_head = nn.Linear(width, num_actions)
        else:
            self.body = mlp(self.features.out_dim, net_arch, num_actions, activation)

    def forward(self, obs: Tensor) -> Tensor:
        hidden = self.body(self.features(obs))
        if not self.dueling:
            return hidden
        return dueling_combine(self.value_head(hidden), self.advantage_head(hidden))


def dueling_combine(value: Tensor, advantage: Tensor) -> Tensor:
    """``Q = V + A - mean_a A``: ``value [B, 1]``, ``advantage [B, A]`` -> ``[B, A]``."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)


class ActorCritic(nn.Module):
    """A policy head and a value head on one feature extractor, as separate MLPs (SB3's MLP default).

    The actor outputs the parameters of ``distribution`` (logits or Gaussian means); for a
    Gaussian, a state-independent ``log_std`` parameter holds the spread. Linear layers get
    orthogonal initialisation (gain sqrt(2) in hidden layers, 0.01 for the policy output,
    1 for the value output), as in SB3 and CleanRL.

    Args:
        observation_space: The single-env observation space.
        distribution: The action distribution (see :func:`rlcore.distributions.make_distribution`).
        pi_arch: Hidden widths of the actor.
        vf_arch: Hidden widths of the critic.
        activation: Hidden activation name.
        ortho_init: Use the orthogonal initialisation above (else torch's default).
        log_std_init: Initial ``log_std`` of a Gaussian policy.
        features: A custom :class:`FeatureExtractor`; flattening/one-hot by default.

    Shapes:
        ``forward``: ``[B, *obs_shape] -> (params [B, P], value [B])``.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        distribution: Distribution,
        pi_arch: Sequence[int] = (64, 64),
        vf_arch: Sequence[int] = (64, 64),
        *,
        activation: str = "tanh",
        ortho_init: bool = True,
        log_std_init: float = 0.0,
        features: FeatureExtractor | None = None,
    ) -> None:
        super().__init__()
        self.features = features if features is not None else FlattenExtractor(observation_space)
        self.distribution = distribution
        self.actor = mlp(self.features.out_dim, pi_arch, distribution.param_dim, activation)
        self.critic = mlp(self.features.out_dim, vf_arch, 1, activation)
        self.log_std: nn.Parameter | None = None
        if isinstance(distribution, DiagGaussian):
            self.log_std = nn.Parameter(torch.full((distribution.param_dim,), float(log_std_init)))
            distribution.log_std = self.log_std
        if ortho_init:
            init_linear(self.actor)
            init_linear(self.critic)
            init_linear(self.actor[-1], gain=0.01)
            init_linear(self.critic[-1], gain=1.0)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        features = self.features(obs)
        return self.actor(features), self.critic(features).squeeze(-1)

    def value(self, obs: Tensor) -> Tensor:
        """``V(s)``: ``[B, *obs_shape] -> [B]``."""
        return self.critic(self.features(obs)).squeeze(-1)
