"""rlcore's encoders written for SB3 (``BaseFeaturesExtractor``), so that both libraries train the same network.

A module of its own, with no side effects at import: the benchmarks that use it set their thread variables
themselves (``benchmarks/zoo_suite.py`` measures rlcore and SB3 at the user's defaults too, where a thread variable
set by an import would change what it measures).
"""

from __future__ import annotations

import gymnasium as gym
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import Tensor, nn


class SB3SmallCNN(BaseFeaturesExtractor):
    """rlcore's ``SmallCNN`` layers for SB3, in plain PyTorch: ``[B, 10, 10, C]`` bool -> ``[B, features_dim]``.

    The same layers in the same order: permute to channel-first, 3x3 conv of 16 filters (stride 1,
    no padding), ReLU, flatten, ``features_dim`` linear, ReLU.
    """

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128, channels: int = 16) -> None:
        super().__init__(observation_space, features_dim)
        height, width, in_channels = observation_space.shape
        self.convs = nn.Sequential(nn.Conv2d(in_channels, channels, 3, stride=1), nn.ReLU(), nn.Flatten())
        self.linear = nn.Sequential(nn.Linear(channels * (height - 2) * (width - 2), features_dim), nn.ReLU())

    def forward(self, observations: Tensor) -> Tensor:
        return self.linear(self.convs(observations.permute(0, 3, 1, 2).float()))
