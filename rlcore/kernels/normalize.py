"""The running observation normalization's per-step work, one compiled (numba) call each.

Reproduces: :meth:`rlcore.normalize.RunningMeanStd.update` (Chan et al.'s merge of a batch's mean and variance, in
float64) followed by :meth:`rlcore.normalize.ObservationNormalizer.refresh` (the float32 mean and ``1 / sqrt(var +
eps)``), and :meth:`rlcore.normalize.ObservationNormalizer.normalize`'s host path (``clip((obs - mean) * inv_std)``
in float32), for a ``[B, D]`` C-contiguous float32 or float64 batch. The same IEEE operations in the same order
(numpy reduces a C-contiguous ``[B, D]`` array over axis 0 row after row, as the loops here do; no fast-math), so the
results are bit for bit the reference's: ``tests/test_kernels.py`` checks that.

Why: with ``normalize: true`` (rl-zoo's setting for MountainCar, Acrobot, Pendulum, BipedalWalker, ...) every vector
step updates and applies the statistics. In numpy that is ~25 small array operations, ~1 us of dispatch each on
arrays of 16 x 6 floats: ~20% of A2C's own per-step time on Acrobot. Here it is two calls of ~1-2 us.
"""

from __future__ import annotations

import numba
import numpy as np


def applies(values: np.ndarray) -> bool:
    """Whether the kernels take this batch: a C-contiguous ``[B, D]`` float32/float64 array with ``B >= 1``."""
    return (values.ndim == 2 and values.shape[0] > 0 and values.dtype in (np.float32, np.float64)
            and values.flags.c_contiguous)


@numba.njit(cache=True, nogil=True)
def merged_moments(values: np.ndarray, mean: np.ndarray, var: np.ndarray, count: float,
                   epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:  # pragma: no cover
    """``(mean, var, mean32, inv_std32)`` after folding ``values [B, D]`` into ``(mean [D], var [D], count)``.

    ``mean``/``var`` are float64 ``[D]`` (new arrays), ``mean32``/``inv_std32`` their float32 normalization
    constants (``1 / sqrt(var + epsilon)``).
    """
    rows, width = values.shape
    new_mean, new_var = np.empty(width), np.empty(width)
    mean32, inv_std32 = np.empty(width, np.float32), np.empty(width, np.float32)
    total = count + rows
    for column in range(width):
        running = 0.0
        for row in range(rows):
            running += np.float64(values[row, column])
        batch_mean = running / rows
        running = 0.0
        for row in range(rows):
            centered = np.float64(values[row, column]) - batch_mean
            running += centered * centered
        batch_var = running / rows
        delta = batch_mean - mean[column]
        spread = var[column] * count + batch_var * rows
        new_mean[column] = mean[column] + delta * (rows / total)
        new_var[column] = (spread + delta * delta * (count * rows / total)) / total
        mean32[column] = np.float32(new_mean[column])
        inv_std32[column] = np.float32(1.0 / np.sqrt(new_var[column] + epsilon))
    return new_mean, new_var, mean32, inv_std32


@numba.njit(cache=True, nogil=True)
def normalized_rows(values: np.ndarray, mean32: np.ndarray, inv_std32: np.ndarray,
                    clip: float) -> np.ndarray:  # pragma: no cover
    """``clip((float32(values) - mean32) * inv_std32, -clip, clip)``: ``[B, D]`` -> a new float32 ``[B, D]``
    (NaN stays NaN, as ``np.clip`` leaves it)."""
    rows, width = values.shape
    out = np.empty((rows, width), np.float32)
    low, high = np.float32(-clip), np.float32(clip)
    for row in range(rows):
        for column in range(width):
            scaled = (np.float32(values[row, column]) - mean32[column]) * inv_std32[column]
            if scaled < low:
                scaled = low
            elif scaled > high:
                scaled = high
            out[row, column] = scaled
    return out
