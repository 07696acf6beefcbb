"""Feature extractors and heads shared by every policy.

A :class:`FeatureExtractor` is any ``nn.Module`` that maps a batch of observations to a
batch of feature vectors and says how wide they are (``out_dim``). Heads are built on
top of it from ``net_arch``, like SB3's.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym
from gymnasium import spaces
from torch import Tensor, nn

from rlcore.spaces import describe_space, flat_obs_dim

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "gelu": nn.GELU}


def activation_class(name: str) -> type[nn.Module]:
    """Looks up an activation by name; a ValueError lists the valid ones."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}") from None


def mlp(in_dim: int, hidden: Sequence[int], out_dim: int | None, activation: str = "relu") -> nn.Sequential:
    """Linear layers of widths ``hidden`` with ``activation`` between them, then an optional output layer."""
    act = activation_class(activation)
    layers: list[nn.Module] = []
    width = in_dim
    for size in hidden:
        layers += [nn.Linear(width, size), act()]
        width = size
    if out_dim is not None:
        layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


class FeatureExtractor(nn.Module):
    """Base class of every encoder: ``[B, *obs_shape] -> [B, out_dim]``."""

    out_dim: int

    def init_orthogonal(self) -> None:
        """Re-initialises the encoder's own layers orthogonally (gain sqrt 2), as SB3's ``ortho_init`` does for its
        feature extractors; an actor-critic with ``ortho_init`` calls it once, after building it. Here: nothing, so
        a user's registered extractor and a pretrained backbone keep their weights; rlcore's CNNs and the
        Dict/Tuple combination of encoders override it."""


class FlattenExtractor(FeatureExtractor):
    """Flattens Box observations to float; one-hot encodes Discrete observations.

    Shapes: ``[B, *shape]`` (Box) or ``[B]`` (Discrete) -> ``[B, out_dim]``.
    """

    def __init__(self, observation_space: gym.Space) -> None:
        super().__init__()
        if not isinstance(observation_space, spaces.Box | spaces.Discrete):
            raise TypeError(
                f"FlattenExtractor handles Box and Discrete observations, got {describe_space(observation_space)}"
            )
        self.out_dim = flat_obs_dim(observation_space)
        self.one_hot = isinstance(observation_space, spaces.Discrete)
        self.discrete_start = int(observation_space.start) if self.one_hot else 0

    def forward(self, obs: Tensor) -> Tensor:
        if self.one_hot:  # clamped: a memory window's unused slots hold 0, outside Discrete(n, start) (masked anyway;
            # the observations themselves are checked against the space by the collector and by predict)
            index = (obs.long() - self.discrete_start).clamp(0, self.out_dim - 1)
            return nn.functional.one_hot(index, self.out_dim).float()
        return obs.reshape(obs.shape[0], -1).float()


def init_orthogonal(module: nn.Module, gain: float = 2**0.5) -> None:
    """Orthogonal weights (scaled by ``gain``) and zero biases for every Linear and Conv2d layer of ``module``
    (SB3's ``ActorCriticPolicy.init_weights``; other layers keep their initialisation)."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv2d):
            nn.init.orthogonal_(layer.weight, gain=gain)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


__all__ = [
    "FeatureExtractor",
    "FlattenExtractor",
    "activation_class",
    "count_parameters",
    "init_orthogonal",
    "mlp",
]


def add_q_head(
    net: nn.Module, in_dim: int, num_actions: int, net_arch: Sequence[int], activation: str, dueling: bool
) -> None:
    """Gives ``net`` a Q head over ``in_dim`` features: ``body`` (an MLP ending in ``num_actions`` outputs) or,
    with ``dueling``, ``body`` (hidden layers only) + ``value_head`` + ``advantage_head``; see :func:`q_head`."""
    net.dueling = dueling
    net.num_actions = num_actions
    if dueling:
        net.body = mlp(in_dim, net_arch, None, activation)
        width = net_arch[-1] if net_arch else in_dim
        net.value_head = nn.Linear(width, 1)
        net.advantage_head = nn.Linear(width, num_actions)
    else:
        net.body = mlp(in_dim, net_arch, num_actions, activation)


def q_head(net: nn.Module, features: Tensor) -> Tensor:
    """The head :func:`add_q_head` built: features ``[..., D]`` -> Q-values ``[..., A]``."""
    out = net.body(features)
    if not net.dueling:
        return out
    if out.dim() == 2:
        return dueling_combine(net.value_head(out), net.advantage_head(out))
    flat = out.reshape(-1, out.shape[-1])
    q = dueling_combine(net.value_head(flat), net.advantage_head(flat))
    return q.reshape(*out.shape[:-1], net.num_actions)


def dueling_combine(value: Tensor, advantage: Tensor) -> Tensor:
    """``Q = V + A - mean_a A``: ``value [B, 1]``, ``advantage [B, A]`` -> ``[B, A]``."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)
