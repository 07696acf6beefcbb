"""DQN (Mnih et al., 2015) with double, dueling, n-step and prioritized replay as options.

One file: the config, the targets, the loss and the update. Collection, the replay
buffer's storage and the loop live elsewhere and are shared by every algorithm.

Speed: the target network is frozen during :meth:`DQN.train` (it is synced between
collection steps, like SB3's ``target_update_interval``), so with uniform replay all of a
phase's minibatches are sampled at once and their target values come from one batched
forward pass. Only the online network's forward/backward runs per gradient step.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

from rlcore.algos.base import Algorithm, DataKind, check_range, linear_schedule, register_algo
from rlcore.buffers.replay import ReplayBuffer, make_sampler
from rlcore.nets.base import FlattenExtractor
from rlcore.nets.fused_mlp import backward_into_grads, fast_forward, forward_with_cache, plain_mlp_layers
from rlcore.optim import FlatAdam
from rlcore.policy import QNetwork


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of :class:`DQN`. Defaults follow SB3's DQN; presets hold rl-zoo's per-env values."""

    learning_rate: float = 1e-4
    """Adam step size."""
    buffer_size: int = 1_000_000
    """Transitions kept in replay (over all envs)."""
    learning_starts: int = 100
    """Env steps collected before the first update."""
    batch_size: int = 32
    """Transitions per gradient step."""
    tau: float = 1.0
    """Target update coefficient: 1 copies the online network, < 1 is a Polyak average."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 4
    """Vector-env steps between update phases."""
    gradient_steps: int = 1
    """Gradient steps per update phase."""
    target_update_interval: int = 10_000
    """Env steps between target updates."""
    exploration_fraction: float = 0.1
    """Fraction of training over which epsilon falls from its initial to its final value."""
    exploration_initial_eps: float = 1.0
    """Epsilon at the start."""
    exploration_final_eps: float = 0.05
    """Epsilon after ``exploration_fraction`` of training."""
    max_grad_norm: float | None = 10.0
    """Global gradient-norm clip; ``None`` disables it."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the Q-network."""
    activation: str = "relu"
    """Hidden activation: relu, tanh, elu or gelu."""
    loss: str = "huber"
    """TD loss: ``huber`` (smooth L1, as SB3) or ``mse``."""
    double: bool = False
    """Double DQN: the online network picks the next action, the target network values it."""
    dueling: bool = False
    """Dueling head: ``Q = V + A - mean(A)``."""
    n_step: int = 1
    """Length of the bootstrapped return; episode terminations end it early."""
    prioritized: bool = False
    """Prioritized replay (proportional, Schaul et al. 2016)."""
    per_alpha: float = 0.6
    """How strongly priorities shape sampling (0 is uniform)."""
    per_beta_start: float = 0.4
    """Initial importance-weight exponent, annealed linearly to 1 over training."""
    per_eps: float = 1e-6
    """Added to ``|TD error|`` so no transition gets zero priority."""
    fast_path: bool = True
    """Use the hand-written MLP backward when the Q-network is a plain MLP (same maths as autograd, ~2x faster)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("buffer_size", self.buffer_size, 1)
        check_range("learning_starts", self.learning_starts, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("tau", self.tau, 0.0, 1.0, low_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("train_freq", self.train_freq, 1)
        check_range("gradient_steps", self.gradient_steps, 1)
        check_range("target_update_interval", self.target_update_interval, 1)
        check_range("exploration_fraction", self.exploration_fraction, 0.0, 1.0)
        check_range("exploration_initial_eps", self.exploration_initial_eps, 0.0, 1.0)
        check_range("exploration_final_eps", self.exploration_final_eps, 0.0, 1.0)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)
        if self.loss not in ("huber", "mse"):
            raise ValueError(f"loss must be 'huber' or 'mse', got {self.loss!r}")
        check_range("n_step", self.n_step, 1)
        check_range("per_alpha", self.per_alpha, 0.0)
        check_range("per_beta_start", self.per_beta_start, 0.0, 1.0)
        check_range("per_eps", self.per_eps, 0.0, low_open=True)
        if any(width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch widths must be >= 1, got {list(self.net_arch)}")


def td_targets(reward: Tensor, discount: Tensor, next_q_target: Tensor, next_q_online: Tensor | None) -> Tensor:
    """Bootstrapped targets ``r + discount * Q_target(s', a*)``.

    ``a*`` is ``argmax Q_target(s', .)`` (DQN) or ``argmax Q_online(s', .)`` when
    ``next_q_online`` is given (double DQN). ``discount`` already holds ``gamma**k``
    and is zero after a termination.

    Shapes: ``reward``, ``discount`` ``[B]``; ``next_q_*`` ``[B, A]`` -> ``[B]``.
    """
    if next_q_online is None:
        next_value = next_q_target.max(dim=1).values
    else:
        best = next_q_online.argmax(dim=1, keepdim=True)
        next_value = next_q_target.gather(1, best).squeeze(1)
    return reward + discount * next_value


@register_algo("dqn")
class DQN(Algorithm[DQNConfig]):
    """Deep Q-learning from replay with a target network and epsilon-greedy exploration."""

    config_class: ClassVar[type] = DQNConfig
    data_kind: ClassVar[DataKind] = "replay"
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete)
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: DQNConfig,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        torch.manual_seed(seed)  # network initialisation
        self.num_actions = int(action_space.n)  # type: ignore[attr-defined]
        self.action_start = int(action_space.start)  # type: ignore[attr-defined]
        self.q_net = QNetwork(
            observation_space, self.num_actions, config.net_arch, dueling=config.dueling, activation=config.activation
        ).to(self.device)
        self.target_net = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = FlatAdam(self.q_net.parameters(), lr=config.learning_rate, max_grad_norm=config.max_grad_norm)
        self._fast_mlp = self._fast_path_layers(self.q_net)
        self._fast_target = self._fast_path_layers(self.target_net)
        self.replay = ReplayBuffer(
            config.buffer_size,
            num_envs,
            device=self.device,
            sampler=make_sampler(
                config.prioritized, (config.buffer_size // num_envs) * num_envs, config.per_alpha, config.per_beta_start
            ),
            n_step=config.n_step,
            gamma=config.gamma,
        )
        self.exploration_rate = config.exploration_initial_eps
        self.updates = 0
        self._next_target_sync = config.target_update_interval

    def _fast_path_layers(self, network: QNetwork) -> tuple[list, type] | None:
        """The network's layers when the hand-written MLP kernels apply (plain MLP head, flat input)."""
        if not self.config.fast_path or self.config.dueling:
            return None
        if type(network.features) is not FlattenExtractor:
            return None
        return plain_mlp_layers(network.body)

    # --- acting ---------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Greedy actions, or epsilon-greedy ones when not ``deterministic``. ``[N, *obs] -> [N]``."""
        greedy = self.q_values(obs.to(self.device)).argmax(dim=1).cpu()
        if self.action_start:
            greedy += self.action_start
        if deterministic or self.exploration_rate <= 0.0:
            return greedy
        count = greedy.shape[0]
        explore = torch.rand(count, generator=self.generator) < self.exploration_rate
        random_actions = torch.randint(self.num_actions, (count,), generator=self.generator) + self.action_start
        return torch.where(explore, random_actions, greedy)

    @torch.no_grad()
    def q_values(self, obs: Tensor) -> Tensor:
        """``Q(s, .)`` of the online network: ``[B, *obs_shape] -> [B, A]``."""
        if self._fast_mlp is None:
            return self.q_net(obs)
        return fast_forward(*self._fast_mlp, self.q_net.features(obs))

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Updates epsilon and PER's beta, and syncs the target network when it is due."""
        super().set_progress(env_steps, total_env_steps)
        config = self.config
        progress = env_steps / self.total_env_steps
        self.exploration_rate = linear_schedule(
            config.exploration_initial_eps, config.exploration_final_eps, config.exploration_fraction, progress
        )
        if config.prioritized:
            self.replay.sampler.beta = linear_schedule(config.per_beta_start, 1.0, 1.0, progress)  # type: ignore
        while env_steps >= self._next_target_sync:
            self._sync_target()
            self._next_target_sync += config.target_update_interval

    @torch.no_grad()
    def _sync_target(self) -> None:
        if self.config.tau == 1.0:
            for target, online in zip(self.target_net.parameters(), self.q_net.parameters()):
                target.copy_(online)
        else:
            target_params = list(self.target_net.parameters())
            torch._foreach_lerp_(target_params, list(self.q_net.parameters()), self.config.tau)

    # --- learning -------------------------------------------------------------------------
    def train(self, gradient_steps: int) -> dict[str, float]:
        """Takes ``gradient_steps`` TD updates on minibatches from replay.

        Returns:
            ``train/loss`` (mean over the steps), ``train/n_updates``, ``train/learning_rate``,
            ``rollout/exploration_rate``.
        """
        if self.config.prioritized:
            losses = [self._prioritized_step() for _ in range(gradient_steps)]
        else:
            losses = self._uniform_steps(gradient_steps)
        self.updates += gradient_steps
        return {
            "train/loss": torch.stack(losses).mean().item(),
            "train/n_updates": float(self.updates),
            "train/learning_rate": self.config.learning_rate,
            "rollout/exploration_rate": self.exploration_rate,
        }

    def _uniform_steps(self, gradient_steps: int) -> list[Tensor]:
        """All minibatches of the phase are drawn at once; their targets come from one target-net pass."""
        batch_size = self.config.batch_size
        batch = self.replay.sample(gradient_steps * batch_size, self.generator)
        columns = self._action_column(batch["action"])
        with torch.no_grad():
            next_q_target_all = self._target_q(batch["next_obs"])
            if not self.config.double:
                targets_all = td_targets(batch["reward"], batch["discount"], next_q_target_all, None)
        losses = []
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            if self.config.double:
                targets = self._double_targets(batch, rows, next_q_target_all[rows])
            else:
                targets = targets_all[rows]
            loss, _ = self._td_step(batch["obs"][rows], columns[rows], targets, None)
            losses.append(loss)
        return losses

    def _prioritized_step(self) -> Tensor:
        batch = self.replay.sample(self.config.batch_size, self.generator)
        rows = slice(None)
        with torch.no_grad():
            next_q_target = self._target_q(batch["next_obs"])
            if self.config.double:
                targets = self._double_targets(batch, rows, next_q_target)
            else:
                targets = td_targets(batch["reward"], batch["discount"], next_q_target, None)
        column = self._action_column(batch["action"])
        loss, td_error = self._td_step(batch["obs"], column, targets, batch["weight"])
        self.replay.update_priorities(batch["index"], td_error.abs() + self.config.per_eps)
        return loss

    @torch.no_grad()
    def _target_q(self, next_obs: Tensor) -> Tensor:
        """``Q_target(s', .)``: ``[B, *obs_shape] -> [B, A]``."""
        if self._fast_target is None:
            return self.target_net(next_obs)
        return fast_forward(*self._fast_target, self.target_net.features(next_obs))

    @torch.no_grad()
    def _double_targets(self, batch: dict[str, Tensor], rows: slice, next_q_target: Tensor) -> Tensor:
        """Double-DQN targets: the online network (as it is now) picks ``a*``, the target network values it."""
        next_q_online = self.q_net(batch["next_obs"][rows])
        return td_targets(batch["reward"][rows], batch["discount"][rows], next_q_target, next_q_online)

    def _action_column(self, action: Tensor) -> Tensor:
        return (action.long() - self.action_start).reshape(-1, 1)

    def _td_step(self, obs: Tensor, column: Tensor, targets: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
        """One gradient step on the (importance-weighted) TD loss of ``Q(obs, a)`` against ``targets``.

        Shapes: ``obs [B, *obs_shape]``, ``column [B, 1]`` (action indices), ``targets [B]``,
        ``weight [B]`` or None.

        Returns:
            ``(loss, TD errors [B])``, detached.
        """
        if self._fast_mlp is not None:
            return self._fast_td_step(obs, column, targets, weight)
        q_taken = self.q_net(obs).gather(1, column).squeeze(1)
        td_error = q_taken - targets
        if self.config.loss == "huber":
            per_sample = F.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            per_sample = td_error.pow(2)
        loss = per_sample.mean() if weight is None else (per_sample * weight).mean()
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach(), td_error.detach()

    @torch.no_grad()
    def _fast_td_step(
        self, obs: Tensor, column: Tensor, targets: Tensor, weight: Tensor | None
    ) -> tuple[Tensor, Tensor]:
        """:meth:`_td_step` with the hand-written MLP backward (same maths; tested against autograd)."""
        layers, activation = self._fast_mlp  # type: ignore[misc]
        q_all, cache = forward_with_cache(layers, activation, self.q_net.features(obs))
        td_error = q_all.gather(1, column).squeeze(1).sub_(targets)
        # dLoss/dq_taken for loss = mean(weight * l(td)): l' = clamp(td, -1, 1) (Huber) or 2 td (MSE)
        if self.config.loss == "huber":
            grad_q_taken = td_error.clamp(-1.0, 1.0)
            per_sample = grad_q_taken * (td_error - 0.5 * grad_q_taken)  # = Huber(td) with delta 1
        else:
            grad_q_taken = 2.0 * td_error
            per_sample = td_error * td_error
        if weight is not None:
            per_sample = per_sample * weight
            grad_q_taken.mul_(weight)
        grad_q_taken.div_(td_error.shape[0])
        grad_output = torch.zeros_like(q_all).scatter_(1, column, grad_q_taken.unsqueeze(1))
        backward_into_grads(layers, activation, cache, grad_output)
        self.optimizer.step()
        return per_sample.mean(), td_error

    # --- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "q_net": self.q_net.state_dict(),
            "target_net": self.target_net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "next_target_sync": self._next_target_sync,
            "exploration_rate": self.exploration_rate,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_base_state(state)
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self._next_target_sync = int(state["next_target_sync"])
        self.exploration_rate = float(state["exploration_rate"])
