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
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlcore.algos.base import Algorithm, DataKind
from rlcore.buffers.rollout import RolloutBuffer
from rlcore.distributions import ACTION_SPACES, make_distribution
from rlcore.kernels.actor_critic import ActorCriticKernel
from rlcore.kernels.selection import choose_kernel
from rlcore.nets.cnn import image_layout
from rlcore.nets.extractors import make_extractor
from rlcore.normalize import ObservationNormalizer, RewardNormalizer
from rlcore.optim import FlatAdam, FlatRMSprop
from rlcore.policy import ActorCritic, MemoryActorCritic
from rlcore.returns import gae, next_state_values
from rlcore.settings import check_range

SCHEDULES = ("constant", "linear")

logger = logging.getLogger("rlcore.kernels")


@dataclass(frozen=True)
class OnPolicyConfig:
    """Settings shared by the policy-gradient methods; each algorithm's config adds its own."""

    learning_rate: float = 3e-4
    """Optimizer step size (at the start, with ``lr_schedule="linear"``)."""
    lr_schedule: str = "constant"
    """``constant``, or ``linear``: decays to 0 at the end of training (rl-zoo's ``lin_``)."""
    lr_schedule_steps: int | None = None
    """Env steps over which ``linear`` decays the learning rate to 0; None: the run's ``total_env_steps``. A longer
    horizon than the run keeps a floor: with 3M for a 1M run the rate ends at 2/3 of its start."""
    n_steps: int = 2048
    """Vector-env steps per rollout; a rollout holds ``n_steps * num_envs`` transitions."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE's lambda: 1 is Monte-Carlo advantages, 0 one-step TD errors."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus."""
    vf_coef: float = 0.5
    """Weight of the value loss (mean squared error, as SB3)."""
    max_grad_norm: float | None = 0.5
    """Global gradient-norm clip; ``None`` disables it."""
    normalize_advantage: bool = True
    """Standardise advantages per minibatch."""
    net_arch: tuple[int, ...] = (64, 64)
    """Hidden widths of the actor."""
    vf_arch: tuple[int, ...] | None = None
    """Hidden widths of the critic; ``None`` uses ``net_arch``."""
    activation: str = "tanh"
    """Hidden activation: tanh, relu, elu or gelu."""
    ortho_init: bool = True
    """Orthogonal initialisation (SB3/CleanRL); else torch's default."""
    log_std_init: float = 0.0
    """Initial log standard deviation of a Gaussian (Box) policy."""
    normalize_obs: bool = False
    """Running mean/std normalization of (Box) observations, like SB3's VecNormalize."""
    normalize_reward: bool = False
    """Scale rewards by the running std of the discounted return, like SB3's VecNormalize."""
    clip_obs: float = 10.0
    """Bound on normalized observations."""
    clip_reward: float = 10.0
    """Bound on normalized rewards."""
    optimizer: str = "adam"
    """``adam``, or ``rmsprop`` (SB3's A2C: alpha 0.99, eps 1e-5)."""
    adam_eps: float = 1e-5
    """Adam's epsilon (SB3's PPO uses 1e-5 as well)."""
    fast_path: bool = True
    """Let the CPU kernel train plain MLP (or SmallCNN) actor-critics with the stock loss (same maths as autograd,
    ~1.7x faster); False: always autograd."""
    features_extractor: str = "auto"
    """Observation encoder: ``auto`` (CNN for images, flatten/one-hot otherwise), ``flatten``, ``nature_cnn``,
    ``impala_cnn``, ``small_cnn``, or a name registered with :func:`rlcore.nets.extractors.register_extractor`."""
    features_kwargs: dict[str, Any] | None = None
    """Keyword arguments of the extractor, e.g. ``{"features_dim": 256}``."""
    amp: str | None = None
    """``"bf16"``: bfloat16 autocast for the networks' forward passes (GPUs with bf16; also runs on CPU)."""
    compile: bool = False
    """Compile the policy's training forward/backward with ``torch.compile`` (pays off on long runs)."""
    compile_backend: str = "inductor"
    """``torch.compile`` backend (``aot_eager`` compiles the graph without generating code: fast to start)."""
    memory: str | None = None
    """``"lstm"`` or ``"transformer"``: a memory core between the encoder and the heads (partially observable
    tasks); None: a feed-forward policy."""
    memory_size: int = 64
    """Width of the LSTM state, or of the Transformer."""
    context_length: int = 16
    """The Transformer's window: how many of the latest observations it attends over."""
    sequence_length: int = 16
    """LSTM training: steps per stored sequence (``n_steps`` must be a multiple of it)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        if self.vf_arch is not None:
            object.__setattr__(self, "vf_arch", tuple(int(width) for width in self.vf_arch))
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        if self.lr_schedule_steps is not None:
            check_range("lr_schedule_steps", self.lr_schedule_steps, 1)
        check_range("n_steps", self.n_steps, 1)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("gae_lambda", self.gae_lambda, 0.0, 1.0)
        check_range("ent_coef", self.ent_coef, 0.0)
        check_range("vf_coef", self.vf_coef, 0.0)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True)
        check_range("clip_obs", self.clip_obs, 0.0, low_open=True)
        check_range("clip_reward", self.clip_reward, 0.0, low_open=True)
        check_choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        check_range("adam_eps", self.adam_eps, 0.0, low_open=True)
        if self.amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {self.amp!r}")
        check_choice("memory", self.memory, (None, "lstm", "transformer"))
        check_range("memory_size", self.memory_size, 1)
        check_range("context_length", self.context_length, 1)
        check_range("sequence_length", self.sequence_length, 1)
        if self.memory == "lstm" and self.n_steps % self.sequence_length:
            raise ValueError(f"memory='lstm' needs n_steps ({self.n_steps}) to be a multiple of sequence_length "
                             f"({self.sequence_length})")
        for name in ("net_arch", "vf_arch"):
            widths = getattr(self, name)
            if widths is not None and any(width < 1 for width in widths):
                raise ValueError(f"{name} widths must be >= 1, got {list(widths)}")

    @property
    def critic_arch(self) -> tuple[int, ...]:
        return self.vf_arch if self.vf_arch is not None else self.net_arch


def check_choice(name: str, value: Any, choices: tuple[Any, ...]) -> None:
    """Raises a ValueError naming ``name``, ``value`` and the valid choices."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {value!r}")


def scheduled(start: float, schedule: str, progress: float) -> float:
    """``start`` (constant) or ``start * (1 - progress)`` (linear), ``progress`` in ``[0, 1]``."""
    return start if schedule == "constant" else start * max(1.0 - progress, 0.0)


class HeadLoss(Protocol):
    """A loss on a minibatch as a function of ``log_prob``, ``entropy`` and ``value`` (each ``[B]``)."""

    def loss(self, log_prob: Tensor, entropy: Tensor, value: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The scalar loss (differentiable by autograd) and detached statistics (``loss`` not included)."""


def standardize(values: Tensor) -> Tensor:
    """``(x - mean) / (std + 1e-8)`` over a batch ``[B]``; a single value is returned unchanged."""
    if values.shape[0] < 2:
        return values
    return (values - values.mean()) / (values.std() + 1e-8)


def explained_variance(predicted: Tensor, target: Tensor) -> float:
    """``1 - Var[target - predicted] / Var[target]`` (SB3's ``train/explained_variance``); NaN if Var is 0."""
    variance = target.var()
    return float("nan") if float(variance) == 0.0 else float(1.0 - (target - predicted).var() / variance)


ConfigT = TypeVar("ConfigT", bound=OnPolicyConfig)


class OnPolicyAlgorithm(Algorithm[ConfigT]):
    """An actor-critic trained from rollouts; subclasses implement :meth:`optimize` (and maybe targets)."""

    data_kind: ClassVar[DataKind] = "rollout"
    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete)
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = ACTION_SPACES
    flat_box_only: ClassVar[bool] = False
    loss_class: ClassVar[type]
    """The loss :meth:`optimize` builds per minibatch (a :class:`HeadLoss`); a subclass of the algorithm may set
    its own (e.g. a subclass of the stock loss with an extra term), which then trains through autograd."""

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
        if config.normalize_obs and (not isinstance(observation_space, spaces.Box) or image_layout(observation_space)):
            raise ValueError(
                f"normalize_obs=True needs vector Box observations, got {observation_space!r}; set "
                "normalize_obs=False (image encoders scale pixels themselves)"
            )
        torch.manual_seed(seed)  # network initialisation
        self.distribution = make_distribution(action_space)
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
                ortho_init=config.ortho_init, log_std_init=config.log_std_init,
            ).to(self.device)
        self._train_policy = (torch.compile(self.policy, backend=config.compile_backend) if config.compile
                              else self.policy)
        self.optimizer = self._make_optimizer()
        self.rollout = RolloutBuffer(config.n_steps, num_envs, self.device)
        self.obs_normalizer = (
            ObservationNormalizer(observation_space.shape, config.clip_obs, device=self.device)
            if config.normalize_obs else None
        )
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
        self._memory_state = self._initial_memory_state(num_envs)
        """The training envs' memory (LSTM state or observation window), carried across steps."""
        self._episode_start = torch.ones(num_envs, dtype=torch.bool, device=self.device)
        """Which training envs start an episode at the next step."""

    # --- set-up ----------------------------------------------------------------------------
    def _make_optimizer(self) -> FlatAdam | FlatRMSprop:
        config = self.config
        if config.optimizer == "rmsprop":
            return FlatRMSprop(self.policy.parameters(), lr=config.learning_rate, alpha=0.99, eps=1e-5,
                               max_grad_norm=config.max_grad_norm)
        return FlatAdam(self.policy.parameters(), lr=config.learning_rate, eps=config.adam_eps,
                        max_grad_norm=config.max_grad_norm)

    def _select_kernel(self) -> ActorCriticKernel | None:
        """The one place that decides whether the CPU kernel runs instead of autograd; logs the choice (INFO)."""
        config = self.config
        gates = [(not config.fast_path, "fast_path=False"), (config.amp is not None, f"amp={config.amp!r}"),
                 (config.compile, "compile=True"), (config.memory is not None, f"memory={config.memory!r}")]
        return choose_kernel(
            self.name, gates, lambda: ActorCriticKernel.refusal(self.policy, self.distribution, self.loss_class),
            lambda: ActorCriticKernel(self.policy, self.distribution, self.loss_class))  # type: ignore[arg-type]

    @staticmethod
    def _action_conversion(space: gym.Space) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        """``(offset, low, high)``: Discrete starts to add, and Box bounds to clip actions to."""
        if isinstance(space, spaces.Discrete) and space.start != 0:
            return torch.tensor(int(space.start)), None, None
        if isinstance(space, spaces.MultiDiscrete) and np.any(space.start != 0):
            return torch.as_tensor(space.start), None, None
        if isinstance(space, spaces.Box):
            return None, torch.as_tensor(space.low, dtype=torch.float32), torch.as_tensor(space.high,
                                                                                            dtype=torch.float32)
        return None, None, None

    # --- acting ------------------------------------------------------------------------------
    def prepare_obs(self, obs: Tensor) -> Tensor:
        """Raw observations -> what the network sees (normalized with frozen statistics), on the device."""
        obs = obs.to(self.device)
        return self.obs_normalizer.normalize(obs) if self.obs_normalizer is not None else obs

    def autocast(self) -> torch.autocast:
        """bf16 autocast on the training device when ``amp="bf16"``, else a disabled context."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.amp == "bf16")

    def _initial_memory_state(self, num_envs: int) -> dict[str, Tensor] | None:
        if self.config.memory is None:
            return None
        dtype = torch.float32 if self.obs_normalizer is not None else torch.as_tensor(
            self.observation_space.sample()).dtype
        return self.policy.initial_state(num_envs, self.device, dtype)  # type: ignore[union-attr]

    @torch.no_grad()
    def _actor_params(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        if isinstance(obs, dict):  # stored memory inputs
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
        """Distribution samples -> actions for the env: Box actions clipped to the space, starts added (CPU)."""
        action = action.cpu()
        if self._action_low is not None:
            return torch.maximum(torch.minimum(action, self._action_high), self._action_low)
        if self._action_offset is not None:
            return action + self._action_offset
        return action

    @torch.no_grad()
    def act(self, obs: Tensor, *, deterministic: bool = False) -> Tensor:
        """The policy's actions ``[N, *obs_shape] -> [N, *action_shape]``: its mode, or samples.

        Memory policies need the envs' state: use :meth:`actor`, which keeps it.
        """
        if self.config.memory is not None:
            raise TypeError(f"{self.name} with memory={self.config.memory!r} acts with a per-env state: use "
                            "algo.actor() (a callable that keeps it), or Agent.evaluate")
        params = self._actor_params(self.prepare_obs(obs))
        action = self.distribution.mode(params) if deterministic else self.distribution.sample(params,
                                                                                               self.generator)
        return self.to_env_action(action)

    def actor(self, deterministic: bool = True) -> Callable[[Tensor], Tensor]:
        """A fresh acting function ``obs [N, *obs_shape] -> actions``; with memory it keeps its own per-env state,
        starting a new episode on the first call."""
        if self.config.memory is None:
            return super().actor(deterministic)
        state: dict[str, Tensor] | None = None
        episode_start: Tensor | None = None

        @torch.no_grad()
        def act(obs: Tensor) -> Tensor:
            nonlocal state, episode_start
            prepared = self.prepare_obs(obs)
            if state is None:
                state = self._initial_memory_state(prepared.shape[0])
                episode_start = torch.ones(prepared.shape[0], dtype=torch.bool, device=self.device)
            with self.autocast():
                params, _, state, _ = self.policy.step(prepared, state, episode_start)  # type: ignore[union-attr]
            episode_start = torch.zeros_like(episode_start)
            params = params.float()
            action = self.distribution.mode(params) if deterministic else self.distribution.sample(
                params, self.generator)
            return self.to_env_action(action)

        return act

    @torch.no_grad()
    def _memory_explore(self, obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        with self.autocast():
            params, value, self._memory_state, inputs = self.policy.step(  # type: ignore[union-attr]
                obs, self._memory_state, self._episode_start)
        params, value = params.float(), value.float()
        sample, log_prob = self.distribution.sample_with_log_prob(params, self.generator)
        extras = {"obs": obs, "action": sample, "log_prob": log_prob, "value": value}
        extras.update({f"memory/{key}": tensor for key, tensor in inputs.items()})
        return self.to_env_action(sample), extras

    @torch.no_grad()
    def _memory_values(self, obs: Tensor, rows: Tensor | None = None) -> Tensor:
        """``V`` of prepared observations that follow the training envs' current memory (``rows`` of it)."""
        state, start = self._memory_state, self._episode_start
        if rows is not None:
            state = {key: value[rows] for key, value in state.items()}  # type: ignore[union-attr]
            start = torch.zeros(len(rows), dtype=torch.bool, device=self.device)
        with self.autocast():
            return self.policy.step(obs, state, start)[1].float()  # type: ignore[union-attr]

    @torch.no_grad()
    def explore(self, obs: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The behaviour policy while collecting: updates the observation statistics, samples, keeps extras.

        Returns:
            The env's actions ``[N, ...]``, and ``{"obs", "action", "log_prob", "value"}`` to store: the
            prepared observation, the unclipped sample, its log-probability and ``V(s)``.
        """
        obs = obs.to(self.device)
        if self.obs_normalizer is not None:
            self.obs_normalizer.update(obs)
            obs = self.obs_normalizer.normalize(obs)
        if self.config.memory is not None:
            return self._memory_explore(obs)
        if self._kernel is not None:
            sample, log_prob, value = self._kernel.explore(obs, self.generator)
        else:
            with self.autocast():
                params, value = self.policy(obs)
            params, value = params.float(), value.float()
            sample, log_prob = self.distribution.sample_with_log_prob(params, self.generator)
        return self.to_env_action(sample), {"obs": obs, "action": sample, "log_prob": log_prob, "value": value}

    # --- collecting --------------------------------------------------------------------------
    @torch.no_grad()
    def store(self, transition: dict[str, Any]) -> None:
        """Records one vector step (the collector's transition merged with :meth:`explore`'s extras).

        Rewards are normalized here when asked; where an episode was truncated, ``V(final_obs)``
        is computed now, for the bootstrap.
        """
        reward, terminated, truncated = transition["reward"], transition["terminated"], transition["truncated"]
        if self.reward_normalizer is not None:
            reward = self.reward_normalizer.update_and_normalize(torch.from_numpy(reward),
                                                                 torch.from_numpy(terminated | truncated))
        truncated_value = self._no_truncation
        if truncated.any():
            rows = np.flatnonzero(truncated)
            truncated_value = torch.zeros(self.num_envs, device=self.device)
            final_obs = self.prepare_obs(torch.as_tensor(np.asarray(transition["next_obs"])[rows]))
            device_rows = torch.from_numpy(rows).to(self.device)
            truncated_value[device_rows] = (self._values(final_obs) if self.config.memory is None
                                            else self._memory_values(final_obs, device_rows))
        row = {
            "obs": transition["obs"], "action": transition["action"], "log_prob": transition["log_prob"],
            "value": transition["value"], "reward": reward, "terminated": terminated, "truncated": truncated,
            "truncated_value": truncated_value,
        }
        if self.config.memory is not None:
            row.update({key: value for key, value in transition.items() if key.startswith("memory/")})
            self._episode_start = torch.as_tensor(terminated | truncated, device=self.device)
        self.rollout.add(row)

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
        prepared = self.prepare_obs(last_obs)
        last_value = self._values(prepared) if self.config.memory is None else self._memory_values(prepared)
        advantages, returns = self.compute_targets(last_value)
        batch = {key: column.reshape(-1, *column.shape[2:]) for key, column in self.rollout.columns.items()}
        batch["advantage"] = advantages.reshape(-1)
        batch["return"] = returns.reshape(-1)
        self.optimizer.lr = self.learning_rate
        metrics = self.optimize(batch)
        self.rollout.clear()
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
        evaluates: the observations, or a memory policy's stored inputs. LSTM policies get whole sequences
        of ``sequence_length`` steps of one env (``batch_size // sequence_length`` sequences per minibatch),
        their rows in sequence order.
        """
        rows = batch["advantage"].shape[0]
        if self.config.memory == "lstm":
            return self._sequence_minibatches(batch, batch_size, shuffle)
        if not shuffle and batch_size >= rows:
            parts = [batch]
        else:
            order = torch.randperm(rows, generator=self.generator).to(self.device) if shuffle else torch.arange(
                rows, device=self.device)
            parts = [{key: value[index] for key, value in batch.items()} for index in order.split(batch_size)]
        for part in parts:
            part["inputs"] = part["obs"] if self.config.memory is None else {
                "window": part["memory/window"], "valid": part["memory/valid"]}
        return parts

    def _sequence_minibatches(self, batch: dict[str, Tensor], batch_size: int, shuffle: bool) -> list[dict[str, Any]]:
        length, num_envs = self.config.sequence_length, self.num_envs
        steps = batch["advantage"].shape[0] // num_envs
        # sequence (k, env) covers rows (k * L + i) * N + env, i < L; rows of the flattened [T, N] rollout
        starts = torch.arange(0, steps, length, device=self.device)
        envs = torch.arange(num_envs, device=self.device)
        sequence_rows = ((starts.view(-1, 1, 1) + torch.arange(length, device=self.device).view(1, 1, -1))
                         * num_envs + envs.view(1, -1, 1)).reshape(-1, length)
        count = sequence_rows.shape[0]
        order = torch.randperm(count, generator=self.generator).to(self.device) if shuffle else torch.arange(
            count, device=self.device)
        parts = []
        for chosen in order.split(max(batch_size // length, 1)):
            chosen_rows = sequence_rows[chosen]
            flat = chosen_rows.reshape(-1)
            part: dict[str, Any] = {key: value[flat] for key, value in batch.items() if not key.startswith("memory/")}
            first = chosen_rows[:, 0]
            part["inputs"] = {
                "obs": batch["memory/obs"][chosen_rows], "episode_start": batch["memory/episode_start"][chosen_rows],
                "h": batch["memory/h"][first], "c": batch["memory/c"][first],
            }
            parts.append(part)
        return parts

    def gradient_step(
        self, obs: Tensor, action: Tensor, head_loss: HeadLoss, with_stats: bool = True
    ) -> dict[str, Tensor | float]:
        """One optimizer step on ``head_loss`` for a minibatch; returns its statistics (``loss`` included).

        ``with_stats=False`` skips the statistics on the kernel path (they cost a dozen tensor ops).

        Shapes: ``obs [B, *obs_shape]`` (prepared), ``action [B, *action_shape]`` (as sampled).
        """
        if self._kernel is not None and self._kernel_covers(head_loss):
            stats = self._kernel.backward(obs, action, head_loss, with_stats)  # type: ignore[arg-type]
        else:
            self.optimizer.zero_grad()
            with self.autocast():
                params, value = self._train_policy(obs)
            params, value = params.float(), value.float()
            log_prob = self.distribution.log_prob(params, action)
            entropy = self.distribution.entropy(params)
            loss, stats = head_loss.loss(log_prob, entropy, value)
            loss.backward()
            stats = {**stats, "loss": loss.detach()} if with_stats else {}
        self.optimizer.step()
        self.updates += 1
        return stats

    def _kernel_covers(self, head_loss: HeadLoss) -> bool:
        """Whether ``head_loss`` is of the loss class the kernel was chosen for; another one (an ``optimize`` that
        builds its own) trains through autograd, said once at INFO."""
        if type(head_loss) is self._kernel.loss_class:  # type: ignore[union-attr]
            return True
        if not self._loss_warned:
            self._loss_warned = True
            logger.info("%s: autograd reference path for %s losses (the kernel reproduces %s)", self.name,
                        type(head_loss).__qualname__, self._kernel.loss_class.__qualname__)  # type: ignore[union-attr]
        return False

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
            "memory_state": self._memory_state,
            "episode_start": self._episode_start,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._load_base_state(state)
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
        if state.get("memory_state") is not None and self._memory_state is not None:
            self._memory_state = {key: value.to(self.device) for key, value in state["memory_state"].items()}
        if "episode_start" in state:
            self._episode_start = state["episode_start"].to(self.device, torch.bool)


def mean_stats(collected: list[dict[str, Tensor | float]]) -> dict[str, float]:
    """Averages per-step statistics (tensors from autograd, floats from the fast path) into ``train/<name>``."""
    if not collected:
        return {}
    if isinstance(next(iter(collected[0].values())), Tensor):  # one host sync per name
        return {f"train/{name}": float(torch.stack([stats[name] for stats in collected]).float().mean())
                for name in collected[0]}
    return {f"train/{name}": float(np.mean([stats[name] for stats in collected])) for name in collected[0]}


__all__ = ["HeadLoss", "OnPolicyAlgorithm", "OnPolicyConfig", "explained_variance", "mean_stats",
           "scheduled", "standardize"]
