"""A small residual CNN image classifier (the digits backbone).

Stages of ``3x3 convolution -> ReLU -> residual blocks``, a 2x2 max-pool between stages, then ReLU and
global average pooling to a ``[B, channels[-1]]`` feature vector and a linear classifier on top.
Global pooling makes the features independent of the image size, so the same network encodes any
image with ``in_channels`` channels.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlcore.nets.cnn import ResidualBlock


class ResidualCNN(nn.Module):
    """Residual CNN classifier: images ``[B, C, H, W]`` -> logits ``[B, num_classes]``.

    Images are uint8 (scaled by 1/255 here) or floats in ``[0, 1]``.

    Args:
        in_channels: Image channels ``C``.
        num_classes: Classes of the classifier head.
        channels: Width of each stage; the feature vector has ``channels[-1]`` entries.
        blocks: Residual blocks per stage.
        augment: While training, shift each image by up to one pixel (zero padding).
    """

    kind = "cnn"

    def __init__(self, in_channels: int = 1, num_classes: int = 10, channels: tuple[int, ...] | list[int] = (32, 64),
                 blocks: int = 1, augment: bool = False) -> None:
        super().__init__()
        if in_channels < 1 or num_classes < 2 or not channels or min(channels) < 1 or blocks < 0:
            raise ValueError(f"need in_channels >= 1, num_classes >= 2, channel widths >= 1 and blocks >= 0; got "
                             f"in_channels={in_channels}, num_classes={num_classes}, channels={channels}, "
                             f"blocks={blocks}")
        self.in_channels, self.num_classes = int(in_channels), int(num_classes)
        self.channels, self.blocks, self.augment = tuple(int(c) for c in channels), int(blocks), bool(augment)
        stages: list[nn.Module] = []
        width = self.in_channels
        for index, out in enumerate(self.channels):
            layers: list[nn.Module] = [nn.MaxPool2d(2, ceil_mode=True)] if index else []
            layers += [nn.Conv2d(width, out, 3, padding=1), nn.ReLU()]
            layers += [ResidualBlock(out) for _ in range(self.blocks)]
            stages.append(nn.Sequential(*layers))
            width = out
        self.stages = nn.ModuleList(stages)
        self.head = nn.Linear(width, self.num_classes)
        self.feature_dim = width

    def config(self) -> dict[str, Any]:
        """The constructor's arguments (JSON), to rebuild the network from a checkpoint."""
        return {"in_channels": self.in_channels, "num_classes": self.num_classes, "channels": list(self.channels),
                "blocks": self.blocks, "augment": self.augment}

    def layer_groups(self) -> list[nn.Module]:
        """The feature layers from input to output (one per stage), for freezing all but the last k."""
        return list(self.stages)

    @staticmethod
    def to_unit(images: Tensor) -> Tensor:
        """uint8 images -> floats in [0, 1]; float images are returned as float32 unchanged."""
        return images.float().mul_(1.0 / 255.0) if images.dtype == torch.uint8 else images.float()

    def features(self, images: Tensor) -> Tensor:
        """Globally pooled features: ``[B, C, H, W] -> [B, feature_dim]``."""
        x = self.to_unit(images)
        for stage in self.stages:
            x = stage(x)
        return torch.relu(x).mean(dim=(2, 3))

    def forward(self, images: Tensor) -> Tensor:
        """Logits ``[B, num_classes]``."""
        return self.head(self.features(images))

    def _shifted(self, images: Tensor, generator: torch.Generator | None) -> Tensor:
        """Each image moved by (-1, 0 or +1) pixels on each axis, zeros shifted in: ``[B, C, H, W]``."""
        batch, _, height, width = images.shape
        padded = F.pad(self.to_unit(images), (1, 1, 1, 1))
        offsets = torch.randint(0, 3, (batch, 2), generator=generator)
        rows = offsets[:, 0, None] + torch.arange(height)[None, :]  # [B, H]
        cols = offsets[:, 1, None] + torch.arange(width)[None, :]  # [B, W]
        batch_index = torch.arange(batch)[:, None, None]
        return padded.permute(0, 2, 3, 1)[batch_index, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)

    def supervised_loss(self, batch: dict[str, Tensor], generator: torch.Generator | None = None
                        ) -> tuple[Tensor, Tensor, int]:
        """Cross-entropy on ``{"x": [B, C, H, W], "y": [B]}``: ``(mean loss, correct predictions, B)``."""
        images = batch["x"]
        if self.training and self.augment:
            images = self._shifted(images, generator)
        logits = self(images)
        loss = F.cross_entropy(logits, batch["y"])
        return loss, (logits.argmax(dim=1) == batch["y"]).sum(), int(batch["y"].shape[0])


__all__ = ["ResidualCNN"]
