"""The precision of gradient steps (``amp``): what ``"auto"``, ``"bf16"`` and None mean on a device, for the
off-policy algorithms whose wide MLPs gain from bfloat16 products (SAC, TD3, DDPG, DQN)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rlcore.kernels.mlp_bf16 import bf16_speedup, fast_bf16_matmul, slow_bf16_reason

AMP_CHOICES = ("auto", "bf16", None)
"""Valid values of ``amp``."""
AUTO_BF16_MIN_WIDTH = 256
"""``amp="auto"`` trains in bfloat16 on a CPU where bfloat16 products pay (AMX or AVX512-BF16, timed:
:func:`~rlcore.kernels.mlp_bf16.fast_bf16_matmul`) when every hidden layer is at
least this wide (narrower products are too cheap for the casts to pay off, and there float32 costs little)."""


def resolve_amp(amp: str | None, device: torch.device, hidden_widths: tuple[int, ...]) -> tuple[str | None, str]:
    """``(precision, why)``: what the ``amp`` setting means on ``device`` for networks of these hidden widths
    (``"bf16"`` or None for float32), and a sentence saying why (logged)."""
    if amp is None:
        return None, "amp=None: float32 gradient steps"
    on_cpu = device.type == "cpu"
    if amp == "bf16":
        if on_cpu and not fast_bf16_matmul():
            return None, (f"amp='bf16' asked, but {slow_bf16_reason()} (bfloat16 products would be no faster than "
                          "float32): float32 gradient steps")
        return "bf16", "amp='bf16': bfloat16 products in the gradient steps (float32 weights and optimizer)"
    if not on_cpu or not fast_bf16_matmul():
        return None, f"amp='auto': float32 gradient steps ({'not a CPU' if not on_cpu else slow_bf16_reason()})"
    if min(hidden_widths, default=0) < AUTO_BF16_MIN_WIDTH:
        return None, f"amp='auto': float32 gradient steps (hidden layers under {AUTO_BF16_MIN_WIDTH} units)"
    return "bf16", ("amp='auto': bfloat16 products in the gradient steps (a CPU whose AMX or AVX512-BF16 products ran "
                    f"{bf16_speedup():.1f}x float32's speed, hidden layers "
                    f">= {AUTO_BF16_MIN_WIDTH} units; float32 weights and optimizer)")


def autocast_forward(amp: str | None, device: torch.device, network: Callable[..., Any], *inputs: Tensor) -> Any:
    """``network(*inputs)``, for a gradient step: with ``amp`` ``"bf16"`` under bfloat16 autocast, the output (a
    tensor or a tuple of them) cast back to float32, so the losses and targets stay float32."""
    if amp is None:
        return network(*inputs)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        output = network(*inputs)
    return output.float() if isinstance(output, Tensor) else tuple(part.float() for part in output)
