"""A hand-written forward/backward for plain MLPs: the fast path of small-network updates on CPU.

For the networks RL uses on vector observations (2-3 Linear layers of 64-256 units,
batches of 32-256), autograd's bookkeeping costs about as much as the matrix products.
:func:`forward_with_cache` keeps the layer inputs, and :func:`backward_into_grads`
writes each layer's weight and bias gradient straight into its ``.grad`` tensor
(``out=``), so one gradient step is exactly its matrix products plus a few elementwise ops.

On x86 CPUs the matrix products go through oneDNN's linear kernel when torch has it
(``torch.ops.mkldnn._linear_pointwise``): on this project's AMD machines MKL's sgemm runs
its AVX2 path while oneDNN uses AVX-512, 1.6-2x faster at these sizes. It is checked
against ``torch.mm`` once at import and otherwise replaced by ``torch.addmm``.

It applies to ``nn.Sequential(Linear, act, Linear, act, ..., Linear)`` with ReLU or Tanh;
:func:`plain_mlp_layers` tells whether a module qualifies. Every algorithm keeps
autograd as the fallback, and the tests check both give the same gradients.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

SUPPORTED_ACTIVATIONS = (nn.ReLU, nn.Tanh)


def _onednn_linear_works() -> bool:
    """Whether oneDNN's CPU linear kernel exists here and agrees with ``torch.addmm``.

    The choice between the two kernels must not depend on timing: they round differently, so a kernel picked
    by a timing at import (as before) made two runs with the same seed diverge whenever the machine's load
    flipped the pick (half of ten MinAtar runs did). Which products go to oneDNN is therefore a fixed size
    rule, :data:`_ONEDNN_MIN_MACS`.
    """
    op = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
    if op is None or not torch.backends.mkldnn.is_available():
        return False
    try:
        generator = torch.Generator().manual_seed(0)
        x, w = torch.randn(8, 5, generator=generator), torch.randn(3, 5, generator=generator)
        b = torch.randn(3, generator=generator)
        return bool(torch.allclose(op(x, w, b, "none", [], ""), torch.addmm(b, x, w.t()), atol=1e-5))
    except (RuntimeError, NotImplementedError):
        return False


_ONEDNN_LINEAR = _onednn_linear_works()
_ONEDNN_MIN_MACS = int(os.environ.get("RLCORE_ONEDNN_MIN_MACS", 16_000_000))
"""Products of at least this many multiply-adds go through oneDNN (``RLCORE_ONEDNN_MIN_MACS`` sets it): on this
project's 2-core AMD EPYC (AVX-512, one thread) oneDNN/addmm time was 1.07 at 64x256x256 (4.2M), 0.92-0.95 at
16.8M and 0.88-0.93 at 33.5M (SmallCNN's ``Linear(1024, 128)`` on 256 rows); its call costs ~10 us more."""


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """``x @ weight.T + bias`` without autograd: ``[B, in], [out, in], [out] -> [B, out]``.

    Uses oneDNN for contiguous float32 CPU tensors when available, ``torch.addmm`` otherwise.
    """
    big = x.shape[0] * x.shape[1] * weight.shape[0] >= _ONEDNN_MIN_MACS
    if big and _ONEDNN_LINEAR and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    if bias is None:
        return torch.mm(x, weight.t())
    return torch.addmm(bias, x, weight.t())


def tanh_(x: Tensor) -> Tensor:
    """In-place tanh. On CPU float32 it runs numpy's SIMD tanh on the same memory: on this project's
    machines torch's CPU tanh (an accurate MKL-style routine) is ~10x slower for [256, 64] blocks."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and x.is_contiguous() and not x.requires_grad:
        array = x.numpy()
        np.tanh(array, out=array)
        return x
    return x.tanh_()


class LinearParams(NamedTuple):
    """A Linear layer's ``weight [out, in]`` and ``bias [out]`` (the same Parameter objects).

    Reading them from a tuple costs ~50 ns; ``nn.Module.__getattr__`` costs ~10x that, and the
    fast path reads them several times per layer per gradient step.
    """

    weight: Tensor
    bias: Tensor


def plain_mlp_layers(module: nn.Module) -> tuple[list[LinearParams], type[nn.Module]] | None:
    """``(layer_params, activation_class)`` if ``module`` is Linear/act/.../Linear with one activation, else None."""
    if not isinstance(module, nn.Sequential) or len(module) % 2 == 0:
        return None
    linears = list(module[0::2])
    activations = list(module[1::2])
    if not all(isinstance(layer, nn.Linear) for layer in linears):
        return None
    kinds = {type(act) for act in activations}
    if len(kinds) > 1 or (kinds and not issubclass(next(iter(kinds)), SUPPORTED_ACTIVATIONS)):
        return None
    params = [LinearParams(layer.weight, layer.bias) for layer in linears]
    return params, (next(iter(kinds)) if kinds else nn.ReLU)  # type: ignore[return-value]


@torch.no_grad()
def forward_with_cache(
    layers: list[LinearParams], activation: type[nn.Module], x: Tensor
) -> tuple[Tensor, list[Tensor]]:
    """Runs the MLP; returns the output ``[B, out]`` and each layer's input (``[B, in_i]``) for the backward."""
    inputs = []
    hidden = x
    last = len(layers) - 1
    for index, layer in enumerate(layers):
        inputs.append(hidden)
        hidden = linear(hidden, layer.weight, layer.bias)
        if index < last:
            hidden = hidden.relu_() if activation is nn.ReLU else tanh_(hidden)
    return hidden, inputs


@torch.no_grad()
def fast_forward(layers: list[LinearParams], activation: type[nn.Module], x: Tensor, chunk: int = 2048) -> Tensor:
    """The MLP's output ``[B, out]`` without keeping anything for a backward.

    Large batches go through in chunks of ``chunk`` rows so each chunk's hidden layers stay in
    the CPU's L2 cache (twice as fast as one pass over 8192 rows of 256 units).
    """
    if x.shape[0] <= chunk:
        return forward_with_cache(layers, activation, x)[0]
    return torch.cat([forward_with_cache(layers, activation, part)[0] for part in x.split(chunk)])


def weight_grad_into(out: Tensor, grad: Tensor, layer_input: Tensor) -> None:
    """``out = grad^T @ layer_input``: ``[B, out]``, ``[B, in]`` -> ``[out, in]``.

    Big products go through oneDNN (as ``linear(grad^T, input^T)``). Small CPU float32 ones go
    through numpy's BLAS: MKL's sgemm takes 20-35 us for the ``[64, 256] @ [256, 4]`` of a first
    layer on 4 inputs, numpy 4 us (they tie at 64 inputs).
    """
    if grad.shape[0] * grad.shape[1] * layer_input.shape[1] >= _ONEDNN_MIN_MACS:
        out.copy_(linear(grad.t(), layer_input.t()))
    elif out.device.type == "cpu" and out.dtype == grad.dtype == layer_input.dtype == torch.float32 \
            and out.is_contiguous():
        np.matmul(grad.numpy().T, layer_input.numpy(), out=out.numpy())
    else:
        torch.mm(grad.t(), layer_input, out=out)


def bias_grad_into(out: Tensor, grad: Tensor) -> None:
    """``out = grad.sum(0)``: ``[B, out] -> [out]``; numpy's reduction on CPU float32 (2 us instead of 5 us)."""
    if out.device.type == "cpu" and out.dtype == grad.dtype == torch.float32 and out.is_contiguous():
        np.sum(grad.numpy(), axis=0, out=out.numpy())
    else:
        torch.sum(grad, dim=0, out=out)


@torch.no_grad()
def backward_into_grads(
    layers: list[LinearParams], activation: type[nn.Module], inputs: list[Tensor], grad_output: Tensor
) -> None:
    """Back-propagates ``grad_output`` (``dLoss/dOutput``, ``[B, out]``) and *overwrites* every ``.grad``.

    Every weight and bias must already have a ``.grad`` tensor (:class:`rlcore.optim.FlatAdam`
    gives them views into its flat buffer; :func:`ensure_grads` allocates them otherwise).
    No gradient with respect to the network's input is computed.
    """
    grad = grad_output
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        weight_grad_into(layer.weight.grad, grad, inputs[index])
        bias_grad_into(layer.bias.grad, grad)
        if index == 0:
            break
        weight = layer.weight
        grad = torch.mm(grad, weight) if grad.shape[0] * grad.shape[1] * weight.shape[1] < _ONEDNN_MIN_MACS \
            else linear(grad, weight.t())  # grad @ W
        activated = inputs[index]  # the previous layer's output, after its activation
        if activation is nn.ReLU:
            grad = torch.ops.aten.threshold_backward(grad, activated, 0.0)  # one fused kernel each
        else:
            grad = torch.ops.aten.tanh_backward(grad, activated)


class NumpyMLP:
    """A plain MLP's forward in numpy, reading the torch weights in place (no copies), for acting on CPU.

    Acting steps a handful of envs at a time, where torch's per-op dispatch (~5 us) costs more
    than the arithmetic; numpy's matrix product and tanh on ``[8, 64]`` blocks take ~1-2 us.
    The views stay valid while the parameters are updated in place (every rlcore optimizer and
    ``load_state_dict`` do that).

    Shapes: ``__call__``: ``[B, in]`` float32 array -> ``[B, out]`` array.
    """

    def __init__(self, layers: list[LinearParams], activation: type[nn.Module]) -> None:
        self.weights = [layer.weight.detach().numpy().T for layer in layers]  # [in, out] views
        self.biases = [layer.bias.detach().numpy() for layer in layers]
        self.relu = activation is nn.ReLU

    def __call__(self, x: np.ndarray) -> np.ndarray:
        last = len(self.weights) - 1
        for index, (weight, bias) in enumerate(zip(self.weights, self.biases)):
            x = x @ weight
            x += bias
            if index < last:
                if self.relu:
                    np.maximum(x, 0.0, out=x)
                else:
                    np.tanh(x, out=x)
        return x

    @staticmethod
    def applies(layers: list[LinearParams]) -> bool:
        """Whether every weight is a float32 CPU tensor (what numpy can view)."""
        return all(p.device.type == "cpu" and p.dtype == torch.float32 for layer in layers
                   for p in (layer.weight, layer.bias))


class HostMLP:
    """A plain MLP's forward and hand-written backward on the CPU, over views of its float32 parameters.

    The policy-gradient fast path: every intermediate lives in a buffer allocated once per batch size, and
    each operation runs where it is cheapest at PPO's shapes (``[64-256, 64]`` blocks, measured on this
    project's 2-core x86 machines with one thread):

    - matrix products in numpy (OpenBLAS): as fast as torch's at ``256x64x64`` and ~1 us of call overhead
      instead of ~5 us, which dominates the thin ones (4 inputs, 1-2 outputs);
    - bias adds, tanh/ReLU backward and outer products (a ``[B, 1] @ [1, n]`` product) in torch on the same
      memory: numpy's broadcasting takes 2-3x longer there, and OpenBLAS takes ~20 us for the outer product;
    - tanh in numpy (torch's CPU tanh is ~7x slower); bias gradients as ``ones @ grad`` (numpy's reduction
      over rows takes 4x longer).

    Parameters and gradients are read and written in place, so parameters may be updated in place
    (FlatAdam, ``load_state_dict``) but not replaced, and every ``.grad`` must exist when it is built
    (FlatAdam makes them views of its flat buffer).

    Shapes: :meth:`forward`: ``[B, in]`` float32 array -> ``[B, out]`` (a reused buffer: consume it before
    the next call with the same ``B``).
    """

    MAX_BUFFER_SETS = 8
    """Batch sizes whose buffers are kept (callers with ever-new sizes drop the oldest)."""

    def __init__(self, layers: list[LinearParams], activation: type[nn.Module]) -> None:
        if not self.applies(layers):
            raise ValueError("HostMLP needs contiguous float32 CPU parameters that have a .grad")
        self.weights_t = [layer.weight.detach() for layer in layers]
        self.biases_t = [layer.bias.detach() for layer in layers]
        self.weights = [weight.numpy() for weight in self.weights_t]  # [out, in] views
        self.weights_in_out = [weight.T for weight in self.weights]  # [in, out] views
        self.weight_grads = [layer.weight.grad.numpy() for layer in layers]  # type: ignore[union-attr]
        self.bias_grads = [layer.bias.grad.numpy() for layer in layers]  # type: ignore[union-attr]
        self.relu = activation is nn.ReLU
        self._buffers: dict[int, tuple[list[tuple[np.ndarray, Tensor]], list[tuple[np.ndarray, Tensor]]]] = {}
        self._ones: np.ndarray = np.ones(0, dtype=np.float32)

    @staticmethod
    def applies(layers: list[LinearParams]) -> bool:
        """Whether every parameter and its ``.grad`` is a contiguous float32 CPU tensor."""
        tensors = [p for layer in layers for p in layer]
        if any(p.grad is None for p in tensors):
            return False
        tensors += [p.grad for p in tensors]  # type: ignore[misc]
        return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)

    def _buffer_set(self, rows: int) -> tuple[list[tuple[np.ndarray, Tensor]], list[tuple[np.ndarray, Tensor]]]:
        """``(outputs, input_grads)``: ``(array, tensor)`` twins sharing memory, per layer, for ``rows`` rows."""
        buffers = self._buffers.get(rows)
        if buffers is None:
            if len(self._buffers) >= self.MAX_BUFFER_SETS:
                self._buffers.pop(next(iter(self._buffers)))
            buffers = self._buffers[rows] = ([_twins(rows, w.shape[0]) for w in self.weights],
                                             [_twins(rows, w.shape[1]) for w in self.weights])
        return buffers

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, list[tuple[np.ndarray, Tensor | None]]]:
        """The output ``[B, out]`` and each layer's input (array and tensor twin), for :meth:`backward`."""
        outputs, _ = self._buffer_set(x.shape[0])
        inputs: list[tuple[np.ndarray, Tensor | None]] = []
        hidden: tuple[np.ndarray, Tensor | None] = (x, None)
        last = len(self.weights) - 1
        for index in range(last + 1):
            inputs.append(hidden)
            out, out_t = outputs[index]
            np.matmul(hidden[0], self.weights_in_out[index], out=out)
            out_t.add_(self.biases_t[index])
            if index < last:
                if self.relu:
                    out_t.relu_()
                else:
                    np.tanh(out, out=out)
            hidden = (out, out_t)
        return hidden[0], inputs

    def backward(
        self, inputs: list[tuple[np.ndarray, Tensor | None]], grad_output: np.ndarray, input_grad: bool = False
    ) -> np.ndarray | None:
        """Back-propagates ``dLoss/dOutput`` ``[B, out]``; *overwrites* every weight's and bias's ``.grad``.

        With ``input_grad``, also returns ``dLoss/dInput`` ``[B, in]`` (a reused buffer, like :meth:`forward`'s
        output; for a shared encoder below the network); otherwise no gradient w.r.t. the input is computed.
        """
        rows = grad_output.shape[0]
        _, input_grads = self._buffer_set(rows)
        if self._ones.shape[0] != rows:
            self._ones = np.ones(rows, dtype=np.float32)
        grad = grad_output
        for index in range(len(self.weights) - 1, -1, -1):
            np.matmul(grad.T, inputs[index][0], out=self.weight_grads[index])
            np.matmul(self._ones, grad, out=self.bias_grads[index])
            if index == 0 and not input_grad:
                break
            below, below_t = input_grads[index]
            if grad.shape[1] == 1:  # an outer product: OpenBLAS is slow for a single inner dimension
                torch.mul(torch.from_numpy(grad), self.weights_t[index], out=below_t)
            else:
                np.matmul(grad, self.weights[index], out=below)
            if index == 0:
                return below
            activated_t = inputs[index][1]  # the previous layer's output, after its activation
            if self.relu:
                torch.ops.aten.threshold_backward.grad_input(below_t, activated_t, 0.0, grad_input=below_t)
            else:
                torch.ops.aten.tanh_backward.grad_input(below_t, activated_t, grad_input=below_t)
            grad = below
        return None


def _twins(rows: int, width: int) -> tuple[np.ndarray, Tensor]:
    """A ``[rows, width]`` float32 buffer as a numpy array and a tensor sharing its memory (torch-aligned)."""
    tensor = torch.empty(rows, width)
    return tensor.numpy(), tensor


def ensure_grads(layers: list[LinearParams]) -> None:
    """Gives every weight and bias a zero ``.grad`` tensor if it has none."""
    for layer in layers:
        for param in (layer.weight, layer.bias):
            if param.grad is None:
                param.grad = torch.zeros_like(param)
