"""Twin Delayed DDPG (Fujimoto et al., 2018): clipped double Q, target policy smoothing, delayed policy updates.

One file: the config, the targets, the losses and the update (:meth:`TD3.gradient_step`), as SB3's ``TD3`` computes
them. What TD3 shares with SAC and DDPG is in :mod:`rlcore.algos.off_policy`; DDPG (:mod:`rlcore.algos.ddpg`) is this
class with one critic, no smoothing and no delay, as SB3 defines it.

Per gradient step on a minibatch ``(s, a, r, s')`` (``a`` scaled to ``[-1, 1]``):

1. ``a' = clip(mu'(s') + clip(N(0, target_policy_noise^2), -target_noise_clip, target_noise_clip), -1, 1)`` from the
   target actor ``mu'``; targets ``y = r + discount * min_i Q'_i(s', a')``;
2. the critics take a step on ``sum_i mean (Q_i(s, a) - y)^2``;
3. every ``policy_delay``-th update: the actor takes a step on ``-mean Q_1(s, mu(s))``, then both targets move
   ``theta' <- (1 - tau) theta' + tau theta``.

Exploration adds ``action_noise`` (rl-zoo uses ``normal`` with ``noise_std=0.1``) to ``mu(s)``.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import ClassVar, NamedTuple

import torch
from torch import Tensor, nn

from rlcore.algos.base import Example, register_algo
from rlcore.algos.off_policy import ContinuousQAlgorithm, ContinuousQConfig
from rlcore.kernels.continuous_q import TD3Kernel
from rlcore.kernels.selection import choose_kernel, reproduced
from rlcore.nets.continuous import DeterministicActor, QCritics
from rlcore.optim import FlatAdam, flatten_twin, polyak_update
from rlcore.precision import autocast_forward
from rlcore.settings import check_range


@dataclass(frozen=True)
class TD3Config(ContinuousQConfig):
    """Hyperparameters of :class:`TD3`. Defaults follow SB3's TD3; presets hold rl-zoo's per-env values."""

    learning_rate: float = 1e-3
    """Adam step size of the actor and the critics; the start with ``lr_schedule="linear"``."""
    net_arch: tuple[int, ...] = (400, 300)
    """Hidden widths of the actor (and of the critics unless ``critic_arch`` is set)."""
    policy_delay: int = 2
    """Critic updates per actor (and target) update."""
    target_policy_noise: float = 0.2
    """Std of the Gaussian noise added to the target actor's action (target policy smoothing)."""
    target_noise_clip: float = 0.5
    """Bound on that noise."""
    n_critics: int = 2
    """Q-networks (their minimum is the target: clipped double Q)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("policy_delay", self.policy_delay, 1)
        check_range("target_policy_noise", self.target_policy_noise, 0.0)
        check_range("target_noise_clip", self.target_noise_clip, 0.0, allow_inf=True)
        check_range("n_critics", self.n_critics, 1)


class TwinTricks(NamedTuple):
    """What separates TD3 from DDPG."""

    n_critics: int
    policy_delay: int
    target_policy_noise: float
    target_noise_clip: float


@register_algo("td3")
class TD3(ContinuousQAlgorithm[TD3Config]):
    """TD3 for Box actions: a deterministic actor, twin Q critics, target policy smoothing, delayed actor and target
    updates."""

    config_class: ClassVar[type] = TD3Config
    example: ClassVar[Example | None] = Example("Pendulum-v1", {
        "total_env_steps": 400, "net_arch": [16], "learning_starts": 100, "batch_size": 16, "buffer_size": 1000,
        "train_freq": 2, "gradient_steps": 2, "action_noise": "normal"})

    def tricks(self) -> TwinTricks:
        """TD3's critics, delay and target smoothing, as configured."""
        config = self.config
        return TwinTricks(config.n_critics, config.policy_delay, config.target_policy_noise, config.target_noise_clip)

    def build_networks(self) -> None:
        config = self.config
        self.twin = self.tricks()
        self.actor_net = DeterministicActor(self.make_features(), self.action_dim, config.net_arch,
                                        config.activation).to(self.device)
        self.actor_target = copy.deepcopy(self.actor_net).requires_grad_(False)
        self.critic = QCritics(self.make_features(), self.action_dim, config.q_arch, self.twin.n_critics,
                               config.activation).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = FlatAdam(self.actor_net.parameters(), lr=config.learning_rate)
        self.critic_optimizer = FlatAdam(self.critic.parameters(), lr=config.learning_rate)
        self._actor_target_flat = flatten_twin(self.actor_optimizer, self.actor_net, self.actor_target)
        self._critic_target_flat = flatten_twin(self.critic_optimizer, self.critic, self.critic_target)
        # the actor's trainable parameters (a frozen backbone's take no gradient)
        self._actor_params = [param for param in self.actor_net.parameters() if param.requires_grad]

    def select_kernel(self) -> TD3Kernel | None:
        return choose_kernel(self.name, self.kernel_gates(TD3, TD3Kernel),
                             lambda: TD3Kernel.refusal(self, (*reproduced(TD3, TD3Kernel.REPRODUCES),
                                                              autocast_forward)),
                             lambda: TD3Kernel(self))

    def networks(self) -> dict[str, nn.Module]:
        return {**super().networks(), "actor_target": self.actor_target}

    def policy_action(self, obs: Tensor, deterministic: bool) -> Tensor:
        """``mu(s)``, ``[N, A]`` (exploration noise is added by the caller)."""
        return self.actor_net(obs)

    def gradient_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One TD3 update (see the module docstring); returns ``critic_loss``, and ``actor_loss`` on the steps that
        update the actor."""
        twin = self.twin
        obs, next_obs = batch["obs"], batch["next_obs"]
        self.updates += 1
        with torch.no_grad():
            next_actions = self.amp_forward(self.actor_target, next_obs)
            if twin.target_policy_noise > 0.0:
                smoothing = self.standard_normal(*next_actions.shape).mul_(twin.target_policy_noise)
                smoothing.clamp_(-twin.target_noise_clip, twin.target_noise_clip)
                next_actions = (next_actions + smoothing).clamp_(-1.0, 1.0)
            next_q = self.amp_forward(self.critic_target, next_obs, next_actions).min(dim=0).values
            target_q = batch["reward"] + batch["discount"] * next_q
        q_values = self.amp_forward(self.critic, obs, batch["action"])
        critic_loss = (q_values - target_q).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"critic_loss": critic_loss.detach()}

        if self.updates % twin.policy_delay == 0:
            actor_loss = -self.amp_forward(self.critic.first, obs, self.amp_forward(self.actor_net, obs)).mean()
            self.actor_optimizer.zero_grad()
            actor_loss.backward(inputs=self._actor_params)  # the critic's weight gradients are not needed
            self.actor_optimizer.step()
            tau = self.config.tau
            polyak_update(self.critic_target, self._critic_target_flat, self.critic, self.critic_optimizer.flat_params,
                          tau)
            polyak_update(self.actor_target, self._actor_target_flat, self.actor_net, self.actor_optimizer.flat_params,
                          tau)
            metrics["actor_loss"] = actor_loss.detach()
        return metrics
