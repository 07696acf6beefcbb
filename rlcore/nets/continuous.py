"""The networks of off-policy actor-critics for Box actions (SAC, TD3, DDPG), as SB3 builds them.

Every network works on actions scaled to ``[-1, 1]`` (the algorithm rescales to the env's bounds):

- :class:`SquashedGaussianActor` (SAC): a Gaussian over pre-squash actions whose sample goes through ``tanh``;
  :func:`squashed_gaussian` draws it and its log-probability with the change-of-variables correction;
- :class:`StateDependentSquashedActor` (SAC with gSDE, ``use_sde``): the pre-squash noise is the body's last hidden
  features times a weight matrix drawn now and then; :func:`state_dependent_squashed` draws the action and its
  log-probability;
- :class:`DeterministicActor` (TD3, DDPG): ``tanh`` of an MLP;
- :class:`QCritics`: ``n_critics`` independent ``Q(s, a)`` MLPs over one feature extractor (twin Q for SAC and
  TD3, one for DDPG).

Hidden layers use PyTorch's default initialization, as SB3's off-policy policies do.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rlcore.distributions import state_dependent_std
from rlcore.nets.base import FeatureExtractor, mlp

LOG_STD_MIN = -20.0
"""Lower bound of the actor's log standard deviation (SB3's)."""
LOG_STD_MAX = 2.0
"""Upper bound of the actor's log standard deviation (SB3's)."""
HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
LOG_TWO = math.log(2.0)


class SquashedGaussianActor(nn.Module):
    """SAC's policy: ``a = tanh(mean(s) + std(s) * eps)`` with ``eps ~ N(0, I)``.

    ``body`` is one MLP whose last layer outputs ``[mean, log_std]`` side by side (SB3's two heads, ``mu`` and
    ``log_std``, as one layer: the same function and the same initialization).

    Args:
        features: Encodes observations, ``[B, *obs_shape] -> [B, F]``.
        action_dim: ``A``, the flat size of the action.
        net_arch: Hidden widths of the body.
        activation: Hidden activation.

    Shapes: ``forward``: ``[B, *obs_shape] -> (mean [B, A], log_std [B, A])`` (``log_std`` clamped to
    ``[LOG_STD_MIN, LOG_STD_MAX]``).
    """

    def __init__(self, features: FeatureExtractor, action_dim: int, net_arch: Sequence[int],
                 activation: str = "relu") -> None:
        super().__init__()
        self.features = features
        self.body = mlp(features.out_dim, net_arch, 2 * action_dim, activation)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = self.body(self.features(obs)).chunk(2, dim=1)
        return mean, log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)


def squashed_gaussian(mean: Tensor, log_std: Tensor, noise: Tensor) -> tuple[Tensor, Tensor]:
    """The action ``tanh(u)``, ``u = mean + exp(log_std) * noise``, and its log-probability.

    ``log pi(a) = sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)]``, with ``(u - mean) / std = noise``
    and ``log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u))`` (exact, and finite for any ``u``; SB3 adds 1e-6
    inside the log instead).

    Shapes: ``mean``, ``log_std``, ``noise`` ``[B, A]`` -> ``(action [B, A], log_prob [B])``.
    """
    pre_squash = mean + log_std.exp() * noise
    log_prob = (-0.5 * noise.square() - log_std - HALF_LOG_TWO_PI
                - 2.0 * (LOG_TWO - pre_squash - nn.functional.softplus(-2.0 * pre_squash))).sum(dim=1)
    return torch.tanh(pre_squash), log_prob


class StateDependentSquashedActor(nn.Module):
    """SAC's policy with generalized state-dependent exploration (gSDE; SB3's SAC with ``use_sde=True``).

    ``a = tanh(mean(s) + z(s) W)``: ``z`` ``[B, L]`` the body's last hidden features, ``W`` ``[L, A]`` drawn from
    ``N(0, exp(log_std)^2)`` element-wise (``log_std`` ``[L, A]``, a parameter) and held between draws, so the
    same state gets the same perturbation. ``mean`` is clipped to ``[-2, 2]`` by a hardtanh (SB3's ``clip_mean``).
    As in SB3's SAC (``learn_features=True``), ``z`` is not detached: the noise trains the body too.

    Shapes: ``forward``: ``[B, *obs_shape] -> (mean [B, A], latent [B, L])``.
    """

    CLIP_MEAN = 2.0

    def __init__(self, features: FeatureExtractor, action_dim: int, net_arch: Sequence[int],
                 activation: str = "relu", log_std_init: float = -3.0) -> None:
        super().__init__()
        self.features = features
        self.body = mlp(features.out_dim, net_arch, None, activation)
        width = net_arch[-1] if net_arch else features.out_dim
        self.mu = nn.Linear(width, action_dim)
        self.log_std = nn.Parameter(torch.full((width, action_dim), float(log_std_init)))

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        latent = self.body(self.features(obs))
        return nn.functional.hardtanh(self.mu(latent), -self.CLIP_MEAN, self.CLIP_MEAN), latent


def state_dependent_squashed(mean: Tensor, latent: Tensor, log_std: Tensor, weights: Tensor) -> tuple[Tensor, Tensor]:
    """gSDE's action ``tanh(u)``, ``u = mean + latent W``, and its log-probability.

    Given ``latent``, ``u`` is Gaussian with :func:`~rlcore.distributions.state_dependent_std` per dimension (SB3's
    ``StateDependentNoiseDistribution``); ``log pi(a) = sum_i [log N(u_i; mean_i, std_i) - log(1 - tanh(u_i)^2)]``
    in :func:`squashed_gaussian`'s exact form (SB3 recovers ``u`` as ``atanh(a)`` from the clamped action).

    Shapes: ``mean [B, A]``, ``latent [B, L]``, ``log_std [L, A]``, ``weights`` ``[L, A]`` (one matrix for every row)
    or ``[B, L, A]`` (one per row) -> ``(action [B, A], log_prob [B])``.
    """
    noise = latent @ weights if weights.dim() == 2 else torch.bmm(latent.unsqueeze(1), weights).squeeze(1)
    pre_squash = mean + noise
    std = state_dependent_std(latent, log_std)
    z = noise / std
    log_prob = (-0.5 * z.square() - torch.log(std) - HALF_LOG_TWO_PI
                - 2.0 * (LOG_TWO - pre_squash - nn.functional.softplus(-2.0 * pre_squash))).sum(dim=1)
    return torch.tanh(pre_squash), log_prob


class DeterministicActor(nn.Module):
    """TD3's and DDPG's policy: ``a = tanh(MLP(features(s)))``.

    Shapes: ``forward``: ``[B, *obs_shape] -> [B, A]`` in ``[-1, 1]``.
    """

    def __init__(self, features: FeatureExtractor, action_dim: int, net_arch: Sequence[int],
                 activation: str = "relu") -> None:
        super().__init__()
        self.features = features
        self.body = mlp(features.out_dim, net_arch, action_dim, activation)

    def forward(self, obs: Tensor) -> Tensor:
        return torch.tanh(self.body(self.features(obs)))


class QCritics(nn.Module):
    """``n_critics`` action-value networks ``Q_i(s, a) = MLP_i([features(s), a])`` over one feature extractor.

    Args:
        features: Encodes observations, ``[B, *obs_shape] -> [B, F]``.
        action_dim: ``A``.
        net_arch: Hidden widths of each Q-network.
        n_critics: How many Q-networks (2: clipped double Q).

    Shapes: ``forward``: ``obs [B, *obs_shape]``, ``action [B, A]`` -> ``[n_critics, B]``; :meth:`first`: ``[B]``.
    """

    def __init__(self, features: FeatureExtractor, action_dim: int, net_arch: Sequence[int], n_critics: int = 2,
                 activation: str = "relu") -> None:
        super().__init__()
        self.features = features
        self.q_nets = nn.ModuleList(mlp(features.out_dim + action_dim, net_arch, 1, activation)
                                    for _ in range(n_critics))

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        inputs = torch.cat((self.features(obs), action), dim=1)
        return torch.stack([q_net(inputs).squeeze(1) for q_net in self.q_nets])

    def first(self, obs: Tensor, action: Tensor) -> Tensor:
        """``Q_1(s, a)`` alone (TD3's and DDPG's actor loss)."""
        return self.q_nets[0](torch.cat((self.features(obs), action), dim=1)).squeeze(1)
