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

import torch
from torch import Tensor, nn

SUPPORTED_ACTIVATIONS = (nn.ReLU, nn.Tanh)


def _onednn_linear_works() -> bool:
    """Whether oneDNN's CPU linear kernel exists here and agrees with ``torch.mm``."""
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
_ONEDNN_MIN_MACS = 1_500_000
"""oneDNN's call costs ~10 us more than addmm's, so it pays only for products at least this big."""


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


def plain_mlp_layers(module: nn.Module) -> tuple[list[nn.Linear], type[nn.Module]] | None:
    """``(linear_layers, activation_class)`` if ``module`` is Linear/act/.../Linear with one activation, else None."""
    if not isinstance(module, nn.Sequential) or len(module) % 2 == 0:
        return None
    linears = list(module[0::2])
    activations = list(module[1::2])
    if not all(isinstance(layer, nn.Linear) for layer in linears):
        return None
    kinds = {type(act) for act in activations}
    if len(kinds) > 1 or (kinds and not issubclass(next(iter(kinds)), SUPPORTED_ACTIVATIONS)):
        return None
    return linears, (next(iter(kinds)) if kinds else nn.ReLU)  # type: ignore[return-value]


@torch.no_grad()
def forward_with_cache(layers: list[nn.Linear], activation: type[nn.Module], x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Runs the MLP; returns the output ``[B, out]`` and each layer's input (``[B, in_i]``) for the backward."""
    inputs = []
    hidden = x
    last = len(layers) - 1
    for index, layer in enumerate(layers):
        inputs.append(hidden)
        hidden = linear(hidden, layer.weight, layer.bias)
        if index < last:
            hidden = hidden.relu_() if activation is nn.ReLU else hidden.tanh_()
    return hidden, inputs


@torch.no_grad()
def fast_forward(layers: list[nn.Linear], activation: type[nn.Module], x: Tensor, chunk: int = 2048) -> Tensor:
    """The MLP's output ``[B, out]`` without keeping anything for a backward.

    Large batches go through in chunks of ``chunk`` rows so each chunk's hidden layers stay in
    the CPU's L2 cache (twice as fast as one pass over 8192 rows of 256 units).
    """
    if x.shape[0] <= chunk:
        return forward_with_cache(layers, activation, x)[0]
    return torch.cat([forward_with_cache(layers, activation, part)[0] for part in x.split(chunk)])


@torch.no_grad()
def backward_into_grads(
    layers: list[nn.Linear], activation: type[nn.Module], inputs: list[Tensor], grad_output: Tensor
) -> None:
    """Back-propagates ``grad_output`` (``dLoss/dOutput``, ``[B, out]``) and *overwrites* every ``.grad``.

    Every weight and bias must already have a ``.grad`` tensor (:class:`rlcore.optim.FlatAdam`
    gives them views into its flat buffer; :func:`ensure_grads` allocates them otherwise).
    No gradient with respect to the network's input is computed.
    """
    grad = grad_output
    for index in range(len(layers) - 1, -1, -1):
        layer = layers[index]
        # dW = grad^T @ input, computed as linear(grad^T, input^T) = grad^T @ input
        if grad.shape[0] * grad.shape[1] * inputs[index].shape[1] >= _ONEDNN_MIN_MACS:
            layer.weight.grad.copy_(linear(grad.t(), inputs[index].t()))
        else:
            torch.mm(grad.t(), inputs[index], out=layer.weight.grad)
        torch.sum(grad, dim=0, out=layer.bias.grad)
        if index == 0:
            break
        grad = linear(grad, layer.weight.t())  # grad @ W
        activated = inputs[index]  # the previous layer's output, after its activation
        if activation is nn.ReLU:
            grad = torch.ops.aten.threshold_backward(grad, activated, 0.0)  # one fused kernel
        else:
            grad.mul_(1.0 - activated * activated)


def ensure_grads(layers: list[nn.Linear]) -> None:
    """Gives every weight and bias a zero ``.grad`` tensor if it has none."""
    for layer in layers:
        for param in (layer.weight, layer.bias):
            if param.grad is None:
                param.grad = torch.zeros_like(param)
