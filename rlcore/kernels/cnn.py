"""SmallCNN's forward and backward on the CPU, written by hand: the CNN-PPO kernel.

Reproduces: :class:`~rlcore.nets.cnn.SmallCNN`'s ``forward`` (one convolution of ``F`` filters of ``k x k``,
stride ``s``, no padding; ReLU; an ``(H, W, C)`` flatten; Linear + ReLU) and the gradients autograd would
write into its parameters' ``.grad``. ``tests/test_kernels.py`` holds it to the module and to autograd.

On MinAtar's 10x10 images the convolution is small enough to run as one matrix product over patches (im2col):

- the patches of a batch ``[B, *obs_shape]`` are one ``index_select`` of the flattened images with
  precomputed indices (``[B, L * K]``, ``L = OH * OW`` output positions, ``K = C * k * k``, in the
  ``(c, di, dj)`` order of the convolution's weight, so ``weight.reshape(F, K)`` is a view);
- the convolution is ``[B * L, K] @ [K, F]``; its rows are ``(b, i, j)`` and its columns the
  filters, so ``[B * L, F]`` *is* the ``(H, W, C)``-flattened feature map ``[B, L * F]``;
- the backward is the transposed products; no gradient w.r.t. the images is needed.

Measured on this project's 2-core x86 machines (one thread, a batch of 256 MinAtar images): the
autograd step of the encoder costs ~2 ms more than its matrix products; here the matrix products and a handful of
in-place torch elementwise kernels on the same memory are all there is. For acting (8 images) the whole forward is
~40-80 us instead of ~250 us.

The products are torch's (MKL), written into the buffers and ``.grad`` views with ``out=``: on the Zen 4 EPYC
OpenBLAS (numpy's), MKL and oneDNN all ran these shapes at the FMA peak, but on the Intel Xeon (Emerald Rapids,
AVX-512) numpy's OpenBLAS took 1.6-1.8x MKL's time for the convolution's products and the weight gradient
(``[128, 256]^T``-shaped: 589 against 372 us), so a gradient step on 256 images took 1.24x longer with them
(2.96 against 2.39 ms, the two kernels alternated in one process). ``Linear(1024, 128)``'s forward on a minibatch
goes through oneDNN's linear kernel (:func:`linear`): on this project's AMD machines MKL's sgemm runs its AVX2
path while oneDNN uses AVX-512.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import Tensor, nn

from rlcore.kernels.mlp import host_tensors_ok, twins
from rlcore.nets.cnn import FlattenHWC, ImageEncoder, SmallCNN


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


def linear(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``x @ weight.T + bias`` without autograd: ``[B, in], [out, in], [out] -> [B, out]``.

    Products of at least :data:`_ONEDNN_MIN_MACS` multiply-adds go through oneDNN when it works here, the
    others through ``torch.addmm``.
    """
    big = x.shape[0] * x.shape[1] * weight.shape[0] >= _ONEDNN_MIN_MACS
    if big and _ONEDNN_LINEAR and x.device.type == "cpu" and x.dtype == weight.dtype == torch.float32:
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return torch.addmm(bias, x, weight.t())


BufferSet = dict[str, tuple[np.ndarray, Tensor]]
"""Per batch size: named ``(array, tensor)`` twins sharing memory."""


def patch_index(layout: tuple[int, int, int, bool], kernel: int, stride: int) -> Tensor:
    """Indices of every convolution patch in a flattened image: ``[OH * OW * C * k * k]`` int64.

    Entry ``((i * OW + j) * C + c) * k * k + di * k + dj`` is the flat position of pixel
    ``(c, i * stride + di, j * stride + dj)`` in an image of the given layout
    (``(channels, height, width, channels_last)``, as :func:`rlcore.nets.cnn.image_layout` returns).
    """
    channels, height, width, channels_last = layout
    out_h, out_w = (height - kernel) // stride + 1, (width - kernel) // stride + 1
    i = np.arange(out_h).reshape(-1, 1, 1, 1, 1)
    j = np.arange(out_w).reshape(1, -1, 1, 1, 1)
    c = np.arange(channels).reshape(1, 1, -1, 1, 1)
    di = np.arange(kernel).reshape(1, 1, 1, -1, 1)
    dj = np.arange(kernel).reshape(1, 1, 1, 1, -1)
    row, column = i * stride + di, j * stride + dj
    flat = (row * width + column) * channels + c if channels_last else (c * height + row) * width + column
    return torch.from_numpy(np.ascontiguousarray(flat.reshape(-1), dtype=np.int64))


class SmallCNNKernel:
    """SmallCNN's forward and hand-written backward on the CPU, over views of its float32 parameters.

    Parameters and gradients are read and written in place (as :class:`rlcore.kernels.mlp.MLPKernel`):
    parameters may be updated in place (FlatAdam, ``load_state_dict``) but not replaced, and every
    ``.grad`` must exist when it is built.

    Shapes: :meth:`forward`: images ``[B, *obs_shape]`` (bool, uint8 or float, CPU) -> features
    ``[B, out_dim]`` float32 (a new array). What it keeps for :meth:`backward` (patches, the feature map)
    lives in buffers reused per batch size: call :meth:`backward` before the next forward with the same ``B``.
    """

    MAX_BUFFER_SETS = 8
    """Batch sizes whose buffers are kept (callers with ever-new sizes drop the oldest)."""
    REFERENCES = (SmallCNN.forward, ImageEncoder.prepare, FlattenHWC.forward)

    def __init__(self, cnn: SmallCNN) -> None:
        if not self.applies(cnn):
            raise ValueError("SmallCNNKernel needs a SmallCNN with contiguous float32 CPU parameters that have a .grad")
        conv: nn.Conv2d = cnn.convs[0]  # type: ignore[assignment]
        dense: nn.Linear = cnn.linear[0]  # type: ignore[assignment]
        filters, kernel = conv.out_channels, conv.kernel_size[0]
        self.index = patch_index((cnn.channels, cnn.height, cnn.width, cnn.channels_last), kernel, conv.stride[0])
        self.patch_width = cnn.channels * kernel * kernel  # K
        self.positions = self.index.numel() // self.patch_width  # L
        self.filters = filters  # F
        self.scale = cnn.scale
        self.conv_weight_in_out = conv.weight.detach().view(filters, -1).t()  # [K, F] view
        self.conv_bias = conv.bias.detach()  # type: ignore[union-attr]
        self.conv_weight_grad = conv.weight.grad.view(filters, -1)  # type: ignore[union-attr]  # [F, K]
        self.conv_bias_grad = conv.bias.grad.view(1, filters)  # type: ignore[union-attr]
        self.linear_weight = dense.weight.detach()  # [out, L * F]
        self.linear_bias = dense.bias.detach()
        self.linear_weight_grad = dense.weight.grad  # type: ignore[union-attr]
        self.linear_bias_grad = dense.bias.grad.view(1, -1)  # type: ignore[union-attr]
        self.out_dim = dense.out_features
        self._buffers: dict[int, BufferSet] = {}

    @staticmethod
    def applies(cnn: nn.Module) -> bool:
        """Whether ``cnn`` is a plain :class:`SmallCNN` (unpadded, undilated, ungrouped square convolution with
        a bias) whose parameters and their ``.grad`` are contiguous float32 CPU tensors."""
        if type(cnn) is not SmallCNN or len(cnn.convs) != 3 or len(cnn.linear) != 2:
            return False
        conv, act, flatten = cnn.convs
        dense, dense_act = cnn.linear
        layers_match = (type(conv) is nn.Conv2d and type(act) is nn.ReLU and type(flatten) is FlattenHWC
                        and type(dense) is nn.Linear and type(dense_act) is nn.ReLU)
        if not layers_match or conv.bias is None or dense.bias is None:
            return False
        if (conv.padding != (0, 0) or conv.dilation != (1, 1) or conv.groups != 1
                or conv.kernel_size[0] != conv.kernel_size[1] or conv.stride[0] != conv.stride[1]):
            return False
        tensors = list(cnn.parameters())
        if any(p.grad is None for p in tensors):
            return False
        return host_tensors_ok(tensors + [p.grad for p in tensors])  # type: ignore[misc]

    def _buffer_set(self, rows: int) -> BufferSet:
        """The forward's and backward's buffers for a batch of ``rows`` images (allocated once per size)."""
        buffers = self._buffers.get(rows)
        if buffers is None:
            if len(self._buffers) >= self.MAX_BUFFER_SETS:
                self._buffers.pop(next(iter(self._buffers)))
            hidden = self.positions * self.filters
            buffers = self._buffers[rows] = {
                "patches": twins(rows, self.index.numel()),  # [B, L * K]
                "hidden": twins(rows, hidden),  # conv + ReLU, [B, L * F]
                "hidden_grad": twins(rows, hidden),
                "ones": twins(1, rows * self.positions),  # for bias gradients as products
            }
            buffers["ones"][1].fill_(1.0)
        return buffers

    def forward(self, obs: Tensor) -> tuple[np.ndarray, BufferSet]:
        """Features ``[B, out_dim]`` of images ``[B, *obs_shape]``, and what :meth:`backward` needs (the batch
        size's buffers: ``patches [B, L * K]``, ``hidden [B, L * F]`` and this call's ``features``)."""
        rows = obs.shape[0]
        buffers = self._buffer_set(rows)
        patches_t = buffers["patches"][1]
        flat = obs.reshape(rows, -1)
        if flat.dtype != torch.float32:
            flat = flat.to(torch.float32)  # [B, H * W * C] is ~6x smaller than its patches: convert first
        torch.index_select(flat, 1, self.index, out=patches_t)
        if self.scale != 1.0:
            patches_t.mul_(self.scale)
        hidden_t = buffers["hidden"][1]
        conv_out = hidden_t.view(rows * self.positions, self.filters)  # rows (b, i, j), columns filters
        torch.mm(patches_t.view(rows * self.positions, self.patch_width), self.conv_weight_in_out, out=conv_out)
        conv_out.add_(self.conv_bias).relu_()
        features_t = linear(hidden_t, self.linear_weight, self.linear_bias).relu_()
        buffers["features"] = features_t.numpy(), features_t
        return buffers["features"][0], buffers

    def backward(self, buffers: BufferSet, grad_features: np.ndarray) -> None:
        """Back-propagates ``dLoss/dFeatures`` ``[B, out_dim]`` (overwritten); *overwrites* every parameter's
        ``.grad``. ``buffers`` is what :meth:`forward` returned for the same batch."""
        rows = grad_features.shape[0]
        grad_t = torch.from_numpy(grad_features)
        torch.ops.aten.threshold_backward.grad_input(grad_t, buffers["features"][1], 0.0, grad_input=grad_t)
        hidden_t = buffers["hidden"][1]
        ones_t = buffers["ones"][1]
        torch.mm(grad_t.t(), hidden_t, out=self.linear_weight_grad)
        torch.mm(ones_t[:, :rows], grad_t, out=self.linear_bias_grad)
        hidden_grad_t = buffers["hidden_grad"][1]
        torch.mm(grad_t, self.linear_weight, out=hidden_grad_t)
        torch.ops.aten.threshold_backward.grad_input(hidden_grad_t, hidden_t, 0.0, grad_input=hidden_grad_t)
        conv_grad = hidden_grad_t.view(rows * self.positions, self.filters)
        patches = buffers["patches"][1].view(rows * self.positions, self.patch_width)
        torch.mm(conv_grad.t(), patches, out=self.conv_weight_grad)
        torch.mm(ones_t, conv_grad, out=self.conv_bias_grad)
