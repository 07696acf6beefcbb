"""FlatAdam: Adam and global gradient-norm clipping over one flat parameter buffer.

Small RL networks take thousands of tiny gradient steps, where per-tensor optimizer
overhead (SB3 spends ~30% of a DQN/PPO gradient step in Adam and clipping) matters
more than arithmetic. FlatAdam moves every parameter and gradient of a module into
two contiguous buffers (the parameters become views), so the norm, the clip and the
Adam update are a handful of vector operations regardless of how many layers there are.

Per-parameter learning rates: :func:`set_learning_rate` marks parameters (e.g. a pretrained
backbone's) with their own initial learning rate. Both optimizers lay such parameters out as
contiguous groups of the flat buffer and step each group with
``lr_of_group * (current lr / initial lr)``, so a schedule on ``optimizer.lr`` scales every group
alike. Unmarked parameters use ``lr``; without marks nothing changes (one group, same layout).

The steps here are the readable reference. On the CPU, the gradient-norm clip and Adam's update run through the
kernels of :mod:`rlcore.kernels.optim` (numpy's norm, torch's one-kernel Adam): each optimizer decides once, when
built, which path it takes.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor, nn

from rlcore.kernels.optim import (
    fused_adam_applies,
    fused_adam_step,
    host_clip_applies,
    host_clip_grad_norm_,
)
from rlcore.settings import check_range

logger = logging.getLogger("rlcore.kernels")

LR_ATTRIBUTE = "rlcore_lr"
"""Name of the attribute :func:`set_learning_rate` sets on a parameter: its own initial learning rate."""


def set_learning_rate(params: nn.Module | Iterable[nn.Parameter], lr: float | None) -> None:
    """Gives ``params`` (a module's parameters, or an iterable of them) their own initial learning rate.

    :class:`FlatAdam` and :class:`FlatRMSprop` step them with ``lr * (optimizer.lr / initial optimizer lr)``;
    ``None`` removes the mark (they follow the optimizer's ``lr`` again).
    """
    if lr is not None:
        check_range("lr", lr, 0.0, low_open=True)
    for param in params.parameters() if isinstance(params, nn.Module) else params:
        if lr is None:
            if hasattr(param, LR_ATTRIBUTE):
                delattr(param, LR_ATTRIBUTE)
        else:
            setattr(param, LR_ATTRIBUTE, float(lr))


def learning_rate_groups(
    params: list[nn.Parameter], lr: float
) -> tuple[list[nn.Parameter], list[tuple[float, int, int]]]:
    """Orders ``params`` by learning-rate group: unmarked ones first (in their order), then each marked lr.

    Returns:
        ``(ordered params, groups)``; a group is ``(lr_ratio, start, end)``: its slice of the flat buffer
        and its learning rate as a multiple of ``lr``.
    """
    by_lr: dict[float | None, list[nn.Parameter]] = {None: []}
    for param in params:
        by_lr.setdefault(getattr(param, LR_ATTRIBUTE, None), []).append(param)
    ordered: list[nn.Parameter] = []
    groups: list[tuple[float, int, int]] = []
    offset = 0
    for own_lr, members in by_lr.items():
        if not members:
            continue
        count = sum(p.numel() for p in members)
        groups.append((1.0 if own_lr is None else own_lr / lr, offset, offset + count))
        ordered += members
        offset += count
    return ordered, groups


def flatten_parameters(params: Iterable[nn.Parameter]) -> tuple[list[nn.Parameter], Tensor, Tensor]:
    """Moves every trainable parameter and its gradient into two flat buffers; the tensors become views.

    Returns:
        ``(params, flat_params, flat_grads)``; ``param.data`` and ``param.grad`` are views of the buffers.
    """
    trainable = [p for p in params if p.requires_grad]
    if not trainable:
        raise ValueError("the optimizer got no trainable parameters")
    first = trainable[0]
    total = sum(p.numel() for p in trainable)
    flat_params = torch.empty(total, dtype=first.dtype, device=first.device)
    flat_grads = torch.zeros(total, dtype=first.dtype, device=first.device)
    offset = 0
    for param in trainable:
        count = param.numel()
        flat_params[offset : offset + count].copy_(param.data.reshape(-1))
        param.data = flat_params[offset : offset + count].view_as(param)
        param.grad = flat_grads[offset : offset + count].view_as(param)
        offset += count
    return trainable, flat_params, flat_grads


def clip_grad_norm_(grads: Tensor, max_norm: float | None) -> float | Tensor:
    """Scales a flat gradient ``[P]`` in place to L2 norm ``max_norm`` if it is longer; returns the norm before
    (a float on the CPU; a 0-d tensor elsewhere, so that no step waits for the device).

    The scale is ``max_norm / (norm + 1e-6)``, as ``torch.nn.utils.clip_grad_norm_``. CPU float32 gradients go
    through the numpy kernel (:func:`rlcore.kernels.optim.host_clip_grad_norm_`, ~20 us less per step).
    """
    if host_clip_applies(grads):
        return host_clip_grad_norm_(grads, max_norm)
    norm_tensor = torch.linalg.vector_norm(grads)
    if max_norm is not None:
        grads.mul_(torch.clamp(max_norm / (norm_tensor + 1e-6), max=1.0))
    return norm_tensor


class FlatOptimizer:
    """What FlatAdam and FlatRMSprop share: the flat buffers, the learning-rate groups, zeroing, the clip.

    After construction each parameter's ``.data`` and ``.grad`` are views into ``flat_params`` /
    ``flat_grads``. Gradients may be produced by autograd (which accumulates into the existing ``.grad``
    views: call :meth:`zero_grad` first) or written directly by a kernel.
    """

    def __init__(self, params: Iterable[nn.Parameter], lr: float, eps: float, max_grad_norm: float | None) -> None:
        check_range("lr", lr, 0.0, low_open=True)
        ordered, self.groups = learning_rate_groups([p for p in params if p.requires_grad], lr)
        self.params, self.flat_params, self.flat_grads = flatten_parameters(ordered)
        self.lr = lr
        self.eps = eps
        self.max_grad_norm = max_grad_norm
        self._denominator = torch.empty_like(self.flat_params)
        self.steps = 0
        self.host_clip = host_clip_applies(self.flat_grads)
        """Whether the gradient clip runs in numpy (:mod:`rlcore.kernels.optim`), decided once."""

    def clip_gradient(self) -> float | Tensor:
        """Clips the flat gradient to ``max_grad_norm`` (see :func:`clip_grad_norm_`); returns the norm before."""
        if self.host_clip:
            return host_clip_grad_norm_(self.flat_grads, self.max_grad_norm)
        return clip_grad_norm_(self.flat_grads, self.max_grad_norm)

    def zero_grad(self) -> None:
        """Zeroes the flat gradient (keeps the ``.grad`` views alive; never sets them to None)."""
        self.flat_grads.zero_()

    def group_views(self, *tensors: Tensor) -> list[tuple[float, tuple[Tensor, ...]]]:
        """Per learning-rate group: its lr ratio and its slice of each flat ``[P]`` tensor (the tensors themselves
        when there is one group). The optimizers build these once: their buffers are updated in place, never
        replaced."""
        if len(self.groups) == 1:
            return [(self.groups[0][0], tensors)]
        return [(ratio, tuple(tensor[start:end] for tensor in tensors)) for ratio, start, end in self.groups]

    def _check_state_size(self, saved: Tensor) -> None:
        if saved.shape != self.flat_params.shape:
            raise ValueError(
                f"optimizer state holds {saved.numel()} values but the network has {self.flat_params.numel()} "
                "parameters; the checkpoint is of another architecture"
            )


class FlatAdam(FlatOptimizer):
    """Adam (Kingma & Ba, 2015) with optional global grad-norm clipping, over flat buffers.

    Args:
        params: The parameters to optimise (e.g. ``module.parameters()``), all of one dtype and device.
        lr: Step size.
        betas: Decay rates of the first and second moment estimates.
        eps: Added to the denominator.
        max_grad_norm: Clip the global L2 norm of the gradient to this; ``None`` disables.

    Parameters marked with :func:`set_learning_rate` form their own groups (see the module docstring);
    the gradient-norm clip stays global.
    """

    _path_logged = False

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        max_grad_norm: float | None = None,
    ) -> None:
        check_range("betas[0]", betas[0], 0.0, 1.0, high_open=True)
        check_range("betas[1]", betas[1], 0.0, 1.0, high_open=True)
        super().__init__(params, lr, eps, max_grad_norm)
        self.betas = betas
        self.exp_avg = torch.zeros_like(self.flat_params)
        self.exp_avg_sq = torch.zeros_like(self.flat_params)
        self._step_tensor = torch.zeros((), dtype=torch.float32, device=self.flat_params.device)
        self.fused = fused_adam_applies(self.flat_params)
        """Whether :meth:`step` runs torch's fused kernel (:mod:`rlcore.kernels.optim`) or :meth:`reference_step`."""
        self._fused_groups = self.group_views(self.flat_params, self.flat_grads, self.exp_avg, self.exp_avg_sq)
        self._reference_groups = self.group_views(self.flat_params, self.exp_avg, self._denominator)
        if not FlatAdam._path_logged and self.flat_params.device.type != "meta":  # not a checkpoint's layout check
            FlatAdam._path_logged = True
            logger.info("FlatAdam: %s", "torch's fused Adam kernel" if self.fused else "the vector-op reference")

    @torch.no_grad()
    def step(self) -> float | Tensor:
        """Clips the gradient, then takes one Adam step. Returns the gradient norm before clipping."""
        norm = self.clip_gradient()
        self.steps += 1
        if not self.fused:
            self.reference_step()
            return norm
        self._step_tensor.fill_(self.steps)
        beta1, beta2 = self.betas
        for ratio, tensors in self._fused_groups:
            fused_adam_step(*tensors, self._step_tensor, lr=self.lr * ratio, beta1=beta1, beta2=beta2, eps=self.eps)
        return norm

    def reference_step(self) -> None:
        """Adam's update of step :attr:`steps` on the (clipped) flat gradient, in vector ops."""
        beta1, beta2 = self.betas
        grads = self.flat_grads
        self.exp_avg.lerp_(grads, 1.0 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(grads, grads, value=1.0 - beta2)
        torch.sqrt(self.exp_avg_sq, out=self._denominator)
        self._denominator.div_(math.sqrt(1.0 - beta2**self.steps)).add_(self.eps)
        step_size = -self.lr / (1.0 - beta1**self.steps)
        for ratio, (params, exp_avg, denominator) in self._reference_groups:
            params.addcdiv_(exp_avg, denominator, value=step_size * ratio)

    def state_dict(self) -> dict[str, Any]:
        return {"exp_avg": self.exp_avg.clone(), "exp_avg_sq": self.exp_avg_sq.clone(), "steps": self.steps,
                "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_size(state["exp_avg"])
        self.exp_avg.copy_(state["exp_avg"])
        self.exp_avg_sq.copy_(state["exp_avg_sq"])
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])


class FlatRMSprop(FlatOptimizer):
    """RMSprop (as ``torch.optim.RMSprop``: ``eps`` outside the square root) with global grad-norm clipping.

    The optimizer of SB3's A2C (``alpha=0.99, eps=1e-5``), over flat buffers like :class:`FlatAdam`.

    Args:
        params: The parameters to optimise.
        lr: Step size.
        alpha: Decay of the running mean of squared gradients.
        eps: Added to the root mean square.
        max_grad_norm: Clip the global L2 norm of the gradient to this; ``None`` disables.

    Parameters marked with :func:`set_learning_rate` form their own groups, as in :class:`FlatAdam`.
    """

    def __init__(
        self,
        params: Iterable[nn.Parameter],
        lr: float,
        alpha: float = 0.99,
        eps: float = 1e-5,
        max_grad_norm: float | None = None,
    ) -> None:
        check_range("alpha", alpha, 0.0, 1.0, high_open=True)
        super().__init__(params, lr, eps, max_grad_norm)
        self.alpha = alpha
        self.square_avg = torch.zeros_like(self.flat_params)
        self._groups = self.group_views(self.flat_params, self.flat_grads, self._denominator)

    @torch.no_grad()
    def step(self) -> float | Tensor:
        """Clips the gradient, then takes one RMSprop step. Returns the gradient norm before clipping."""
        grads = self.flat_grads
        norm = self.clip_gradient()
        self.steps += 1
        self.square_avg.mul_(self.alpha).addcmul_(grads, grads, value=1.0 - self.alpha)
        torch.sqrt(self.square_avg, out=self._denominator).add_(self.eps)
        for ratio, (params, group_grads, denominator) in self._groups:
            params.addcdiv_(group_grads, denominator, value=-self.lr * ratio)
        return norm

    def state_dict(self) -> dict[str, Any]:
        return {"square_avg": self.square_avg.clone(), "steps": self.steps, "lr": self.lr}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._check_state_size(state["square_avg"])
        self.square_avg.copy_(state["square_avg"])
        self.steps = int(state["steps"])
        self.lr = float(state["lr"])


def flatten_twin(optimizer: FlatOptimizer, online: nn.Module, target: nn.Module) -> Tensor | None:
    """Moves ``target``'s parameters (a copy of ``online``) into one buffer laid out like ``optimizer.flat_params``.

    A target update is then one copy (or one lerp) of ``[P]`` floats instead of one per tensor. Each target tensor
    takes the place of its online twin in the optimizer's order (which groups parameters by learning rate).

    Returns:
        The target's flat buffer ``[P]`` (its parameters are views of it), or None when the optimizer does not hold
        every parameter of ``online`` (some are frozen); the target is then left as it was.
    """
    online_params = list(online.parameters())
    twin = {id(param): target_param for param, target_param in zip(online_params, target.parameters())}
    if len(optimizer.params) != len(online_params) or any(id(p) not in twin for p in optimizer.params):
        return None
    flat = torch.empty_like(optimizer.flat_params)
    offset = 0
    with torch.no_grad():
        for param in optimizer.params:
            target_param = twin[id(param)]
            count = target_param.numel()
            flat[offset : offset + count].copy_(target_param.reshape(-1))
            target_param.data = flat[offset : offset + count].view_as(target_param)
            offset += count
    if offset != flat.numel():
        raise AssertionError(f"target layout covers {offset} of {flat.numel()} parameters")
    return flat


@torch.no_grad()
def polyak_update(target: nn.Module, target_flat: Tensor | None, online: nn.Module, online_flat: Tensor,
                  tau: float) -> None:
    """``target <- (1 - tau) * target + tau * online`` (a copy when ``tau == 1``).

    With ``target_flat`` (from :func:`flatten_twin`) it is one vector op on the flat buffers ``[P]``; with None, one
    per parameter tensor.
    """
    if target_flat is not None:
        if tau == 1.0:
            target_flat.copy_(online_flat)
        else:
            target_flat.lerp_(online_flat, tau)
    elif tau == 1.0:
        for target_param, param in zip(target.parameters(), online.parameters()):
            target_param.copy_(param)
    else:
        torch._foreach_lerp_(list(target.parameters()), list(online.parameters()), tau)
