"""Soft Actor-Critic (Haarnoja et al., 2018, with automatic entropy tuning from "SAC: Algorithms and Applications").

One file: the config, the targets, the three losses and the update (:meth:`SAC.gradient_step`), as SB3's ``SAC``
computes them. What SAC shares with TD3 and DDPG (action scaling, warm-up, replay, normalization, workers,
checkpoints) is in :mod:`rlcore.algos.off_policy`; the networks are in :mod:`rlcore.nets.continuous`.

Per gradient step on a minibatch ``(s, a, r, s')`` (``a`` scaled to ``[-1, 1]``):

1. ``a~, log pi(a~|s)`` from the squashed Gaussian; with ``ent_coef="auto"`` the entropy coefficient
   ``alpha = exp(log_alpha)`` takes an Adam step on ``-log_alpha * (log pi + target_entropy)``;
2. targets ``y = r + discount * (min_i Q'_i(s', a') - alpha log pi(a'|s'))`` with ``a' ~ pi(.|s')`` and the target
   critics ``Q'`` (``discount`` is ``gamma^k``, zero after a termination; ``k = n_step`` or fewer);
3. the critics take a step on ``0.5 * sum_i mean (Q_i(s, a) - y)^2``;
4. the actor takes a step on ``mean(alpha log pi(a~|s) - min_i Q_i(s, a~))`` (with the updated critics);
5. every ``target_update_interval`` gradient steps, ``Q' <- (1 - tau) Q' + tau Q``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rlcore.algos.base import Example, register_algo
from rlcore.algos.off_policy import ContinuousQAlgorithm, ContinuousQConfig
from rlcore.kernels.continuous_q import SACKernel
from rlcore.kernels.selection import choose_kernel, reproduced
from rlcore.nets.continuous import (
    QCritics,
    SquashedGaussianActor,
    StateDependentSquashedActor,
    squashed_gaussian,
    state_dependent_squashed,
)
from rlcore.observations import Observation
from rlcore.optim import FlatAdam, flatten_twin, polyak_update
from rlcore.precision import autocast_forward
from rlcore.settings import check_range


@dataclass(frozen=True)
class SACConfig(ContinuousQConfig):
    """Hyperparameters of :class:`SAC`. Defaults follow SB3's SAC; presets hold rl-zoo's per-env values."""

    ent_coef: float | str = "auto"
    """Entropy coefficient alpha: a number fixes it; ``auto`` learns it (from 1.0), ``auto_0.1`` learns it from 0.1."""
    target_entropy: float | str = "auto"
    """The entropy ``ent_coef="auto"`` aims at; ``auto`` is ``-dim(action)``."""
    target_update_interval: int = 1
    """Gradient steps between Polyak updates of the target critics."""
    n_critics: int = 2
    """Q-networks (their minimum is used: clipped double Q)."""
    use_sde: bool = False
    """Generalized state-dependent exploration (gSDE, SB3's ``use_sde``): the pre-squash noise is the actor's last
    hidden features times a weight matrix (:class:`~rlcore.nets.continuous.StateDependentSquashedActor`), drawn
    for the envs at each collection phase's start (and every ``sde_sample_freq`` steps) and anew for each gradient
    step (the CPU kernel trains it too, with bfloat16 products under ``amp="bf16"``)."""
    sde_sample_freq: int = -1
    """With ``use_sde``: new weights for the envs every this many vector steps; -1 (or 0): only at each collection
    phase's start (SB3's)."""
    log_std_init: float = -3.0
    """With ``use_sde``: the initial log standard deviation of the noise weights (SB3's SAC default)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        check_range("sde_sample_freq", self.sde_sample_freq, -1)
        initial_ent_coef(self.ent_coef)
        if isinstance(self.target_entropy, str) and self.target_entropy != "auto":
            raise ValueError(f"target_entropy must be a number or 'auto' (-dim(action)), got {self.target_entropy!r}")
        if not isinstance(self.target_entropy, str) and not math.isfinite(self.target_entropy):
            raise ValueError(f"target_entropy must be finite, got {self.target_entropy!r}")
        check_range("target_update_interval", self.target_update_interval, 1)
        check_range("n_critics", self.n_critics, 1)


def initial_ent_coef(ent_coef: float | str) -> tuple[float, bool]:
    """``(initial alpha, learned)`` of an ``ent_coef`` setting; a ValueError names the forms it accepts."""
    if isinstance(ent_coef, str):
        if ent_coef == "auto":
            return 1.0, True
        if ent_coef.startswith("auto_"):
            try:
                start = float(ent_coef[len("auto_"):])
            except ValueError:
                start = -1.0
            if start > 0.0 and math.isfinite(start):
                return start, True
        raise ValueError(f"ent_coef must be a number >= 0, 'auto' or 'auto_<initial value>' (e.g. 'auto_0.1'), "
                         f"got {ent_coef!r}")
    check_range("ent_coef", ent_coef, 0.0)
    return float(ent_coef), False


@register_algo("sac")
class SAC(ContinuousQAlgorithm[SACConfig]):
    """Soft Actor-Critic for Box actions: a squashed-Gaussian actor, twin Q critics with Polyak-averaged targets,
    and a learned (or fixed) entropy coefficient."""

    config_class: ClassVar[type] = SACConfig
    example: ClassVar[Example | None] = Example("Pendulum-v1", {
        "total_env_steps": 400, "net_arch": [16], "learning_starts": 100, "batch_size": 16, "buffer_size": 1000,
        "train_freq": 2, "gradient_steps": 2})

    def build_networks(self) -> None:
        config = self.config
        self.actor_net: SquashedGaussianActor | StateDependentSquashedActor
        if config.use_sde:
            self.actor_net = StateDependentSquashedActor(self.make_features(), self.action_dim, config.net_arch,
                                                         config.activation, config.log_std_init).to(self.device)
        else:
            self.actor_net = SquashedGaussianActor(self.make_features(), self.action_dim, config.net_arch,
                                                   config.activation).to(self.device)
        self._env_weights: Tensor | None = None
        """gSDE: the envs' noise weights ``[N, L, A]`` (one env: ``[L, A]``), drawn by :meth:`_draw_env_weights`."""
        self._sde_steps = 0
        """gSDE: acting (vector) steps taken; phases of ``train_freq`` of them start with new weights."""
        self.critic = QCritics(self.make_features(), self.action_dim, config.q_arch, config.n_critics,
                               config.activation).to(self.device)
        self.critic_target = copy.deepcopy(self.critic).requires_grad_(False)
        self.actor_optimizer = FlatAdam(self.actor_net.parameters(), lr=config.learning_rate)
        self.critic_optimizer = FlatAdam(self.critic.parameters(), lr=config.learning_rate)
        self._critic_target_flat = flatten_twin(self.critic_optimizer, self.critic, self.critic_target)
        # the actor's trainable parameters (a frozen backbone's take no gradient)
        self._actor_params = [param for param in self.actor_net.parameters() if param.requires_grad]
        start, learned = initial_ent_coef(config.ent_coef)
        self.target_entropy = (-float(self.action_dim) if config.target_entropy == "auto"
                               else float(config.target_entropy))
        self.log_ent_coef: nn.Parameter | None = None
        """``log alpha`` ``[1]`` when learned (``ent_coef="auto"``), else None."""
        self._fixed_ent_coef = torch.tensor(start, device=self.device)
        if learned:
            self.log_ent_coef = nn.Parameter(torch.full((1,), math.log(start), device=self.device))
            self.ent_coef_optimizer = FlatAdam([self.log_ent_coef], lr=config.learning_rate)

    def select_kernel(self) -> SACKernel | None:
        return choose_kernel(self.name, self.kernel_gates(SAC, SACKernel),
                             lambda: SACKernel.refusal(self, (*reproduced(SAC, SACKernel.REPRODUCES),
                                                              autocast_forward)),
                             lambda: SACKernel(self))

    def optimizers(self) -> dict[str, FlatAdam]:
        optimizers = super().optimizers()
        if self.log_ent_coef is not None:
            optimizers["ent_coef_optimizer"] = self.ent_coef_optimizer
        return optimizers

    # --- acting ---------------------------------------------------------------------------------
    def policy_action(self, obs: Tensor, deterministic: bool) -> Tensor:
        """``tanh(mean)`` (deterministic) or a sample of the squashed Gaussian (gSDE: with the envs' weights),
        ``[N, A]``."""
        mean, spread = self.actor_net(obs)  # spread: log_std [N, A], or gSDE's latent features [N, L]
        if deterministic:
            return torch.tanh(mean)
        if self.config.use_sde:
            weights = self._weights_for(mean.shape[0])
            return state_dependent_squashed(mean, spread, self.actor_net.log_std, weights)[0]
        return squashed_gaussian(mean, spread, self.standard_normal(*mean.shape))[0]

    def act(self, obs: Observation, *, deterministic: bool = False) -> Tensor:
        """:meth:`ContinuousQAlgorithm.act`; with gSDE, the envs' noise weights are drawn anew at the first step of
        each collection phase (``train_freq`` vector steps, warm-up included) and every ``sde_sample_freq`` steps
        within it (SB3's schedule)."""
        if self.config.use_sde and not deterministic:
            every, step = self.config.sde_sample_freq, self._sde_steps % self.config.train_freq
            if step == 0 or (every > 0 and step % every == 0):
                self._draw_env_weights()
            self._sde_steps += 1
        return super().act(obs, deterministic=deterministic)

    @torch.no_grad()
    def _draw_env_weights(self) -> None:
        """gSDE: new noise weights for the envs, ``exp(log_std) * N(0, 1)``: ``[N, L, A]``, or ``[L, A]`` for one
        env."""
        log_std = self.actor_net.log_std
        shape = tuple(log_std.shape) if self.num_envs == 1 else (self.num_envs, *log_std.shape)
        self._env_weights = log_std.exp() * self.standard_normal(*shape)

    def _weights_for(self, rows: int) -> Tensor:
        """The noise weights for acting on ``rows`` observations: each env's for the envs' batch, else the first
        env's for every row (a batch of another size)."""
        if self._env_weights is None:
            self._draw_env_weights()
        weights = self._env_weights
        assert weights is not None
        if weights.dim() == 3 and rows != weights.shape[0]:
            return weights[0]
        return weights

    # --- learning -------------------------------------------------------------------------------
    def ent_coef(self) -> Tensor:
        """The current alpha, a 0-d (or ``[1]``) tensor without gradient."""
        return self.log_ent_coef.detach().exp() if self.log_ent_coef is not None else self._fixed_ent_coef

    def gradient_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One SAC update (see the module docstring); returns ``ent_coef``, ``ent_coef_loss`` (learned alpha),
        ``critic_loss`` and ``actor_loss``."""
        obs, next_obs = batch["obs"], batch["next_obs"]
        rows = batch["action"].shape[0]
        draws = self.policy_draws(rows)
        actions_pi, log_prob = self.policy_sample(obs, draws, slice(0, rows))
        ent_coef = self.ent_coef()
        metrics = {"ent_coef": ent_coef.reshape(())}
        if self.log_ent_coef is not None:
            ent_coef_loss = -(self.log_ent_coef * (log_prob.detach() + self.target_entropy)).mean()
            self.ent_coef_optimizer.zero_grad()
            ent_coef_loss.backward()
            self.ent_coef_optimizer.step()
            metrics["ent_coef_loss"] = ent_coef_loss.detach()

        with torch.no_grad():
            next_actions, next_log_prob = self.policy_sample(next_obs, draws, slice(rows, 2 * rows))
            next_q = (self.amp_forward(self.critic_target, next_obs, next_actions).min(dim=0).values
                      - ent_coef * next_log_prob)
            target_q = batch["reward"] + batch["discount"] * next_q
        q_values = self.amp_forward(self.critic, obs, batch["action"])
        critic_loss = 0.5 * (q_values - target_q).square().mean(dim=1).sum()
        self.critic_optimizer.zero_grad()
        critic_loss.backward()
        self.critic_optimizer.step()

        q_pi = self.amp_forward(self.critic, obs, actions_pi).min(dim=0).values
        actor_loss = (ent_coef * log_prob - q_pi).mean()
        self.actor_optimizer.zero_grad()
        actor_loss.backward(inputs=self._actor_params)  # the critics' weight gradients are not needed
        self.actor_optimizer.step()

        self.updates += 1
        if self.updates % self.config.target_update_interval == 0:
            polyak_update(self.critic_target, self._critic_target_flat, self.critic, self.critic_optimizer.flat_params,
                          self.config.tau)
        metrics["critic_loss"] = critic_loss.detach()
        metrics["actor_loss"] = actor_loss.detach()
        return metrics

    def policy_draws(self, rows: int) -> Tensor:
        """A gradient step's randomness: ``[2 rows, A]`` standard normals (the actions at ``obs``, then at
        ``next_obs``); with gSDE one weight matrix ``exp(log_std) * N(0, 1)`` ``[L, A]`` for both, through which
        the actor's loss reaches ``log_std`` (SB3's ``rsample``)."""
        if self.config.use_sde:
            log_std = self.actor_net.log_std
            return log_std.exp() * self.standard_normal(*log_std.shape)
        return self.standard_normal(2 * rows, self.action_dim)

    def policy_sample(self, obs: Tensor, draws: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
        """Actions ``[B, A]`` and their log-probabilities ``[B]`` at ``obs``, from :meth:`policy_draws`' ``draws``
        (its ``rows`` of normals; gSDE: its weights)."""
        if self.config.use_sde:
            mean, latent = self.amp_forward(self.actor_net, obs)
            return state_dependent_squashed(mean, latent, self.actor_net.log_std, draws)
        return squashed_gaussian(*self.amp_forward(self.actor_net, obs), draws[rows])

    # --- persistence ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["log_ent_coef"] = self.log_ent_coef.detach().clone() if self.log_ent_coef is not None else None
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if (self.log_ent_coef is None) != (state.get("log_ent_coef") is None):
            raise ValueError("the checkpoint's entropy coefficient does not match this config's ent_coef (learned "
                             "with 'auto', fixed with a number)")
        super().load_state_dict(state)
        if self.log_ent_coef is not None:
            with torch.no_grad():
                self.log_ent_coef.copy_(state["log_ent_coef"])
