"""PPO (Schulman et al., 2017): clipped surrogate, GAE, several epochs of minibatches per rollout.

Options, as in SB3 and CleanRL: advantage normalization, value clipping, entropy bonus,
global grad-norm clipping, linear schedules for the learning rate and the clip range, and
an early stop of the epochs when the approximate KL to the rollout policy passes
``1.5 * target_kl``. The loss in closed form (:class:`PPOLoss`) feeds the fast path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from rlcore.algos.base import Example, register_algo
from rlcore.algos.onpolicy import (
    SCHEDULES,
    OnPolicyAlgorithm,
    OnPolicyConfig,
    check_choice,
    entropy_gradient,
    host,
    mean_stats,
    scheduled,
    standardize,
)
from rlcore.settings import check_range


@dataclass(frozen=True)
class PPOConfig(OnPolicyConfig):
    """Hyperparameters of :class:`PPO`. Defaults follow SB3's PPO; presets hold rl-zoo's per-env values."""

    batch_size: int = 64
    """Transitions per minibatch."""
    n_epochs: int = 10
    """Passes over the rollout per update."""
    clip_range: float = 0.2
    """PPO's clip on the probability ratio (at the start, with ``clip_range_schedule="linear"``)."""
    clip_range_schedule: str = "constant"
    """``constant``, or ``linear`` to 0 over training."""
    clip_range_vf: float | None = None
    """Clip of the value change from the rollout's values (PPO2's max of clipped and unclipped loss); None: off."""
    target_kl: float | None = None
    """Stop the update's epochs once the approximate KL exceeds ``1.5 * target_kl``; None: never."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("batch_size", self.batch_size, 1)
        check_range("n_epochs", self.n_epochs, 1)
        check_range("clip_range", self.clip_range, 0.0, low_open=True)
        check_choice("clip_range_schedule", self.clip_range_schedule, SCHEDULES)
        if self.clip_range_vf is not None:
            check_range("clip_range_vf", self.clip_range_vf, 0.0, low_open=True)
        if self.target_kl is not None:
            check_range("target_kl", self.target_kl, 0.0, low_open=True)


class PPOLoss:
    """PPO's minibatch loss: ``pg + ent_coef * (-mean H) + vf_coef * value_loss``.

    ``pg = -mean(min(r A, clip(r, 1 - c, 1 + c) A))`` with ``r = exp(log_prob - old_log_prob)``;
    ``value_loss = mean((V - R)^2)``, or with ``clip_range_vf`` the mean of
    ``max((V - R)^2, (V_old + clip(V - V_old, -c_vf, c_vf) - R)^2)``.

    Args:
        advantages, old_log_prob, returns, old_values: ``[B]`` from the rollout.
    """

    def __init__(
        self,
        advantages: Tensor,
        old_log_prob: Tensor,
        returns: Tensor,
        old_values: Tensor,
        clip_range: float,
        clip_range_vf: float | None,
        ent_coef: float,
        vf_coef: float,
    ) -> None:
        self.advantages = advantages
        self.old_log_prob = old_log_prob
        self.returns = returns
        self.old_values = old_values
        self.clip_range = clip_range
        self.clip_range_vf = clip_range_vf
        self.ent_coef = ent_coef
        self.vf_coef = vf_coef

    def loss(self, log_prob: Tensor, entropy: Tensor, value: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        log_ratio = log_prob - self.old_log_prob
        ratio = log_ratio.exp()
        surrogate = torch.min(ratio * self.advantages,
                              ratio.clamp(1.0 - self.clip_range, 1.0 + self.clip_range) * self.advantages)
        policy_loss = -surrogate.mean()
        if self.clip_range_vf is None:
            value_loss = (value - self.returns).pow(2).mean()
        else:
            clipped = self.old_values + (value - self.old_values).clamp(-self.clip_range_vf, self.clip_range_vf)
            value_loss = torch.max((value - self.returns).pow(2), (clipped - self.returns).pow(2)).mean()
        entropy_loss = -entropy.mean()
        total = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
        log_ratio, ratio = log_ratio.detach(), ratio.detach()
        return total, {
            "policy_gradient_loss": policy_loss.detach(),
            "value_loss": value_loss.detach(),
            "entropy_loss": entropy_loss.detach(),
            "approx_kl": ((ratio - 1.0) - log_ratio).mean(),
            "clip_fraction": ((ratio - 1.0).abs() > self.clip_range).float().mean(),
        }

    def _value_flow(self, value: np.ndarray, squared: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """With value clipping: per-sample losses ``[B]``, and 1 where the gradient flows, 0 where clipped away.

        ``max(u, c)`` with ``u = (V - R)^2`` and ``c = (V_old + clip(V - V_old) - R)^2`` has the derivative
        of ``u`` except where ``c`` wins and ``V`` is outside the clip range (``c`` is constant in ``V`` there).
        """
        old_values = host(self.old_values)
        change = value - old_values
        clipped_error = old_values + np.clip(change, -self.clip_range_vf, self.clip_range_vf) - host(self.returns)
        clipped_squared = clipped_error * clipped_error
        use_unclipped = squared >= clipped_squared
        flows = use_unclipped | (np.abs(change) <= self.clip_range_vf)
        return np.where(use_unclipped, squared, clipped_squared), flows.astype(value.dtype)

    def grads(
        self, log_prob: np.ndarray, entropy: np.ndarray | None, value: np.ndarray, with_stats: bool
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, dict[str, float]]:
        count = log_prob.shape[0]
        advantages = host(self.advantages)
        log_ratio = log_prob - host(self.old_log_prob)
        ratio = np.exp(log_ratio)
        unclipped = ratio * advantages
        clipped = np.clip(ratio, 1.0 - self.clip_range, 1.0 + self.clip_range)
        clipped *= advantages
        # min(u, c) takes u where u <= c: there d(-u / B)/dlog_prob = -u / B; where c wins the ratio is clipped: 0
        grad_log_prob = np.where(unclipped <= clipped, unclipped, 0.0)
        grad_log_prob *= -1.0 / count
        error = value - host(self.returns)
        squared = error * error if with_stats or self.clip_range_vf is not None else None
        per_sample_value_loss = squared
        if self.clip_range_vf is not None:
            per_sample_value_loss, flows = self._value_flow(value, squared)  # type: ignore[arg-type]
            error *= flows
        error *= 2.0 * self.vf_coef / count  # d/dV mean((V - R)^2) = 2 (V - R) / B
        grad_entropy = entropy_gradient(entropy, self.ent_coef, count)
        if not with_stats or entropy is None:
            return grad_log_prob, grad_entropy, error, {}
        policy_loss = -float(np.minimum(unclipped, clipped).mean())
        value_loss = float(per_sample_value_loss.mean())  # type: ignore[union-attr]
        entropy_loss = -float(entropy.mean())
        return grad_log_prob, grad_entropy, error, {
            "loss": policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss,
            "policy_gradient_loss": policy_loss,
            "value_loss": value_loss,
            "entropy_loss": entropy_loss,
            "approx_kl": float(((ratio - 1.0) - log_ratio).mean()),
            "clip_fraction": float((np.abs(ratio - 1.0) > self.clip_range).mean()),
        }


@register_algo("ppo")
class PPO(OnPolicyAlgorithm[PPOConfig]):
    """Proximal policy optimisation with a clipped surrogate objective."""

    config_class: ClassVar[type] = PPOConfig
    example: ClassVar[Example | None] = Example("CartPole-v1", {"total_env_steps": 512, "num_envs": 2, "n_steps": 32,
                                                               "batch_size": 32, "n_epochs": 2, "net_arch": [16]})

    def optimize(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``n_epochs`` passes of shuffled minibatches over the rollout (``[T*N]`` rows).

        The ``train/...`` statistics are averaged over the last epoch's minibatches.
        """
        config = self.config
        clip_range = scheduled(config.clip_range, config.clip_range_schedule, self.env_steps / self.total_env_steps)
        rows = batch["advantage"].shape[0]
        # one minibatch of all rows needs no shuffling (its gradient does not depend on the order), and its
        # advantages are standardized once
        full_batch = config.batch_size >= rows and config.memory != "lstm"
        if full_batch and config.normalize_advantage:
            batch = {**batch, "advantage": standardize(batch["advantage"])}
        collected: list[dict[str, Tensor]] = []
        stopped_early = False
        for epoch in range(config.n_epochs):
            last_epoch = epoch == config.n_epochs - 1
            for part in self.minibatches(batch, config.batch_size, shuffle=not full_batch):
                advantages = part["advantage"]
                if config.normalize_advantage and not full_batch:
                    advantages = standardize(advantages)
                head_loss = PPOLoss(advantages, part["log_prob"], part["return"], part["value"], clip_range,
                                    config.clip_range_vf, config.ent_coef, config.vf_coef)
                stats = self._step_unless_too_far(part["inputs"], part["action"], head_loss, last_epoch)
                if stats is None:
                    stopped_early = True
                    break
                if stats:
                    collected.append(stats)
            if stopped_early:
                break
        metrics = mean_stats(collected)
        metrics["train/clip_range"] = clip_range
        metrics["train/stopped_early"] = float(stopped_early)
        return metrics

    def _step_unless_too_far(
        self, obs: Tensor | dict[str, Tensor], action: Tensor, head_loss: PPOLoss, with_stats: bool
    ) -> dict[str, Tensor] | None:
        """A gradient step, or None (no step) when ``target_kl`` is set and the policy moved too far already."""
        if self.config.target_kl is None:
            return self.gradient_step(obs, action, head_loss, with_stats)
        with torch.no_grad():
            params = self._actor_params(obs)
            log_ratio = self.distribution.log_prob(params, action) - head_loss.old_log_prob
            approx_kl = float(((log_ratio.exp() - 1.0) - log_ratio).mean())
        if approx_kl > 1.5 * self.config.target_kl:
            return None
        return self.gradient_step(obs, action, head_loss, with_stats)
