"""R2D2-style recurrent Q-learning (Kapturowski et al., 2019): DQN with a memory, trained on replay windows.

One file: the config, the targets (:func:`window_td_targets`) and the update (:meth:`R2D2.train`); what it
shares with DQN (exploration, the target network, the checkpoint) is in :mod:`rlcore.algos.deep_q`.

The Q-network is a :class:`~rlcore.nets.recurrent_q.RecurrentQNetwork` (``memory="lstm"`` or ``"transformer"``).
The behaviour policy carries each training env's state across steps, reset where an episode starts: the
replay buffer, an :class:`~rlcore.buffers.sequence.EpisodeEndReplay`, says where episodes ended. The learner
trains on windows of ``burn_in + sequence_length`` consecutive steps of one env, which may cross episode
boundaries. Both networks are unrolled from a zero state at each window's first step (no state is stored in
replay, so nothing goes stale) and reset where an episode starts inside the window, as acting did; the first
``burn_in`` steps only warm the state up (no loss; unlike R2D2's, gradients flow through them, so a loss step's
memory of a cue seen in the burn-in is learned), and the TD loss (double and n-step as options, bootstrapping
inside the window, never across an episode end) covers the last ``sequence_length``. So every step of every
episode, short ones and first steps included, gets a loss in some windows (R2D2's "zero start state" with
burn-in; Kapturowski et al. 2019, section 3). On the memory task (a cue 10 steps before its query), a burn-in
without gradients left 1 of 3 seeds at chance and another falling to 0.5 by 100k env steps; with them all three
stayed at 1.0.

``rlcore.train("r2d2", env)`` and ``rlcore.train("dqn", env, memory="lstm")`` build the same algorithm (the
latter keeps the name ``"dqn"``). It trains through autograd: there is no kernel for recurrent networks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import Tensor

from rlcore.algos.base import Example, register_algo
from rlcore.algos.deep_q import DeepQAlgorithm
from rlcore.algos.dqn_config import DQNConfig
from rlcore.buffers.sequence import EpisodeEndReplay, draw_windows, gather_windows
from rlcore.kernels.selection import log_reference_path
from rlcore.nets.base import FeatureExtractor
from rlcore.nets.recurrent_q import RecurrentQNetwork
from rlcore.spaces import observation_dtypes


@dataclass(frozen=True)
class R2D2Config(DQNConfig):
    """Hyperparameters of :class:`R2D2`: :class:`~rlcore.algos.dqn.DQNConfig`'s, with an LSTM by default."""

    memory: str | None = "lstm"
    """``"lstm"`` or ``"transformer"``: the memory core between the encoder and the Q head (``net_arch``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.memory is None:
            raise ValueError("r2d2 needs memory='lstm' or 'transformer', got memory=None (use dqn without memory)")


def window_td_targets(
    reward: Tensor, terminated: Tensor, truncated: Tensor, next_value: Tensor, gamma: float, n_step: int = 1,
    burn_in: int = 0,
) -> tuple[Tensor, Tensor]:
    """TD targets and loss mask for the last ``L = W - burn_in`` steps of replay windows of ``W`` steps.

    Step ``t`` (of the last ``L``) bootstraps from ``next_value[t + m - 1]`` after ``m = min(n_step,
    L - t, steps to the episode's end)`` rewards: ``sum_k gamma**k r[t + k] + gamma**m * V``, with ``V``
    zeroed when the episode terminated at step ``t + m - 1``. ``next_value[j]`` is the bootstrap value of the
    state after loss step ``j`` (``max_a Q_target``, or the double-DQN value), read from the window's next row:
    after an episode end inside the window that row starts the next episode, so a truncation (which bootstraps
    from the final observation) can be bootstrapped only at the window's last step, whose next row is its
    ``next_obs``; the steps whose return ends at a truncation inside the window are masked out (they get their
    target from the windows that end there). Every other step counts, on either side of an episode end.

    Shapes: ``reward``, ``terminated``, ``truncated`` ``[B, W]``; ``next_value`` ``[B, L]`` ->
    ``(targets [B, L], mask [B, L])`` (mask float, 1 where the step counts).
    """
    reward, terminated, truncated = reward[:, burn_in:].float(), terminated[:, burn_in:], truncated[:, burn_in:]
    ended = terminated | truncated
    truncated_inside = truncated & ~terminated
    truncated_inside[:, -1] = False
    length = reward.shape[1]
    positions = torch.arange(length, device=reward.device)
    total = torch.zeros_like(reward)
    steps = torch.zeros(reward.shape, dtype=torch.long, device=reward.device)
    boot_terminal = torch.zeros_like(ended)
    unknown_bootstrap = torch.zeros_like(ended)
    alive = torch.ones_like(ended)
    for k in range(n_step):
        index = positions + k
        inside = index < length
        index = index.clamp(max=length - 1)
        alive = alive & inside
        total = total + torch.where(alive, reward[:, index] * gamma**k, 0.0)
        steps = steps + alive.long()
        boot_terminal = boot_terminal | (alive & terminated[:, index])
        unknown_bootstrap = unknown_bootstrap | (alive & truncated_inside[:, index])
        alive = alive & ~ended[:, index]
    mask = (~unknown_bootstrap).float()
    last = positions + steps - 1  # >= positions: step k = 0 always counts
    discount = torch.pow(torch.tensor(gamma, device=reward.device), steps.float()) * (~boot_terminal).float()
    return total + discount * next_value.gather(1, last), mask


@register_algo("r2d2")
class R2D2(DeepQAlgorithm[R2D2Config]):
    """Recurrent deep Q-learning from replay windows, with a per-env memory while acting."""

    config_class: ClassVar[type] = R2D2Config
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete)
    """Not yet Dict or Tuple observations (DQN without memory and PPO with memory take them): its windows and
    unrolls handle one observation array."""
    example: ClassVar[Example | None] = Example("CartPole-v1", {
        "total_env_steps": 320, "num_envs": 2, "sequence_length": 4, "burn_in": 2, "context_length": 3,
        "memory_size": 8, "net_arch": [8], "learning_starts": 64, "train_freq": 4, "gradient_steps": 2,
        "batch_size": 8, "buffer_size": 2000, "target_update_interval": 100, "double": True, "n_step": 2})
    keeps_memory: ClassVar[bool] = True
    WINDOW_KEYS: ClassVar[tuple[str, ...]] = ("obs", "action", "reward", "terminated", "truncated")
    """The columns a window needs at every step (``next_obs`` only at its last one)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Arguments as :class:`~rlcore.algos.deep_q.DeepQAlgorithm` (spaces, config; device, seed, num_envs)."""
        super().__init__(*args, **kwargs)
        window, rows = self.config.burn_in + self.config.sequence_length, self.config.buffer_size // self.num_envs
        if rows < window:
            raise ValueError(f"buffer_size={self.config.buffer_size} holds {rows} steps per env for {self.num_envs} "
                             f"envs, fewer than one replay window (burn_in + sequence_length = {window}): raise "
                             "buffer_size or lower burn_in / sequence_length")
        self._memory_state = self._initial_memory_state(self.num_envs)
        """The training envs' memory (LSTM state or observation window) between steps."""
        self._episode_start = torch.ones(self.num_envs, dtype=torch.bool, device=self.device)
        """Which training envs start an episode at their next step (set from the replay buffer's writes)."""
        log_reference_path(self.name, "recurrent Q-networks have no kernel")

    def build_q_network(self, features: FeatureExtractor) -> RecurrentQNetwork:
        config = self.config
        return RecurrentQNetwork(self.observation_space, self.num_actions, features, config.memory,  # type: ignore
                                 config.memory_size, config.context_length, config.net_arch, dueling=config.dueling,
                                 activation=config.activation)

    def check_workers(self) -> None:
        raise ValueError(f"num_workers > 0 does not support memory={self.config.memory!r} (R2D2) yet: its windows need "
                         "one replay per env column; use num_workers=0")

    def build_replay(self, storage_device: torch.device) -> EpisodeEndReplay:
        # n-step returns are computed inside the windows
        return EpisodeEndReplay(self.config.buffer_size, self.num_envs, device=storage_device, gamma=self.config.gamma,
                                on_episode_end=self._episodes_ended)

    def _initial_memory_state(self, num_envs: int) -> dict[str, Tensor]:
        """A zero memory for ``num_envs`` envs."""
        return self.q_net.initial_state(num_envs, self.device,  # type: ignore[operator]
                                        observation_dtypes(self.observation_space))

    def _episodes_ended(self, done: np.ndarray) -> None:
        """The replay buffer's report after each write: envs whose episode ended (``[N]`` bool) start anew."""
        self._episode_start = torch.from_numpy(np.array(done, dtype=bool)).to(self.device)

    # --- acting ---------------------------------------------------------------------------
    @torch.no_grad()
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """The training envs' behaviour policy (``N = num_envs``): one step of their state (which the replay
        buffer's writes reset where episodes end), then epsilon-greedy actions ``[N]``.

        Greedy acting (evaluation, ``predict``) goes through :meth:`actor`, which keeps a state of its own.
        """
        if deterministic:
            raise TypeError(f"{self.name} with memory={self.config.memory!r} acts greedily with a per-env state: "
                            "use agent.predict(obs, state=..., episode_start=...), algo.actor() (a callable that "
                            "keeps it), or Agent.evaluate")
        if obs.shape[0] != self.num_envs:
            raise ValueError(f"act() with memory steps the {self.num_envs} training envs' state; got a batch of "
                             f"{obs.shape[0]} observations (use algo.actor() for other envs)")
        q, self._memory_state = self.q_net.step(  # type: ignore[operator]
            obs.to(self.device), self._memory_state, self._episode_start)
        self._episode_start = torch.zeros_like(self._episode_start)
        greedy = q.argmax(dim=1).cpu().numpy()
        return self._epsilon_greedy(obs.shape[0], self.exploration_rate, lambda: greedy)

    @property
    def acts_with_state(self) -> bool:
        return True

    def initial_acting_state(self, num_envs: int) -> dict[str, Tensor]:
        return self._initial_memory_state(num_envs)

    @torch.no_grad()
    def act_with_state(self, obs: Tensor, state: dict[str, Tensor], episode_start: Tensor, *,
                       deterministic: bool = True, action_mask: Tensor | None = None
                       ) -> tuple[Tensor, dict[str, Tensor]]:
        """Greedy (else epsilon-greedy at the current exploration rate) actions ``[N]`` and the next state."""
        if action_mask is not None:
            raise TypeError(f"{self.name} with memory does not take action masks")
        net: RecurrentQNetwork = self.q_net  # type: ignore[assignment]
        q, state = net.step(obs.to(self.device), state, episode_start.to(self.device))
        greedy = q.argmax(dim=1).cpu().numpy()
        rate = 0.0 if deterministic else self.exploration_rate
        return self._epsilon_greedy(obs.shape[0], rate, lambda: greedy), state

    def q_values(self, obs: Tensor) -> Tensor:
        """Not defined without the episode so far: a TypeError pointing to ``q_net.step`` / ``q_net.unroll``."""
        raise TypeError("with memory, Q-values depend on the episode so far: use q_net.step or q_net.unroll")

    # --- learning: TD on replay windows ----------------------------------------------------------
    def train(self, gradient_steps: int) -> dict[str, float]:
        """``gradient_steps`` TD steps on ``batch_size`` windows each.

        All the phase's windows are drawn at once (uniformly among the valid starts) and the frozen target
        network is unrolled over them in one pass; the online network runs per step.

        Returns:
            ``train/loss`` (mean over the steps; absent while no window fits yet), ``train/n_updates``,
            ``train/learning_rate``, ``rollout/exploration_rate``.
        """
        config = self.config
        if not isinstance(self.replay, EpisodeEndReplay):
            raise ValueError(f"{self.name} with memory={config.memory!r} needs its own replay buffer, which tells the "
                             "behaviour policy where episodes end; num_workers > 0 replaces it: use num_workers=0")
        window = config.burn_in + config.sequence_length
        batch_size = config.batch_size
        chosen = draw_windows(self.replay, gradient_steps * batch_size, window, self.generator)
        if chosen.numel() == 0:
            return self._metrics(None)  # too early: fewer than a window's steps stored
        batch = gather_windows(self.replay, chosen, window, self.WINDOW_KEYS, ("next_obs",))
        if self._transfer is not None:
            batch = self._transfer(batch)
        inputs = torch.cat([batch["obs"], batch["next_obs"].unsqueeze(1).to(batch["obs"].dtype)], dim=1)
        # the last step's next_obs continues its episode (its final observation where the episode ended)
        starts_in = torch.cat([batch["episode_start"], torch.zeros_like(batch["episode_start"][:, :1])], dim=1)
        with torch.no_grad():
            q_target = self.target_net.unroll(inputs, config.burn_in, starts_in)  # type: ignore[operator]  # [G*B, L+1, A]
        losses = []
        for step in range(gradient_steps):
            rows = slice(step * batch_size, (step + 1) * batch_size)
            losses.append(self._sequence_step({key: batch[key][rows] for key in self.WINDOW_KEYS}, inputs[rows],
                                              starts_in[rows], q_target[rows]))
        self.updates += gradient_steps
        return self._metrics(torch.stack(losses).mean().item())

    def _sequence_step(self, window: dict[str, Tensor], inputs: Tensor, episode_start: Tensor,
                       q_target: Tensor) -> Tensor:
        """One gradient step on the masked TD loss of windows' last ``L`` steps.

        Shapes: ``window`` columns ``[B, W, ...]``; ``inputs [B, W + 1, *obs_shape]`` (the window's
        observations, then its last ``next_obs``) and their ``episode_start [B, W + 1]``; ``q_target
        [B, L + 1, A]`` (the target network's values from step ``burn_in`` on). Returns the loss (detached).
        """
        config = self.config
        burn_in = config.burn_in
        q_online = self.q_net.unroll(inputs, burn_in, episode_start)  # type: ignore[operator]  # [B, L+1, A]
        actions = (window["action"][:, burn_in:].long() - self.action_start).unsqueeze(2)  # [B, L, 1]
        q_taken = q_online[:, :-1].gather(2, actions).squeeze(2)  # [B, L]
        with torch.no_grad():
            if config.double:
                best = q_online[:, 1:].argmax(dim=2, keepdim=True)
                next_value = q_target[:, 1:].gather(2, best).squeeze(2)
            else:
                next_value = q_target[:, 1:].max(dim=2).values
            targets, mask = window_td_targets(window["reward"], window["terminated"], window["truncated"],
                                              next_value, config.gamma, config.n_step, burn_in)
        if config.loss == "huber":
            per_step = F.smooth_l1_loss(q_taken, targets, reduction="none")
        else:
            per_step = (q_taken - targets).pow(2)
        loss = (per_step * mask).sum() / mask.sum().clamp(min=1.0)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    # --- persistence ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "memory_state": self._memory_state, "episode_start": self._episode_start}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._memory_state = {key: value.to(self.device) for key, value in state["memory_state"].items()}
        self._episode_start = state["episode_start"].to(self.device, torch.bool)
