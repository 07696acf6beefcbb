"""The policy-gradient losses' gradients in closed form, in numpy: what the CPU kernel back-propagates.

Reproduces: :meth:`rlcore.algos.ppo.PPOLoss.loss` and :meth:`rlcore.algos.a2c.ActorCriticLoss.loss` (the loss of
REINFORCE and A2C) as functions of a minibatch's log-probabilities, entropies and values: the gradients autograd
would give with respect to those three, and the same statistics. ``tests/test_kernels.py`` holds them to autograd.

Each function takes the (stock) loss object and float32 arrays ``[B]``; ``entropy`` is None when neither the loss
(``ent_coef == 0``) nor the statistics need it, and ``dL/dentropy`` is then None too. It returns
``(dL/dlog_prob, dL/dentropy, dL/dvalue, statistics)``, the statistics (``loss`` included) only with
``with_stats``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from torch import Tensor

if TYPE_CHECKING:  # the references (annotations only: the algorithms import this module)
    from rlcore.algos.a2c import ActorCriticLoss
    from rlcore.algos.ppo import PPOLoss


Gradients = tuple[np.ndarray, np.ndarray | None, np.ndarray, dict[str, float]]
LossGradients = Callable[[Any, np.ndarray, np.ndarray | None, np.ndarray, bool], Gradients]


def host(values: Tensor | np.ndarray) -> np.ndarray:
    """A CPU tensor as a numpy array sharing its memory (arrays pass through)."""
    return values.numpy(force=True) if isinstance(values, Tensor) else values


def entropy_gradient(entropy: np.ndarray | None, ent_coef: float, count: int) -> np.ndarray | None:
    """``d(-ent_coef * mean(H)) / dH`` ``[B]``, or None when there is no entropy bonus."""
    if ent_coef == 0.0 or entropy is None:
        return None
    return np.full_like(entropy, -ent_coef / count)


def actor_critic_loss_gradients(
    loss: ActorCriticLoss, log_prob: np.ndarray, entropy: np.ndarray | None, value: np.ndarray, with_stats: bool
) -> Gradients:
    """``-mean(A * log_prob) - ent_coef * mean(H) + vf_coef * mean((V - R)^2)``."""
    count = log_prob.shape[0]
    advantages, error = host(loss.advantages), value - host(loss.returns)
    stats: dict[str, float] = {}
    if with_stats and entropy is not None:
        policy_loss, value_loss = -float(np.dot(advantages, log_prob)) / count, float(np.dot(error, error)) / count
        entropy_loss = -float(entropy.mean())
        stats = {"loss": policy_loss + loss.ent_coef * entropy_loss + loss.vf_coef * value_loss,
                 "policy_loss": policy_loss, "value_loss": value_loss, "entropy_loss": entropy_loss}
    grad_log_prob = advantages * (-1.0 / count)
    error *= 2.0 * loss.vf_coef / count
    return grad_log_prob, entropy_gradient(entropy, loss.ent_coef, count), error, stats


def _clipped_value_flow(loss: PPOLoss, value: np.ndarray, squared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """With value clipping: per-sample losses ``[B]``, and 1 where the gradient flows, 0 where clipped away.

    ``max(u, c)`` with ``u = (V - R)^2`` and ``c = (V_old + clip(V - V_old) - R)^2`` has the derivative
    of ``u`` except where ``c`` wins and ``V`` is outside the clip range (``c`` is constant in ``V`` there).
    """
    clip = loss.clip_range_vf
    old_values = host(loss.old_values)
    change = value - old_values
    clipped_error = old_values + np.clip(change, -clip, clip) - host(loss.returns)  # type: ignore[arg-type]
    clipped_squared = clipped_error * clipped_error
    use_unclipped = squared >= clipped_squared
    flows = use_unclipped | (np.abs(change) <= clip)
    return np.where(use_unclipped, squared, clipped_squared), flows.astype(value.dtype)


def ppo_loss_gradients(
    loss: PPOLoss, log_prob: np.ndarray, entropy: np.ndarray | None, value: np.ndarray, with_stats: bool
) -> Gradients:
    """PPO's clipped surrogate, (clipped) value loss and entropy bonus."""
    count = log_prob.shape[0]
    advantages = host(loss.advantages)
    log_ratio = log_prob - host(loss.old_log_prob)
    ratio = np.exp(log_ratio)
    unclipped = ratio * advantages
    clipped = np.clip(ratio, 1.0 - loss.clip_range, 1.0 + loss.clip_range)
    clipped *= advantages
    # min(u, c) takes u where u <= c: there d(-u / B)/dlog_prob = -u / B; where c wins the ratio is clipped: 0
    grad_log_prob = np.where(unclipped <= clipped, unclipped, 0.0)
    grad_log_prob *= -1.0 / count
    error = value - host(loss.returns)
    squared = error * error if with_stats or loss.clip_range_vf is not None else None
    per_sample_value_loss = squared
    if loss.clip_range_vf is not None:
        per_sample_value_loss, flows = _clipped_value_flow(loss, value, squared)  # type: ignore[arg-type]
        error *= flows
    error *= 2.0 * loss.vf_coef / count  # d/dV mean((V - R)^2) = 2 (V - R) / B
    grad_entropy = entropy_gradient(entropy, loss.ent_coef, count)
    if not with_stats or entropy is None:
        return grad_log_prob, grad_entropy, error, {}
    policy_loss = -float(np.minimum(unclipped, clipped).mean())
    value_loss = float(per_sample_value_loss.mean())  # type: ignore[union-attr]
    entropy_loss = -float(entropy.mean())
    return grad_log_prob, grad_entropy, error, {
        "loss": policy_loss + loss.ent_coef * entropy_loss + loss.vf_coef * value_loss,
        "policy_gradient_loss": policy_loss,
        "value_loss": value_loss,
        "entropy_loss": entropy_loss,
        "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
        "clip_fraction": float((np.abs(ratio - 1.0) > loss.clip_range).mean()),
    }


def loss_references(loss_class: type) -> tuple[Callable, ...]:
    """The code of a stock loss class that its closed form reproduces."""
    return (loss_class.__init__, loss_class.loss)  # type: ignore[attr-defined]


CLOSED_FORMS: dict[type, LossGradients] = {}
"""Stock loss class -> its closed form, filled by :func:`closed_form` where each loss is defined."""


def closed_form(gradients: LossGradients) -> Callable[[type], type]:
    """Class decorator for a stock loss: ``gradients`` is its closed form (the kernel's contract test holds them to
    autograd). Only the decorated class itself gets the kernel; a subclass trains through autograd."""

    def register(loss_class: type) -> type:
        CLOSED_FORMS[loss_class] = gradients
        return loss_class

    return register


def loss_gradients(loss_class: type) -> LossGradients | None:
    """The closed form of a stock loss class (exact type); None for any other class, a subclass included."""
    return CLOSED_FORMS.get(loss_class)