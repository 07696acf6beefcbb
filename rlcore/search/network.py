"""The policy-value networks of AlphaZero (Silver et al., 2017), sized for small boards.

``[B, C, H, W]`` board planes -> a 3x3 convolution stem, ``num_blocks`` residual blocks (two 3x3
convolutions with batch norm and a skip connection), then two heads: policy logits ``[B, A]``
and a value in ``[-1, 1]`` ``[B]`` for the player to move. Flat observations ``[B, N]`` get a
residual MLP with the same heads (:class:`PolicyValueMLP`).

References:
    Silver et al., 2017. Mastering the game of Go without human knowledge. Nature 550.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """``relu(x + bn(conv(relu(bn(conv(x))))))`` with 3x3 convolutions."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: Tensor) -> Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        return F.relu(x + self.bn2(self.conv2(y)))


class PolicyValueNet(nn.Module):
    """Residual tower with a policy head and a value head.

    Args:
        obs_shape: ``(C, H, W)`` of the board planes.
        num_actions: ``A``.
        channels: Width of the tower.
        num_blocks: Residual blocks.
    """

    def __init__(self, obs_shape: tuple[int, int, int], num_actions: int, channels: int = 64,
                 num_blocks: int = 4) -> None:
        super().__init__()
        planes, height, width = obs_shape
        self.stem = nn.Sequential(nn.Conv2d(planes, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.tower = nn.Sequential(*[ResidualBlock(channels) for _ in range(num_blocks)])
        self.policy_head = nn.Sequential(nn.Conv2d(channels, 2, 1, bias=False), nn.BatchNorm2d(2), nn.ReLU(),
                                         nn.Flatten(), nn.Linear(2 * height * width, num_actions))
        self.value_head = nn.Sequential(nn.Conv2d(channels, 1, 1, bias=False), nn.BatchNorm2d(1), nn.ReLU(),
                                        nn.Flatten(), nn.Linear(height * width, channels), nn.ReLU(),
                                        nn.Linear(channels, 1), nn.Tanh())

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``obs [B, C, H, W]`` -> ``(logits [B, A], value [B])``."""
        features = self.tower(self.stem(obs))
        return self.policy_head(features), self.value_head(features).squeeze(-1)


class PolicyValueMLP(nn.Module):
    """For flat observations ``[B, N]`` (OpenSpiel games such as oware or nim): ``num_blocks`` residual MLP
    blocks of width ``4 * channels`` with layer norm, then a policy head (logits ``[B, A]``) and a ``tanh`` value
    head (``[B]``) for the player to move.

    Args:
        obs_size: ``N``.
        num_actions: ``A``.
        channels: A quarter of the hidden width (so one setting sizes both networks).
        num_blocks: Residual blocks.
    """

    def __init__(self, obs_size: int, num_actions: int, channels: int = 64, num_blocks: int = 4) -> None:
        super().__init__()
        width = 4 * channels
        self.stem = nn.Sequential(nn.Linear(obs_size, width), nn.ReLU())
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(),
                                                  nn.Linear(width, width)) for _ in range(num_blocks))
        self.policy_head = nn.Linear(width, num_actions)
        self.value_head = nn.Sequential(nn.Linear(width, channels), nn.ReLU(), nn.Linear(channels, 1), nn.Tanh())

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        """``obs [B, N]`` -> ``(logits [B, A], value [B])``."""
        features = self.stem(obs)
        for block in self.blocks:
            features = F.relu(features + block(features))
        return self.policy_head(features), self.value_head(features).squeeze(-1)


def make_policy_value_net(obs_shape: tuple[int, ...], num_actions: int, channels: int = 64,
                          num_blocks: int = 4) -> nn.Module:
    """:class:`PolicyValueNet` for board planes ``[C, H, W]``, :class:`PolicyValueMLP` for flat ``[N]``."""
    if len(obs_shape) == 3:
        return PolicyValueNet(obs_shape, num_actions, channels, num_blocks)  # type: ignore[arg-type]
    if len(obs_shape) == 1:
        return PolicyValueMLP(obs_shape[0], num_actions, channels, num_blocks)
    raise ValueError(f"a policy-value network takes board planes [C, H, W] or flat observations [N], got {obs_shape}")
