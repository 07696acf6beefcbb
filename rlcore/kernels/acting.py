"""One compiled call for a collecting step of the stock actor-critic: normalize, both heads, sample.

Reproduces, for a vector-Box observation batch on the CPU (:meth:`rlcore.algos.onpolicy.OnPolicyAlgorithm.explore`
with :class:`~rlcore.kernels.actor_critic.ActorCriticKernel`, no action mask, no memory):

- :meth:`rlcore.normalize.ObservationNormalizer.update` (:meth:`~rlcore.normalize.RunningMeanStd.update`'s
  float64 merge of the batch's moments) and :meth:`~rlcore.normalize.ObservationNormalizer.normalize`
  (``clip((obs - mean) * inv_std)`` in float32), when the algorithm normalizes observations;
- the actor's and the critic's plain MLP forwards (:meth:`~rlcore.kernels.mlp.MLPKernel.predict`);
- :meth:`~rlcore.kernels.distributions.categorical_sample` (inverse CDF of the same uniforms),
  :meth:`~rlcore.kernels.distributions.gaussian_sample` (the same normal draws) or gSDE's
  :meth:`~rlcore.distributions.StateDependentGaussian.sample` (each env's noise matrix times the actor's last
  hidden features, :func:`gsde_sample`), with the log-probability.

The step it replaces makes ~40 numpy and torch calls of ~1-3 us each on arrays of a few hundred floats (the
normalizer ~30 us, the two heads ~20 us, the Gaussian's log-probability ~30 us for 8 envs); here it is one numba
call. What differs from the reference is rounding only: the matrix products sum in another order than
OpenBLAS's, and ``tanh`` is computed from a polynomial ``exp`` (:func:`tanh`, within ~2 float32 ulps of numpy's)
since numba without SVML calls libm's scalar ``tanhf`` (~16 ns an element, more than the products).
``tests/test_kernels_acting.py`` holds each output to the reference path on the same inputs and draws.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from rlcore.distributions import GSDE_EPSILON, LOG_SQRT_2PI

CATEGORICAL, GAUSSIAN, GSDE = 0, 1, 2
"""Distribution ids of :func:`explore_step`."""
_GSDE_EPSILON = np.float32(GSDE_EPSILON)
_F2, _F3, _F4, _F5, _F6, _F7, _F8, _F9, _F10, _F11, _F12 = (1.0 / math.factorial(k) for k in range(2, 13))
"""``1 / k!``, the Taylor coefficients of ``exp``."""
_TANH_SATURATION = 9.5
"""``|x|`` above which float32 ``tanh`` is 1 (tanh(9.01) already rounds to 1.0f)."""


@numba.njit(cache=True, inline="always", error_model="numpy")
def tanh(x: float) -> float:
    """``tanh(x)`` in float64 from ``e = exp(-2|x|)``: ``(1 - e) / (1 + e)`` with the sign of ``x``.

    ``exp(t)`` for ``t = -2|x| in [-19, 0]`` is ``exp(t / 16) ** 16``, the inner one a degree-12 Taylor polynomial
    (|t / 16| <= 1.19: truncation error ~1e-10, ~2e-9 after the 4 squarings), all plain arithmetic, so the loops
    that apply it vectorize (libm's scalar ``tanh`` does not; nor does any loop with a division under numba's
    default Python error model, hence ``error_model="numpy"`` on this module's kernels). Absolute error < 1e-8, under
    a float32 ulp near 1; NaN gives NaN.
    """
    magnitude = abs(x)
    t = (_TANH_SATURATION if magnitude > _TANH_SATURATION else magnitude) * (-2.0 / 16.0)  # NaN stays NaN
    e = 1.0 + t * (1.0 + t * (_F2 + t * (_F3 + t * (_F4 + t * (_F5 + t * (_F6 + t * (_F7 + t * (
        _F8 + t * (_F9 + t * (_F10 + t * (_F11 + t * _F12)))))))))))
    e *= e
    e *= e
    e *= e
    e *= e
    if magnitude < 1e-4:  # tanh(x) = x (1 - x^2 / 3 + ...): exact in float32 here, where 1 - e would cancel
        return x
    return math.copysign((1.0 - e) / (1.0 + e), x)


@numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz", "arcp"}, error_model="numpy")
def _dense(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """``out[:, :n] = x @ weight.T + bias`` with ``weight [n, k]`` (a Linear's layout) and ``x [B, k]``."""
    rows, k = x.shape
    n = weight.shape[0]
    for i in range(rows):
        for o in range(n):
            total = np.float32(0.0)
            for j in range(k):
                total += x[i, j] * weight[o, j]
            out[i, o] = total + bias[o]


@numba.njit(cache=True, error_model="numpy")
def _activate(out: np.ndarray, use_tanh: bool) -> None:
    """tanh (:func:`tanh`) or ReLU in place on a contiguous ``[B, n]``."""
    values = out.reshape(-1)
    if use_tanh:
        for i in range(values.size):
            values[i] = np.float32(tanh(np.float64(values[i])))
    else:
        for i in range(values.size):
            values[i] = max(values[i], np.float32(0.0))


@numba.njit(cache=True, error_model="numpy")
def mlp_forward(x: np.ndarray, flat: np.ndarray, layers: np.ndarray, first: int, count: int, use_tanh: bool,
                even: np.ndarray, odd: np.ndarray) -> np.ndarray:
    """The plain MLP of layers ``first .. first + count - 1`` of ``layers``: ``[B, in] -> [B, out]`` (a view of
    ``even`` or ``odd``, flat ``[>= B * widest]`` float32 scratch buffers the layers alternate between, viewed as
    contiguous ``[B, width]`` so that the products vectorize).

    ``flat``: the float32 buffer all parameters are views of; ``layers [L, 4]`` int64 rows ``(weight offset, out,
    in, bias offset)`` into it (a Linear's ``[out, in]`` weight). One array for every parameter: numba's dispatcher
    types a tuple of arrays element by element (~3 us each), an array in ~0.2 us.
    """
    rows = x.shape[0]
    hidden = x
    for index in range(count):
        offset, width, inputs, bias_offset = layers[first + index]
        weight = flat[offset:offset + width * inputs].reshape((width, inputs))
        out = (even if index % 2 == 0 else odd)[:rows * width].reshape((rows, width))
        _dense(hidden, weight, flat[bias_offset:bias_offset + width], out)
        if index < count - 1:
            _activate(out, use_tanh)
        hidden = out
    return hidden


@numba.njit(cache=True, error_model="numpy")
def update_moments(values: np.ndarray, mean: np.ndarray, var: np.ndarray, count: float
                   ) -> tuple[np.ndarray, np.ndarray, float]:
    """:meth:`RunningMeanStd.update <rlcore.normalize.RunningMeanStd.update>`: the batch ``[B, D]``'s float64 mean
    and variance merged into ``(mean, var, count)`` (Chan et al.); returns new arrays and the new count."""
    rows, dims = values.shape
    new_mean, new_var = np.empty(dims), np.empty(dims)
    total = count + rows
    for d in range(dims):
        batch_sum = 0.0
        for i in range(rows):
            batch_sum += np.float64(values[i, d])
        batch_mean = batch_sum / rows
        squares = 0.0
        for i in range(rows):
            centered = np.float64(values[i, d]) - batch_mean
            squares += centered * centered
        batch_var = squares / rows
        delta = batch_mean - mean[d]
        spread = var[d] * count + batch_var * rows
        new_mean[d] = mean[d] + delta * (rows / total)
        new_var[d] = (spread + delta * delta * (count * rows / total)) / total
    return new_mean, new_var, total


@numba.njit(cache=True, inline="always", error_model="numpy")
def clipped(value: float, limit: float) -> float:
    """``value`` clipped to ``[-limit, limit]``, NaN kept (as ``np.clip``)."""
    if value < -limit:
        return -limit
    if value > limit:
        return limit
    return value


@numba.njit(cache=True, error_model="numpy")
def normalize_into(values: np.ndarray, mean32: np.ndarray, inv_std32: np.ndarray, clip: float, out: np.ndarray
                   ) -> None:
    """:meth:`ObservationNormalizer.normalize <rlcore.normalize.ObservationNormalizer.normalize>` in float32."""
    limit = np.float32(clip)
    for i in range(values.shape[0]):
        for d in range(values.shape[1]):
            out[i, d] = clipped((np.float32(values[i, d]) - mean32[d]) * inv_std32[d], limit)


@numba.njit(cache=True, error_model="numpy")
def categorical_sample(logits: np.ndarray, uniform: np.ndarray, actions: np.ndarray, log_probs: np.ndarray) -> None:
    """:func:`rlcore.kernels.distributions.categorical_sample` row by row (float32, the same cumulative sums)."""
    rows, n = logits.shape
    weights = np.empty(n, np.float32)
    for i in range(rows):
        largest = logits[i, 0]
        for a in range(1, n):
            largest = max(largest, logits[i, a])
        total = np.float32(0.0)
        for a in range(n):  # the cumulative sums of exp(logits - largest)
            total += np.exp(logits[i, a] - largest)
            weights[a] = total
        threshold = uniform[i, 0] * total
        below = 0
        for a in range(n):
            if weights[a] < threshold:
                below += 1
        action = min(below, n - 1)
        actions[i] = action
        log_probs[i] = (logits[i, action] - largest) - np.float32(np.log(total))


@numba.njit(cache=True, error_model="numpy")
def gaussian_sample(means: np.ndarray, noise: np.ndarray, log_std: np.ndarray, samples: np.ndarray,
                    log_probs: np.ndarray) -> None:
    """:func:`rlcore.kernels.distributions.gaussian_sample`: ``means + exp(log_std) * noise`` and its log-density."""
    rows, dims = means.shape
    std, inv_std = np.exp(log_std), np.exp(-log_std)
    constant = np.float32(0.0)
    for d in range(dims):
        constant += log_std[d]
    constant += np.float32(dims * LOG_SQRT_2PI)
    for i in range(rows):
        total = np.float32(0.0)
        for d in range(dims):
            sample = noise[i, d] * std[d] + means[i, d]
            samples[i, d] = sample
            z = (sample - means[i, d]) * inv_std[d]
            total += np.float32(-0.5) * z * z
        log_probs[i] = total - constant


@numba.njit(cache=True, error_model="numpy")
def gsde_sample(means: np.ndarray, latent: np.ndarray, matrices: np.ndarray, log_std: np.ndarray,
                samples: np.ndarray, log_probs: np.ndarray) -> None:
    """:class:`~rlcore.distributions.StateDependentGaussian`'s ``sample`` then ``log_prob``: row ``i``'s action is
    ``means[i] + latent[i] @ matrices[i]`` (``[B, d]``, ``[B, L]``, ``[B, L, d]``) and its log-density that of a
    Gaussian with variance ``latent[i]^2 @ exp(2 log_std) + 1e-6`` (``log_std [L, d]``)."""
    rows, dims = means.shape
    width = latent.shape[1]
    weight_variance = np.exp(np.float32(2.0) * log_std)
    constant = np.float32(dims * LOG_SQRT_2PI)
    for i in range(rows):
        total = np.float32(0.0)
        for j in range(dims):
            noise, variance = np.float32(0.0), np.float32(0.0)
            for k in range(width):
                feature = latent[i, k]
                noise += feature * matrices[i, k, j]
                variance += feature * feature * weight_variance[k, j]
            std = np.sqrt(variance + _GSDE_EPSILON)
            sample = means[i, j] + noise
            samples[i, j] = sample
            z = (sample - means[i, j]) / std
            total += np.float32(-0.5) * z * z - np.log(std)
        log_probs[i] = total - constant


@numba.njit(cache=True, error_model="numpy")
def scale_rewards(reward: np.ndarray, episode_end: np.ndarray, returns: np.ndarray, mean: float, var: float,
                  count: float, gamma: float, clip: float, epsilon: float) -> tuple[np.ndarray, float, float, float]:
    """:meth:`RewardNormalizer.update_and_normalize <rlcore.normalize.RewardNormalizer.update_and_normalize>`:
    ``returns [N]`` (float64, in place) discounted and added ``reward [N]`` (float32), their moments merged into
    the scalar statistics, the returns of ended episodes (``episode_end [N]`` bool) reset, and ``reward`` scaled by
    ``1 / sqrt(var + epsilon)`` and clipped. Returns ``(scaled float32 [N], mean, var, count)``.

    The batch's sums run in order, where numpy's ``add.reduce`` pairs them: the statistics agree to float64
    rounding, not bit for bit."""
    rows = reward.shape[0]
    batch_sum = 0.0
    for i in range(rows):
        returns[i] = returns[i] * gamma + np.float64(reward[i])
        batch_sum += returns[i]
    batch_mean = batch_sum / rows
    squares = 0.0
    for i in range(rows):
        centered = returns[i] - batch_mean
        squares += centered * centered
    total = count + rows
    delta = batch_mean - mean
    spread = var * count + (squares / rows) * rows
    mean = mean + delta * (rows / total)
    var = (spread + delta * delta * (count * rows / total)) / total
    scale = np.float32(1.0 / np.sqrt(var + epsilon))
    limit = np.float32(clip)
    scaled = np.empty(rows, np.float32)
    for i in range(rows):
        if episode_end[i]:
            returns[i] = 0.0
        scaled[i] = clipped(reward[i] * scale, limit)
    return scaled, mean, var, total


@numba.njit(cache=True, error_model="numpy")
def explore_step(obs: np.ndarray, normalize: bool, mean: np.ndarray, var: np.ndarray, count: float, clip: float,
                 epsilon: float, flat: np.ndarray, layers: np.ndarray, actor_layers: int, use_tanh: bool,
                 distribution: int, draws: np.ndarray, log_std: np.ndarray, sde_log_std: np.ndarray,
                 matrices: np.ndarray, even: np.ndarray, odd: np.ndarray) -> tuple:
    """A collecting step: ``obs [B, D]`` (any float dtype) -> ``(prepared [B, D] float32, sample, log_prob [B],
    value [B], mean, var, count, mean32 [D], inv_std32 [D])``.

    With ``normalize`` the observation statistics ``(mean, var, count)`` are first updated with the batch (new
    arrays are returned, as the reference makes new tensors) and the batch normalized with the float32 copies
    (returned for the normalizer's cache); without, ``prepared`` is ``obs`` as float32. ``sample`` is ``[B]``
    int64 (``CATEGORICAL``, ``draws [B, 1]`` uniforms) or ``[B, d]`` float32 (``GAUSSIAN``, ``draws [B, d]``
    standard normals; ``GSDE``: no draws, each row's noise matrix in ``matrices [B, L, d]`` and ``sde_log_std
    [L, d]``, :func:`gsde_sample`). The actor is the first ``actor_layers`` rows of ``layers``, the critic the rest
    (see :func:`mlp_forward`, and its scratch ``even``/``odd``).
    """
    rows, dims = obs.shape
    prepared = np.empty((rows, dims), np.float32)
    mean32, inv_std32 = np.zeros(dims, np.float32), np.ones(dims, np.float32)
    if normalize:
        mean, var, count = update_moments(obs, mean, var, count)
        for d in range(dims):
            mean32[d] = np.float32(mean[d])
            inv_std32[d] = np.float32(1.0 / np.sqrt(var[d] + epsilon))
        normalize_into(obs, mean32, inv_std32, clip, prepared)
    else:
        for i in range(rows):
            for d in range(dims):
                prepared[i, d] = np.float32(obs[i, d])
    value_out = mlp_forward(prepared, flat, layers, actor_layers, layers.shape[0] - actor_layers, use_tanh, even, odd)
    values = np.empty(rows, np.float32)
    for i in range(rows):
        values[i] = value_out[i, 0]
    log_probs = np.empty(rows, np.float32)
    if distribution == GSDE:  # the actor's last hidden features (its output layer's input) drive the noise
        if actor_layers == 1:
            latent = prepared
        else:
            hidden = mlp_forward(prepared, flat, layers, 0, actor_layers - 1, use_tanh, even, odd)
            _activate(hidden, use_tanh)
            latent = hidden.copy()
        means = mlp_forward(latent, flat, layers, actor_layers - 1, 1, use_tanh, even, odd)
        samples = np.empty(means.shape, np.float32)
        gsde_sample(means, latent, matrices, sde_log_std, samples, log_probs)
        return prepared, np.empty(0, np.int64), samples, log_probs, values, mean, var, count, mean32, inv_std32
    params = mlp_forward(prepared, flat, layers, 0, actor_layers, use_tanh, even, odd)
    if distribution == CATEGORICAL:
        chosen = np.empty(rows, np.int64)
        categorical_sample(params, draws, chosen, log_probs)
        no_samples = np.empty((0, 0), np.float32)  # the Gaussian's slot: both branches return the same types
        return prepared, chosen, no_samples, log_probs, values, mean, var, count, mean32, inv_std32
    samples = np.empty(params.shape, np.float32)
    gaussian_sample(params, draws, log_std, samples, log_probs)
    return prepared, np.empty(0, np.int64), samples, log_probs, values, mean, var, count, mean32, inv_std32
