"""Networks that map observations to what an algorithm acts on: Q-values (and, later, distributions)."""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
from torch import Tensor, nn

from rlcore.nets.base import FeatureExtractor, FlattenExtractor, mlp


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
