"""Deep Deterministic Policy Gradient (Lillicrap et al., 2016), as SB3 defines it: TD3 (:mod:`rlcore.algos.td3`) with
one critic, no target policy smoothing and an actor (and target) update after every critic update.

Per gradient step: ``y = r + discount * Q'(s', mu'(s'))``; the critic steps on ``mean (Q(s, a) - y)^2``; the actor on
``-mean Q(s, mu(s))``; then ``theta' <- (1 - tau) theta' + tau theta`` for both targets. Exploration adds
``action_noise`` to ``mu(s)`` (rl-zoo: ``normal``, ``noise_std=0.1``; DDPG's paper: ``ornstein-uhlenbeck``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rlcore.algos.base import Example, register_algo
from rlcore.algos.off_policy import ContinuousQConfig
from rlcore.algos.td3 import TD3, TwinTricks


@dataclass(frozen=True)
class DDPGConfig(ContinuousQConfig):
    """Hyperparameters of :class:`DDPG`. Defaults follow SB3's DDPG; presets hold rl-zoo's per-env values."""

    learning_rate: float = 1e-3
    """Adam step size of the actor and the critic; the start with ``lr_schedule="linear"``."""
    net_arch: tuple[int, ...] = (400, 300)
    """Hidden widths of the actor (and of the critic unless ``critic_arch`` is set)."""


@register_algo("ddpg")
class DDPG(TD3):
    """DDPG for Box actions: a deterministic actor and one Q critic, both with Polyak-averaged targets."""

    config_class: ClassVar[type] = DDPGConfig
    example: ClassVar[Example | None] = Example("Pendulum-v1", {
        "total_env_steps": 400, "net_arch": [16], "learning_starts": 100, "batch_size": 16, "buffer_size": 1000,
        "train_freq": 2, "gradient_steps": 2, "action_noise": "ornstein-uhlenbeck"})

    def tricks(self) -> TwinTricks:
        """One critic, no delay, no target smoothing."""
        return TwinTricks(n_critics=1, policy_delay=1, target_policy_noise=0.0, target_noise_clip=0.0)
