"""Convolutional encoders for image observations: NatureCNN, IMPALA-CNN, and a small CNN for tiny images.

Every encoder takes a batch of images as the env gives them, ``[B, C, H, W]`` (channel-first)
or ``[B, H, W, C]`` (channel-last, e.g. MinAtar; detected from the space and permuted in the
network), of dtype uint8 (scaled by 1/255 inside the network, so replay can store bytes),
bool or float, and returns ``[B, out_dim]`` features.

Speed (CPU, measured with one thread on this project's machines): the convolutions run on
tensors in torch's ``channels_last`` memory format, where oneDNN's kernels are fastest (the
MinAtar-sized 3x3 convolution of a batch of 256 takes ~0.4 ms instead of ~1.5 ms in NCHW
memory; NatureCNN's update on 256 Atari frames ~30% less time), and the last feature map is
flattened in ``(H, W, C)`` order (:class:`FlattenHWC`), which in that memory format is a view. Flattening in
``(C, H, W)`` order, as ``nn.Flatten`` does, copies it through a slow permuting kernel (~1.3 ms
per MinAtar batch of 256, more than the convolution). The order only permutes the inputs of the
following linear layer, whose initialisation is i.i.d., so the network family is the same.
"""

from __future__ import annotations

import logging

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from rlcore.nets.base import FeatureExtractor, init_orthogonal
from rlcore.spaces import describe_space

logger = logging.getLogger(__name__)


def image_layout(space: gym.Space) -> tuple[int, int, int, bool] | None:
    """``(channels, height, width, channels_last)`` if ``space`` is an image Box, else None.

    An image is a 3-D Box of uint8 (0-255), bool, or float in [0, 1]. The channel axis is the
    smallest of the first and last axes (``[C, H, W]`` or ``[H, W, C]``).
    """
    if not isinstance(space, spaces.Box) or len(space.shape) != 3:
        return None
    is_bytes = space.dtype == np.uint8
    is_unit = space.dtype == np.bool_ or (np.issubdtype(space.dtype, np.floating) and np.all(space.low >= 0)
                                          and np.all(space.high <= 1))
    if not (is_bytes or is_unit):
        return None
    first, height, last = space.shape
    # a tie (e.g. MinAtar Seaquest's 10x10x10) is read as channel-last, the layout envs emit natively
    if last <= first and last <= min(space.shape[:2]):
        return last, first, height, True
    return first, height, last, False


_WARNED_LAYOUTS: set[tuple[int, ...]] = set()


def _warn_if_layout_ambiguous(shape: tuple[int, ...]) -> None:
    """Once per shape: ``[A, B, B]`` with ``A > B`` is read channel-last (``B`` channels of ``A x B`` pixels), as SB3
    does, though it may be ``A`` stacked channel-first frames of ``B x B`` (SB3 warns too)."""
    first, height, last = shape
    if first > last == height and tuple(shape) not in _WARNED_LAYOUTS:
        _WARNED_LAYOUTS.add(tuple(shape))
        logger.warning("image observations of shape %s are read channel-last (%d channels of %dx%d pixels); if their "
                       "%d channels come first, transpose them to channel-last (H, W, C) in a wrapper",
                       tuple(shape), last, first, height, first)


class ImageEncoder(FeatureExtractor):
    """Shared input handling of the CNNs: layout, scaling to [0, 1], and the output width."""

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__()
        layout = image_layout(observation_space)
        if layout is None:
            raise ValueError(
                f"{type(self).__name__} needs an image observation space (a 3-D Box of uint8, bool or [0, 1] "
                f"floats, channel-first or channel-last), got {describe_space(observation_space)}"
            )
        self.channels, self.height, self.width, self.channels_last = layout
        # pixels 0-255 to [0, 1]; a uint8 Box of 0/1 planes (high 1) is there already
        self.scale = 1.0 / 255.0 if observation_space.dtype == np.uint8 and np.any(observation_space.high > 1) else 1.0
        _warn_if_layout_ambiguous(observation_space.shape)

    def init_orthogonal(self) -> None:
        """Orthogonal weights (gain sqrt 2) and zero biases in every convolution and linear layer (SB3's
        ``ortho_init`` of its CNNs); with torch's default initialisation (weights of std ``1 / sqrt(3 fan_in)``
        instead of ``~sqrt(2 / fan_in)``) each layer's outputs are ~2.4x smaller."""
        init_orthogonal(self)

    def prepare(self, obs: Tensor) -> Tensor:
        """``[B, C, H, W]`` or ``[B, H, W, C]`` of any dtype -> ``[B, C, H, W]`` float in [0, 1].

        The result is in ``channels_last`` memory format (free for channel-last input: a permuted view
        converted to float keeps its strides; one converting copy for channel-first input).
        """
        if self.channels_last:
            obs = obs.permute(0, 3, 1, 2)
        obs = obs.to(dtype=torch.float32, memory_format=torch.channels_last)
        return obs.mul_(self.scale) if self.scale != 1.0 else obs

    def _output_width(self, body: nn.Module) -> int:
        try:
            with torch.no_grad():
                return int(body(torch.zeros(1, self.channels, self.height, self.width)).shape[1])
        except RuntimeError as error:  # torch: the kernel is larger than the (reduced) image
            raise ValueError(f"{type(self).__name__} cannot encode {self.height}x{self.width} images (channels "
                             f"{self.channels}): they are too small for its convolutions; pass "
                             "features_extractor='flatten'") from error


class FlattenHWC(nn.Module):
    """Flattens feature maps in ``(H, W, C)`` order: ``[B, C, H, W] -> [B, H * W * C]``.

    A view for ``channels_last`` tensors (what the convolutions here produce); a copy otherwise,
    with the same result either way.
    """

    def forward(self, x: Tensor) -> Tensor:
        return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)


class NatureCNN(ImageEncoder):
    """The DQN paper's encoder (Mnih et al., 2015): three convolutions, then a ``features_dim`` linear layer.

    Needs images of at least 36x36 (Atari's 84x84 after preprocessing).

    Shapes: ``[B, C, H, W]`` (or channel-last) -> ``[B, features_dim]``.
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 512) -> None:
        super().__init__(observation_space)
        if min(self.height, self.width) < 36:
            raise ValueError(f"NatureCNN needs images of at least 36x36, got {self.height}x{self.width}; "
                             "use features_extractor='small_cnn' or 'impala_cnn'")
        self.convs = nn.Sequential(
            nn.Conv2d(self.channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            FlattenHWC(),
        )
        self.linear = nn.Sequential(nn.Linear(self._output_width(self.convs), features_dim), nn.ReLU())
        self.out_dim = features_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.linear(self.convs(self.prepare(obs)))


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(relu(x))))`` with 3x3 convolutions that keep the shape."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


class ImpalaCNN(ImageEncoder):
    """IMPALA's encoder (Espeholt et al., 2018): per stack a convolution, a stride-2 max-pool and two
    residual blocks; then ReLU and a ``features_dim`` linear layer.

    Shapes: ``[B, C, H, W]`` (or channel-last) -> ``[B, features_dim]``.
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 256,
                 stack_channels: tuple[int, ...] = (16, 32, 32)) -> None:
        super().__init__(observation_space)
        layers: list[nn.Module] = []
        channels = self.channels
        for out_channels in stack_channels:
            layers += [nn.Conv2d(channels, out_channels, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                       ResidualBlock(out_channels), ResidualBlock(out_channels)]
            channels = out_channels
        layers += [nn.ReLU(), FlattenHWC()]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Sequential(nn.Linear(self._output_width(self.convs), features_dim), nn.ReLU())
        self.out_dim = features_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.linear(self.convs(self.prepare(obs)))


class SmallCNN(ImageEncoder):
    """For tiny images such as MinAtar's 10x10 (Young & Tian, 2019): one 3x3 convolution of ``channels``
    filters, then a ``features_dim`` linear layer.

    Shapes: ``[B, C, H, W]`` (or channel-last) -> ``[B, features_dim]``.
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 128, channels: int = 16) -> None:
        super().__init__(observation_space)
        self.convs = nn.Sequential(nn.Conv2d(self.channels, channels, 3, stride=1), nn.ReLU(), FlattenHWC())
        self.linear = nn.Sequential(nn.Linear(self._output_width(self.convs), features_dim), nn.ReLU())
        self.out_dim = features_dim

    def forward(self, obs: Tensor) -> Tensor:
        return self.linear(self.convs(self.prepare(obs)))
