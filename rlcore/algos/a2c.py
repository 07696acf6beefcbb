"""A2C (Mnih et al., 2016, synchronous): one gradient step per short rollout of every env.

Advantages come from GAE (SB3's default ``gae_lambda=1`` makes them n-step returns minus
values); the optimizer is RMSprop like SB3's (``optimizer="adam"`` switches). The loss,
:class:`ActorCriticLoss` (REINFORCE's too), is taken over the whole rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from torch import Tensor

from rlcore.algos.base import Example, register_algo
from rlcore.algos.onpolicy import OnPolicyAlgorithm, OnPolicyConfig, mean_stats, standardize
from rlcore.kernels.pg_losses import actor_critic_loss_gradients, closed_form


@dataclass(frozen=True)
class A2CConfig(OnPolicyConfig):
    """Hyperparameters of :class:`A2C`. Defaults are SB3's A2C."""

    learning_rate: float = 7e-4
    n_steps: int = 5
    gae_lambda: float = 1.0
    normalize_advantage: bool = False
    optimizer: str = "rmsprop"


@closed_form(actor_critic_loss_gradients)
class ActorCriticLoss:
    """``-mean(A * log_prob) - ent_coef * mean(H) + vf_coef * mean((V - R)^2)``: A2C's and REINFORCE's loss (its
    statistics carry SB3's A2C names: ``policy_loss``, ``value_loss``, ``entropy_loss``).

    Args:
        advantages: ``[B]`` (already normalized if wanted).
        returns: Value targets ``[B]``.
    """

    def __init__(self, advantages: Tensor, returns: Tensor, ent_coef: float, vf_coef: float) -> None:
        self.advantages = advantages
        self.returns = returns
        self.ent_coef = ent_coef
        self.vf_coef = vf_coef

    def loss(self, log_prob: Tensor, entropy: Tensor, value: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        policy_loss = -(self.advantages * log_prob).mean()
        value_loss = (value - self.returns).pow(2).mean()
        entropy_loss = -entropy.mean()
        total = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        return total, {"policy_loss": policy_loss.detach(), "value_loss": value_loss.detach(),
                       "entropy_loss": entropy_loss.detach()}


@register_algo("a2c")
class A2C(OnPolicyAlgorithm[A2CConfig]):
    """Advantage actor-critic: the policy gradient with a learned value baseline, every ``n_steps``."""

    config_class: ClassVar[type] = A2CConfig
    example: ClassVar[Example | None] = Example("CartPole-v1", {"total_env_steps": 256, "num_envs": 2, "n_steps": 8,
                                                               "net_arch": [16]})
    loss_class: ClassVar[type[ActorCriticLoss]] = ActorCriticLoss

    def optimize(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One gradient step on the whole rollout (``[T*N]`` rows)."""
        return whole_rollout_steps(self, batch, 1)


def whole_rollout_steps(algo: OnPolicyAlgorithm[Any], batch: dict[str, Tensor], steps: int) -> dict[str, float]:
    """``steps`` gradient steps of ``algo.loss_class`` (an :class:`ActorCriticLoss`) on a whole flattened rollout
    ``[T*N]``, advantages standardized when the config says so; returns the steps' mean statistics."""
    (part,) = algo.minibatches(batch, batch["advantage"].shape[0], shuffle=False)
    advantages = standardize(part["advantage"]) if algo.config.normalize_advantage else part["advantage"]
    head_loss = algo.loss_class(advantages, part["return"], algo.config.ent_coef, algo.config.vf_coef)
    mask = part.get("action_mask")
    return mean_stats([algo.gradient_step(part["inputs"], part["action"], head_loss, action_mask=mask)
                       for _ in range(steps)])
