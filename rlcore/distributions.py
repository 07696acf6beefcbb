"""Action distributions for policy-gradient methods, written without ``torch.distributions``.

``torch.distributions`` validates its arguments and builds objects on every call, which is
a large share of a small network's update (SB3 spends ~28% of a PPO gradient step there).
Each class here is a thin set of formulas over the network's output ``params`` ``[B, P]``:

- :class:`Categorical` (``Discrete``): ``P = n`` logits;
- :class:`DiagGaussian` (``Box``): ``P = d`` means, with a state-independent ``log_std`` ``[d]``;
- :class:`MultiCategorical` (``MultiDiscrete``): the logits of each sub-space, concatenated;
- :class:`Bernoulli` (``MultiBinary``): ``P = d`` logits.

All return per-sample log-probabilities and entropies summed over action dimensions, ``[B]``.
:class:`Categorical` and :class:`DiagGaussian` also give the gradients of those with respect
to their parameters in closed form, in numpy, for the hand-written CPU update of small
policies (``forward_with_cache`` / ``backward``, tested against autograd).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlcore.spaces import describe_space

LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


class Distribution:
    """What a policy head outputs: ``params [B, P]`` -> samples, log-probs, entropies."""

    param_dim: int
    """``P``, the width of the network output that parameterises the distribution."""
    action_shape: tuple[int, ...]
    """The shape of one action."""

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A random action per row: ``[B, P] -> [B, *action_shape]``; noise comes from the (CPU) ``generator``."""
        raise NotImplementedError

    def mode(self, params: Tensor) -> Tensor:
        """The most likely action per row (the deterministic policy)."""
        raise NotImplementedError

    def sample_with_log_prob(self, params: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """A random action per row and its log-probability ``[B]``."""
        action = self.sample(params, generator)
        return action, self.log_prob(params, action)

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        """``log pi(action)``, summed over action dimensions: ``[B]``."""
        raise NotImplementedError

    def entropy(self, params: Tensor) -> Tensor:
        """Entropy per row, summed over action dimensions: ``[B]``."""
        raise NotImplementedError


class Categorical(Distribution):
    """A categorical distribution over ``n`` actions from unnormalised logits ``[B, n]``."""

    def __init__(self, n: int) -> None:
        self.param_dim = n
        self.action_shape = ()

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        # Gumbel-max would need two uniforms per logit; inverse-CDF needs one per row
        probs = torch.softmax(params, dim=-1)
        cumulative = probs.cumsum(dim=-1)
        uniform = torch.rand(params.shape[0], 1, generator=generator).to(params.device)
        return torch.searchsorted(cumulative, uniform * cumulative[:, -1:]).clamp_(max=self.param_dim - 1).squeeze(1)

    def sample_with_log_prob(self, params: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        log_probs = torch.log_softmax(params, dim=-1)
        cumulative = log_probs.exp().cumsum_(dim=-1)
        uniform = torch.rand(params.shape[0], 1, generator=generator).to(params.device)
        column = torch.searchsorted(cumulative, uniform.mul_(cumulative[:, -1:])).clamp_(max=self.param_dim - 1)
        return column.squeeze(1), log_probs.gather(1, column).squeeze(1)

    def mode(self, params: Tensor) -> Tensor:
        return params.argmax(dim=-1)

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        return torch.log_softmax(params, dim=-1).gather(1, action.long().reshape(-1, 1)).squeeze(1)

    def entropy(self, params: Tensor) -> Tensor:
        log_probs = torch.log_softmax(params, dim=-1)
        return -(log_probs.exp() * log_probs).sum(dim=-1)

    def forward_with_cache(
        self, params: np.ndarray, action: np.ndarray, need_entropy: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, tuple]:
        """Log-probs ``[B]`` and entropies ``[B]`` (None unless ``need_entropy``) of logits ``[B, n]``, and what
        :meth:`backward` needs; numpy float32 arrays in and out (the CPU fast path)."""
        # torch's log_softmax is one kernel; numpy's reductions along a row of a few logits are ~5x slower
        log_probs = torch.log_softmax(torch.from_numpy(params), dim=1).numpy()
        probs = np.exp(log_probs)
        rows, column = np.arange(params.shape[0]), action.reshape(-1).astype(np.int64, copy=False)
        entropy = -np.einsum("ij,ij->i", probs, log_probs) if need_entropy else None
        return log_probs[rows, column], entropy, (log_probs, probs, rows, column, entropy)

    @staticmethod
    def backward(cache: tuple, grad_log_prob: np.ndarray, grad_entropy: np.ndarray | None) -> np.ndarray:
        """The gradient w.r.t. the logits ``[B, n]`` of ``sum(grad_log_prob * log_prob + grad_entropy * entropy)``.

        With ``p = softmax(z)``: ``d log p_a / dz = onehot(a) - p`` and ``dH / dz = -p * (log p + H)``.
        ``grad_entropy=None`` means no entropy term.
        """
        log_probs, probs, rows, column, entropy = cache
        upstream = grad_log_prob[:, None]
        if grad_entropy is None:
            grad = probs * -upstream
        else:
            grad = (log_probs + entropy[:, None]) * grad_entropy[:, None]
            grad += upstream
            grad *= probs
            np.negative(grad, out=grad)
        grad[rows, column] += grad_log_prob
        return grad


class DiagGaussian(Distribution):
    """A diagonal Gaussian over ``d``-dimensional actions: means ``[B, d]`` and a shared ``log_std [d]``.

    Set :attr:`log_std` (the policy's parameter) before use.
    """

    def __init__(self, dim: int, action_shape: tuple[int, ...]) -> None:
        self.param_dim = dim
        self.action_shape = action_shape
        self.log_std: Tensor | None = None

    def _flat(self, action: Tensor) -> Tensor:
        return action.reshape(action.shape[0], self.param_dim)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        assert self.log_std is not None
        noise = torch.randn(params.shape, generator=generator).to(params.device)
        return (params + noise * self.log_std.exp()).reshape(params.shape[0], *self.action_shape)

    def mode(self, params: Tensor) -> Tensor:
        return params.reshape(params.shape[0], *self.action_shape)

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        assert self.log_std is not None
        z = (self._flat(action) - params) * torch.exp(-self.log_std)
        return (-0.5 * z * z).sum(dim=-1) - (self.log_std.sum() + self.param_dim * LOG_SQRT_2PI)

    def entropy(self, params: Tensor) -> Tensor:
        assert self.log_std is not None
        value = self.log_std.sum() + self.param_dim * (0.5 + LOG_SQRT_2PI)
        return value.expand(params.shape[0])

    def forward_with_cache(
        self, params: np.ndarray, action: np.ndarray, need_entropy: bool = True
    ) -> tuple[np.ndarray, np.ndarray | None, tuple]:
        """Log-probs ``[B]`` and entropies ``[B]`` (None unless ``need_entropy``) of means ``[B, d]``, and what
        :meth:`backward` needs; numpy float32 arrays in and out (the CPU fast path; ``log_std`` on the CPU)."""
        assert self.log_std is not None
        log_std = self.log_std.detach().numpy()
        inv_std = np.exp(-log_std)
        z = action.reshape(action.shape[0], self.param_dim) - params
        z *= inv_std
        squared = z * z
        log_std_sum = float(log_std.sum())
        log_prob = squared.sum(axis=1)
        log_prob *= -0.5
        log_prob -= log_std_sum + self.param_dim * LOG_SQRT_2PI
        entropy = (np.full_like(log_prob, log_std_sum + self.param_dim * (0.5 + LOG_SQRT_2PI))
                   if need_entropy else None)
        return log_prob, entropy, (z, squared, inv_std)

    @staticmethod
    def backward(
        cache: tuple, grad_log_prob: np.ndarray, grad_entropy: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gradients of ``sum(grad_log_prob * log_prob + grad_entropy * entropy)``: ``(means [B, d], log_std [d])``.

        With ``z = (a - mu) / sigma``: ``d log p / d mu = z / sigma``, ``d log p / d log_std = z**2 - 1``
        and ``dH / d log_std = 1``. ``grad_entropy=None`` means no entropy term.
        """
        z, squared, inv_std = cache
        upstream = grad_log_prob[:, None]
        grad_log_std = ((squared - 1.0) * upstream).sum(axis=0)
        if grad_entropy is not None:
            grad_log_std += grad_entropy.sum()
        grad_means = z * inv_std
        grad_means *= upstream
        return grad_means, grad_log_std


class MultiCategorical(Distribution):
    """Independent categoricals, one per ``MultiDiscrete`` dimension; logits concatenated ``[B, sum(nvec)]``."""

    def __init__(self, nvec: list[int]) -> None:
        self.nvec = [int(n) for n in nvec]
        self.param_dim = sum(self.nvec)
        self.action_shape = (len(self.nvec),)
        self._parts = [Categorical(n) for n in self.nvec]

    def _split(self, params: Tensor) -> tuple[Tensor, ...]:
        return torch.split(params, self.nvec, dim=-1)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return torch.stack([part.sample(logits, generator) for part, logits in zip(self._parts, self._split(params))],
                           dim=1)

    def mode(self, params: Tensor) -> Tensor:
        return torch.stack([logits.argmax(dim=-1) for logits in self._split(params)], dim=1)

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        return sum(part.log_prob(logits, action[:, index])
                   for index, (part, logits) in enumerate(zip(self._parts, self._split(params))))  # type: ignore

    def entropy(self, params: Tensor) -> Tensor:
        return sum(part.entropy(logits) for part, logits in zip(self._parts, self._split(params)))  # type: ignore


class Bernoulli(Distribution):
    """Independent Bernoulli variables, one per ``MultiBinary`` dimension, from logits ``[B, d]``."""

    def __init__(self, dim: int, action_shape: tuple[int, ...]) -> None:
        self.param_dim = dim
        self.action_shape = action_shape

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        uniform = torch.rand(params.shape, generator=generator).to(params.device)
        return (uniform < torch.sigmoid(params)).to(torch.int8).reshape(params.shape[0], *self.action_shape)

    def mode(self, params: Tensor) -> Tensor:
        return (params > 0).to(torch.int8).reshape(params.shape[0], *self.action_shape)

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        target = action.reshape(action.shape[0], self.param_dim).to(params.dtype)
        # log p(x) = x * z - softplus(z)
        return (target * params - torch.nn.functional.softplus(params)).sum(dim=-1)

    def entropy(self, params: Tensor) -> Tensor:
        probs = torch.sigmoid(params)
        return (torch.nn.functional.softplus(params) - probs * params).sum(dim=-1)


def categorical_sample(logits: np.ndarray, uniform: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:meth:`Categorical.sample_with_log_prob` in numpy, for CPU acting on small batches.

    The same inverse-CDF draw as the torch version from the same uniforms: the first action whose
    cumulative probability reaches ``uniform * total``.

    Args:
        logits: ``[B, n]`` float32.
        uniform: ``[B, 1]`` float32 in ``[0, 1)``.

    Returns:
        ``(actions [B] int64, log_probs [B] float32)``.
    """
    shifted = logits - logits.max(axis=1, keepdims=True)
    weights = np.exp(shifted)
    cumulative = np.cumsum(weights, axis=1)
    actions = np.minimum((cumulative < uniform * cumulative[:, -1:]).sum(axis=1), logits.shape[1] - 1)
    rows = np.arange(logits.shape[0])
    log_probs = shifted[rows, actions] - np.log(cumulative[:, -1])
    return actions.astype(np.int64), log_probs.astype(np.float32)


ACTION_SPACES = (spaces.Discrete, spaces.Box, spaces.MultiDiscrete, spaces.MultiBinary)
"""The action spaces policy-gradient methods handle."""


def make_distribution(action_space: gym.Space) -> Distribution:
    """The distribution family for an action space; a TypeError names the space otherwise."""
    if isinstance(action_space, spaces.Discrete):
        return Categorical(int(action_space.n))
    if isinstance(action_space, spaces.Box):
        if not np.issubdtype(action_space.dtype, np.floating):
            raise TypeError(f"Box action spaces must be floating point, got {describe_space(action_space)}")
        return DiagGaussian(int(np.prod(action_space.shape)), tuple(action_space.shape))
    if isinstance(action_space, spaces.MultiDiscrete):
        if action_space.nvec.ndim != 1:
            raise TypeError(f"MultiDiscrete action spaces must be 1-D, got {describe_space(action_space)}")
        return MultiCategorical(action_space.nvec.tolist())
    if isinstance(action_space, spaces.MultiBinary):
        shape = (action_space.n,) if isinstance(action_space.n, int) else tuple(action_space.n)
        return Bernoulli(int(np.prod(shape)), shape)
    raise TypeError(
        f"no action distribution for {describe_space(action_space)}; policy-gradient methods accept "
        "Discrete, Box, MultiDiscrete and MultiBinary"
    )
