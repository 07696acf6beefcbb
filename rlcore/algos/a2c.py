"""A2C (Mnih et al., 2016, synchronous): one gradient step per short rollout of every env.

Advantages come from GAE (SB3's default ``gae_lambda=1`` makes them n-step returns minus
values); the optimizer is RMSprop like SB3's (``optimizer="adam"`` switches). The loss is
:class:`~rlcore.algos.onpolicy.ActorCriticLoss` over the whole rollout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from rlcore.algos.base import Example, register_algo
from rlcore.algos.onpolicy import ActorCriticLoss, OnPolicyAlgorithm, OnPolicyConfig, mean_stats, standardize


@dataclass(frozen=True)
class A2CConfig(OnPolicyConfig):
    """Hyperparameters of :class:`A2C`. Defaults are SB3's A2C."""

    learning_rate: float = 7e-4
    n_steps: int = 5
    gae_lambda: float = 1.0
    normalize_advantage: bool = False
    optimizer: str = "rmsprop"


@register_algo("a2c")
class A2C(OnPolicyAlgorithm[A2CConfig]):
    """Advantage actor-critic: the policy gradient with a learned value baseline, every ``n_steps``."""

    config_class: ClassVar[type] = A2CConfig
    example: ClassVar[Example | None] = Example("CartPole-v1", {"total_env_steps": 256, "num_envs": 2, "n_steps": 8,
                                                               "net_arch": [16]})

    def optimize(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """One gradient step on the whole rollout (``[T*N]`` rows)."""
        (part,) = self.minibatches(batch, batch["advantage"].shape[0], shuffle=False)
        advantages = part["advantage"]
        if self.config.normalize_advantage:
            advantages = standardize(advantages)
        head_loss = ActorCriticLoss(advantages, part["return"], self.config.ent_coef, self.config.vf_coef)
        return mean_stats([self.gradient_step(part["inputs"], part["action"], head_loss)])
