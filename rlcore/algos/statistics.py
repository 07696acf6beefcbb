"""Pure helpers on the statistics of minibatches, shared by the policy-gradient algorithms."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def standardize(values: Tensor) -> Tensor:
    """``(x - mean) / (std + 1e-8)`` over a batch ``[B]``; a single value is returned unchanged."""
    if values.shape[0] < 2:
        return values
    return (values - values.mean()) / (values.std() + 1e-8)


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """``1 - Var[target - predicted] / Var[target]`` (SB3's ``train/explained_variance``); NaN if Var is 0.

    Shapes: ``[B]`` each. CPU tensors are reduced in numpy, in float64 (~8 us instead of ~40 us for A2C's rows).
    """
    if predicted.device.type == "cpu" and target.device.type == "cpu" and target.dtype != torch.bfloat16:
        target_values = target.detach().numpy().astype(np.float64)
        if target_values.shape[0] < 2:
            return float("nan")
        host_variance = _sample_variance(target_values)
        residual = target_values - predicted.detach().float().numpy()
        return float("nan") if host_variance == 0.0 else 1.0 - _sample_variance(residual) / host_variance
    variance = target.var()
    return float("nan") if float(variance) == 0.0 else float(1.0 - (target - predicted).var() / variance)


def _sample_variance(values: np.ndarray) -> float:
    """The unbiased variance of a float64 ``[B]`` array (``B >= 2``), as ``np.var(ddof=1)`` without its wrapper."""
    centered = values - np.add.reduce(values) / values.shape[0]
    return float(np.dot(centered, centered)) / (values.shape[0] - 1)


def mean_stats(collected: list[dict[str, Tensor | float]]) -> dict[str, float]:
    """Averages per-step statistics (tensors from autograd, floats from the fast path) into ``train/<name>``."""
    if not collected:
        return {}
    if len(collected) == 1:  # one gradient step (A2C): its values
        return {f"train/{name}": float(value) for name, value in collected[0].items()}
    if isinstance(next(iter(collected[0].values())), Tensor):  # one host sync per name
        return {f"train/{name}": float(torch.stack([stats[name] for stats in collected]).float().mean())
                for name in collected[0]}
    return {f"train/{name}": float(np.mean([stats[name] for stats in collected])) for name in collected[0]}
