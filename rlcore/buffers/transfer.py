"""Where replay storage lives, and how sampled batches reach the training device.

Two switches of :class:`rlcore.algos.dqn.DQNConfig`:

- ``replay_device``: ``"cpu"`` keeps the storage in host memory (any size the RAM allows; the default);
  ``"auto"`` or ``"device"`` puts it on the training device (no copy per batch, but the buffer takes GPU
  memory). On a CPU-only run all three are the same.
- ``pin_memory``: with host storage and a CUDA training device, each sampled batch is copied into a
  page-locked (pinned) staging buffer and moved with ``non_blocking=True``, so the host-to-device copy is a
  DMA transfer that does not stall the host; otherwise batches move with a plain ``.to(device)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rlcore.observations import flatten_fields, nest_fields

REPLAY_DEVICES = ("cpu", "auto", "device")
"""Valid values of ``replay_device``."""


def check_replay_device(value: str) -> None:
    """Raises a ValueError naming ``replay_device`` and its valid values when ``value`` is not one of them."""
    if value not in REPLAY_DEVICES:
        raise ValueError(f"replay_device must be one of {list(REPLAY_DEVICES)}, got {value!r}")


def replay_storage_device(replay_device: str, training_device: torch.device | str) -> torch.device:
    """The device replay storage goes on: the host for ``"cpu"``, the training device for ``"auto"``/``"device"``."""
    check_replay_device(replay_device)
    return torch.device("cpu") if replay_device == "cpu" else torch.device(training_device)


class BatchTransfer:
    """Moves batches of tensors (e.g. a replay sample, ``{key: [B, ...]}``) to ``device``.

    With ``pin_memory`` and a CUDA ``device``, each tensor is first copied into a pinned host buffer kept per
    key (reallocated only when the key's shape or dtype changes), then sent with ``non_blocking=True``.
    Before a staging buffer is overwritten, the previous call's copies are waited for (a CUDA event), so a
    batch still in flight is never corrupted. Tensors already on ``device`` pass through untouched.

    Args:
        device: The training device.
        pin_memory: Stage through pinned memory when ``device`` is CUDA (ignored otherwise).
    """

    def __init__(self, device: torch.device | str, pin_memory: bool = True) -> None:
        self.device = torch.device(device)
        self.pinned = bool(pin_memory) and self.device.type == "cuda"
        self.staging: dict[str, Tensor] = {}
        """The pinned staging buffer of each key (empty unless :attr:`pinned`)."""
        self._copied: torch.cuda.Event | None = None

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` with every tensor on :attr:`device` (equal values, same shapes and dtypes); a dict value (a
        Dict observation's leaves) is moved leaf by leaf."""
        nested = [key for key, value in batch.items() if isinstance(value, dict)]
        if nested:
            flat = flatten_fields(batch)
            return nest_fields(self(flat), nested)
        if self.pinned:
            return self._pinned_transfer(batch)
        return {key: value.to(self.device) for key, value in batch.items()}

    def _pinned_transfer(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        if self._copied is not None:
            self._copied.synchronize()  # the staging buffers may still feed the previous call's copies
        moved: dict[str, Tensor] = {}
        for key, value in batch.items():
            if value.device.type != "cpu":  # already on a device: nothing to stage
                moved[key] = value.to(self.device)
                continue
            buffer = self.staging.get(key)
            if buffer is None or buffer.shape != value.shape or buffer.dtype != value.dtype:
                buffer = self.staging[key] = torch.empty(value.shape, dtype=value.dtype, pin_memory=True)
            buffer.copy_(value)
            moved[key] = buffer.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return moved
