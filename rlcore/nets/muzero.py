"""MuZero's learned model (Schrittwieser et al., 2020): representation, dynamics and prediction networks, and the
categorical value/reward scaling of the paper.

- **representation** ``h``: observation -> latent state ``s^0`` (an encoder from :mod:`rlcore.nets.extractors`, then
  an MLP);
- **dynamics** ``g``: ``(s^k, a)`` -> ``(s^{k+1}, r^{k+1})`` (an MLP on the latent state and the action's one-hot);
- **prediction** ``f``: ``s^k`` -> ``(policy logits p^k, value v^k)``.

Latent states are rescaled to ``[0, 1]`` per state (min-max over its features), as in the paper, so the dynamics
sees inputs of one scale however far it unrolls. Values and rewards are categorical: a scalar ``x`` is squashed by
``phi(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x`` (:func:`scale_value`, invertible: :func:`unscale_value`) and
written as a two-hot distribution over the integers ``-S .. S`` (:func:`scalar_to_support`); the networks output
logits over those ``2S + 1`` atoms and are trained with cross-entropy (:func:`support_to_scalar` reads a scalar
back). The last layers of the value, reward and policy heads start at zero (as EfficientZero's), so an untrained
model predicts a uniform policy and zero values and rewards.

References:
    Schrittwieser et al., 2020. Mastering Atari, Go, chess and shogi by planning with a learned model. Nature 588.
    Pohlen et al., 2018. Observe and look further: achieving consistent performance on Atari (the scaling ``phi``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlcore.nets.base import FeatureExtractor, mlp

SCALE_EPS = 1e-3
"""``eps`` of the value scaling ``phi`` (the paper's 0.001)."""


def scale_value(x: Tensor) -> Tensor:
    """``phi(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x`` elementwise (any shape)."""
    return torch.sign(x) * (torch.sqrt(x.abs() + 1.0) - 1.0) + SCALE_EPS * x


def unscale_value(y: Tensor) -> Tensor:
    """The inverse of :func:`scale_value`, elementwise (any shape)."""
    root = (torch.sqrt(1.0 + 4.0 * SCALE_EPS * (y.abs() + 1.0 + SCALE_EPS)) - 1.0) / (2.0 * SCALE_EPS)
    return torch.sign(y) * (root * root - 1.0)


def scalar_to_support(x: Tensor, support_size: int) -> Tensor:
    """The two-hot distribution of ``phi(x)`` over the atoms ``-S .. S``: ``[...]`` -> ``[..., 2S + 1]``.

    ``phi(x)`` is clamped to ``[-S, S]``; its mass is split between the two nearest atoms so that the mean is
    ``phi(x)`` exactly.
    """
    scaled = scale_value(x).clamp(-support_size, support_size)
    low = scaled.floor()
    upper_weight = scaled - low
    target = torch.zeros(*x.shape, 2 * support_size + 1, dtype=x.dtype, device=x.device)
    low_index = (low + support_size).long()
    target.scatter_(-1, low_index.unsqueeze(-1), (1.0 - upper_weight).unsqueeze(-1))
    high_index = (low_index + 1).clamp(max=2 * support_size)  # at phi(x) = S the upper weight is 0
    return target.scatter_add_(-1, high_index.unsqueeze(-1), upper_weight.unsqueeze(-1))


def support_to_scalar(logits: Tensor, support_size: int) -> Tensor:
    """The scalar a categorical prediction stands for: ``phi^-1(sum_i softmax(logits)_i * i)``,
    ``[..., 2S + 1]`` -> ``[...]``."""
    atoms = torch.arange(-support_size, support_size + 1, dtype=logits.dtype, device=logits.device)
    return unscale_value((F.softmax(logits, dim=-1) * atoms).sum(dim=-1))


def normalize_latent(state: Tensor) -> Tensor:
    """Each latent state ``[B, H]`` rescaled to ``[0, 1]`` by its own min and max (the paper's scaling)."""
    low = state.min(dim=1, keepdim=True).values
    high = state.max(dim=1, keepdim=True).values
    return (state - low) / (high - low).clamp(min=1e-5)


def _zero_last_layer(head: nn.Sequential) -> nn.Sequential:
    last = head[-1]
    assert isinstance(last, nn.Linear)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return head


class MuZeroNetwork(nn.Module):
    """The three functions of MuZero's model over latent states of ``latent_size`` features.

    Args:
        features: The observation encoder (``[B, *obs_shape] -> [B, out_dim]``; flatten, SmallCNN, ...).
        num_actions: ``A``.
        latent_size: ``H``, the latent state's width.
        net_arch: Hidden widths of every MLP (representation, dynamics, each head).
        support_size: ``S``: values and rewards are distributions over ``2S + 1`` atoms.
        activation: Of the MLPs' hidden layers.
    """

    def __init__(self, features: FeatureExtractor, num_actions: int, *, latent_size: int, net_arch: Sequence[int],
                 support_size: int, activation: str = "relu") -> None:
        super().__init__()
        self.num_actions = num_actions
        self.latent_size = latent_size
        self.support_size = support_size
        atoms = 2 * support_size + 1
        self.features = features
        self.representation = mlp(features.out_dim, net_arch, latent_size, activation)
        self.dynamics = mlp(latent_size + num_actions, net_arch, latent_size, activation)
        self.reward_head = _zero_last_layer(mlp(latent_size, net_arch, atoms, activation))
        self.policy_head = _zero_last_layer(mlp(latent_size, net_arch, num_actions, activation))
        self.value_head = _zero_last_layer(mlp(latent_size, net_arch, atoms, activation))

    def represent(self, obs: Tensor) -> Tensor:
        """``h``: observations ``[B, *obs_shape]`` -> latent states ``[B, H]`` in ``[0, 1]``."""
        return normalize_latent(self.representation(self.features(obs)))

    def predict(self, state: Tensor) -> tuple[Tensor, Tensor]:
        """``f``: latent states ``[B, H]`` -> ``(policy logits [B, A], value logits [B, 2S + 1])``."""
        return self.policy_head(state), self.value_head(state)

    def dynamics_step(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """``g``: latent states ``[B, H]`` and actions ``[B]`` (int64, ``0 .. A - 1``) -> ``(next states [B, H],
        reward logits [B, 2S + 1])``."""
        one_hot = F.one_hot(action, self.num_actions).to(state.dtype)
        raw = self.dynamics(torch.cat([state, one_hot], dim=1))
        return normalize_latent(raw), self.reward_head(raw)

    def initial_inference(self, obs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``obs [B, *obs_shape]`` -> ``(latent states [B, H], policy logits [B, A], value logits [B, 2S + 1])``."""
        state = self.represent(obs)
        return (state, *self.predict(state))

    def recurrent_inference(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(states [B, H], actions [B])`` -> ``(next states [B, H], reward logits [B, 2S + 1], policy logits
        [B, A], value logits [B, 2S + 1])``."""
        next_state, reward_logits = self.dynamics_step(state, action)
        return (next_state, reward_logits, *self.predict(next_state))


class ConsistencyHeads(nn.Module):
    """EfficientZero's self-supervised consistency (SimSiam): a projector of latent states and a predictor on top.

    The loss compares ``predictor(projector(s_k))`` of the state the dynamics reached after ``k`` steps with
    ``projector(h(o_{t+k}))`` of the observation actually reached, gradients stopped on the latter
    (:func:`consistency_loss`).

    Args:
        latent_size: ``H``.
        projection_size: ``P``, the projections' width (the predictor's hidden layer is ``P / 2``).
    """

    def __init__(self, latent_size: int, projection_size: int) -> None:
        super().__init__()
        self.projector = mlp(latent_size, [projection_size], projection_size, "relu")
        self.predictor = mlp(projection_size, [max(projection_size // 2, 1)], projection_size, "relu")

    def online(self, state: Tensor) -> Tensor:
        """``[..., H]`` unrolled states -> predicted projections ``[..., P]``."""
        return self.predictor(self.projector(state))

    def target(self, state: Tensor) -> Tensor:
        """``[..., H]`` states of real observations -> projections ``[..., P]`` (no gradient)."""
        with torch.no_grad():
            return self.projector(state)


def consistency_loss(predicted: Tensor, target: Tensor) -> Tensor:
    """Negative cosine similarity over the last axis: ``[..., P]`` twice -> ``[...]`` in ``[-1, 1]``."""
    return -F.cosine_similarity(predicted, target.detach(), dim=-1)
