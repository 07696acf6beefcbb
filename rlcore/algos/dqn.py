"""DQN (Mnih et al., 2015) with double, dueling, n-step and prioritized replay as options.

One file: the config, the targets (:func:`td_targets`), the loss (:meth:`DQN.td_loss`) and the update
(:meth:`DQN.train`). What it shares with recurrent Q-learning (exploration, the target network, the
checkpoint) is in :mod:`rlcore.algos.deep_q`; collection, the replay buffer's storage and the loop live
elsewhere and are shared by every algorithm.

Speed: the target network is frozen during :meth:`DQN.train` (it is synced between collection steps, like
SB3's ``target_update_interval``), so with uniform replay all of a phase's minibatches are sampled at once
and their target values come from one batched forward pass. Only the online network's forward/backward runs
per gradient step. On the CPU, for a stock plain-MLP Q-network and the stock loss, a kernel
(:class:`rlcore.kernels.td.TDKernel`) runs acting and those steps in numpy; :meth:`DQN._select_kernel`, run
once, decides which path runs and logs why.

``memory="lstm"`` or ``"transformer"`` makes ``DQN(...)`` build the recurrent variant,
:class:`rlcore.algos.r2d2.R2D2` (also registered as ``"r2d2"``), which trains on replay windows.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rlcore.algos.base import register_algo
from rlcore.algos.deep_q import DeepQAlgorithm
from rlcore.buffers.replay import ReplayBuffer, make_sampler
from rlcore.buffers.transfer import check_replay_device
from rlcore.kernels.selection import choose_kernel
from rlcore.kernels.td import TDKernel
from rlcore.nets.base import FeatureExtractor
from rlcore.nets.recurrent_q import MEMORY_KINDS
from rlcore.policy import QNetwork
from rlcore.settings import check_range


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
    """Let the CPU kernel train plain-MLP Q-networks (same maths as autograd, ~2x faster); False: always autograd."""
    features_extractor: str = "auto"
    """Observation encoder: ``auto`` (a CNN for images, flatten/one-hot otherwise) or a registered name
    (``flatten``, ``nature_cnn``, ``impala_cnn``, ``small_cnn``, ...; see :mod:`rlcore.nets.extractors`)."""
    features_kwargs: dict[str, Any] | None = None
    """Keyword arguments of the extractor, e.g. ``{"features_dim": 256}``."""
    memory: str | None = None
    """``"lstm"`` or ``"transformer"``: a recurrent Q-network trained on replay windows (R2D2-style, for
    partially observable tasks; :class:`rlcore.algos.r2d2.R2D2`); ``net_arch`` is then the head after the
    memory core."""
    memory_size: int = 64
    """LSTM state width, or the Transformer's width."""
    context_length: int = 16
    """Observations the Transformer attends to (the current one included)."""
    sequence_length: int = 16
    """Steps of each replay window that get a TD loss (memory only)."""
    burn_in: int = 8
    """Steps before them that only warm up the memory from a zero state (memory only). A window of
    ``burn_in + sequence_length`` steps must fit inside an episode."""
    replay_device: str = "cpu"
    """Where replay storage lives: ``"cpu"`` (host memory) or ``"auto"``/``"device"`` (the training device)."""
    pin_memory: bool = True
    """With host storage and a CUDA training device, move batches through pinned memory (non-blocking)."""

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
        self._check_memory()
        check_replay_device(self.replay_device)
        if not isinstance(self.pin_memory, bool):
            raise ValueError(f"pin_memory must be true or false, got {self.pin_memory!r}")

    def _check_memory(self) -> None:
        if self.memory not in (None, *MEMORY_KINDS):
            raise ValueError(f"memory must be one of {[None, *MEMORY_KINDS]}, got {self.memory!r}")
        check_range("memory_size", self.memory_size, 1)
        check_range("context_length", self.context_length, 1)
        check_range("sequence_length", self.sequence_length, 1)
        check_range("burn_in", self.burn_in, 0)
        if self.memory is not None and self.prioritized:
            raise ValueError("prioritized replay is not supported with memory; set prioritized=false")


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
class DQN(DeepQAlgorithm[DQNConfig]):
    """Deep Q-learning from replay with a target network and epsilon-greedy exploration.

    With ``config.memory`` set, ``DQN(...)`` returns an :class:`~rlcore.algos.r2d2.R2D2` (named ``"dqn"``, so
    logs and checkpoints read as before).
    """

    config_class: ClassVar[type] = DQNConfig

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        config = args[2] if len(args) > 2 else kwargs.get("config")
        if getattr(config, "memory", None) is None:
            return super().__new__(cls)
        if cls is not DQN:
            raise TypeError(f"{cls.__name__} subclasses DQN, which has no memory; for memory={config.memory!r} "
                            "subclass rlcore.algos.r2d2.R2D2")
        from rlcore.algos.r2d2 import R2D2, R2D2Config

        recurrent_config = R2D2Config(**{field.name: getattr(config, field.name) for field in fields(DQNConfig)})
        args = args[:2] + (recurrent_config,) + args[3:] if len(args) > 2 else args
        kwargs = {**kwargs, "config": recurrent_config} if "config" in kwargs else kwargs
        algo = object.__new__(R2D2)
        algo.name = cls.name  # type: ignore[misc]  # before __init__, which logs it
        algo.__init__(*args, **kwargs)
        return algo

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Arguments as :class:`~rlcore.algos.deep_q.DeepQAlgorithm` (spaces, config; device, seed, num_envs)."""
        super().__init__(*args, **kwargs)
        self._kernel = self._select_kernel()
        """The CPU kernel of acting and TD steps, or None (autograd)."""

    def build_q_network(self, features: FeatureExtractor) -> QNetwork:
        config = self.config
        return QNetwork(self.observation_space, self.num_actions, config.net_arch, dueling=config.dueling,
                        activation=config.activation, features=features)

    def build_replay(self, storage_device: torch.device) -> ReplayBuffer:
        config, num_envs = self.config, self.num_envs
        sampler = make_sampler(config.prioritized, (config.buffer_size // num_envs) * num_envs, config.per_alpha,
                               config.per_beta_start)
        return ReplayBuffer(config.buffer_size, num_envs, device=storage_device, sampler=sampler,
                            n_step=config.n_step, gamma=config.gamma)

    def _select_kernel(self) -> TDKernel | None:
        """The one place that decides whether the CPU kernel runs instead of autograd; logs the choice (INFO)."""
        config = self.config
        gates = [(not config.fast_path, "fast_path=False"),
                 (type(self).td_loss is not DQN.td_loss, f"{type(self).__name__} overrides td_loss"),
                 (type(self).targets is not DQN.targets, f"{type(self).__name__} overrides targets")]
        return choose_kernel(
            self.name, gates, lambda: TDKernel.refusal(self.q_net, self.target_net),
            lambda: TDKernel(self.q_net, self.target_net, self.optimizer, config.loss,  # type: ignore[arg-type]
                             config.double, self.action_start))

    # --- acting ---------------------------------------------------------------------------
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """Greedy actions, or epsilon-greedy ones when not ``deterministic`` (drawn as
        :meth:`~rlcore.algos.deep_q.DeepQAlgorithm._epsilon_greedy` says). ``[N, *obs] -> [N]``."""
        epsilon = 0.0 if deterministic else self.exploration_rate
        return self._epsilon_greedy(obs.shape[0], epsilon, lambda: self._greedy(obs))

    def _greedy(self, obs: Tensor) -> np.ndarray:
        """``argmax_a Q(obs, a)`` ``[N]`` (int64 indices)."""
        if self._kernel is not None and obs.device.type == "cpu":
            return self._kernel.greedy(obs)
        return self.q_values(obs.to(self.device)).argmax(dim=1).cpu().numpy()

    @torch.no_grad()
    def q_values(self, obs: Tensor) -> Tensor:
        """``Q(s, .)`` of the online network: ``[B, *obs_shape] -> [B, A]``."""
        return self.q_net(obs)

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
        if len(losses) and isinstance(losses[0], Tensor):
            mean_loss = torch.stack(losses).mean().item()  # type: ignore[arg-type]
        else:
            mean_loss = float(np.mean(np.asarray(losses, dtype=np.float32)))
        return self._metrics(mean_loss)

    def _uniform_steps(self, gradient_steps: int) -> list[Tensor] | np.ndarray:
        """All minibatches of the phase are drawn at once; their targets come from one target-net pass."""
        batch_size = self.config.batch_size
        batch = self._sample(gradient_steps * batch_size)
        if self._kernel is not None:
            return self._kernel.uniform_phase(batch, gradient_steps, batch_size)
        with torch.no_grad():
            next_q_target = self.target_net(batch["next_obs"])
        losses = []
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            part = {key: batch[key][rows] for key in ("obs", "action", "reward", "discount", "next_obs")}
            targets = self.targets(part, next_q_target[rows])
            losses.append(self._td_step(part, targets)[0])
        return losses

    def _prioritized_step(self) -> Tensor | np.floating:
        """One step on a prioritized minibatch; its TD errors become the sampled rows' new priorities."""
        batch = self._sample(self.config.batch_size)
        if self._kernel is not None:
            loss, td_error = self._kernel.batch_step(batch)
            self.replay.update_priorities(batch["index"], torch.from_numpy(np.abs(td_error) + self.config.per_eps))
            return loss
        with torch.no_grad():
            targets = self.targets(batch, self.target_net(batch["next_obs"]))
        loss, td_error = self._td_step(batch, targets)
        self.replay.update_priorities(batch["index"], td_error.abs() + self.config.per_eps)
        return loss

    @torch.no_grad()
    def targets(self, batch: dict[str, Tensor], next_q_target: Tensor) -> Tensor:
        """:func:`td_targets` of a minibatch ``[B]``: with ``double``, the online network (as it is now) picks the
        next action. ``next_q_target`` is ``Q_target(s', .)`` ``[B, A]``."""
        next_q_online = self.q_net(batch["next_obs"]) if self.config.double else None
        return td_targets(batch["reward"], batch["discount"], next_q_target, next_q_online)

    def td_loss(self, q_taken: Tensor, targets: Tensor, weight: Tensor | None) -> tuple[Tensor, Tensor]:
        """The mean (importance-weighted) Huber or squared TD error, and the TD errors ``q_taken - targets``.

        Shapes: ``q_taken``, ``targets``, ``weight`` (or None) ``[B]`` -> ``(loss [], td_error [B])``.
        """
        td_error = q_taken - targets
        if self.config.loss == "huber":
            per_sample = F.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            per_sample = td_error.pow(2)
        loss = per_sample.mean() if weight is None else (per_sample * weight).mean()
        return loss, td_error

    def _td_step(self, batch: dict[str, Tensor], targets: Tensor) -> tuple[Tensor, Tensor]:
        """One gradient step on :meth:`td_loss` of ``Q(obs, action)`` against ``targets`` ``[B]`` (weighted by
        ``batch["weight"]`` when the batch has one). Returns ``(loss, TD errors [B])``, detached."""
        column = (batch["action"].long() - self.action_start).reshape(-1, 1)
        q_taken = self.q_net(batch["obs"]).gather(1, column).squeeze(1)
        loss, td_error = self.td_loss(q_taken, targets, batch.get("weight"))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach(), td_error.detach()
