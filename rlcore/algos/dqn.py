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

import logging
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from rlcore.algos.base import Example, register_algo
from rlcore.algos.deep_q import DeepQAlgorithm, masked_q_values
from rlcore.algos.dqn_config import DQNConfig
from rlcore.buffers.replay import Placement, Replay, build_replay
from rlcore.kernels.selection import choose_kernel, override_gates, reproduced
from rlcore.kernels.td import TDKernel
from rlcore.nets.base import FeatureExtractor
from rlcore.observations import Observation, batch_size, take_rows, to_tensor
from rlcore.policy import QNetwork
from rlcore.precision import autocast_forward, resolve_amp

logger = logging.getLogger(__name__)


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
    _STEP_KEYS: ClassVar[tuple[str, ...]] = ("obs", "action", "reward", "discount", "next_obs", "next_action_mask")
    """The batch fields one TD step reads."""
    example: ClassVar[Example | None] = Example("CartPole-v1", {
        "total_env_steps": 800, "net_arch": [16], "learning_starts": 100, "train_freq": 4, "gradient_steps": 1,
        "batch_size": 16, "buffer_size": 2000, "target_update_interval": 100})

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
        self.amp, why = resolve_amp(self.config.amp, self.device, tuple(self.config.net_arch))
        """The precision of the TD steps' network passes: ``"bf16"`` or None (float32); see ``amp``."""
        (logger.warning if self.config.amp == "bf16" and self.amp is None else logger.info)("%s: %s", self.name, why)
        self._kernel = self._select_kernel()
        """The CPU kernel of acting and TD steps, or None (autograd)."""

    def build_q_network(self, features: FeatureExtractor) -> QNetwork:
        config = self.config
        return QNetwork(self.observation_space, self.num_actions, config.net_arch, dueling=config.dueling,
                        activation=config.activation, features=features)

    def build_replay(self, storage_device: torch.device) -> Replay:
        return build_replay(self.replay_settings(), Placement(envs_per_shard=self.num_envs, device=storage_device))

    def _select_kernel(self) -> TDKernel | None:
        """The one place that decides whether the CPU kernel runs instead of autograd; logs the choice (INFO)."""
        config = self.config
        gates = [(not config.fast_path, "fast_path=False"), *override_gates(self, DQN, TDKernel.REPRODUCES)]
        return choose_kernel(
            self.name, gates, lambda: TDKernel.refusal(self.q_net, self.target_net, self.kernel_references()),
            lambda: TDKernel(self.q_net, self.target_net, self.optimizer, config.loss,  # type: ignore[arg-type]
                             config.double, self.action_start, bf16=self.amp == "bf16"))

    @staticmethod
    def kernel_references() -> tuple[Any, ...]:
        """DQN's code that :class:`~rlcore.kernels.td.TDKernel` reproduces (its ``REPRODUCES``: targets, loss, step,
        Q-values for acting; and the functions they call, action masks included)."""
        return *reproduced(DQN, TDKernel.REPRODUCES), autocast_forward, td_targets, masked_q_values

    # --- acting ---------------------------------------------------------------------------
    def act(self, obs: Observation, *, deterministic: bool = False, action_mask: Tensor | None = None) -> Tensor:
        """Greedy actions, or epsilon-greedy ones when not ``deterministic`` (drawn as
        :meth:`~rlcore.algos.deep_q.DeepQAlgorithm._epsilon_greedy` says), among the legal actions of
        ``action_mask`` ``[N, A]`` when given. ``[N, *obs] -> [N]``."""
        epsilon = 0.0 if deterministic else self.exploration_rate
        return self._epsilon_greedy(batch_size(obs), epsilon, lambda: self._greedy(obs, action_mask), action_mask)

    def _greedy(self, obs: Observation, action_mask: Tensor | None = None) -> np.ndarray:
        """``argmax_a Q(obs, a)`` ``[N]`` (int64 indices), over the legal actions when ``action_mask`` is given."""
        if self._kernel is not None and obs.device.type == "cpu":
            return self._kernel.greedy(obs, action_mask)
        q_values = self.q_values(to_tensor(obs, self.device))
        return masked_q_values(q_values, action_mask).argmax(dim=1).cpu().numpy()

    def amp_forward(self, network: Any, *inputs: Tensor) -> Tensor:
        """``network(*inputs)`` in a TD step: with :attr:`amp` ``"bf16"`` under bfloat16 autocast, cast back to
        float32 (``[B, A]`` Q-values)."""
        return autocast_forward(self.amp, self.device, network, *inputs)

    @torch.no_grad()
    def q_values(self, obs: Observation) -> Tensor:
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
            next_q_target = self.amp_forward(self.target_net, batch["next_obs"])
        losses = []
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            part = {key: take_rows(batch[key], rows) for key in self._STEP_KEYS if key in batch}
            targets = self.targets(part, next_q_target[rows])
            losses.append(self._td_step(part, targets)[0])
        return losses

    def _prioritized_step(self) -> Tensor | np.floating:
        """One step on a prioritized minibatch; its ``|TD errors|`` become the sampled rows' new priorities (the
        sampler adds ``per_eps``)."""
        batch = self._sample(self.config.batch_size)
        if self._kernel is not None:
            loss, td_error = self._kernel.batch_step(batch)
            self.replay.update_priorities(batch["index"], torch.from_numpy(np.abs(td_error)))
            return loss
        with torch.no_grad():
            targets = self.targets(batch, self.amp_forward(self.target_net, batch["next_obs"]))
        loss, td_error = self._td_step(batch, targets)
        self.replay.update_priorities(batch["index"], td_error.abs())
        return loss

    @torch.no_grad()
    def targets(self, batch: dict[str, Tensor], next_q_target: Tensor) -> Tensor:
        """:func:`td_targets` of a minibatch ``[B]``: with ``double``, the online network (as it is now) picks the
        next action. ``next_q_target`` is ``Q_target(s', .)`` ``[B, A]``; with action masks (``next_action_mask``
        in the batch) only the next state's legal actions count."""
        next_q_online = self.amp_forward(self.q_net, batch["next_obs"]) if self.config.double else None
        mask = batch.get("next_action_mask")
        if mask is not None:
            next_q_target = masked_q_values(next_q_target, mask)
            next_q_online = None if next_q_online is None else masked_q_values(next_q_online, mask)
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
        q_taken = self.amp_forward(self.q_net, batch["obs"]).gather(1, column).squeeze(1)
        loss, td_error = self.td_loss(q_taken, targets, batch.get("weight"))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach(), td_error.detach()
