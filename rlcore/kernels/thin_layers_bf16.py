"""The thin ReLU layers around a bfloat16 network's wide layers: their elementwise work fused into one numba pass each.

Reproduces: in :class:`~rlcore.kernels.mlp_bf16.BF16MLPKernel`, what a thin Linear layer (an observation's few
inputs, a Q-value's one output: see :data:`~rlcore.kernels.mlp_bf16.BF16_MIN_DIM`) next to a wide bfloat16 layer
computes in float32, with the ReLU and the rounding to or from bfloat16 between them:

- :func:`first_layer_forward`: ``bf16(relu(x @ W.T + b))`` (the wide layer's bfloat16 input);
- :func:`last_layer_forward`: ``relu(float32(z)) @ W.T + b`` of the wide layer's bfloat16 output ``z``;
- :func:`last_layer_backward`: that layer's weight and bias gradients, ``bf16((g @ W) * (z > 0))`` (the wide
  layer's incoming gradient) and its sum over rows (the wide layer's bias gradient);
- :func:`first_layer_backward`: the first layer's weight and bias gradients (and the input's) from the wide layer's
  bfloat16 input gradient, masked by the ReLU.

Written apart, each is 3-5 torch/numpy operations (a product, the bias, the ReLU or its mask, a cast) over a
``[B, 256]`` float32 buffer that exists only to be cast; here the last layer's are one pass that reads and writes
bfloat16 directly (~25-40% of SAC's Pendulum step went to casts and these elementwise passes). The first layer's
product grows with the observation (24 + 4 inputs on BipedalWalker against Pendulum's 3 + 1), so it runs in numpy's
BLAS from :data:`BLAS_MIN_INPUTS` inputs, where only its bias, ReLU and rounding (or the gradient's widening, ReLU
mask and bias sum) are one pass: at 28 inputs a forward took ~100 us instead of ~170 us and a backward ~130 us
instead of ~170 us inside a TD3 step (~0.5 ms of its ~6.5 ms). ``tests/test_kernels.py``
holds the bfloat16 kernel, with these passes, to autocast, and :func:`tests.test_kernels` checks each pass against
numpy.

bfloat16 values travel as their ``uint16`` bits (numba has no bfloat16 type): float32 -> bfloat16 rounds to the
nearest even as torch does (:func:`round_to_bf16`); bfloat16 -> float32 is exact (a 16-bit shift).
"""

from __future__ import annotations

import numba
import numpy as np
import torch

BLAS_MIN_INPUTS = 16
"""A first layer of at least this many inputs runs its products in numpy's BLAS (over a float32 ``[B, N]`` scratch
buffer), a thinner one as one numba loop per direction writing bfloat16 directly. Inside a TD3 step (256 rows,
400 outputs, measured side by side in one process): at 24 + 4 inputs the BLAS path took 7-8% less time a step (the
loops read the inputs one by one: ~170 us a call, against ~100-130 us), at 11 + 3 the two were even, at 3 + 1 the
loops took ~4% less (the scratch buffer costs more cache misses than the tiny product saves)."""

FASTMATH = {"contract", "reassoc"}
"""Sums may be reordered (vectorized dot products); no assumption about NaN or infinity (they propagate)."""


def bits(tensor: torch.Tensor) -> np.ndarray:
    """A bfloat16 tensor's memory as a ``uint16`` numpy array (no copy)."""
    return tensor.view(torch.uint16).numpy()


@numba.njit(cache=True, inline="always")
def round_to_bf16(row: np.ndarray, out: np.ndarray) -> None:
    """``out[j] = bfloat16(row[j])`` (float32 ``row``, round to nearest even; ``out`` as uint16 bits)."""
    raw = row.view(np.uint32)
    for j in range(raw.shape[0]):
        value = raw[j]
        out[j] = np.uint16((value + np.uint32(0x7FFF) + ((value >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16))


@numba.njit(cache=True, inline="always")
def widen(row_bits: np.ndarray, out: np.ndarray) -> None:
    """``out[j] = float32(bfloat16 row_bits[j])`` (``out`` a float32 array's uint32 view)."""
    for j in range(row_bits.shape[0]):
        out[j] = np.uint32(row_bits[j]) << np.uint32(16)


def first_layer_forward(x: np.ndarray, weight_in_out: np.ndarray, bias: np.ndarray, scratch: np.ndarray,
                        out_bits: np.ndarray) -> None:
    """``out = bf16(relu(x @ weight_in_out + bias))``: x ``[B, K]`` float32, weight_in_out ``[K, N]`` (contiguous),
    bias ``[N]``, scratch ``[B, N]`` float32 (overwritten), out_bits ``[B, N]`` bfloat16 bits.

    From :data:`BLAS_MIN_INPUTS` inputs the product runs in numpy's BLAS and one pass adds the bias, applies the ReLU
    and rounds; below, one numba loop does it all (scratch unused)."""
    if x.shape[1] < BLAS_MIN_INPUTS:
        _first_layer_forward_loop(x, weight_in_out, bias, out_bits)
        return
    np.matmul(x, weight_in_out, out=scratch)
    _bias_relu_to_bf16(scratch, bias, out_bits)


@numba.njit(cache=True, fastmath=FASTMATH)
def _first_layer_forward_loop(x: np.ndarray, weight_in_out: np.ndarray, bias: np.ndarray,
                              out_bits: np.ndarray) -> None:
    """``out = bf16(relu(x @ weight_in_out + bias))``: x ``[B, K]`` float32, weight_in_out ``[K, N]`` (contiguous),
    bias ``[N]``, out_bits ``[B, N]`` bfloat16 bits."""
    rows, inputs = x.shape
    row = np.empty(bias.shape[0], np.float32)
    width = bias.shape[0]
    for i in range(rows):
        for j in range(width):
            row[j] = bias[j]
        for k in range(inputs):
            x_ik = x[i, k]
            for j in range(width):
                row[j] += x_ik * weight_in_out[k, j]
        for j in range(width):
            row[j] = max(row[j], np.float32(0.0))
        round_to_bf16(row, out_bits[i])


@numba.njit(cache=True, fastmath=FASTMATH)
def _bias_relu_to_bf16(product: np.ndarray, bias: np.ndarray, out_bits: np.ndarray) -> None:
    """``out_bits = bf16(relu(product + bias))``, row by row (``product`` ``[B, N]`` float32 is overwritten)."""
    for i in range(product.shape[0]):
        row = product[i]
        for j in range(row.shape[0]):
            row[j] = max(row[j] + bias[j], np.float32(0.0))
        round_to_bf16(row, out_bits[i])


@numba.njit(cache=True, fastmath=FASTMATH)
def last_layer_forward(z_bits: np.ndarray, weight: np.ndarray, bias: np.ndarray, out: np.ndarray) -> None:
    """``out = relu(float32(z)) @ weight.T + bias``: z_bits ``[B, N]`` bfloat16 bits (the wide layer's output before
    its ReLU), weight ``[M, N]``, out ``[B, M]`` float32."""
    rows, width = z_bits.shape
    hidden = np.empty(width, np.float32)
    hidden_raw = hidden.view(np.uint32)
    for i in range(rows):
        widen(z_bits[i], hidden_raw)
        for j in range(width):
            hidden[j] = max(hidden[j], np.float32(0.0))
        for m in range(weight.shape[0]):
            total = np.float32(0.0)
            for j in range(width):
                total += hidden[j] * weight[m, j]
            out[i, m] = total + bias[m]


@numba.njit(cache=True, fastmath=FASTMATH)
def last_layer_backward(grad: np.ndarray, z_bits: np.ndarray, weight: np.ndarray, weight_grad: np.ndarray,
                        bias_grad: np.ndarray, param_grads: bool, below_bits: np.ndarray,
                        below_bias_grad: np.ndarray) -> None:
    """For ``out = relu(z) @ weight.T + b`` (``z`` bfloat16 bits ``[B, N]``) and ``grad = dL/dout`` ``[B, M]``:
    writes ``below_bits = bf16(dL/dz)`` ``[B, N]`` (``grad @ weight`` where ``z > 0``) and, when ``param_grads``,
    ``weight_grad [M, N]``, ``bias_grad [M]`` and the wide layer's ``below_bias_grad [N]`` (``dL/dz`` summed over
    rows)."""
    rows, width = z_bits.shape
    outputs = weight.shape[0]
    if param_grads:
        weight_grad[:, :] = 0.0
        bias_grad[:] = 0.0
        below_bias_grad[:] = 0.0
    hidden = np.empty(width, np.float32)
    hidden_raw = hidden.view(np.uint32)
    below = np.empty(width, np.float32)
    for i in range(rows):
        widen(z_bits[i], hidden_raw)
        for j in range(width):
            hidden[j] = max(hidden[j], np.float32(0.0))
        for j in range(width):
            below[j] = 0.0
        for m in range(outputs):
            g = grad[i, m]
            for j in range(width):
                below[j] += g * weight[m, j]
            if param_grads:
                for j in range(width):
                    weight_grad[m, j] += g * hidden[j]
                bias_grad[m] += g
        for j in range(width):
            if hidden[j] <= 0.0:
                below[j] = 0.0
        round_to_bf16(below, below_bits[i])
        if param_grads:
            for j in range(width):
                below_bias_grad[j] += below[j]


def first_layer_backward(x: np.ndarray, h_bits: np.ndarray, grad_bits: np.ndarray, weight_in_out: np.ndarray,
                         scratch: np.ndarray, weight_grad: np.ndarray, bias_grad: np.ndarray, param_grads: bool,
                         input_grad: bool, x_grad: np.ndarray) -> None:
    """For ``h = relu(x @ weight_in_out + b)`` (bfloat16 ``h_bits`` ``[B, N]``) and ``grad_bits = dL/dh`` (bfloat16
    ``[B, N]``): writes ``weight_grad [N, K]``, ``bias_grad [N]`` (when ``param_grads``) and ``x_grad = dL/dx``
    ``[B, K]`` (when ``input_grad``); x ``[B, K]`` float32, weight_in_out ``[K, N]``, scratch ``[B, N]`` float32
    (overwritten with the gradient before the ReLU).

    From :data:`BLAS_MIN_INPUTS` inputs one pass widens the gradient, masks it by the ReLU and sums the bias gradient,
    and the two products run in numpy's BLAS; below, one numba loop does it all (scratch unused)."""
    if x.shape[1] < BLAS_MIN_INPUTS:
        _first_layer_backward_loop(x, h_bits, grad_bits, weight_in_out, weight_grad, bias_grad, param_grads,
                                   input_grad, x_grad)
        return
    _relu_grad_from_bf16(h_bits, grad_bits, scratch, bias_grad, param_grads)
    if param_grads:
        np.matmul(scratch.T, x, out=weight_grad)
    if input_grad:
        np.matmul(scratch, weight_in_out.T, out=x_grad)


@numba.njit(cache=True, fastmath=FASTMATH)
def _relu_grad_from_bf16(h_bits: np.ndarray, grad_bits: np.ndarray, out: np.ndarray, bias_grad: np.ndarray,
                         sum_rows: bool) -> None:
    """``out = float32(grad) * (h > 0)`` ``[B, N]`` from bfloat16 bits; with ``sum_rows``, ``bias_grad = out.sum(0)``
    ``[N]``."""
    rows, width = h_bits.shape
    hidden = np.empty(width, np.float32)
    hidden_raw = hidden.view(np.uint32)
    if sum_rows:
        bias_grad[:] = 0.0
    for i in range(rows):
        widen(h_bits[i], hidden_raw)
        row = out[i]
        widen(grad_bits[i], row.view(np.uint32))
        for j in range(width):
            row[j] = row[j] if hidden[j] > 0.0 else np.float32(0.0)
        if sum_rows:
            for j in range(width):
                bias_grad[j] += row[j]


@numba.njit(cache=True, fastmath=FASTMATH)
def _first_layer_backward_loop(x: np.ndarray, h_bits: np.ndarray, grad_bits: np.ndarray, weight_in_out: np.ndarray,
                               weight_grad: np.ndarray, bias_grad: np.ndarray, param_grads: bool, input_grad: bool,
                               x_grad: np.ndarray) -> None:
    """For ``h = relu(x @ weight_in_out + b)`` (bfloat16 ``h_bits`` ``[B, N]``) and ``grad_bits = dL/dh`` (bfloat16
    ``[B, N]``): writes ``weight_grad [N, K]``, ``bias_grad [N]`` (when ``param_grads``) and ``x_grad = dL/dx``
    ``[B, K]`` (when ``input_grad``); x ``[B, K]`` float32, weight_in_out ``[K, N]`` contiguous."""
    rows, inputs = x.shape
    width = h_bits.shape[1]
    transposed = np.zeros((inputs, width), np.float32)  # weight_grad.T, summed along contiguous rows
    if param_grads:
        bias_grad[:] = 0.0
    hidden = np.empty(width, np.float32)
    hidden_raw = hidden.view(np.uint32)
    g = np.empty(width, np.float32)
    g_raw = g.view(np.uint32)
    for i in range(rows):
        widen(h_bits[i], hidden_raw)
        widen(grad_bits[i], g_raw)
        for j in range(width):
            if hidden[j] <= 0.0:
                g[j] = 0.0
        if param_grads:
            for j in range(width):
                bias_grad[j] += g[j]
            for k in range(inputs):
                x_ik = x[i, k]
                for j in range(width):
                    transposed[k, j] += x_ik * g[j]
        if input_grad:
            for k in range(inputs):
                total = np.float32(0.0)
                for j in range(width):
                    total += g[j] * weight_in_out[k, j]
                x_grad[i, k] = total
    if param_grads:
        for j in range(width):
            for k in range(inputs):
                weight_grad[j, k] = transposed[k, j]
