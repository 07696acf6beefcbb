"""The plain MLP's forward and backward on the CPU, written by hand over numpy views of its parameters.

Reproduces: a ``nn.Sequential(Linear, act, Linear, act, ..., Linear)`` with ReLU or Tanh between the layers
(what :func:`rlcore.nets.base.mlp` builds): its forward, and the gradients autograd would write into every
weight's and bias's ``.grad`` (and, when asked, into the input). ``tests/test_kernels.py`` holds it to
autograd for several shapes and both activations.

For the networks RL uses on vector observations (2-3 layers of 64-256 units, batches of 8-256), torch's
per-op dispatch (~5 us) and autograd's bookkeeping cost about as much as the matrix products. Here every
intermediate lives in a buffer allocated once per purpose and batch size, and each operation runs where it
measured cheapest on this project's 2-core x86 machines (one thread):

- matrix products in numpy (OpenBLAS): ~1 us of call overhead instead of ~5 us, which dominates the thin
  products (4 inputs, 1-2 outputs); with ``addmm_min_dim``, the products of layers whose two dimensions are both
  at least that go through torch: the forward's ``addmm`` (DQN's 256-unit layers, where numpy's product with a
  transposed weight runs 1.3-2x slower) and the backward's two ``mm``: DQN's, SAC's and TD3's gradient steps took
  1-6% less time than with numpy's on one thread (OpenBLAS zeroes each output in a pass of its own), and 10-20%
  less on the two threads rlcore's thread rule gives torch for such steps, where numpy's pool keeps one
  (``docs/performance.md``);
- bias adds, ReLU, the ReLU/tanh backward and outer products (a ``[B, 1] @ [1, n]`` product) in torch on the
  same memory: numpy's broadcasting takes 2-3x longer there, and OpenBLAS ~20 us for the outer product;
- tanh in numpy (torch's CPU tanh, an accurate MKL-style routine, is ~7-10x slower on ``[256, 64]``);
- bias gradients as ``ones @ grad`` (numpy's reduction over rows takes 2-4x longer), or as that reduction
  (``bias_grad="sum"``, what DQN's runs were tuned with; the two round differently).

Acting (:meth:`MLPKernel.predict`) steps a handful of envs at a time: a plain numpy forward that returns a new
array (~1.5 us per product instead of ~5 us through torch).

Parameters and gradients are read and written in place, so parameters may be updated in place (FlatAdam,
``load_state_dict``) but not replaced, and every ``.grad`` must exist when the kernel is built (FlatAdam makes
them views of its flat buffer).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

SUPPORTED_ACTIVATIONS = (nn.ReLU, nn.Tanh)

Twins = tuple[np.ndarray, Tensor]
"""A float32 buffer as a numpy array and a tensor sharing its memory."""
Cache = list[tuple[np.ndarray, Tensor | None]]
"""Each layer's input (array, and its tensor twin when the kernel wrote it), kept by the forward for the backward."""


class LinearParams(NamedTuple):
    """A Linear layer's ``weight [out, in]`` and ``bias [out]`` (the same Parameter objects).

    Reading them from a tuple costs ~50 ns; ``nn.Module.__getattr__`` costs ~10x that.
    """

    weight: Tensor
    bias: Tensor


def plain_mlp_layers(module: nn.Module) -> tuple[list[LinearParams], type[nn.Module]] | None:
    """``(layer_params, activation_class)`` if ``module`` is exactly ``nn.Sequential(Linear, act, ..., Linear)``
    with one activation, ReLU or Tanh, and biases; else None (subclasses of these modules included: they may
    compute something else)."""
    if type(module) is not nn.Sequential or len(module) % 2 == 0:
        return None
    linears, activations = list(module[0::2]), list(module[1::2])
    if not all(type(layer) is nn.Linear and layer.bias is not None for layer in linears):
        return None
    kinds = {type(act) for act in activations}
    if len(kinds) > 1 or not kinds <= set(SUPPORTED_ACTIVATIONS):
        return None
    params = [LinearParams(layer.weight, layer.bias) for layer in linears]
    return params, (next(iter(kinds)) if kinds else nn.ReLU)


def as_tensor(cached: tuple[np.ndarray, Tensor | None]) -> Tensor:
    """A cached layer input as a tensor: its tensor twin when the kernel wrote it, else a view of the array."""
    return cached[1] if cached[1] is not None else torch.from_numpy(cached[0])


def host_tensors_ok(tensors: list[Tensor]) -> bool:
    """Whether every tensor is a contiguous float32 CPU tensor (what numpy can view in place)."""
    return all(t.device.type == "cpu" and t.dtype == torch.float32 and t.is_contiguous() for t in tensors)


def twins(rows: int, width: int) -> Twins:
    """A ``[rows, width]`` float32 buffer allocated by torch (64-byte aligned, as every tensor MKL sees)."""
    tensor = torch.empty(rows, width)
    return tensor.numpy(), tensor


def ensure_grads(layers: list[LinearParams]) -> None:
    """Gives every weight and bias a zero ``.grad`` tensor if it has none (outside an optimizer, e.g. in tests)."""
    for layer in layers:
        for param in layer:
            if param.grad is None:
                param.grad = torch.zeros_like(param)


class MLPKernel:
    """A plain MLP's forward, backward and acting forward over numpy views of its float32 CPU parameters.

    Args:
        layers, activation: What :func:`plain_mlp_layers` returned.
        grads: Whether :meth:`backward` will write gradients (every ``.grad`` must then exist).
        addmm_min_dim: Products of layers with both dimensions at least this run in torch (the forward's
            ``addmm``, the backward's ``mm``); None: every product in numpy.
        bias_grad: ``"product"`` (``ones @ grad``) or ``"sum"`` (numpy's reduction over rows).

    Shapes: :meth:`forward`: ``[B, in]`` float32 array -> ``[B, out]`` (a buffer of ``purpose``: consume it before
    the next call with the same purpose and ``B``), and the cache :meth:`backward` needs.
    """

    MAX_BUFFER_SETS = 8
    """Buffer sets kept per purpose (one per batch size in use; the oldest is dropped past this)."""

    def __init__(
        self,
        layers: list[LinearParams],
        activation: type[nn.Module],
        *,
        grads: bool = True,
        addmm_min_dim: int | None = None,
        bias_grad: Literal["product", "sum"] = "product",
    ) -> None:
        if not self.applies(layers, grads=grads):
            raise ValueError("MLPKernel needs contiguous float32 CPU parameters (with a .grad when grads=True)")
        self.weights_t = [layer.weight.detach() for layer in layers]
        self.biases_t = [layer.bias.detach() for layer in layers]
        self.weights = [weight.numpy() for weight in self.weights_t]  # [out, in] views
        self.weights_in_out = [weight.T for weight in self.weights]  # [in, out] views
        self.biases = [bias.numpy() for bias in self.biases_t]
        self.addmm = [addmm_min_dim is not None and min(weight.shape) >= addmm_min_dim for weight in self.weights]
        self.relu = activation is nn.ReLU
        self.weight_grads_t = [layer.weight.grad for layer in layers] if grads else []
        self.weight_grads = [grad.numpy() for grad in self.weight_grads_t]  # type: ignore[union-attr]
        self.bias_grads = [layer.bias.grad.numpy() for layer in layers] if grads else []  # type: ignore[union-attr]
        self.bias_grad_by_product = bias_grad == "product"
        self._buffers: dict[str, dict[int, tuple[list[Twins], list[Twins]]]] = {}
        self._ones: np.ndarray = np.ones(0, dtype=np.float32)

    def torch_product_dims(self) -> list[tuple[int, int]]:
        """``(inputs, outputs)`` of each layer whose products torch runs (the rest multiply in numpy)."""
        return [(weight.shape[1], weight.shape[0]) for weight, in_torch in zip(self.weights, self.addmm) if in_torch]

    @staticmethod
    def applies(layers: list[LinearParams], *, grads: bool = True) -> bool:
        """Whether every parameter (and, with ``grads``, every ``.grad``) is a contiguous float32 CPU tensor."""
        tensors = [p for layer in layers for p in layer]
        if grads:
            if any(p.grad is None for p in tensors):
                return False
            tensors += [p.grad for p in tensors]  # type: ignore[misc]
        return host_tensors_ok(tensors)

    def _buffer_set(self, purpose: str, rows: int) -> tuple[list[Twins], list[Twins]]:
        """``(outputs, input_grads)``: per layer, its output and the gradient w.r.t. its input, for ``rows`` rows."""
        sets = self._buffers.get(purpose)
        if sets is None:
            sets = self._buffers[purpose] = {}
        buffers = sets.get(rows)
        if buffers is None:
            if len(sets) >= self.MAX_BUFFER_SETS:  # callers with ever-new batch sizes
                sets.pop(next(iter(sets)))
            buffers = sets[rows] = ([twins(rows, w.shape[0]) for w in self.weights],
                                    [twins(rows, w.shape[1]) for w in self.weights])
        return buffers

    def forward(self, x: np.ndarray, purpose: str = "train") -> tuple[np.ndarray, Cache]:
        """The output ``[B, out]`` and each layer's input (for :meth:`backward`), in ``purpose``'s buffers."""
        outputs, _ = self._buffer_set(purpose, x.shape[0])
        inputs: Cache = []
        hidden: tuple[np.ndarray, Tensor | None] = (x, None)
        last = len(self.weights) - 1
        for index in range(last + 1):
            inputs.append(hidden)
            self._linear(index, hidden, outputs[index])
            if index < last:
                self._activate(outputs[index])
            hidden = outputs[index]
        return hidden[0], inputs

    def _linear(self, index: int, hidden: tuple[np.ndarray, Tensor | None], out: Twins) -> None:
        """``out = hidden @ W.T + b`` of layer ``index`` (``hidden``: the array, and its tensor twin or None)."""
        if self.addmm[index]:
            torch.addmm(self.biases_t[index], as_tensor(hidden), self.weights_t[index].t(), out=out[1])
        else:
            np.matmul(hidden[0], self.weights_in_out[index], out=out[0])
            out[1].add_(self.biases_t[index])

    def _activate(self, out: Twins) -> None:
        """The hidden activation in place."""
        if self.relu:
            out[1].relu_()
        else:
            np.tanh(out[0], out=out[0])

    def backward(
        self, inputs: Cache, grad_output: np.ndarray, purpose: str = "train", input_grad: bool = False,
        param_grads: bool = True,
    ) -> np.ndarray | None:
        """Back-propagates ``dLoss/dOutput`` ``[B, out]``; *overwrites* every weight's and bias's ``.grad``.

        ``inputs`` is what :meth:`forward` returned for the same batch and purpose. With ``input_grad``, also
        returns ``dLoss/dInput`` ``[B, in]`` (a buffer, like the forward's output; for a shared encoder below the
        network, or an actor's action below a critic); otherwise no gradient w.r.t. the input is computed. With
        ``param_grads=False`` only the input's gradient is computed (no ``.grad`` is written): what autograd does
        for a network whose parameters are not among the gradient's ``inputs``.
        """
        _, input_grads = self._buffer_set(purpose, grad_output.shape[0])
        grad = grad_output
        for index in range(len(self.weights) - 1, -1, -1):
            if param_grads:
                self._param_grads(index, grad, inputs[index])
            if index == 0 and not input_grad:
                break
            below = input_grads[index]
            self._input_grad(index, grad, below)
            if index == 0:
                return below[0]
            self._activation_backward(below[1], inputs[index][1])  # type: ignore[arg-type]
            grad = below[0]
        return None

    def _param_grads(self, index: int, grad: np.ndarray, layer_input: tuple[np.ndarray, Tensor | None]) -> None:
        """Writes layer ``index``'s weight and bias gradients for ``dLoss/dOutput = grad`` ``[B, out]``, given the
        layer's input (the array, and its tensor twin or None)."""
        self._weight_grad(index, grad, layer_input)
        self._bias_grad(index, grad)

    def _weight_grad(self, index: int, grad: np.ndarray, layer_input: tuple[np.ndarray, Tensor | None]) -> None:
        """Writes layer ``index``'s weight gradient ``grad.T @ input`` ``[out, in]``."""
        if self.addmm[index]:
            torch.mm(torch.from_numpy(grad).t(), as_tensor(layer_input), out=self.weight_grads_t[index])
        else:
            np.matmul(grad.T, layer_input[0], out=self.weight_grads[index])

    def _bias_grad(self, index: int, grad: np.ndarray) -> None:
        """Writes layer ``index``'s bias gradient, the sum of ``grad`` ``[B, out]`` over rows."""
        if self.bias_grad_by_product:
            np.matmul(self._ones_of(grad.shape[0]), grad, out=self.bias_grads[index])
        else:
            np.add.reduce(grad, axis=0, out=self.bias_grads[index])

    def _input_grad(self, index: int, grad: np.ndarray, below: Twins) -> None:
        """``below = grad @ W``: the gradient w.r.t. layer ``index``'s input (before the activation below)."""
        if grad.shape[1] == 1:  # an outer product: OpenBLAS is slow for a single inner dimension
            torch.mul(torch.from_numpy(grad), self.weights_t[index], out=below[1])
        elif self.addmm[index]:
            torch.mm(torch.from_numpy(grad), self.weights_t[index], out=below[1])
        else:
            np.matmul(grad, self.weights[index], out=below[0])

    def _activation_backward(self, below: Tensor, activated: Tensor) -> None:
        """The activation's backward in place on ``below``, given its output ``activated`` (any float dtype)."""
        if self.relu:
            torch.ops.aten.threshold_backward.grad_input(below, activated, 0.0, grad_input=below)
        else:
            torch.ops.aten.tanh_backward.grad_input(below, activated, grad_input=below)

    def _ones_of(self, rows: int) -> np.ndarray:
        if self._ones.shape[0] != rows:
            self._ones = np.ones(rows, dtype=np.float32)
        return self._ones

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The forward for acting: ``[B, in]`` float32 -> a new ``[B, out]`` array (nothing kept, no buffer)."""
        return self.predict_with_last_input(x)[0]

    def predict_with_last_input(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict`, and what the output layer read: ``[B, in] -> ([B, out], [B, last hidden width])`` (the
        last hidden layer's activations; ``x`` itself for a single layer)."""
        last = len(self.weights) - 1
        for index in range(last):
            x = x @ self.weights_in_out[index]
            x += self.biases[index]
            if self.relu:
                np.maximum(x, 0.0, out=x)
            else:
                np.tanh(x, out=x)
        output = x @ self.weights_in_out[last]
        output += self.biases[last]
        return output, x
