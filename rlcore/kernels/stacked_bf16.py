"""Several bfloat16 MLPs of one shape on the same rows (SAC's and TD3's twin critics), their wide products batched.

Reproduces: :meth:`BF16MLPKernel.forward` and :meth:`BF16MLPKernel.backward` of each network in turn, on the same
input rows (:class:`~rlcore.kernels.continuous_q.CriticsKernel`'s reference path, which runs the critics one by
one). The thin first and last layers run the same numba passes (:mod:`~rlcore.kernels.thin_layers_bf16`) per
network; each wide layer's ``K`` products run as one batched product (``torch.baddbmm``/``torch.bmm`` over
``[K, B, in]``) instead of ``K`` calls. ``tests/test_kernels.py`` holds the outputs and every gradient to the
one-by-one path.

Why: one batched product costs less than its ``K`` parts: a ``[256, 400] @ [400, 300]`` bfloat16 pair took ~5%
less time as one ``bmm`` on one thread (less oneDNN call overhead) and 15-22% less on two threads (each thread takes
one network's product, where two threads splitting one product of this size scale poorly); measured on a 2-core
AVX512-BF16 CPU, forward and backward alike, at SAC's 256x256 and TD3's 400x300. A whole gradient step
(``benchmarks/stacked_critics.py``): 1.01-1.08x faster on two threads; on one, SAC 1.03-1.05x, TD3 0.97-1.04x.

What it covers (:func:`stackable`): two or more :class:`BF16MLPKernel` networks of the same layer shapes, ReLU,
each with a fused thin first layer and a fused thin last layer around wide layers only (every SAC/TD3 critic on
vector observations); anything else runs one by one.

Each network's bfloat16 weight and bias buffers become views into the stacked ones, so the networks' own
:meth:`BF16MLPKernel.refresh_weights` keeps both paths' weights current.
"""

from __future__ import annotations

import numpy as np
import torch

from rlcore.kernels.mlp_bf16 import BF16, BF16MLPKernel
from rlcore.kernels.thin_layers_bf16 import (
    bits,
    first_layer_backward,
    first_layer_forward,
    last_layer_backward,
    last_layer_forward,
)


def stackable(kernels: list[object]) -> bool:
    """Whether :class:`StackedBF16MLPs` runs these networks (see the module docstring)."""
    if len(kernels) < 2 or not all(type(kernel) is BF16MLPKernel for kernel in kernels):
        return False
    first: BF16MLPKernel = kernels[0]  # type: ignore[assignment]
    shapes = [weight.shape for weight in first.weights]
    if not (first.relu and first.fused_first and first.fused_last and all(first.wide[1:-1])):
        return False
    return all(kernel.relu and [weight.shape for weight in kernel.weights] == shapes  # type: ignore[attr-defined]
               and bool(kernel.weight_grads) == bool(first.weight_grads) for kernel in kernels)  # type: ignore[attr-defined]


class _StackedBuffers:
    """One purpose's and batch size's stacked bfloat16 buffers ``[K, B, width]`` per wide layer (and their bits).

    Between two wide layers one buffer serves both sides: the lower layer's output is ReLU'd in place into the
    upper one's input, and the upper layer's input gradient (masked by that ReLU) is the lower one's output gradient.
    """

    def __init__(self, count: int, rows: int, wide_shapes: list[tuple[int, int]], inputs: int) -> None:
        self.inputs = [torch.empty(count, rows, wide_shapes[0][1], dtype=BF16)]
        self.outputs = [torch.empty(count, rows, outputs, dtype=BF16) for outputs, _ in wide_shapes]
        self.inputs += self.outputs[:-1]
        self.input_grads = [torch.empty_like(x) for x in self.inputs]
        self.output_grads = [*self.input_grads[1:], torch.empty_like(self.outputs[-1])]
        self.first_in_bits = bits(self.inputs[0])
        self.first_grad_bits = bits(self.input_grads[0])
        self.last_out_bits = bits(self.outputs[-1])
        self.last_grad_bits = bits(self.output_grads[-1])
        self.values = np.empty((count, rows, 1), np.float32)
        self.input_grad = np.empty((count, rows, inputs), np.float32)


class StackedBF16MLPs:
    """``K`` :class:`BF16MLPKernel` networks of one shape run on the same rows with batched wide products.

    Shapes: :meth:`forward` ``[B, in]`` float32 -> ``[K, B, 1]`` float32 (a buffer of ``purpose``);
    :meth:`backward` ``[K, B, 1]`` float32 output gradients -> each network's parameter ``.grad`` (overwritten) and,
    when asked, the input gradients ``[K, B, in]``.
    """

    MAX_BUFFER_SETS = 8

    def __init__(self, kernels: list[BF16MLPKernel]) -> None:
        if not stackable(kernels):  # type: ignore[arg-type]
            raise ValueError("these networks do not stack: see rlcore.kernels.stacked_bf16.stackable")
        self.kernels = kernels
        self.count = len(kernels)
        last = len(kernels[0].weights) - 1
        self.wide_layers = list(range(1, last))
        self.wide_shapes = [tuple(kernels[0].weights[index].shape) for index in self.wide_layers]
        self.weights16 = [torch.empty(self.count, *shape, dtype=BF16) for shape in self.wide_shapes]
        self.biases16 = [torch.empty(self.count, 1, shape[0], dtype=BF16) for shape in self.wide_shapes]
        self._grads16 = [torch.empty_like(weights) for weights in self.weights16]
        for k, kernel in enumerate(kernels):  # the networks' own buffers become views: one refresh fills both
            for slot, index in enumerate(self.wide_layers):
                self.weights16[slot][k].copy_(kernel.weights16[index])  # type: ignore[arg-type]
                self.biases16[slot][k, 0].copy_(kernel.biases16[index])  # type: ignore[arg-type]
                kernel.weights16[index] = self.weights16[slot][k]
                kernel.biases16[index] = self.biases16[slot][k, 0]
        self._sets: dict[tuple[str, int], _StackedBuffers] = {}

    def _buffers(self, purpose: str, rows: int) -> _StackedBuffers:
        key = (purpose, rows)
        buffers = self._sets.get(key)
        if buffers is None:
            if len(self._sets) >= self.MAX_BUFFER_SETS:
                self._sets.pop(next(iter(self._sets)))
            buffers = self._sets[key] = _StackedBuffers(self.count, rows, self.wide_shapes,  # type: ignore[arg-type]
                                                        self.kernels[0].weights[0].shape[1])
        return buffers

    def forward(self, x: np.ndarray, purpose: str = "train") -> np.ndarray:
        """Every network's output ``[K, B, 1]`` on ``x`` ``[B, in]``; what :meth:`backward` needs stays in the
        buffers of ``purpose``."""
        rows = x.shape[0]
        buffers = self._buffers(purpose, rows)
        for k, kernel in enumerate(self.kernels):
            scratch = kernel._buffer_set(purpose, rows)[0][0][0]  # its float32 first-layer output, a scratch here
            first_layer_forward(x, kernel._first_in_out, kernel.biases[0], scratch, buffers.first_in_bits[k])
        for slot in range(len(self.wide_layers)):
            out16 = buffers.outputs[slot]
            torch.baddbmm(self.biases16[slot], buffers.inputs[slot], self.weights16[slot].transpose(1, 2), out=out16)
            if slot + 1 < len(self.wide_layers):  # in place: it is the next wide layer's input
                out16.relu_()
        last = self.wide_layers[-1] + 1
        for k, kernel in enumerate(self.kernels):
            last_layer_forward(buffers.last_out_bits[k], kernel.weights[last], kernel.biases[last], buffers.values[k])
        return buffers.values

    def backward(self, x: np.ndarray, grad_output: np.ndarray, purpose: str = "train", input_grad: bool = False,
                 param_grads: bool = True) -> np.ndarray | None:
        """The backward of the last :meth:`forward` of ``purpose`` on ``x`` for output gradients ``grad_output``
        ``[K, B, 1]``: each network's ``.grad`` (when ``param_grads``) and the input gradients ``[K, B, in]`` (when
        ``input_grad``, else None)."""
        rows = x.shape[0]
        buffers = self._buffers(purpose, rows)
        last = self.wide_layers[-1] + 1
        for k, kernel in enumerate(self.kernels):
            weight_grad, bias_grad = kernel._param_grads_or_none(last, param_grads)
            last_layer_backward(grad_output[k], buffers.last_out_bits[k], kernel.weights[last], weight_grad, bias_grad,
                                param_grads, buffers.last_grad_bits[k],
                                kernel.bias_grads[last - 1] if param_grads else kernel._no_bias)
        for slot in reversed(range(len(self.wide_layers))):
            grad16, index = buffers.output_grads[slot], self.wide_layers[slot]
            if param_grads:
                torch.bmm(grad16.transpose(1, 2), buffers.inputs[slot], out=self._grads16[slot])
                for k, kernel in enumerate(self.kernels):
                    kernel.weight_grads_t[index].copy_(self._grads16[slot][k])  # type: ignore[union-attr]
                    if slot + 1 < len(self.wide_layers):  # the last wide layer's bias gradient came with the pass
                        torch.sum(grad16[k], dim=0, dtype=torch.float32, out=kernel.bias_grads_t[index])
            below16 = buffers.input_grads[slot]
            torch.bmm(grad16, self.weights16[slot], out=below16)
            if slot > 0:  # through the ReLU of the wide layer below (in place: its output gradient)
                torch.ops.aten.threshold_backward.grad_input(below16, buffers.inputs[slot], 0.0, grad_input=below16)
        grads = buffers.input_grad if input_grad else None
        for k, kernel in enumerate(self.kernels):
            scratch = kernel._buffer_set(purpose, rows)[1][1][0]  # its float32 wide-layer input gradient
            x_grad = grads[k] if grads is not None else kernel._buffer_set(purpose, rows)[1][0][0]
            first_layer_backward(x, buffers.first_in_bits[k], buffers.first_grad_bits[k], kernel._first_in_out,
                                 scratch, *kernel._param_grads_or_none(0, param_grads), param_grads, input_grad,
                                 x_grad)
        return grads


__all__ = ["StackedBF16MLPs", "stackable"]
