"""Action distributions for policy-gradient methods, written without ``torch.distributions``.

``torch.distributions`` validates its arguments and builds objects on every call, which is
a large share of a small network's update (SB3 spends ~28% of a PPO gradient step there).
Each class here is a thin set of formulas over the network's output ``params`` ``[B, P]``:

- :class:`Categorical` (``Discrete``): ``P = n`` logits;
- :class:`DiagGaussian` (``Box``): ``P = d`` means, with a state-independent ``log_std`` ``[d]``;
- :class:`MultiCategorical` (``MultiDiscrete``): the logits of each sub-space, concatenated;
- :class:`Bernoulli` (``MultiBinary``): ``P = d`` logits;
- :class:`StateDependentGaussian` (``Box`` with ``use_sde``, gSDE): ``P = d + L``, the means and the actor's
  latent features, with a ``log_std [L, d]``.

All return per-sample log-probabilities and entropies summed over action dimensions, ``[B]``.

Action masks (sb3-contrib's MaskablePPO convention): :meth:`Distribution.mask` sets the logits of illegal actions to
:data:`MASKED_LOGIT`, so every method above then samples, scores and takes the entropy over the legal actions only
(an illegal action's probability is exactly 0 in float32 and its entropy term ``0 * log p`` is 0); the gradient
reaching a masked logit is 0. Categorical (``Discrete``) and MultiCategorical (``MultiDiscrete``, the sub-spaces'
masks concatenated) take masks.
These formulas are the reference: the CPU kernel of small policies reproduces :class:`Categorical`'s and
:class:`DiagGaussian`'s in closed form, with their gradients (:mod:`rlcore.kernels.distributions`).
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
MASKED_LOGIT = -1e8
"""The logit an illegal action gets (sb3-contrib's value): ``exp`` of it underflows to 0, ``0 * MASKED_LOGIT`` is 0."""


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

    def mask(self, params: Tensor, action_mask: Tensor) -> Tensor:
        """``params`` with the illegal actions of ``action_mask`` (bool ``[B, P]``, True = legal) ruled out."""
        raise TypeError(f"action masks need a Discrete or MultiDiscrete action space; {type(self).__name__} "
                        "distributions take none")

    def first_legal(self, sample: Tensor, action_mask: Tensor) -> Tensor:
        """``sample`` with any illegal action replaced by the first legal one.

        The inverse-CDF draw of a masked categorical lands on a leading illegal action only for a uniform of exactly
        0 (probability 2**-24 per draw), where the first action of positive probability is the right answer.
        """
        raise TypeError(f"{type(self).__name__} distributions take no action masks")


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

    def mask(self, params: Tensor, action_mask: Tensor) -> Tensor:
        return torch.where(action_mask.to(params.device, torch.bool), params, MASKED_LOGIT)

    def first_legal(self, sample: Tensor, action_mask: Tensor) -> Tensor:
        legal = action_mask.to(torch.bool)
        chosen = legal.gather(1, sample.long().reshape(-1, 1)).squeeze(1)
        if bool(chosen.all()):
            return sample
        return torch.where(chosen, sample, legal.to(torch.uint8).argmax(dim=1).to(sample.dtype))


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


GSDE_EPSILON = 1e-6
"""Added to gSDE's variance (SB3's ``StateDependentNoiseDistribution.epsilon``)."""


def state_dependent_std(latent: Tensor, log_std: Tensor) -> Tensor:
    """gSDE's standard deviation given the latent features: ``sqrt(latent^2 @ exp(2 log_std) + eps)``, the spread of
    ``latent @ W`` with ``W_ld ~ N(0, exp(log_std_ld)^2)``: ``latent [B, L]``, ``log_std [L, d]`` -> ``[B, d]``."""
    return torch.sqrt((latent * latent) @ torch.exp(2.0 * log_std) + GSDE_EPSILON)


class StateDependentGaussian(Distribution):
    """Generalized state-dependent exploration (gSDE; Raffin et al., 2022; SB3's ``use_sde``).

    The noise is a linear function of the actor's latent features ``z`` ``[B, L]`` (its last hidden layer):
    ``a = mean + z W``, with ``W`` ``[L, d]`` drawn element-wise from ``N(0, std^2)``, ``std = exp(log_std)``
    ``[L, d]``, and held between draws (:meth:`reset_noise`: at each rollout's start and every
    ``sde_sample_freq`` steps), so the same state gets the same perturbation and exploration is smooth in time.
    Given ``z``, each action dimension is Gaussian with variance ``(z^2) (std^2)`` (:func:`state_dependent_std`):
    :meth:`log_prob` and :meth:`entropy` use that.

    ``params`` ``[B, d + L]``: the means, then the latent features, detached (the noise does not train the
    features: SB3's default ``learn_features=False``); the actor (:class:`rlcore.policy.LatentActor`) outputs
    both. :attr:`log_std` is the policy's parameter, set before use with :attr:`latent_dim`. The noise matrices:
    one per env (``[N, L, d]``) for a batch of ``N`` rows, and one more ``[L, d]`` for a batch of any other size,
    as SB3's.
    """

    def __init__(self, dim: int, action_shape: tuple[int, ...]) -> None:
        self.action_dim = dim
        self.action_shape = action_shape
        self.latent_dim = 0
        self.param_dim = dim
        self.log_std: Tensor | None = None
        self.exploration_matrix: Tensor | None = None
        """``[L, d]``: the noise of a batch whose size is not the number of per-env matrices."""
        self.exploration_matrices: Tensor | None = None
        """``[N, L, d]``: each env's noise."""

    def set_latent_dim(self, latent_dim: int) -> None:
        """The width ``L`` of the actor's latent features (its policy head sets it)."""
        self.latent_dim = int(latent_dim)
        self.param_dim = self.action_dim + self.latent_dim

    def _split(self, params: Tensor) -> tuple[Tensor, Tensor]:
        return params[:, : self.action_dim], params[:, self.action_dim :]

    def _std(self, latent: Tensor) -> Tensor:
        """Each row's standard deviation given its latent features: ``[B, L] -> [B, d]``."""
        assert self.log_std is not None
        return state_dependent_std(latent, self.log_std)

    @torch.no_grad()
    def reset_noise(self, count: int, generator: torch.Generator | None = None) -> None:
        """Draws new noise matrices: ``count`` per-env ones ``[count, L, d]`` and the single ``[L, d]`` one."""
        assert self.log_std is not None
        std = self.log_std.detach().exp().cpu()
        self.exploration_matrix = (torch.randn(std.shape, generator=generator) * std).to(self.log_std.device)
        self.exploration_matrices = (torch.randn((count, *std.shape), generator=generator) * std).to(
            self.log_std.device)

    def noise(self, latent: Tensor) -> Tensor:
        """``z W`` per row: ``[B, L] -> [B, d]`` (each env's matrix when ``B`` is their number)."""
        if self.exploration_matrix is None or self.exploration_matrices is None:
            raise RuntimeError("the gSDE noise matrices were never drawn: call reset_noise(count, generator) first")
        if latent.shape[0] == 1 or latent.shape[0] != self.exploration_matrices.shape[0]:
            return latent @ self.exploration_matrix
        return torch.bmm(latent.unsqueeze(1), self.exploration_matrices).squeeze(1)

    def sample(self, params: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.exploration_matrix is None:
            self.reset_noise(1, generator)
        mean, latent = self._split(params)
        return (mean + self.noise(latent)).reshape(params.shape[0], *self.action_shape)

    def mode(self, params: Tensor) -> Tensor:
        return self._split(params)[0].reshape(params.shape[0], *self.action_shape)

    def log_prob(self, params: Tensor, action: Tensor) -> Tensor:
        mean, latent = self._split(params)
        std = self._std(latent)
        z = (action.reshape(action.shape[0], self.action_dim) - mean) / std
        return (-0.5 * z * z - torch.log(std)).sum(dim=-1) - self.action_dim * LOG_SQRT_2PI

    def entropy(self, params: Tensor) -> Tensor:
        std = self._std(self._split(params)[1])
        return torch.log(std).sum(dim=-1) + self.action_dim * (0.5 + LOG_SQRT_2PI)


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

    def mask(self, params: Tensor, action_mask: Tensor) -> Tensor:
        return torch.where(action_mask.to(params.device, torch.bool), params, MASKED_LOGIT)

    def first_legal(self, sample: Tensor, action_mask: Tensor) -> Tensor:
        masks = torch.split(action_mask.to(torch.bool), self.nvec, dim=-1)
        return torch.stack([part.first_legal(sample[:, index], mask)
                            for index, (part, mask) in enumerate(zip(self._parts, masks))], dim=1)


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
