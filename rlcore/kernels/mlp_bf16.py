"""The plain MLP's forward and backward with bfloat16 matrix products on the CPU (AMX or AVX512-BF16), by hand in torch.

Reproduces: the plain MLP of :mod:`rlcore.kernels.mlp` run under ``torch.autocast("cpu", dtype=torch.bfloat16)``
with its output cast back to float32 (``network(x).float()``, what an algorithm's ``amp="bf16"`` reference does):
every Linear layer multiplies bfloat16 copies of its input and weight, adds the bfloat16 bias and rounds its output
to bfloat16; the activations run on those bfloat16 outputs; the backward runs in bfloat16 the same way, and the
weights' and biases' gradients land in their float32 ``.grad`` (the parameters, the optimizer and the checkpoints
stay float32: these are the "master weights"). Layers thinner than :data:`BF16_MIN_DIM` (an observation's few
inputs, a Q-value's one output) stay in float32 here, where autocast rounds them too: the kernel follows the
reference within bf16 rounding, not bit for bit. ``tests/test_kernels.py`` holds it to that autograd reference: a
relative error under 1e-2 for networks whose every layer is wide (the same products; only the bias gradients are
summed in float32 here), under 0.1 with thin layers (autocast's own distance to float32 is ~0.05 there).

Why: on CPUs with AMX tiles (Intel Sapphire Rapids and later), a one-thread ``[256, 256] @ [256, 256]`` product
takes ~50 us in bfloat16 and ~220 us in float32 (~400 us vs ~80 us for 400x300 layers; with AVX512-BF16 and no
AMX, a Zen 4 EPYC: ~170 us vs ~345 us), and these products are
most of an off-policy actor-critic's gradient step on 256-unit networks. Autocast itself pays for the casts and
its dispatch on every call (autograd's SAC step under autocast ran only ~15% faster); here the bfloat16 weights are
copied once per refresh (:meth:`BF16MLPKernel.refresh_weights`, after each optimizer step that changed them) into
buffers that live as long as the kernel, and every intermediate has a buffer reused each step.

Where AMX and AVX512-BF16 are both missing, bfloat16 products run at float32 speed or slower, and on some CPUs that
report AVX512-BF16 they are slower too: :func:`fast_bf16_matmul` (the instructions, then one timed product) is the
check an algorithm asks before choosing bfloat16.

A thin ReLU first layer below a wide layer, and a thin last layer above a wide ReLU layer (an MLP on a few
observation features with a few outputs: every SAC/TD3 network on classic control, Box2D and MuJoCo), each run as
one numba pass per direction (:mod:`~rlcore.kernels.thin_layers_bf16`; a first layer of many inputs runs its
products in numpy's BLAS and only its bias, ReLU and rounding in that pass) that reads and writes the wide layer's
bfloat16 buffers directly: SAC's Pendulum step took ~25% less CPU time than with those layers' float32 buffers,
casts and torch elementwise passes (measured side by side, the two paths toggled in one process).

The interface is :class:`~rlcore.kernels.mlp.MLPKernel`'s (float32 numpy arrays in and out), so the algorithm
kernels above take either; acting (:meth:`MLPKernel.predict`) stays in float32.
"""

from __future__ import annotations

import functools
import time
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from rlcore.kernels.mlp import Cache, LinearParams, MLPKernel, as_tensor
from rlcore.kernels.thin_layers_bf16 import (
    bits,
    first_layer_backward,
    first_layer_forward,
    last_layer_backward,
    last_layer_forward,
)

BF16 = torch.bfloat16


BF16_HARDWARE_CHECKS = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
"""torch's CPU feature checks of bfloat16 products in hardware: AMX tiles (Intel Sapphire Rapids and later) and
AVX512-BF16 dot products (e.g. AMD Zen 4, Intel Cooper Lake); their speed-ups are in the module docstring."""


BF16_MIN_SPEEDUP = 1.3
"""bfloat16 products are taken where a 256-wide one runs at least this many times faster than float32's (measured:
~2x on an AVX512-BF16 Zen 4, ~4x with AMX; 0.6-0.7x on a Xeon whose VM shows AVX512-BF16 but no AMX tiles, where
oneDNN's bfloat16 kernel ran slower than MKL's float32 one)."""


def bf16_hardware() -> bool:
    """Whether torch reports bfloat16 product instructions on this CPU (AMX tiles or AVX512-BF16); a check that
    raises counts as absent."""
    cpu = getattr(torch, "cpu", None)
    for name in BF16_HARDWARE_CHECKS:
        check = getattr(cpu, name, None)
        try:
            if check is not None and check():
                return True
        except RuntimeError:
            continue
    return False


@functools.cache
def bf16_speedup(size: int = 256, repeats: int = 7) -> float:
    """float32's time over bfloat16's for one ``[size, size] @ [size, size]`` product in torch on this CPU, with
    the torch threads of the first call (best of ``repeats`` each, interleaved, after a warm-up; ~10 ms once per
    process)."""
    generator = torch.Generator().manual_seed(0)
    left, right = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
    operands = {torch.float32: (left, right), BF16: (left.to(BF16), right.to(BF16))}
    best = {dtype: float("inf") for dtype in operands}
    for repeat in range(repeats + 1):
        for dtype, (a, b) in operands.items():
            start = time.perf_counter()
            torch.mm(a, b)
            if repeat:  # the first round creates oneDNN's primitives
                best[dtype] = min(best[dtype], time.perf_counter() - start)
    return best[torch.float32] / best[BF16]


@functools.cache
def fast_bf16_matmul() -> bool:
    """Whether bfloat16 products pay here: the CPU has the instructions (:func:`bf16_hardware`) and a 256-wide
    product runs at least :data:`BF16_MIN_SPEEDUP` times faster in bfloat16 than in float32 (:func:`bf16_speedup`;
    the instructions alone do not say it). The one check behind ``amp="auto"`` and ``amp="bf16"`` on the CPU."""
    return bf16_hardware() and bf16_speedup() >= BF16_MIN_SPEEDUP


def slow_bf16_reason() -> str:
    """Why bfloat16 products do not pay on this CPU (where :func:`fast_bf16_matmul` is False)."""
    if not bf16_hardware():
        return "this CPU has no AMX tiles nor AVX512-BF16"
    return (f"bfloat16 products ran {bf16_speedup():.2f}x float32's speed on this CPU (under {BF16_MIN_SPEEDUP}x; "
            "measured once per process)")


BF16_MIN_DIM = 64
"""Layers whose two dimensions are both at least this multiply in bfloat16; thinner ones (an observation's few
inputs, a Q-value's one output) stay in float32 numpy: a bfloat16 product costs ~25-40 us of fixed overhead (oneDNN)
where numpy's float32 one takes a few, and float32 there is the more precise."""


class BF16MLPKernel(MLPKernel):
    """:class:`MLPKernel` with the wide layers' products in bfloat16, as autocast computes them (see the module
    docstring); layers thinner than :data:`BF16_MIN_DIM` run as :class:`MLPKernel` runs them.

    Call :meth:`refresh_weights` after every change of the float32 parameters (an optimizer step, a Polyak update,
    a checkpoint load) before the next :meth:`forward`; the algorithm kernels do it at the start of each gradient
    step and after each optimizer step whose network is used again in the same step.

    Shapes: as :class:`MLPKernel`: :meth:`forward` ``[B, in]`` float32 array -> ``[B, out]`` float32 array (a
    buffer of ``purpose``); :meth:`backward` ``[B, out]`` float32 -> the ``[B, in]`` input gradient (float32) when
    asked.
    """

    def __init__(self, layers: list[LinearParams], activation: type[nn.Module], *, grads: bool = True) -> None:
        super().__init__(layers, activation, grads=grads)
        self.wide = [min(weight.shape) >= BF16_MIN_DIM for weight in self.weights]
        self.weights16 = self._bf16_like(self.weights_t)
        self.biases16 = self._bf16_like(self.biases_t)
        self.bias_grads_t = [layer.bias.grad for layer in layers] if grads else []
        self._grads16 = self._bf16_like(self.weights_t) if grads else []
        self._bf16_buffers: dict[str, dict[int, BF16Buffers]] = {}
        last = len(self.weights) - 1
        self.fused_first = self.relu and last > 0 and not self.wide[0] and self.wide[1]
        """A thin ReLU first layer below a wide one runs as one numba pass each way (:mod:`.thin_layers_bf16`)."""
        self.fused_last = self.relu and last > 0 and not self.wide[last] and self.wide[last - 1]
        """Likewise a thin last layer above a wide ReLU one."""
        self._first_in_out = np.empty(self.weights[0].shape[::-1], np.float32) if self.fused_first else None
        """The first layer's weight ``[in, out]``, contiguous (copied at each refresh) for :attr:`fused_first`."""
        self._no_grad, self._no_bias = np.empty((0, 0), np.float32), np.empty(0, np.float32)
        self.refresh_weights()

    def _bf16_like(self, tensors: list[Tensor]) -> list[Tensor | None]:
        """A bfloat16 buffer shaped like each wide layer's tensor (None for the float32 layers)."""
        return [torch.empty_like(tensor, dtype=BF16) if wide else None for tensor, wide in zip(tensors, self.wide)]

    def torch_product_dims(self) -> list[tuple[int, int]]:
        """``(inputs, outputs)`` of the wide layers (their bfloat16 products run in torch)."""
        return [(weight.shape[1], weight.shape[0]) for weight, wide in zip(self.weights, self.wide) if wide]

    def refresh_weights(self) -> None:
        """Copies the wide layers' float32 weights and biases into their bfloat16 buffers (and a fused first layer's
        weight into its transposed copy) after they changed."""
        for index, wide in enumerate(self.wide):
            if wide:
                self.weights16[index].copy_(self.weights_t[index])  # type: ignore[union-attr]
                self.biases16[index].copy_(self.biases_t[index])  # type: ignore[union-attr]
        if self._first_in_out is not None:
            np.copyto(self._first_in_out, self.weights_in_out[0])

    def _bf16_set(self, purpose: str, rows: int) -> BF16Buffers:
        """Per layer, bfloat16 buffers ``[rows, in]`` or ``[rows, out]`` for the wide layers' products (and the
        fused edges' bits views of them)."""
        sets = self._bf16_buffers.setdefault(purpose, {})
        buffers = sets.get(rows)
        if buffers is None:
            if len(sets) >= self.MAX_BUFFER_SETS:
                sets.pop(next(iter(sets)))
            ins = [torch.empty(rows, w.shape[1], dtype=BF16) for w in self.weights]
            outs = [torch.empty(rows, w.shape[0], dtype=BF16) for w in self.weights]
            out_grads, in_grads = [torch.empty_like(out) for out in outs], [torch.empty_like(x) for x in ins]
            buffers = sets[rows] = BF16Buffers(ins, outs, out_grads, in_grads, *(
                [bits(tensor) for tensor in tensors] for tensors in (ins, outs, out_grads, in_grads)))
        return buffers

    def forward(self, x: np.ndarray, purpose: str = "train") -> tuple[np.ndarray, Cache]:
        """The float32 output ``[B, out]`` and each layer's input in the layer's precision (for :meth:`backward`):
        float32 ``(array, tensor twin)`` for a thin layer, ``(_, bfloat16 tensor)`` for a wide one."""
        outputs, _ = self._buffer_set(purpose, x.shape[0])
        buffers = self._bf16_set(purpose, x.shape[0])
        inputs: Cache = []
        hidden: tuple[np.ndarray, Tensor | None] = (x, None)  # float32 (when the layer below ran in float32)
        hidden16: Tensor | None = None  # bfloat16 (when the layer below was wide)
        last = len(self.weights) - 1
        for index in range(last + 1):
            if index == 0 and self.fused_first:  # straight into the wide layer's bfloat16 input
                inputs.append(hidden)
                first_layer_forward(x, self._first_in_out, self.biases[0], outputs[0][0], buffers.inputs_bits[1])
                hidden16 = buffers.inputs[1]
                continue
            if index == last and self.fused_last:  # from the wide layer's output, ReLU'd as it is read
                inputs.append((x, hidden16))
                last_layer_forward(buffers.outputs_bits[last - 1], self.weights[last], self.biases[last],
                                   outputs[last][0])
                return outputs[last][0], inputs
            if not self.wide[index]:
                inputs.append(hidden)
                self._linear(index, hidden, outputs[index])
                if index < last:
                    self._activate(outputs[index])
                hidden, hidden16 = outputs[index], None
                continue
            if hidden16 is None:  # autocast's rounding of a float32 input
                hidden16 = buffers.inputs[index]
                hidden16.copy_(as_tensor(hidden))
            inputs.append((hidden[0], hidden16))
            out16 = buffers.outputs[index]
            torch.addmm(self.biases16[index], hidden16, self.weights16[index].t(), out=out16)  # type: ignore[arg-type]
            if index + 1 == last and self.fused_last:
                continue
            if index == last or not self.wide[index + 1]:  # a float32 layer (or the caller) reads it next
                outputs[index][1].copy_(out16)
                if index < last:  # in float32: faster, and rounding commutes with ReLU (tanh: the more precise)
                    self._activate(outputs[index])
                hidden, hidden16 = outputs[index], None
                continue
            if self.relu:
                out16.relu_()
            else:
                torch.tanh(out16, out=out16)
            hidden16 = out16
        return hidden[0], inputs

    def backward(
        self, inputs: Cache, grad_output: np.ndarray, purpose: str = "train", input_grad: bool = False,
        param_grads: bool = True,
    ) -> np.ndarray | None:
        """As :meth:`MLPKernel.backward` (overwrites every ``.grad``; the input's gradient only when asked), the wide
        layers' products in bfloat16 (their incoming gradient rounded to bfloat16 first, as autocast's cast back to
        float32 does); the weight gradients land in float32 ``.grad``, the bias gradients summed in float32."""
        outputs, input_grads = self._buffer_set(purpose, grad_output.shape[0])
        buffers = self._bf16_set(purpose, grad_output.shape[0])
        grad: np.ndarray = grad_output
        grad16: Tensor | None = None
        bias_grad_done = False  # the fused last layer summed the wide layer's bias gradient
        last = len(self.weights) - 1
        for index in range(last, -1, -1):
            if index == last and self.fused_last:  # writes the wide layer's bfloat16 incoming gradient
                last_layer_backward(grad_output, buffers.outputs_bits[last - 1], self.weights[last],
                                    *self._param_grads_or_none(last, param_grads), param_grads,
                                    buffers.output_grads_bits[last - 1],
                                    self.bias_grads[last - 1] if param_grads else self._no_bias)
                grad16, bias_grad_done = buffers.output_grads[last - 1], True
                continue
            if not self.wide[index]:
                if param_grads:
                    self._param_grads(index, grad, inputs[index])
                if index == 0 and not input_grad:
                    break
                self._input_grad(index, grad, input_grads[index])
                if index == 0:
                    return input_grads[0][0]
                self._activation_backward(input_grads[index][1], inputs[index][1])  # type: ignore[arg-type]
                grad, grad16 = input_grads[index][0], None
                continue
            from_float32 = grad16 is None
            if grad16 is None:
                grad16 = buffers.output_grads[index]
                grad16.copy_(torch.from_numpy(grad))
            layer_input16 = inputs[index][1]
            if param_grads:
                torch.mm(grad16.t(), layer_input16, out=self._grads16[index])  # type: ignore[arg-type]
                self.weight_grads_t[index].copy_(self._grads16[index])  # type: ignore[arg-type, union-attr]
                if from_float32:  # summed in float32 (autocast sums the rounded gradient in bfloat16)
                    self._bias_grad(index, grad)
                elif not bias_grad_done:
                    torch.sum(grad16, dim=0, dtype=torch.float32, out=self.bias_grads_t[index])
            bias_grad_done = False
            if index == 0 and not input_grad:
                break
            below16 = buffers.input_grads[index]
            torch.mm(grad16, self.weights16[index], out=below16)  # type: ignore[arg-type]
            if index == 1 and self.fused_first:
                x_grad = input_grads[0][0]
                first_layer_backward(inputs[0][0], buffers.inputs_bits[1], buffers.input_grads_bits[1],
                                     self._first_in_out, input_grads[1][0],
                                     *self._param_grads_or_none(0, param_grads), param_grads, input_grad, x_grad)
                return x_grad if input_grad else None
            if index > 0 and self.wide[index - 1]:
                self._activation_backward(below16, layer_input16)  # type: ignore[arg-type]
                grad16 = below16
                continue
            below = input_grads[index]  # float32 below (or the caller)
            below[1].copy_(below16)
            if index == 0:
                return below[0]
            self._activation_backward(below[1], outputs[index - 1][1])  # the float32 layer's activated output
            grad, grad16 = below[0], None
        return None

    def _param_grads_or_none(self, index: int, param_grads: bool) -> tuple[np.ndarray, np.ndarray]:
        """Layer ``index``'s weight and bias ``.grad`` arrays for a fused edge (empty arrays when not written)."""
        if param_grads:
            return self.weight_grads[index], self.bias_grads[index]
        return self._no_grad, self._no_bias


class BF16Buffers(NamedTuple):
    """One purpose's and batch size's bfloat16 buffers of a :class:`BF16MLPKernel`, per layer (and their ``uint16``
    views for the numba passes, :func:`~rlcore.kernels.thin_layers_bf16.bits`)."""

    inputs: list[Tensor]
    outputs: list[Tensor]
    output_grads: list[Tensor]
    input_grads: list[Tensor]
    inputs_bits: list[np.ndarray]
    outputs_bits: list[np.ndarray]
    output_grads_bits: list[np.ndarray]
    input_grads_bits: list[np.ndarray]
