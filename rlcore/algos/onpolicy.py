"""What REINFORCE, A2C and PPO share: an actor-critic, rollouts, normalization, and the gradient step.

The Trainer's ``"rollout"`` loop calls, per iteration::

    for _ in range(n_steps):
        algo.store(collector.step(algo.explore))   # act with log-probs and values, then record
    metrics = algo.update(last_obs)                # targets over the rollout, then the algorithm's epochs

Each algorithm only says how it turns the rollout into targets (:meth:`compute_targets`) and
how it optimises (:meth:`optimize`), with a loss of its :attr:`~OnPolicyAlgorithm.loss_class` (a
:class:`HeadLoss`: the loss as a function of the log-probabilities, entropies and values of a
minibatch). :meth:`OnPolicyAlgorithm.gradient_step` back-propagates it through autograd: that is the
reference. On the CPU, for the stock actor-critic and loss, a kernel computes the same gradients
without autograd (:class:`rlcore.kernels.actor_critic.ActorCriticKernel`); :meth:`_select_kernel`,
run once, decides which path runs and logs why. A subclass of the loss (``loss_class = MyLoss``)
always trains through autograd, so what it computes is what trains.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple, Protocol, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import VectorEnv
from torch import Tensor

from rlcore.algos.base import RolloutAlgorithm, UnsupportedSpaceError, flat_acting_state, load_flat_acting_state
from rlcore.algos.onpolicy_config import SCHEDULES, OnPolicyConfig, check_choice, scheduled
from rlcore.algos.policy_memory import PolicyMemory, shuffled_parts
from rlcore.algos.statistics import explained_variance, mean_stats, standardize
from rlcore.buffers.rollout import RolloutBuffer
from rlcore.distributions import ACTION_SPACES, Distribution, StateDependentGaussian, make_distribution
from rlcore.kernels.actor_critic import ActorCriticKernel
from rlcore.kernels.selection import choose_kernel, override_gates, reproduced
from rlcore.nets.cnn import image_layout
from rlcore.nets.extractors import make_extractor
from rlcore.normalize import KeyedObservationNormalizer, ObservationNormalizer, RewardNormalizer, RunningMeanStd
from rlcore.observations import Observation, flatten_fields, nest_fields, take_rows, to_tensor
from rlcore.optim import FlatAdam, FlatRMSprop
from rlcore.policy import ActorCritic, MemoryActorCritic
from rlcore.returns import gae, next_state_values
from rlcore.spaces import describe_space, is_composite, leaf_spaces, observation_dtypes

logger = logging.getLogger("rlcore.kernels")


class HeadLoss(Protocol):
    """A loss on a minibatch as a function of ``log_prob``, ``entropy`` and ``value`` (each ``[B]``)."""

    def loss(self, log_prob: Tensor, entropy: Tensor, value: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The scalar loss (differentiable by autograd) and detached statistics (``loss`` not included)."""


ConfigT = TypeVar("ConfigT", bound=OnPolicyConfig)

OBSERVATION_FIELDS = ("obs", "memory/obs", "memory/window")
"""Rollout fields that hold observations: stored one column per leaf for Dict and Tuple observations."""


def fused_input(obs: Any) -> np.ndarray | None:
    """``obs`` as the float32/float64 ``[N, D]`` array the compiled collecting step takes (a CPU tensor's memory),
    or None when it is something else (a dict, another dtype or device)."""
    if isinstance(obs, Tensor):
        if obs.device.type != "cpu" or obs.dtype not in (torch.float32, torch.float64):
            return None
        obs = obs.numpy()
    elif not isinstance(obs, np.ndarray):
        return None
    return obs if obs.ndim == 2 and obs.dtype in (np.float32, np.float64) else None


class Truncations(NamedTuple):
    """Episodes truncated at one stored step, to be valued for the bootstrap: the step (rollout row), the envs
    ``rows`` ``[R]``, their raw final observations ``[R, ...]`` and ``values`` (prepared observations -> ``[R]``)."""

    step: int
    rows: Tensor
    final_obs: Observation
    values: Callable[[Observation], Tensor]


def _action_problem(space: gym.Space) -> str | None:
    """Why a policy-gradient distribution cannot act in ``space`` (whose type it accepts), with the fix; or None."""
    if isinstance(space, spaces.Box) and not np.issubdtype(space.dtype, np.floating):
        return ("its Gaussian acts with real numbers, which an integer Box does not hold; use a MultiDiscrete space "
                "for integer actions, or a float Box (and round in the env)")
    if isinstance(space, spaces.MultiDiscrete) and space.nvec.ndim != 1:
        return (f"a MultiDiscrete of shape {space.nvec.shape} needs flattening: use MultiDiscrete(nvec.ravel()) "
                "and reshape the action in the env")
    return None


class OnPolicyAlgorithm(RolloutAlgorithm[ConfigT]):
    """An actor-critic trained from rollouts; subclasses implement :meth:`optimize` (and maybe targets)."""

    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete, spaces.Dict, spaces.Tuple)
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = ACTION_SPACES
    flat_box_only: ClassVar[bool] = False
    loss_class: ClassVar[type]
    """The loss :meth:`optimize` builds per minibatch (a :class:`HeadLoss`); a subclass of the algorithm may set
    its own (e.g. a subclass of the stock loss with an extra term), which then trains through autograd."""

    @classmethod
    def fits(cls, observation_space: gym.Space, action_space: gym.Space) -> bool:
        """Box actions need a floating-point dtype (a Gaussian's samples), MultiDiscrete ones one dimension."""
        return super().fits(observation_space, action_space) and _action_problem(action_space) is None

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        problem = _action_problem(action_space)
        if problem is not None and super().fits(observation_space, action_space):
            raise UnsupportedSpaceError(f"{cls.name} cannot handle the action space {describe_space(action_space)}: "
                                        f"{problem}")
        super().check_spaces(observation_space, action_space)

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
        self._composite = is_composite(observation_space)
        """Dict or Tuple observations: flat dicts ``{path: [N, ...]}`` (:mod:`rlcore.observations`)."""
        self.obs_normalizer = self._make_obs_normalizer()
        torch.manual_seed(seed)  # network initialisation
        self.distribution = self._make_distribution(action_space)
        features = make_extractor(observation_space, config.features_extractor, **(config.features_kwargs or {}))
        self.policy: ActorCritic | MemoryActorCritic
        if config.memory is None:
            self.policy = ActorCritic(
                observation_space, self.distribution, config.net_arch, config.critic_arch,
                activation=config.activation, ortho_init=config.ortho_init, log_std_init=config.log_std_init,
                features=features,
            ).to(self.device)
        else:
            self.policy = MemoryActorCritic(
                observation_space, self.distribution, features, config.memory, config.memory_size,
                config.context_length, config.net_arch, config.critic_arch, activation=config.activation,
                ortho_init=config.ortho_init, log_std_init=config.log_std_init, critic_memory=config.critic_memory,
            ).to(self.device)
        self._train_policy = (torch.compile(self.policy, backend=config.compile_backend) if config.compile
                              else self.policy)
        self.optimizer = self._make_optimizer()
        self.rollout = RolloutBuffer(config.n_steps, num_envs, self.device)
        self.reward_normalizer = (
            RewardNormalizer(num_envs, config.gamma, config.clip_reward) if config.normalize_reward else None
        )
        self._kernel = self._select_kernel()
        """The CPU kernel of acting and the gradient step, or None (autograd)."""
        self._loss_warned = False
        self._action_offset, self._action_low, self._action_high = self._action_conversion(action_space)
        self.learning_rate = config.learning_rate
        self.updates = 0
        self._no_truncation = torch.zeros(num_envs, device=self.device)
        self._truncations: Truncations | None = None
        """Episodes truncated at the last stored step whose ``V(final_obs)`` waits for the statistics to fold in
        that step's returned observations (SB3's ``VecNormalize`` normalizes a final observation after that)."""
        self.memory = self._make_memory()
        """The training envs' memory and its stored inputs (:mod:`rlcore.algos.policy_memory`); None without."""
        self._fused_explore = self._select_fused_explore()
        """Whether :meth:`explore` runs the kernel's compiled collecting step for float vector observations."""
        self._sde_steps = 0
        """gSDE: vector steps of the current rollout (the noise is drawn anew at 0)."""

    # --- set-up ----------------------------------------------------------------------------
    def check_envs(self, envs: VectorEnv) -> None:
        """Warns when a Box action's range is far from the Gaussian policy's first standard deviation (1, where
        ``log_std_init`` is left at 0 and gSDE is off: a chosen ``log_std_init``, a preset's too, is taken as meant):
        actions clipped to a narrow range land on its bounds, in a wide one exploration covers a sliver of it (SB3's
        check_env recommends a [-1, 1] range for the same reason)."""
        super().check_envs(envs)
        space = envs.single_action_space
        if not isinstance(space, spaces.Box) or self.config.log_std_init != 0.0 or self.config.use_sde:
            return
        half_width = (space.high.astype(np.float64) - space.low.astype(np.float64)) / 2
        ranged = np.isfinite(half_width) & (half_width > 0)  # a fixed dimension (low == high) is always its bound
        if not ranged.any():
            return
        ratio = half_width[ranged]  # over the first standard deviation, exp(0) = 1
        wide = ratio.max() > 10
        if wide or ratio.min() < 0.1:
            logging.getLogger(__name__).warning(
                "%s: the action space %s has a half-range %.3g times the policy's first standard deviation "
                "exp(log_std_init) = 1, so exploration %s; rescale the actions to [-1, 1] (wrappers=[lambda env: "
                "gymnasium.wrappers.RescaleAction(env, -1.0, 1.0)]) or set log_std_init",
                self.name, space, ratio.max() if wide else ratio.min(),
                "covers a sliver of the range" if wide else "sends most actions to the bounds")

    def _make_distribution(self, action_space: gym.Space) -> Distribution:
        """The action space's distribution, or gSDE's (``use_sde``, Box actions only)."""
        if not self.config.use_sde:
            return make_distribution(action_space)
        if not isinstance(action_space, spaces.Box):
            raise ValueError(f"use_sde=True (gSDE) needs a Box action space, got {action_space!r}; set use_sde=False")
        gaussian = make_distribution(action_space)  # the same checks of the Box
        return StateDependentGaussian(gaussian.param_dim, gaussian.action_shape)

    def _make_optimizer(self) -> FlatAdam | FlatRMSprop:
        config = self.config
        if config.optimizer == "rmsprop":
            return FlatRMSprop(self.policy.parameters(), lr=config.learning_rate, alpha=0.99, eps=1e-5,
                               max_grad_norm=config.max_grad_norm)
        return FlatAdam(self.policy.parameters(), lr=config.learning_rate, eps=config.adam_eps,
                        max_grad_norm=config.max_grad_norm)

    def _make_obs_normalizer(self) -> ObservationNormalizer | KeyedObservationNormalizer | None:
        """SB3's VecNormalize of observations when ``normalize_obs``: a vector Box, or each vector Box leaf of a Dict
        or Tuple (images and Discrete leaves are left alone)."""
        config, space = self.config, self.observation_space
        if not config.normalize_obs:
            return None
        if self._composite:
            shapes = {path: tuple(leaf.shape) for path, leaf in leaf_spaces(space).items()
                      if isinstance(leaf, spaces.Box) and image_layout(leaf) is None}
            if shapes:
                return KeyedObservationNormalizer(shapes, config.clip_obs, device=self.device)
        elif isinstance(space, spaces.Box) and not image_layout(space):
            return ObservationNormalizer(space.shape, config.clip_obs, device=self.device)
        raise ValueError(
            f"normalize_obs=True needs vector Box observations (or a Dict/Tuple with a vector Box), got {space!r}; set "
            "normalize_obs=False (image encoders scale pixels themselves)"
        )

    def _select_kernel(self) -> ActorCriticKernel | None:
        """The one place that decides whether the CPU kernel runs instead of autograd; logs the choice (INFO)."""
        config = self.config
        gates = [(not config.fast_path, "fast_path=False"), (config.amp is not None, f"amp={config.amp!r}"),
                 (config.compile, "compile=True"), (config.memory is not None, f"memory={config.memory!r}"),
                 *override_gates(self, OnPolicyAlgorithm, ActorCriticKernel.REPRODUCES)]
        return choose_kernel(
            self.name, gates, lambda: ActorCriticKernel.refusal(
                self.policy, self.distribution, self.loss_class,
                reproduced(OnPolicyAlgorithm, ActorCriticKernel.REPRODUCES)),
            lambda: ActorCriticKernel(self.policy, self.distribution, self.loss_class))  # type: ignore[arg-type]

    def _select_fused_explore(self) -> bool:
        """Whether :meth:`explore` may take the kernel's compiled step (:mod:`rlcore.kernels.acting`): the kernel
        runs, and the observation normalizer (if any) and the encoder are the ones the step reproduces."""
        kernel, space = self._kernel, self.observation_space
        if kernel is None or self.memory is not None:
            return False
        flat_box = isinstance(space, spaces.Box) and len(space.shape) == 1
        reason = (("the observations are not a flat Box" if not flat_box else None)
                  or kernel.fused_refusal(self.obs_normalizer) or kernel.prepare_fused(self.optimizer.flat_params))
        if reason is not None:
            logger.info("%s: collecting step through numpy and torch, because %s", self.name, reason)
            return False
        return True

    @staticmethod
    def _action_conversion(space: gym.Space) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """``(offset, low, high)``: Discrete starts to add, and Box bounds to clip actions to."""
        if isinstance(space, spaces.Discrete) and space.start != 0:
            return torch.tensor(int(space.start)), None, None
        if isinstance(space, spaces.MultiDiscrete) and np.any(space.start != 0):
            return torch.as_tensor(space.start), None, None
        if isinstance(space, spaces.Box):  # in the space's own precision: float32 bounds of a float64 box lie outside
            dtype = torch.float64 if space.dtype == np.float64 else torch.float32
            return None, torch.as_tensor(space.low, dtype=dtype), torch.as_tensor(space.high, dtype=dtype)
        return None, None, None

    # --- acting ------------------------------------------------------------------------------
    def prepare_obs(self, obs: Observation) -> Observation:
        """Raw observations -> what the network sees (normalized with frozen statistics), on the device."""
        obs = to_tensor(obs, self.device)
        return self.obs_normalizer.normalize(obs) if self.obs_normalizer is not None else obs

    def prepare_bootstrap_obs(self, obs: Observation) -> Observation:
        """:meth:`prepare_obs` for a rollout's last observations ``[N, *obs_shape]``, which the next collecting step
        will fold into the statistics before acting on them: normalized with those statistics already
        (:meth:`~rlcore.normalize.ObservationNormalizer.normalize_as_next`), as SB3's bootstrap value sees them."""
        obs = to_tensor(obs, self.device)
        return self.obs_normalizer.normalize_as_next(obs) if self.obs_normalizer is not None else obs

    @property
    def accepts_action_masks(self) -> bool:
        """With ``use_action_masks`` (the default) and a Discrete or MultiDiscrete action space."""
        return self.config.use_action_masks and isinstance(self.action_space, spaces.Discrete | spaces.MultiDiscrete)

    def _masked(self, params: Tensor, action_mask: Tensor | None) -> Tensor:
        """``params`` with the illegal actions ruled out (:meth:`~rlcore.distributions.Distribution.mask`)."""
        return params if action_mask is None else self.distribution.mask(params, action_mask)

    def _sample(self, params: Tensor, action_mask: Tensor | None) -> tuple[Tensor, Tensor]:
        """A sample per row and its log-probability, among the legal actions when ``action_mask`` is given."""
        if action_mask is None:
            return self.distribution.sample_with_log_prob(params, self.generator)
        params = self.distribution.mask(params, action_mask)
        sample, log_prob = self.distribution.sample_with_log_prob(params, self.generator)
        legal = self.distribution.first_legal(sample, action_mask)
        return (sample, log_prob) if legal is sample else (legal, self.distribution.log_prob(params, legal))

    def autocast(self) -> torch.autocast:
        """bf16 autocast on the training device when ``amp="bf16"``, else a disabled context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp == "bf16")

    def _make_memory(self) -> PolicyMemory | None:
        if self.config.memory is None:
            return None
        dtype = self._prepared_obs_dtype()
        return PolicyMemory(self.policy, self.num_envs, self.config.lstm_sequence_length, dtype,  # type: ignore[arg-type]
                            self.autocast)

    def _prepared_obs_dtype(self) -> torch.dtype | dict[str, torch.dtype]:
        """The dtype of prepared observations (per leaf of a Dict or Tuple): float32 where normalized."""
        raw = observation_dtypes(self.observation_space)
        if not isinstance(raw, dict):
            return torch.float32 if self.obs_normalizer is not None else raw
        normalized = set(getattr(self.obs_normalizer, "parts", ()))
        return {path: torch.float32 if path in normalized else dtype for path, dtype in raw.items()}

    @torch.no_grad()
    def _actor_params(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        if isinstance(obs, dict) and self.memory is not None:  # stored memory inputs
            with self.autocast():
                return self.policy(obs)[0].float()
        if self._kernel is not None:
            return self._kernel.actor_params(obs)
        with self.autocast():
            return self.policy.actor(self.policy.features(obs)).float()

    @torch.no_grad()
    def _values(self, obs: Tensor) -> Tensor:
        """``V(obs)`` of prepared observations: ``[B, *obs_shape] -> [B]``."""
        if self._kernel is not None:
            return self._kernel.values(obs)
        with self.autocast():
            return self.policy.value(obs).float()

    def to_env_action(self, action: Tensor) -> Tensor:
        """Distribution samples -> actions for the env: Box actions clipped to the space (in its dtype), starts added
        (CPU)."""
        action = action.cpu()
        if self._action_low is not None:
            action = action.to(self._action_low.dtype)
            return torch.maximum(torch.minimum(action, self._action_high), self._action_low)
        if self._action_offset is not None:
            return action + self._action_offset
        return action

    @torch.no_grad()
    def act(self, obs: Observation, *, deterministic: bool = False, action_mask: Tensor | None = None) -> Tensor:
        """The policy's actions ``[N, *obs_shape] -> [N, *action_shape]``: its mode, or samples (among the legal
        actions of ``action_mask`` ``[N, n]`` when given).

        Memory policies need the envs' state: use :meth:`act_with_state` or :meth:`actor`, which keeps it.
        """
        if self.config.memory is not None:
            raise TypeError(f"{self.name} with memory={self.config.memory!r} acts with a per-env state: use "
                            "agent.predict(obs, state=..., episode_start=...), algo.actor() (a callable that keeps "
                            "it), or Agent.evaluate")
        return self._action(self._actor_params(self.prepare_obs(obs)), deterministic, action_mask)

    def _action(self, params: Tensor, deterministic: bool, action_mask: Tensor | None) -> Tensor:
        """The env's action from the distribution's parameters: the mode or a sample, among the legal actions."""
        if action_mask is not None:
            action_mask = action_mask.to(params.device)
            if not deterministic:
                return self.to_env_action(self._sample(params, action_mask)[0])
            params = self.distribution.mask(params, action_mask)
        action = self.distribution.mode(params) if deterministic else self.distribution.sample(params,
                                                                                               self.generator)
        return self.to_env_action(action)

    @property
    def acts_with_state(self) -> bool:
        return self.memory is not None

    def initial_acting_state(self, num_envs: int) -> dict[str, Tensor]:
        if self.memory is None:
            return super().initial_acting_state(num_envs)
        return self.memory.initial_state(num_envs)

    @torch.no_grad()
    def act_with_state(self, obs: Observation, state: dict[str, Tensor], episode_start: Tensor, *,
                       deterministic: bool = True, action_mask: Tensor | None = None
                       ) -> tuple[Tensor, dict[str, Tensor]]:
        if self.memory is None:
            return super().act_with_state(obs, state, episode_start, deterministic=deterministic,
                                          action_mask=action_mask)
        params, state = self.memory.acting_step(self.prepare_obs(obs), state, episode_start.to(self.device))
        return self._action(params, deterministic, action_mask), state

    @torch.no_grad()
    def explore(self, obs: Observation, action_mask: Tensor | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """The behaviour policy while collecting: updates the observation statistics, samples (among the legal
        actions of ``action_mask`` ``[N, n]`` when given), keeps extras.

        Returns:
            The env's actions ``[N, ...]``, and ``{"obs", "action", "log_prob", "value"}`` to store: the
            prepared observation, the unclipped sample, its log-probability and ``V(s)``.
        """
        self._draw_sde_noise()
        vectors = fused_input(obs) if self._fused_explore and action_mask is None else None
        if vectors is not None:
            prepared, sample, log_prob, value = self._kernel.explore_fused(  # type: ignore[union-attr]
                vectors, self.obs_normalizer, self.generator)  # type: ignore[arg-type]
            self._value_truncations(self.prepare_obs)  # the previous step's, with its returned obs folded in
            return self.to_env_action(sample), {"obs": prepared, "action": sample, "log_prob": log_prob,
                                                "value": value}
        obs = to_tensor(obs, self.device)
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(obs)
            obs = self.obs_normalizer.normalize(obs)
            self._value_truncations(self.prepare_obs)
        if self.memory is not None:
            sample, extras = self.memory.explore(obs, self.distribution, self.generator, action_mask)
            return self.to_env_action(sample), extras
        if self._kernel is not None:
            sample, log_prob, value = self._kernel.explore(obs, self.generator, action_mask)
        else:
            with self.autocast():
                params, value = self.policy(obs)
            params, value = params.float(), value.float()
            sample, log_prob = self._sample(params, action_mask)
        return self.to_env_action(sample), {"obs": obs, "action": sample, "log_prob": log_prob, "value": value}

    def _draw_sde_noise(self) -> None:
        """gSDE: new noise weights for the envs at a rollout's first step and every ``sde_sample_freq`` steps
        (SB3's schedule); nothing otherwise."""
        if not isinstance(self.distribution, StateDependentGaussian):
            return
        every = self.config.sde_sample_freq
        if self._sde_steps == 0 or (every > 0 and self._sde_steps % every == 0):
            self.distribution.reset_noise(self.num_envs, self.generator)
        self._sde_steps += 1

    # --- collecting --------------------------------------------------------------------------
    @torch.no_grad()
    def store(self, transition: dict[str, Any]) -> None:
        """Records one vector step (the collector's transition merged with :meth:`explore`'s extras).

        Rewards are normalized here when asked; where an episode was truncated, ``V(final_obs)``
        is computed now, for the bootstrap.
        """
        reward, terminated, truncated = transition["reward"], transition["terminated"], transition["truncated"]
        if self.reward_normalizer is not None and self._fused_explore and isinstance(reward, np.ndarray) \
                and reward.dtype == np.float32:
            reward = self.reward_normalizer.update_and_normalize_compiled(reward, terminated | truncated)
        elif self.reward_normalizer is not None:
            reward = self.reward_normalizer.update_and_normalize(torch.from_numpy(reward),
                                                                 torch.from_numpy(terminated | truncated))
        truncated_value = self._no_truncation
        if truncated.any():
            truncated_value = torch.zeros(self.num_envs, device=self.device)
            self._truncations = self._truncated_episodes(transition["next_obs"], np.flatnonzero(truncated))
            if self.obs_normalizer is None:  # nothing to wait for
                self._value_truncations(lambda final_obs: to_tensor(final_obs, self.device), into=truncated_value)
        row = {
            "obs": transition["obs"], "action": transition["action"], "log_prob": transition["log_prob"],
            "value": transition["value"], "reward": reward, "terminated": terminated, "truncated": truncated,
            "truncated_value": truncated_value,
        }
        if "action_mask" in transition:
            row["action_mask"] = transition["action_mask"]
        if self.memory is not None:
            row.update(self.memory.record(transition, terminated | truncated))
        self.rollout.add(flatten_fields(row) if self._composite else row)

    def _truncated_episodes(self, next_obs: Observation, rows: np.ndarray) -> Truncations:
        """What valuing the final observations of the envs ``rows`` (truncated at the step being stored) needs."""
        device_rows = torch.from_numpy(rows).to(self.device)
        return Truncations(self.rollout.pos, device_rows, take_rows(next_obs, rows),
                           self._values if self.memory is None else self.memory.values_after(device_rows))

    def _value_truncations(self, prepare: Callable[[Observation], Observation], into: Tensor | None = None) -> None:
        """Writes ``V(final_obs)`` of the pending truncated episodes, their raw final observations made ready by
        ``prepare``, into ``into`` (``[N]``; default: their step's row of the rollout's ``truncated_value``)."""
        pending, self._truncations = self._truncations, None
        if pending is not None:
            column = self.rollout["truncated_value"][pending.step] if into is None else into
            column[pending.rows] = pending.values(prepare(pending.final_obs))

    def value_pending_truncations(self, following_obs: Observation) -> None:
        """Values the final observations of episodes truncated at the rollout's last stored step, normalized with
        statistics that have ``following_obs`` ``[N, ...]`` (the observations the envs returned at that step, reset
        ones where episodes ended) folded in; :meth:`explore` does it for the earlier steps once it has folded
        them in. Called by :meth:`update`, and by a worker before it sends its rollout."""
        normalizer = self.obs_normalizer
        if normalizer is not None:
            following = to_tensor(following_obs, self.device)
            self._value_truncations(lambda final_obs: normalizer.normalize_as_next(to_tensor(final_obs, self.device),
                                                                                   following))

    # --- learning ----------------------------------------------------------------------------
    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Updates the learning-rate schedule."""
        super().set_progress(env_steps, total_env_steps)
        horizon = self.config.lr_schedule_steps or self.total_env_steps
        self.learning_rate = scheduled(self.config.learning_rate, self.config.lr_schedule, env_steps / horizon)

    def compute_targets(self, last_value: Tensor) -> tuple[Tensor, Tensor]:
        """``(advantages, returns)`` ``[T, N]`` of the stored rollout: GAE by default."""
        rollout = self.rollout
        terminated, truncated = rollout["terminated"], rollout["truncated"]
        next_values = next_state_values(rollout["value"], last_value, truncated, rollout["truncated_value"])
        return gae(rollout["reward"], rollout["value"], next_values, terminated, terminated | truncated,
                   self.config.gamma, self.config.gae_lambda)

    def update(self, last_obs: Tensor) -> dict[str, float]:
        """Learns from the full rollout, then clears it.

        Args:
            last_obs: The raw observation after the rollout's last step, ``[N, *obs_shape]``.

        Returns:
            ``train/...`` metrics.
        """
        if not self.rollout.full:
            raise RuntimeError(f"update() needs a full rollout of n_steps={self.config.n_steps}, "
                               f"got {self.rollout.pos} steps")
        self.value_pending_truncations(last_obs)
        prepared = self.prepare_bootstrap_obs(last_obs)
        last_value = self._values(prepared) if self.memory is None else self.memory.values(prepared)
        advantages, returns = self.compute_targets(last_value)
        batch = {key: column.reshape(-1, *column.shape[2:]) for key, column in self.rollout.columns.items()}
        if self._composite:
            batch = nest_fields(batch, OBSERVATION_FIELDS)
        batch["advantage"] = advantages.reshape(-1)
        batch["return"] = returns.reshape(-1)
        self.optimizer.lr = self.learning_rate
        metrics = self.optimize(batch)
        self.rollout.clear()
        self._sde_steps = 0
        metrics.update({
            "train/learning_rate": self.learning_rate,
            "train/explained_variance": explained_variance(batch["value"], batch["return"]),
            "train/n_updates": float(self.updates),
        })
        if self.policy.log_std is not None:
            metrics["train/std"] = float(self.policy.log_std.detach().exp().mean())
        return metrics

    def optimize(self, batch: dict[str, Tensor]) -> dict[str, float]:
        """Gradient steps on a flattened rollout (keys as stored, plus ``advantage`` and ``return``, ``[T*N]``)."""
        raise NotImplementedError

    def minibatches(self, batch: dict[str, Tensor], batch_size: int, shuffle: bool) -> list[dict[str, Any]]:
        """Splits a flattened rollout ``[T*N]`` into minibatches of about ``batch_size`` rows.

        Each minibatch holds the row fields (``action``, ``advantage``, ...) and ``inputs``, what the policy
        evaluates: the observations, or a memory policy's stored inputs (see
        :meth:`~rlcore.algos.policy_memory.PolicyMemory.minibatches`).
        """
        if self.memory is not None:
            return self.memory.minibatches(batch, batch_size, shuffle, self.generator, self.num_envs)
        parts = shuffled_parts(batch, batch_size, shuffle, self.generator)
        for part in parts:
            part["inputs"] = part["obs"]
        return parts

    def gradient_step(
        self, obs: Tensor, action: Tensor, head_loss: HeadLoss, with_stats: bool = True,
        action_mask: Tensor | None = None,
    ) -> dict[str, Tensor | float]:
        """One optimizer step on ``head_loss`` for a minibatch; returns its statistics (``loss`` included).

        ``with_stats=False`` skips the statistics on the kernel path (they cost a dozen tensor ops).

        Shapes: ``obs [B, *obs_shape]`` (prepared), ``action [B, *action_shape]`` (as sampled), ``action_mask
        [B, n]`` (the legal actions when they were sampled: log-probs and entropies over those only).
        """
        kernel = self._kernel
        if kernel is not None and type(head_loss) is kernel.loss_class:
            stats = kernel.backward(obs, action, head_loss, with_stats, action_mask)  # type: ignore[arg-type]
        else:
            if kernel is not None:
                self._note_uncovered_loss(head_loss)
            self.optimizer.zero_grad()
            with self.autocast():
                params, value = self._train_policy(obs)
            params, value = self._masked(params.float(), action_mask), value.float()
            log_prob = self.distribution.log_prob(params, action)
            entropy = self.distribution.entropy(params)
            loss, stats = head_loss.loss(log_prob, entropy, value)
            loss.backward()
            stats = {**stats, "loss": loss.detach()} if with_stats else {}
        self.optimizer.step()
        self.updates += 1
        return stats

    def _note_uncovered_loss(self, head_loss: HeadLoss) -> None:
        """Says once, at INFO, that a loss of another class than the kernel's (an ``optimize`` that builds its own)
        trains through autograd."""
        if not self._loss_warned:
            self._loss_warned = True
            logger.info("%s: autograd reference path for %s losses (the kernel reproduces %s)", self.name,
                        type(head_loss).__qualname__, self._kernel.loss_class.__qualname__)  # type: ignore[union-attr]

    # --- workers ----------------------------------------------------------------------------
    def check_workers(self) -> None:
        if self.config.memory is not None:  # the learner's bootstrap values need each env's memory
            raise ValueError(f"num_workers > 0 does not support memory={self.config.memory!r} policies yet; train "
                             "them with num_workers=0 (num_envs sub-envs in one process)")

    def running_stats(self) -> dict[str, RunningMeanStd]:
        stats = self.obs_normalizer.named_stats("obs") if self.obs_normalizer is not None else {}
        if self.reward_normalizer is not None:
            stats["reward"] = self.reward_normalizer.stats
        return stats

    def running_stats_changed(self) -> None:
        if self.obs_normalizer is not None:
            self.obs_normalizer.refresh()

    def acting_state(self) -> dict[str, Tensor]:
        """The flat parameter buffer and the statistics workers act and scale rewards with."""
        return flat_acting_state(self.optimizer, self.running_stats())

    def load_acting_state(self, tensors: dict[str, Tensor]) -> None:
        load_flat_acting_state(self.optimizer, self.running_stats(), tensors)
        self.running_stats_changed()
        self._sde_steps = 0  # a worker's copy collects a rollout per update: gSDE's noise is drawn anew at its start

    # --- persistence -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            "policy": self.policy.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "updates": self.updates,
            "learning_rate": self.learning_rate,
            "obs_normalizer": self.obs_normalizer.state_dict() if self.obs_normalizer is not None else None,
            "reward_normalizer": self.reward_normalizer.state_dict() if self.reward_normalizer is not None else None,
            **(self.memory.state_dict() if self.memory is not None else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_base_state(state)
        self._sde_steps = 0  # checkpoints fall between rollouts: the next one draws its gSDE noise from the generator
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.updates = int(state["updates"])
        self.learning_rate = float(state["learning_rate"])
        for name in ("obs_normalizer", "reward_normalizer"):
            normalizer = getattr(self, name)
            if (normalizer is None) != (state.get(name) is None):
                raise ValueError(f"the checkpoint's {name} does not match this config's normalize_* settings")
            if normalizer is not None:
                normalizer.load_state_dict(state[name])
        if self.memory is not None:
            self.memory.load_state_dict(state)


__all__ = ["SCHEDULES", "HeadLoss", "OnPolicyAlgorithm", "OnPolicyConfig", "check_choice", "explained_variance",
           "mean_stats", "scheduled", "standardize"]
