"""PPO (Schulman et al., 2017): clipped surrogate, GAE, several epochs of minibatches per rollout.

Options, as in SB3 and CleanRL: advantage normalization, value clipping, entropy bonus,
global grad-norm clipping, linear schedules for the learning rate and the clip range, and
an early stop of the epochs when the approximate KL to the rollout policy passes
``1.5 * target_kl``.

The loss is :class:`PPOLoss`; to train with another, subclass it and set it as ``loss_class`` of a
subclass of :class:`PPO` (``rlcore.train`` takes the class)::

    class KLPenaltyLoss(PPOLoss):
        def loss(self, log_prob, entropy, value):
            total, stats = super().loss(log_prob, entropy, value)
            kl = (self.old_log_prob - log_prob).mean()
            return total + 0.5 * kl, {**stats, "kl_penalty": kl.detach()}

    class KLPenaltyPPO(PPO):
        loss_class = KLPenaltyLoss

    agent = rlcore.train(KLPenaltyPPO, "CartPole-v1")

On the CPU the stock loss trains through a kernel (:mod:`rlcore.kernels.pg_losses` holds its gradients in
closed form); any other loss class, a subclass included, trains through autograd on this loss.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from rlcore.algos.base import Example, register_algo
from rlcore.algos.onpolicy import OnPolicyAlgorithm, mean_stats, standardize
from rlcore.algos.onpolicy_config import SCHEDULES, OnPolicyConfig, check_choice, scheduled
from rlcore.kernels.pg_losses import closed_form, ppo_loss_gradients
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
    """Clip of the value change from the rollout's values (PPO2's max of clipped and unclipped loss, as CleanRL; SB3
    takes the clipped loss alone, so its runs with this set differ); None: off."""
    target_kl: float | None = None
    """Stop the update's epochs once the approximate KL exceeds ``1.5 * target_kl``; None: never."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("batch_size", self.batch_size, 1)
        check_range("n_epochs", self.n_epochs, 1)
        check_range("clip_range", self.clip_range, 0.0, low_open=True, allow_inf=True)
        check_choice("clip_range_schedule", self.clip_range_schedule, SCHEDULES)
        if self.clip_range_vf is not None:
            check_range("clip_range_vf", self.clip_range_vf, 0.0, low_open=True, allow_inf=True)
        if self.target_kl is not None:
            check_range("target_kl", self.target_kl, 0.0, low_open=True, allow_inf=True)

    @property
    def minibatch_rows(self) -> int | None:
        return self.batch_size


@closed_form(ppo_loss_gradients)
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


@register_algo("ppo")
class PPO(OnPolicyAlgorithm[PPOConfig]):
    """Proximal policy optimisation with a clipped surrogate objective."""

    config_class: ClassVar[type] = PPOConfig
    example: ClassVar[Example | None] = Example("CartPole-v1", {"total_env_steps": 512, "num_envs": 2, "n_steps": 32,
                                                               "batch_size": 32, "n_epochs": 2, "net_arch": [16]})
    loss_class: ClassVar[type[PPOLoss]] = PPOLoss

    def optimize(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """``n_epochs`` passes of shuffled minibatches over the rollout (``[T*N]`` rows).

        The ``train/...`` statistics are averaged over the last epoch's minibatches (with ``target_kl``, over those
        of the last epoch that took a step, up to the early stop).
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
            # with target_kl any epoch may be the last: each keeps its statistics until a later one steps
            with_stats = epoch == config.n_epochs - 1 or config.target_kl is not None
            epoch_stats: list[dict[str, Tensor]] = []
            for part in self.minibatches(batch, config.batch_size, shuffle=not full_batch):
                advantages = part["advantage"]
                if config.normalize_advantage and not full_batch:
                    advantages = standardize(advantages)
                head_loss = self.loss_class(advantages, part["log_prob"], part["return"], part["value"], clip_range,
                                    config.clip_range_vf, config.ent_coef, config.vf_coef)
                stats = self._step_unless_too_far(part["inputs"], part["action"], head_loss, with_stats,
                                                  part.get("action_mask"))
                if stats is None:
                    stopped_early = True
                    break
                if stats:
                    epoch_stats.append(stats)
            collected = epoch_stats or collected
            if stopped_early:
                break
        metrics = mean_stats(collected)
        metrics["train/clip_range"] = clip_range
        metrics["train/stopped_early"] = float(stopped_early)
        return metrics

    def _step_unless_too_far(
        self, obs: Tensor | dict[str, Tensor], action: Tensor, head_loss: PPOLoss, with_stats: bool,
        action_mask: Tensor | None = None,
    ) -> dict[str, Tensor] | None:
        """A gradient step, or None (no step) when ``target_kl`` is set and the policy moved too far already."""
        if self.config.target_kl is None:
            return self.gradient_step(obs, action, head_loss, with_stats, action_mask)
        with torch.no_grad():
            params = self._masked(self._actor_params(obs), action_mask)
            log_ratio = self.distribution.log_prob(params, action) - head_loss.old_log_prob
            approx_kl = float(((log_ratio.exp() - 1.0) - log_ratio).mean())
        if approx_kl > 1.5 * self.config.target_kl:
            return None
        return self.gradient_step(obs, action, head_loss, with_stats, action_mask)
