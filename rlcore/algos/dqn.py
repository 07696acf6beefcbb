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
        self.optimizer = torch.optim.Adam(self.q_net.parameters(), lr=config.learning_rate)
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

    # --- acting ---------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Greedy actions, or epsilon-greedy ones when not ``deterministic``. ``[N, *obs] -> [N]``."""
        greedy = self.q_net(obs.to(self.device)).argmax(dim=1).cpu() + self.action_start
        if deterministic or self.exploration_rate <= 0.0:
            return greedy
        count = greedy.shape[0]
        explore = torch.rand(count, generator=self.generator) < self.exploration_rate
        random_actions = torch.randint(self.num_actions, (count,), generator=self.generator) + self.action_start
        return torch.where(explore, random_actions, greedy)

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
            ``train/loss``, ``train/q_mean``, ``train/n_updates``, ``rollout/exploration_rate``.
        """
        if self.config.prioritized:
            losses, q_means = zip(*(self._prioritized_step() for _ in range(gradient_steps)))
        else:
            losses, q_means = self._uniform_steps(gradient_steps)
        self.updates += gradient_steps
        return {
            "train/loss": torch.stack(losses).mean().item(),
            "train/q_mean": torch.stack(q_means).mean().item(),
            "train/n_updates": float(self.updates),
            "train/learning_rate": self.config.learning_rate,
            "rollout/exploration_rate": self.exploration_rate,
        }

    def _uniform_steps(self, gradient_steps: int) -> tuple[list[Tensor], list[Tensor]]:
        batch_size = self.config.batch_size
        batch = self.replay.sample(gradient_steps * batch_size, self.generator)
        with torch.no_grad():
            next_q_target_all = self.target_net(batch["next_obs"])
            if not self.config.double:
                targets_all = td_targets(batch["reward"], batch["discount"], next_q_target_all, None)
        losses, q_means = [], []
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            if self.config.double:
                loss, q_mean, _ = self._double_step(batch, rows, next_q_target_all[rows])
            else:
                q_taken = self._q_taken(batch["obs"][rows], batch["action"][rows])
                loss, q_mean, _ = self._optimize(q_taken, targets_all[rows], None)
            losses.append(loss)
            q_means.append(q_mean)
        return losses, q_means

    def _prioritized_step(self) -> tuple[Tensor, Tensor]:
        batch = self.replay.sample(self.config.batch_size, self.generator)
        rows = slice(None)
        with torch.no_grad():
            next_q_target = self.target_net(batch["next_obs"])
        if self.config.double:
            loss, q_mean, td_error = self._double_step(batch, rows, next_q_target)
        else:
            targets = td_targets(batch["reward"], batch["discount"], next_q_target, None)
            q_taken = self._q_taken(batch["obs"], batch["action"])
            loss, q_mean, td_error = self._optimize(q_taken, targets, batch["weight"])
        self.replay.update_priorities(batch["index"], td_error.abs() + self.config.per_eps)
        return loss, q_mean

    def _double_step(self, batch: dict[str, Tensor], rows: slice, next_q_target: Tensor) -> tuple[Tensor, ...]:
        """One double-DQN step: one forward of the online net over ``[obs; next_obs]``."""
        obs, next_obs = batch["obs"][rows], batch["next_obs"][rows]
        q_both = self.q_net(torch.cat([obs, next_obs]))
        q_all, next_q_online = q_both[: obs.shape[0]], q_both[obs.shape[0] :].detach()
        targets = td_targets(batch["reward"][rows], batch["discount"][rows], next_q_target, next_q_online)
        q_taken = q_all.gather(1, self._action_column(batch["action"][rows])).squeeze(1)
        weight = batch["weight"][rows] if self.config.prioritized else None
        return self._optimize(q_taken, targets, weight)

    def _action_column(self, action: Tensor) -> Tensor:
        return (action.long() - self.action_start).reshape(-1, 1)

    def _q_taken(self, obs: Tensor, action: Tensor) -> Tensor:
        """``Q(s, a)`` of the actions taken: ``[B, *obs], [B] -> [B]``."""
        return self.q_net(obs).gather(1, self._action_column(action)).squeeze(1)

    def _optimize(self, q_taken: Tensor, targets: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """One gradient step on the (importance-weighted) TD loss; returns loss, mean Q and TD errors."""
        td_error = q_taken - targets
        if self.config.loss == "huber":
            per_sample = F.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            per_sample = td_error.pow(2)
        loss = per_sample.mean() if weight is None else (per_sample * weight).mean()
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.q_net.parameters(), self.config.max_grad_norm, foreach=True)
        self.optimizer.step()
        return loss.detach(), q_taken.detach().mean(), td_error.detach()

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
