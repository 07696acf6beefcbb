"""What DQN and R2D2 share: epsilon-greedy exploration, the target network and its sync, the optimizer, the
replay buffer's placement and the checkpoint.

A subclass builds its Q-network (:meth:`DeepQAlgorithm.build_q_network`) and its replay buffer
(:meth:`DeepQAlgorithm.build_replay`), and implements acting and :meth:`~rlcore.algos.base.Algorithm.train`.
The Trainer's ``"replay"`` loop adds every vector step to :attr:`DeepQAlgorithm.replay`, calls
:meth:`DeepQAlgorithm.set_progress` (epsilon, PER's beta, target syncs) and, every ``train_freq`` steps after
``learning_starts``, ``train(gradient_steps)``.

Replay storage lives on the host by default (``replay_device``); with a CUDA training device, sampled
batches reach it through pinned staging buffers (``pin_memory``, see :mod:`rlcore.buffers.transfer`).
"""

from __future__ import annotations

import copy
from abc import abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor, nn

from rlcore.algos.base import ReplayAlgorithm, flat_acting_state, load_flat_acting_state
from rlcore.buffers.replay import ReplayBuffer, ReplaySettings
from rlcore.buffers.storage import transition_fields
from rlcore.buffers.transfer import BatchTransfer, replay_storage_device
from rlcore.nets.base import FeatureExtractor
from rlcore.nets.extractors import make_extractor
from rlcore.optim import FlatAdam, flatten_twin, polyak_update
from rlcore.settings import linear_schedule

if TYPE_CHECKING:
    from rlcore.algos.dqn_config import DQNConfig

ConfigT = TypeVar("ConfigT", bound="DQNConfig")


class DeepQAlgorithm(ReplayAlgorithm[ConfigT]):
    """Deep Q-learning from replay with a target network and epsilon-greedy exploration (DQN, R2D2).

    Attributes:
        q_net, target_net: The online network and its frozen copy (synced every ``target_update_interval`` env
            steps, by a copy or, with ``tau < 1``, a Polyak average).
        optimizer: A :class:`~rlcore.optim.FlatAdam` over ``q_net``.
        replay: Where the Trainer adds transitions.
        exploration_rate: The current epsilon.
    """

    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete, spaces.Dict, spaces.Tuple)
    flat_box_only: ClassVar[bool] = False
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Discrete,)
    keeps_memory: ClassVar[bool] = False
    """Whether checkpoints hold the training envs' memory (a recurrent Q-network's state)."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        config: ConfigT,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        num_envs: int = 1,
    ) -> None:
        super().__init__(observation_space, action_space, config, device=device, seed=seed, num_envs=num_envs)
        torch.manual_seed(seed)  # network initialisation
        self.num_actions = int(action_space.n)  # type: ignore[attr-defined]
        self.action_start = int(action_space.start)  # type: ignore[attr-defined]
        features = make_extractor(observation_space, config.features_extractor, **(config.features_kwargs or {}))
        self.q_net: nn.Module = self.build_q_network(features).to(self.device)
        self.target_net: nn.Module = copy.deepcopy(self.q_net).requires_grad_(False)
        self.optimizer = FlatAdam(self.q_net.parameters(), lr=config.learning_rate, max_grad_norm=config.max_grad_norm)
        self._target_flat = self._flatten_target()
        storage_device = replay_storage_device(config.replay_device, self.device)
        self._storage_device = storage_device
        self._transfer = (BatchTransfer(self.device, config.pin_memory)
                          if storage_device.type == "cpu" and self.device.type != "cpu" else None)
        """Moves host-stored batches to the training device (None when the storage is already there)."""
        self.replay: ReplayBuffer = self.build_replay(storage_device)
        self.exploration_rate = config.exploration_initial_eps
        self.updates = 0
        self._next_target_sync = config.target_update_interval

    @abstractmethod
    def build_q_network(self, features: FeatureExtractor) -> nn.Module:
        """The online Q-network on ``features`` (moved to the device by the caller)."""

    @abstractmethod
    def build_replay(self, storage_device: torch.device) -> ReplayBuffer:
        """The replay buffer the Trainer adds transitions to, its storage on ``storage_device``."""

    def _flatten_target(self) -> Tensor | None:
        """Moves the target network's parameters into one buffer laid out like FlatAdam's ``flat_params``
        (:func:`~rlcore.optim.flatten_twin`): with ``target_update_interval=10`` syncs run every 10 env steps, and
        each is then one copy (or one lerp) of ``[P]`` floats. None when some online parameters are frozen."""
        return flatten_twin(self.optimizer, self.q_net, self.target_net)

    # --- action masks ---------------------------------------------------------------------
    @property
    def accepts_action_masks(self) -> bool:
        """With ``use_action_masks`` (the default), without memory."""
        return self.config.use_action_masks and not self.keeps_memory

    def enable_action_masks(self) -> None:
        """Replay stores each next state's mask (``next_action_mask``) for the targets' max: rebuilt, still empty."""
        super().enable_action_masks()
        self.replay = self.build_replay(self._storage_device)

    # --- acting ---------------------------------------------------------------------------
    def _epsilon_greedy(self, count: int, epsilon: float, greedy: Callable[[], np.ndarray],
                        action_mask: Tensor | None = None) -> Tensor:
        """Env actions ``[N]`` (CPU): each env's greedy action (``greedy()``, indices ``[N]``), replaced by a
        uniform one with probability ``epsilon``; the action space's start added.

        With ``epsilon > 0`` it draws ``[N, 2]`` uniforms from :attr:`generator` (float64, one call): env ``i``
        explores when ``u[i, 0] < epsilon`` and then takes action ``floor(u[i, 1] * A)`` (with an ``action_mask``
        ``[N, A]``, the ``floor(u[i, 1] * L)``-th of its ``L`` legal actions). When every env explores,
        ``greedy`` is not called (no network runs during ``learning_starts`` and most of the early decay).
        """
        if epsilon <= 0.0:
            actions = greedy()
        else:
            draws = torch.rand(count, 2, generator=self.generator, dtype=torch.float64).numpy()
            explore = draws[:, 0] < epsilon
            if not explore.any():
                actions = greedy()
            else:
                if action_mask is None:
                    random_actions = (draws[:, 1] * self.num_actions).astype(np.int64)  # u < 1 - 2**-53: u * A < A
                else:
                    random_actions = kth_legal(action_mask.numpy(), draws[:, 1])
                actions = random_actions if explore.all() else np.where(explore, random_actions, greedy())
        if self.action_start:
            actions = actions + self.action_start
        return torch.from_numpy(actions)

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Updates epsilon (1 before ``learning_starts`` env steps, as SB3's uniform warm-up actions; then the
        linear schedule over the run) and PER's beta, and syncs the target network when it is due."""
        super().set_progress(env_steps, total_env_steps)
        config = self.config
        progress = env_steps / self.total_env_steps
        # SB3's warm-up: uniform actions until learning starts, whatever the schedule says by then
        self.exploration_rate = 1.0 if env_steps < config.learning_starts else linear_schedule(
            config.exploration_initial_eps, config.exploration_final_eps, config.exploration_fraction, progress
        )
        if config.prioritized:
            self.replay.sampler.beta = linear_schedule(config.per_beta_start, 1.0, 1.0, progress)  # type: ignore
        while env_steps >= self._next_target_sync:
            self._sync_target()
            self._next_target_sync += config.target_update_interval

    def _sync_target(self) -> None:
        polyak_update(self.target_net, self._target_flat, self.q_net, self.optimizer.flat_params, self.config.tau)

    # --- learning -------------------------------------------------------------------------
    def _sample(self, batch_size: int) -> dict[str, Tensor]:
        """``replay.sample`` on the training device (through :attr:`_transfer` when the storage is on the host)."""
        batch = self.replay.sample(batch_size, self.generator)
        return batch if self._transfer is None else self._transfer(batch)

    def _metrics(self, mean_loss: float | None) -> dict[str, float]:
        """What :meth:`train` returns: ``train/loss`` (unless no step ran), ``train/n_updates``,
        ``train/learning_rate``, ``rollout/exploration_rate``."""
        metrics = {"train/n_updates": float(self.updates), "train/learning_rate": self.config.learning_rate,
                   "rollout/exploration_rate": self.exploration_rate}
        return metrics if mean_loss is None else {"train/loss": mean_loss, **metrics}

    # --- persistence ------------------------------------------------------------------------
    def replay_settings(self) -> ReplaySettings:
        """What the algorithm asks of its replay (the transitions' fields, capacity, n-step, prioritized sampling);
        :meth:`build_replay` or the loop (a shard per worker) places it."""
        config = self.config
        fields = transition_fields(self.observation_space, self.action_space, action_masks=self.action_masks)
        return ReplaySettings(config.buffer_size, tuple(fields.items()), config.n_step, config.gamma,
                              config.prioritized, config.per_alpha, config.per_beta_start, config.per_eps)

    # --- workers ------------------------------------------------------------------------------
    def acting_state(self) -> dict[str, Tensor]:
        """``params``: the flat parameter buffer ``[P]`` (every Q-network parameter is a view of it)."""
        return flat_acting_state(self.optimizer, {})

    def load_acting_state(self, tensors: dict[str, Tensor]) -> None:
        load_flat_acting_state(self.optimizer, {}, tensors)

    def set_worker_exploration(self, rate: float) -> None:
        self.exploration_rate = rate

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
        if (state.get("memory_state") is not None) != self.keeps_memory:
            raise ValueError(f"the checkpoint's memory does not match this config's memory={self.config.memory!r} "
                             "(a recurrent Q-network's state is saved with it)")
        self._load_base_state(state)
        self.q_net.load_state_dict(state["q_net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self._next_target_sync = int(state["next_target_sync"])
        self.exploration_rate = float(state["exploration_rate"])


def kth_legal(action_mask: np.ndarray, uniform: np.ndarray) -> np.ndarray:
    """A uniform choice among each row's legal actions: the ``floor(u * L)``-th of the ``L`` legal actions of
    ``action_mask [N, A]`` (bool), for ``uniform [N]`` in ``[0, 1)``; ``[N]`` int64."""
    counts = action_mask.sum(axis=1)
    k = np.minimum((uniform * counts).astype(np.int64), counts - 1)
    return (np.cumsum(action_mask, axis=1) > k[:, None]).argmax(axis=1).astype(np.int64)


def masked_q_values(q_values: Tensor, action_mask: Tensor | None) -> Tensor:
    """``q_values [B, A]`` with illegal actions at ``-inf`` (rows with no legal action keep all), so a max or argmax
    only sees legal actions."""
    if action_mask is None:
        return q_values
    legal = action_mask.to(q_values.device, torch.bool)
    legal = legal | ~legal.any(dim=1, keepdim=True)
    return q_values.masked_fill(~legal, -torch.inf)
