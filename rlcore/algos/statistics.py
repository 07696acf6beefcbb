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
    """``1 - Var[target - predicted] / Var[target]`` (SB3's ``train/explained_variance``); NaN if Var is 0."""
    variance = target.var()
    return float("nan") if float(variance) == 0.0 else float(1.0 - (target - predicted).var() / variance)


def mean_stats(collected: list[dict[str, Tensor | float]]) -> dict[str, float]:
    """Averages per-step statistics (tensors from autograd, floats from the fast path) into ``train/<name>``."""
    if not collected:
        return {}
    if isinstance(next(iter(collected[0].values())), Tensor):  # one host sync per name
        return {f"train/{name}": float(torch.stack([stats[name] for stats in collected]).float().mean())
                for name in collected[0]}
    return {f"train/{name}": float(np.mean([stats[name] for stats in collected])) for name in collected[0]}
