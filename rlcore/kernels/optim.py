"""The optimizers' CPU kernels: torch's one-kernel Adam over the flat buffer, and the gradient-norm clip in numpy.

Reproduces: :class:`rlcore.optim.FlatAdam`'s vector-op Adam step (``FlatAdam.reference_step``) and the
gradient-norm clip of :func:`rlcore.optim.clip_grad_norm_` (``torch.nn.utils.clip_grad_norm_``'s scaling,
``max_norm / (norm + 1e-6)``). ``tests/test_kernels.py`` holds both to their references and to ``torch.optim.Adam``.

Measured on this project's 2-core x86 machines (one thread, ~10k parameters): the clip in numpy takes ~1 us for the
norm and ~1 us for the scaling, where torch's norm, a host sync and the fused Adam's ``grad_scale`` path cost ~20 us
more per step (the fused kernel runs ~2x slower with ``grad_scale`` than after a numpy scaling, so it is left
unused); the fused Adam is one kernel where the vector ops are five.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

FUSED_ADAM = getattr(torch, "_fused_adam_", None)
"""torch's one-kernel Adam (what ``Adam(fused=True)`` calls); None where this torch lacks it."""


def fused_adam_applies(flat_params: Tensor) -> bool:
    """Whether torch's fused Adam kernel runs here for these (flat) parameters: it exists and they are on the CPU."""
    return FUSED_ADAM is not None and flat_params.device.type == "cpu"


def fused_adam_step(
    params: Tensor, grads: Tensor, exp_avg: Tensor, exp_avg_sq: Tensor, step: Tensor, *, lr: float, beta1: float,
    beta2: float, eps: float,
) -> None:
    """One Adam step in place on flat ``[P]`` buffers; ``step`` is the 0-d float32 step count after this step."""
    FUSED_ADAM(  # type: ignore[misc]
        [params], [grads], [exp_avg], [exp_avg_sq], [], [step], lr=lr, beta1=beta1, beta2=beta2,
        weight_decay=0.0, eps=eps, amsgrad=False, maximize=False, grad_scale=None, found_inf=None,
    )


def host_clip_applies(grads: Tensor) -> bool:
    """Whether the numpy clip runs for this flat gradient: float32 on the CPU."""
    return grads.device.type == "cpu" and grads.dtype == torch.float32


def host_clip_grad_norm_(grads: Tensor, max_norm: float | None) -> float:
    """Scales a flat CPU float32 gradient ``[P]`` in place to L2 norm ``max_norm`` if it is longer (by
    ``max_norm / (norm + 1e-6)``); returns the norm before, as a float."""
    values = grads.numpy()
    norm = math.sqrt(float(np.dot(values, values)))
    if max_norm is not None and norm > max_norm:
        values *= np.float32(max_norm / (norm + 1e-6))
    return norm
