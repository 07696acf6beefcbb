"""REINFORCE (Williams, 1992) with a learned state-value baseline.

The policy gradient uses Monte-Carlo returns ``G_t``, not bootstrapped advantages:
``-mean((G_t - V(s_t)) * log pi(a_t | s_t))``, while ``V`` is fitted to ``G_t`` by least squares.
Returns are summed to the end of each episode inside the rollout. Where the rollout cuts an
episode (a time-limit truncation, or the rollout's end) the rest of the return is estimated
by the baseline ``V``; choose ``n_steps`` at least as long as typical episodes so that almost
every return is a true Monte-Carlo return.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from torch import Tensor

from rlcore.algos.a2c import ActorCriticLoss, whole_rollout_steps
from rlcore.algos.base import Example, register_algo
from rlcore.algos.onpolicy import OnPolicyAlgorithm, OnPolicyConfig
from rlcore.returns import discounted_returns, next_state_values
from rlcore.settings import check_range


@dataclass(frozen=True)
class ReinforceConfig(OnPolicyConfig):
    """Hyperparameters of :class:`Reinforce`."""

    learning_rate: float = 1e-3
    n_steps: int = 500
    gae_lambda: float = 1.0
    """Unused: REINFORCE's returns are Monte-Carlo (kept for a uniform config)."""
    max_grad_norm: float | None = 1.0
    n_epochs: int = 1
    """Gradient steps on each rollout (1 is the classic algorithm)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("n_epochs", self.n_epochs, 1)


@register_algo("reinforce")
class Reinforce(OnPolicyAlgorithm[ReinforceConfig]):
    """Monte-Carlo policy gradient with a value baseline."""

    config_class: ClassVar[type] = ReinforceConfig
    example: ClassVar[Example | None] = Example("CartPole-v1", {"total_env_steps": 512, "num_envs": 2, "n_steps": 32,
                                                               "net_arch": [16]})
    loss_class: ClassVar[type[ActorCriticLoss]] = ActorCriticLoss

    def compute_targets(self, last_value: Tensor) -> tuple[Tensor, Tensor]:
        """``(G - V, G)`` with ``G`` the discounted returns to each episode's end, ``[T, N]``."""
        rollout = self.rollout
        terminated, truncated = rollout["terminated"], rollout["truncated"]
        next_values = next_state_values(rollout["value"], last_value, truncated, rollout["truncated_value"])
        returns = discounted_returns(rollout["reward"], next_values, terminated, terminated | truncated,
                                     self.config.gamma)
        return returns - rollout["value"], returns

    def optimize(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``n_epochs`` gradient steps on the whole rollout (``[T*N]`` rows)."""
        return whole_rollout_steps(self, batch, self.config.n_epochs)
