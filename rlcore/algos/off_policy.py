"""What SAC, TD3 and DDPG share: Box actions scaled to ``[-1, 1]``, random actions before ``learning_starts``, action
noise, the replay, target networks, observation normalization, learning-rate schedules, workers and checkpoints.

A subclass builds its networks and optimizers (:meth:`ContinuousQAlgorithm.build_networks`), gives its policy's
action in ``[-1, 1]`` (:meth:`ContinuousQAlgorithm.policy_action`) and its gradient step
(:meth:`ContinuousQAlgorithm.gradient_step`). The Trainer's ``"replay"`` loop adds every vector step to
:attr:`ContinuousQAlgorithm.replay` and calls ``train(gradient_steps)`` every ``train_freq`` vector steps after
``learning_starts`` env steps, as for DQN.

**Actions.** The networks see actions scaled to ``[-1, 1]`` (SB3's convention): the policy's ``tanh`` output is
mapped to the env's bounds ``low + (a + 1) (high - low) / 2`` for the env, and the replay stores the env's action
(what the collector hands out), scaled back when sampled. Before ``learning_starts`` env steps the behaviour policy
is uniform over the box, as SB3's; action noise (TD3, DDPG) is added in the scaled space and clipped to it.

**Observation normalization** (``normalize_obs``, SB3's ``VecNormalize(norm_obs=True)`` with an off-policy
algorithm): the replay keeps raw observations; the learner folds the rows written since its last look into running
statistics at each training phase (the same for its own buffer and for workers' shards) and normalizes sampled
observations with the current statistics, as SB3 does at sample time. Workers get the statistics with the weights.
"""

from __future__ import annotations

import logging
import math
from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlcore.algos.base import ReplayAlgorithm, UnsupportedSpaceError, flat_acting_state, load_flat_acting_state
from rlcore.algos.onpolicy_config import SCHEDULES, check_choice, scheduled
from rlcore.buffers.replay import Placement, ReplayBuffer, ReplaySettings, build_replay
from rlcore.buffers.sequence import EpisodeEndReplay
from rlcore.buffers.storage import transition_fields
from rlcore.buffers.transfer import BatchTransfer, check_replay_device, replay_storage_device
from rlcore.fields import with_absolute_paths
from rlcore.kernels.denormals import flush_denormals
from rlcore.kernels.selection import override_gates
from rlcore.nets.base import ACTIVATIONS, FeatureExtractor
from rlcore.nets.cnn import image_layout
from rlcore.nets.extractors import make_extractor
from rlcore.normalize import ObservationNormalizer, RunningMeanStd
from rlcore.observations import Observation, batch_size, take_rows, to_tensor
from rlcore.optim import FlatAdam
from rlcore.precision import AMP_CHOICES, autocast_forward, resolve_amp
from rlcore.settings import check_range
from rlcore.spaces import describe_space

ACTION_NOISES = (None, "normal", "ornstein-uhlenbeck")
"""Valid values of ``action_noise``."""
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ContinuousQConfig:
    """Settings SAC, TD3 and DDPG share (SB3's names and defaults; each algorithm's config adds its own)."""

    ABSENT_IN_CHECKPOINT: ClassVar[dict[str, Any]] = {"amp": None}
    """What a checkpoint written before a field existed meant: float32 gradient steps."""

    learning_rate: float = 3e-4
    """Adam step size of every network (and of SAC's entropy coefficient); the start with ``lr_schedule="linear"``."""
    lr_schedule: str = "constant"
    """``constant``, or ``linear``: decays to 0 at the end of training (rl-zoo's ``lin_``)."""
    buffer_size: int = 1_000_000
    """Transitions kept in replay (over all envs)."""
    learning_starts: int = 100
    """Env steps of uniformly random actions collected before the first update."""
    batch_size: int = 256
    """Transitions per gradient step."""
    tau: float = 0.005
    """Polyak coefficient of the target networks: ``target <- (1 - tau) target + tau online``."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 1
    """Vector-env steps between update phases (a count: SB3's ``(n, "episode")`` form is not supported)."""
    gradient_steps: int = 1
    """Gradient steps per update phase; ``-1``: as many as the env steps of a phase (``train_freq`` x
    ``num_envs``), as SB3's ``-1``."""
    n_step: int = 1
    """Length of the bootstrapped return; episode terminations end it early."""
    net_arch: tuple[int, ...] = (256, 256)
    """Hidden widths of the actor (and of the critics unless ``critic_arch`` is set)."""
    critic_arch: tuple[int, ...] | None = None
    """Hidden widths of each Q-network; None uses ``net_arch`` (SB3's ``net_arch=dict(pi=..., qf=...)``)."""
    activation: str = "relu"
    """Hidden activation: relu, tanh, elu or gelu."""
    features_extractor: str = "auto"
    """Observation encoder of the actor and of the critics (each its own): ``auto`` or a registered name."""
    features_kwargs: dict[str, Any] | None = None
    """Keyword arguments of the extractor."""
    normalize_obs: bool = False
    """Running mean/std normalization of (vector Box) observations, like SB3's VecNormalize(norm_obs=True)."""
    clip_obs: float = 10.0
    """Bound on normalized observations."""
    action_noise: str | None = None
    """Exploration noise added to the policy's actions (scaled to [-1, 1]): ``normal``, ``ornstein-uhlenbeck`` or
    None (rl-zoo's ``noise_type``; SB3's ``action_noise`` object)."""
    noise_std: float = 0.1
    """Standard deviation of ``action_noise`` in the scaled action space, every dimension (rl-zoo's ``noise_std``)."""
    fast_path: bool = True
    """Let a CPU kernel train where one reproduces the stock networks and losses; False: always autograd."""
    amp: str | None = "auto"
    """``"bf16"``: the gradient steps' network passes under bfloat16 autocast (float32 weights, optimizer, losses and
    checkpoints; acting stays float32); ``"auto"``: bf16 on a CPU with AMX or AVX512-BF16 when every hidden layer is
    >= 256 wide, float32 elsewhere; None: float32. On a CPU without either, ``"bf16"`` falls back to float32
    (logged)."""
    replay_device: str = "cpu"
    """Where replay storage lives: ``"cpu"`` (host memory) or ``"auto"``/``"device"`` (the training device)."""
    pin_memory: bool = True
    """With host storage and a CUDA training device, move batches through pinned memory (non-blocking)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        object.__setattr__(self, "features_kwargs", with_absolute_paths(self.features_kwargs))
        if self.critic_arch is not None:
            object.__setattr__(self, "critic_arch", tuple(int(width) for width in self.critic_arch))
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_choice("lr_schedule", self.lr_schedule, SCHEDULES)
        check_range("buffer_size", self.buffer_size, 1)
        check_range("learning_starts", self.learning_starts, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("tau", self.tau, 0.0, 1.0, low_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("train_freq", self.train_freq, 1)
        if self.gradient_steps != -1:
            check_range("gradient_steps", self.gradient_steps, 1, hint="or -1: as many as the phase's env steps")
        check_range("n_step", self.n_step, 1)
        for name in ("net_arch", "critic_arch"):
            widths = getattr(self, name)
            if widths is not None and any(width < 1 for width in widths):
                raise ValueError(f"{name} widths must be >= 1, got {list(widths)}")
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_range("clip_obs", self.clip_obs, 0.0, low_open=True, allow_inf=True)
        check_choice("action_noise", self.action_noise, ACTION_NOISES)
        check_range("noise_std", self.noise_std, 0.0)
        check_choice("amp", self.amp, AMP_CHOICES)
        check_replay_device(self.replay_device)

    @property
    def q_arch(self) -> tuple[int, ...]:
        """The Q-networks' hidden widths."""
        return self.net_arch if self.critic_arch is None else self.critic_arch


ConfigT = TypeVar("ConfigT", bound=ContinuousQConfig)


# ----------------------------------------------------------------------------------------------- action noise
class NormalActionNoise:
    """Gaussian exploration noise ``N(0, std^2)`` per action dimension, independent across steps (stateless).

    Shapes: :meth:`sample`: ``num_envs`` -> ``[N, A]`` float32.
    """

    def __init__(self, action_dim: int, std: float) -> None:
        self.action_dim = action_dim
        self.std = std

    def sample(self, num_envs: int, generator: torch.Generator) -> Tensor:
        return torch.randn(num_envs, self.action_dim, generator=generator).mul_(self.std)

    def reset(self, ended: np.ndarray) -> None:
        """Nothing to forget."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class OrnsteinUhlenbeckActionNoise(NormalActionNoise):
    """Temporally correlated noise (Uhlenbeck & Ornstein, 1930; DDPG's), as SB3's ``OrnsteinUhlenbeckActionNoise``:
    ``x <- x + theta (0 - x) dt + std sqrt(dt) N(0, 1)``, with one ``x`` per env, reset to 0 when its episode ends.

    Shapes: :meth:`sample`: ``num_envs`` -> ``[N, A]`` float32 (the new ``x``).
    """

    def __init__(self, action_dim: int, std: float, theta: float = 0.15, dt: float = 1e-2) -> None:
        super().__init__(action_dim, std)
        self.theta = theta
        self.dt = dt
        self.state = torch.zeros(0, action_dim, device="cpu")
        """``x``, ``[N, A]`` (sized by the first :meth:`sample`)."""

    def sample(self, num_envs: int, generator: torch.Generator) -> Tensor:
        if self.state.shape[0] != num_envs:
            self.state = torch.zeros(num_envs, self.action_dim)
        step = torch.randn(num_envs, self.action_dim, generator=generator).mul_(self.std * math.sqrt(self.dt))
        self.state.mul_(1.0 - self.theta * self.dt).add_(step)
        return self.state.clone()

    def reset(self, ended: np.ndarray) -> None:
        """Starts the noise of the envs whose episode ended (``ended [N]`` bool) from 0 again."""
        if self.state.shape[0] == len(ended) and ended.any():
            self.state[torch.from_numpy(ended)] = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = state["state"].to("cpu", torch.float32).clone()


def make_action_noise(kind: str | None, action_dim: int, std: float) -> NormalActionNoise | None:
    """The noise ``kind`` names (``None``, ``"normal"``, ``"ornstein-uhlenbeck"``) with standard deviation ``std``."""
    if kind is None:
        return None
    return NormalActionNoise(action_dim, std) if kind == "normal" else OrnsteinUhlenbeckActionNoise(action_dim, std)


# ----------------------------------------------------------------------------------------------- the algorithm
class ContinuousQAlgorithm(ReplayAlgorithm[ConfigT]):
    """An off-policy actor-critic for Box actions learning from replay (SAC, TD3, DDPG).

    Attributes:
        actor_net: The policy network (its :attr:`actor_optimizer` is a :class:`~rlcore.optim.FlatAdam`, whose flat
            parameter buffer is what workers receive).
        critic: The Q-networks (:class:`~rlcore.nets.continuous.QCritics`) and :attr:`critic_target`, their Polyak
            average.
        replay: Where the Trainer adds transitions (env actions, raw observations).
        updates: Gradient steps taken.
    """

    observation_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box, spaces.Discrete, spaces.Dict, spaces.Tuple)
    flat_box_only: ClassVar[bool] = False
    action_spaces: ClassVar[tuple[type[gym.Space], ...]] = (spaces.Box,)

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
        self._check_normalization()
        torch.manual_seed(seed)  # network initialisation
        self.action_shape = tuple(action_space.shape)  # type: ignore[attr-defined]
        self.action_dim = int(np.prod(self.action_shape))
        low = np.asarray(action_space.low, dtype=np.float64).reshape(-1)  # type: ignore[attr-defined]
        high = np.asarray(action_space.high, dtype=np.float64).reshape(-1)  # type: ignore[attr-defined]
        self._action_dtype = torch.float64 if action_space.dtype == np.float64 else torch.float32
        self.action_scale = torch.tensor((high - low) / 2.0, dtype=torch.float32, device=self.device)
        """Half the width of the box per action dimension ``[A]``: env action = scaled * scale + bias."""
        self.action_bias = torch.tensor((high + low) / 2.0, dtype=torch.float32, device=self.device)
        self._action_bounds = (torch.tensor(low, dtype=self._action_dtype, device=self.device),
                               torch.tensor(high, dtype=self._action_dtype, device=self.device))
        """The box in the action dtype ``[A]``: the float32 map of -1 and 1 can land a rounding step outside it."""
        self.learning_rate = config.learning_rate
        self.amp, why = resolve_amp(config.amp, self.device, (*config.net_arch, *config.q_arch))
        """The precision of the gradient steps' network passes: ``"bf16"`` or None (float32); see ``amp``."""
        (logger.warning if config.amp == "bf16" and self.amp is None else logger.info)("%s: %s", self.name, why)
        self.build_networks()
        storage_device = replay_storage_device(config.replay_device, self.device)
        self._transfer = (BatchTransfer(self.device, config.pin_memory)
                          if storage_device.type == "cpu" and self.device.type != "cpu" else None)
        """Moves host-stored batches to the training device (None when the storage is already there)."""
        self.action_noise = self.build_action_noise()
        self.replay: ReplayBuffer = self.build_replay(storage_device)
        self.obs_normalizer = (ObservationNormalizer(tuple(observation_space.shape), config.clip_obs,  # type: ignore
                                                     device=self.device) if config.normalize_obs else None)
        self._rows_seen = np.zeros(0, dtype=np.int64)
        """Per replay shard, the committed steps whose observations are in the statistics (``normalize_obs``)."""
        self.updates = 0
        self._latest_metrics: dict[str, float] = {}
        self._kernel: Any = self.select_kernel()
        """The CPU kernel of acting and gradient steps (:mod:`rlcore.kernels.continuous_q`), or None (autograd)."""

    # --- what a subclass builds --------------------------------------------------------------
    @abstractmethod
    def build_networks(self) -> None:
        """Builds the actor, the critics, their targets and optimizers on :attr:`device` (``actor_net``,
        ``actor_optimizer``, ``critic``, ``critic_target``, ``critic_optimizer`` at least)."""

    def build_action_noise(self) -> NormalActionNoise | None:
        """The exploration noise ``action_noise`` asks for (None: the policy explores by itself)."""
        return make_action_noise(self.config.action_noise, self.action_dim, self.config.noise_std)

    def make_features(self) -> FeatureExtractor:
        """A fresh observation encoder (each network has its own, as in SB3's SAC and TD3); for Dict and Tuple
        observations a :class:`~rlcore.nets.extractors.CombinedExtractor` (SB3's ``MultiInputPolicy``), which the
        CPU kernels leave to autograd."""
        return make_extractor(self.observation_space, self.config.features_extractor,
                              **(self.config.features_kwargs or {}))

    def select_kernel(self) -> Any:
        """The one place that decides whether a CPU kernel runs instead of autograd (logs the choice); None here."""
        return None

    def kernel_gates(self, reference: type, kernel: type) -> list[tuple[bool, str]]:
        """This algorithm's own reasons to keep ``kernel`` away: ``fast_path=False``, or a subclass of ``reference``
        (the class whose code the kernel reproduces) that overrides one of the methods the kernel reproduces (its
        ``REPRODUCES``: :func:`~rlcore.kernels.selection.override_gates`)."""
        return [(not self.config.fast_path, "fast_path=False"), *override_gates(self, reference, kernel.REPRODUCES)]

    def amp_forward(self, network: Callable[..., Any], *inputs: Tensor) -> Any:
        """``network(*inputs)``, for a gradient step: with :attr:`amp` ``"bf16"`` under bfloat16 autocast, the
        output (a tensor or a tuple of them) cast back to float32, so the losses and targets stay float32."""
        return autocast_forward(self.amp, self.device, network, *inputs)

    @abstractmethod
    def policy_action(self, obs: Tensor, deterministic: bool) -> Tensor:
        """The policy's action in ``[-1, 1]``, ``[N, A]``, for preprocessed observations (no gradient)."""

    @abstractmethod
    def gradient_step(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """One update on a minibatch (``obs``, ``next_obs`` preprocessed, ``action`` scaled to ``[-1, 1]`` ``[B, A]``,
        ``reward``, ``discount`` ``[B]``); returns its losses and statistics by name as 0-d tensors (detached),
        logged as ``train/<name>``."""

    # --- spaces -------------------------------------------------------------------------------
    @classmethod
    def fits(cls, observation_space: gym.Space, action_space: gym.Space) -> bool:
        """Box actions need finite bounds with high > low (the policy's ``tanh`` is scaled to them) and a
        floating-point dtype."""
        return (super().fits(observation_space, action_space) and _finite_bounds(action_space)
                and not _zero_width_dimensions(action_space) and _floating(action_space))

    @classmethod
    def check_spaces(cls, observation_space: gym.Space, action_space: gym.Space) -> None:
        super_fits = super().fits(observation_space, action_space)
        if super_fits and not _finite_bounds(action_space):
            raise UnsupportedSpaceError(
                f"{cls.name} cannot handle the action space {describe_space(action_space)}: its actions are squashed "
                "into the box's bounds, which must be finite; give the env finite low/high (e.g. wrap it with "
                "gymnasium.wrappers.RescaleAction after bounding it)")
        fixed = _zero_width_dimensions(action_space)
        if super_fits and _finite_bounds(action_space) and fixed:
            raise UnsupportedSpaceError(
                f"{cls.name} cannot handle the action space {describe_space(action_space)}: its actions are squashed "
                f"into the box's bounds, and at index {', '.join(fixed)} low == high leaves no room (the scale is 0); "
                "drop the fixed dimension from the env's actions (set it inside the env) or give it a range")
        if super_fits and not _floating(action_space):
            raise UnsupportedSpaceError(
                f"{cls.name} cannot handle the action space {describe_space(action_space)}: it acts with real numbers, "
                "and an integer Box would get actions outside it; use a float Box (and round in the env) or a "
                "Discrete/MultiDiscrete space with ppo, a2c or reinforce")
        super().check_spaces(observation_space, action_space)

    def _check_normalization(self) -> None:
        space = self.observation_space
        if self.config.normalize_obs and (not isinstance(space, spaces.Box) or image_layout(space) is not None):
            raise ValueError(f"normalize_obs=True needs vector Box observations, got {describe_space(space)}; set "
                             "normalize_obs=False (image encoders scale pixels themselves)")

    # --- actions ------------------------------------------------------------------------------
    def to_env_action(self, scaled: Tensor) -> Tensor:
        """``[N, A]`` in ``[-1, 1]`` -> env actions ``[N, *action_shape]`` within the box."""
        env_action = torch.addcmul(self.action_bias, scaled, self.action_scale).to(self._action_dtype)
        low, high = self._action_bounds
        env_action = torch.maximum(torch.minimum(env_action, high.to(env_action.device)), low.to(env_action.device))
        return env_action.reshape(scaled.shape[0], *self.action_shape)

    def to_scaled_action(self, env_action: Tensor) -> Tensor:
        """Stored env actions ``[B, *action_shape]`` -> ``[B, A]`` in ``[-1, 1]`` (what the critics see)."""
        flat = env_action.reshape(env_action.shape[0], self.action_dim).float()
        return (flat - self.action_bias) / self.action_scale

    def preprocess(self, obs: Observation) -> Observation:
        """Raw observations -> what the networks see (normalized with frozen statistics when asked; Dict and Tuple
        observations are flat dicts ``{path: [N, ...]}``, passed as they are)."""
        return self.obs_normalizer.normalize(obs) if self.obs_normalizer is not None else obs

    def act(self, obs: Observation, *, deterministic: bool = False) -> Tensor:
        """Env actions ``[N, *action_shape]`` for observations ``[N, *obs_shape]``.

        ``deterministic``: the policy's mode. Otherwise the behaviour policy: uniform over the box before
        ``learning_starts`` env steps, then the policy's sample (SAC) or action; action noise (TD3, DDPG) is added to
        either in ``[-1, 1]`` and clipped there. Random draws come from :attr:`generator`.
        """
        count = batch_size(obs)
        if deterministic or self.env_steps >= self.config.learning_starts:
            obs = self.preprocess(to_tensor(obs, self.device))
            if self._kernel is not None and obs.device.type == "cpu":
                scaled = self._kernel.policy_action(obs, deterministic)
            else:
                with torch.no_grad():
                    scaled = self.policy_action(obs, deterministic)
        else:
            scaled = torch.rand(count, self.action_dim, generator=self.generator).mul_(2.0).sub_(1.0)
        if not deterministic and self.action_noise is not None:
            noise = self.action_noise.sample(count, self.generator)
            scaled = (scaled + noise.to(scaled.device)).clamp_(-1.0, 1.0)
        return self.to_env_action(scaled.to(self.device))

    def standard_normal(self, *shape: int) -> Tensor:
        """``N(0, 1)`` draws from :attr:`generator` (on the CPU, so runs are reproducible on any device), moved to
        :attr:`device`."""
        noise = torch.randn(*shape, generator=self.generator)
        return noise if self.device.type == "cpu" else noise.to(self.device, non_blocking=True)

    # --- replay ----------------------------------------------------------------------------------
    def replay_settings(self) -> ReplaySettings:
        """The transitions' fields (raw observations, env actions), capacity and n-step; uniform sampling."""
        config, fields = self.config, transition_fields(self.observation_space, self.action_space)
        return ReplaySettings(config.buffer_size, tuple(fields.items()), config.n_step, config.gamma)

    def build_replay(self, storage_device: torch.device) -> ReplayBuffer:
        """The in-process buffer; it reports episode ends when the action noise keeps a state per env."""
        settings = self.replay_settings()
        if isinstance(self.action_noise, OrnsteinUhlenbeckActionNoise):
            return EpisodeEndReplay(settings.capacity, self.num_envs, device=storage_device, n_step=settings.n_step,
                                    gamma=settings.gamma, fields=dict(settings.fields),
                                    on_episode_end=self.action_noise.reset)
        replay = build_replay(settings, Placement(envs_per_shard=self.num_envs, device=storage_device))
        assert isinstance(replay, ReplayBuffer)
        return replay

    def check_workers(self) -> None:
        if isinstance(self.action_noise, OrnsteinUhlenbeckActionNoise):
            raise ValueError(f"{self.name} with action_noise='ornstein-uhlenbeck' resets each env's noise when its "
                             "episode ends, which worker processes do not report; use action_noise='normal' with "
                             "num_workers > 0, or num_workers=0")

    def sample(self, rows: int) -> dict[str, Tensor]:
        """``rows`` transitions on the training device, ready for :meth:`gradient_step`: ``obs`` and ``next_obs``
        preprocessed, ``action`` scaled to ``[-1, 1]`` ``[rows, A]``, ``reward`` and ``discount`` ``[rows]``."""
        batch = self.replay.sample(rows, self.generator)
        if self._transfer is not None:
            batch = self._transfer(batch)
        return {"obs": self.preprocess(batch["obs"]), "action": self.to_scaled_action(batch["action"]),
                "reward": batch["reward"], "discount": batch["discount"],
                "next_obs": self.preprocess(batch["next_obs"])}

    def fold_new_observations(self) -> None:
        """Folds the observations written to replay since the last call into the running statistics
        (``normalize_obs``); rows a concurrent writer may be overwriting (the oldest ``margin``) are skipped."""
        if self.obs_normalizer is None:
            return
        committed = self.replay.committed()
        if self._rows_seen.shape != committed.shape:
            self._rows_seen = np.zeros_like(committed)
        steps_capacity, margin = self.replay.steps_capacity, self.replay.margin
        column = self.replay.columns["obs"]  # [shards, steps_capacity, envs, *obs_shape]
        new_rows = []
        for shard, (seen, now) in enumerate(zip(self._rows_seen.tolist(), committed.tolist())):
            start = max(min(seen, now), now - steps_capacity + margin)
            if start < now:
                positions = torch.arange(start, now) % steps_capacity
                new_rows.append(column[shard, positions.to(column.device)].reshape(-1, *column.shape[3:]))
        if new_rows:
            self.obs_normalizer.update(torch.cat(new_rows))
        self._rows_seen = committed.copy()

    # --- learning --------------------------------------------------------------------------------
    def optimizers(self) -> dict[str, FlatAdam]:
        """Every optimizer by name (their learning rates follow ``lr_schedule``; checkpoints hold them)."""
        return {"actor_optimizer": self.actor_optimizer, "critic_optimizer": self.critic_optimizer}

    def set_progress(self, env_steps: int, total_env_steps: int) -> None:
        """Moves the learning rate along ``lr_schedule``."""
        super().set_progress(env_steps, total_env_steps)
        if self.config.lr_schedule != "constant":
            self.learning_rate = scheduled(self.config.learning_rate, self.config.lr_schedule,
                                           env_steps / self.total_env_steps)
            for optimizer in self.optimizers().values():
                optimizer.lr = self.learning_rate

    def train(self, gradient_steps: int) -> dict[str, float]:
        """Takes ``gradient_steps`` updates on minibatches drawn uniformly from replay (all drawn at once), with
        subnormal floats flushed to zero (:mod:`~rlcore.kernels.denormals`: a third to a half of Adam's first moments
        decay into the subnormal range on Pendulum within 3k steps, where x86 arithmetic is ~100x slower; flushing
        cut SAC's step by ~20%).

        Returns:
            ``train/<name>`` for each metric of :meth:`gradient_step` (see :meth:`metrics`), ``train/n_updates``,
            ``train/learning_rate``.
        """
        self.fold_new_observations()
        batch_size = self.config.batch_size
        batch = self.sample(gradient_steps * batch_size)
        gradient_step = self._kernel.gradient_step if self._kernel is not None else self.gradient_step
        steps = []
        with flush_denormals():
            for step in range(gradient_steps):
                rows = slice(step * batch_size, (step + 1) * batch_size)
                steps.append(gradient_step(batch if gradient_steps == 1 else
                                           {key: take_rows(value, rows) for key, value in batch.items()}))
        return self.metrics(steps)

    def metrics(self, steps: list[dict[str, Any]]) -> dict[str, float]:
        """Each metric's mean over the steps that report it (tensors: one host sync; a kernel's floats); a metric no
        step of this phase reports (TD3's delayed actor loss) keeps its latest value. With ``train/n_updates`` and
        ``train/learning_rate``."""
        by_name: dict[str, list[Any]] = {}
        for step in steps:
            for name, value in step.items():
                by_name.setdefault(name, []).append(value)
        if by_name:
            if isinstance(steps[0][next(iter(steps[0]))], Tensor):
                means = torch.stack([torch.stack(values).mean() if len(values) > 1 else values[0]
                                     for values in by_name.values()]).tolist()
            else:
                means = [sum(values) / len(values) for values in by_name.values()]  # np.mean: ~30 us a list
            self._latest_metrics.update({f"train/{name}": mean for name, mean in zip(by_name, means)})
        return {**self._latest_metrics, "train/n_updates": float(self.updates),
                "train/learning_rate": self.learning_rate}

    # --- workers ---------------------------------------------------------------------------------
    def running_stats(self) -> dict[str, RunningMeanStd]:
        return {"obs": self.obs_normalizer.stats} if self.obs_normalizer is not None else {}

    def acting_state(self) -> dict[str, Tensor]:
        """``params``: the actor's flat parameter buffer ``[P]``, and the observation statistics when normalizing."""
        return flat_acting_state(self.actor_optimizer, self.running_stats())

    def load_acting_state(self, tensors: dict[str, Tensor]) -> None:
        load_flat_acting_state(self.actor_optimizer, self.running_stats(), tensors)
        if self.obs_normalizer is not None:
            self.obs_normalizer.refresh()

    # --- persistence -----------------------------------------------------------------------------
    def networks(self) -> dict[str, torch.nn.Module]:
        """Every network by name (checkpoints hold them)."""
        return {"actor_net": self.actor_net, "critic": self.critic, "critic_target": self.critic_target}

    def state_dict(self) -> dict[str, Any]:
        return {
            **self._base_state(),
            **{name: network.state_dict() for name, network in self.networks().items()},
            **{name: optimizer.state_dict() for name, optimizer in self.optimizers().items()},
            "updates": self.updates,
            "learning_rate": self.learning_rate,
            "action_noise": self.action_noise.state_dict() if self.action_noise is not None else None,
            "obs_normalizer": self.obs_normalizer.state_dict() if self.obs_normalizer is not None else None,
            "rows_seen": torch.from_numpy(self._rows_seen.copy()),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name, part in (("action_noise", self.action_noise), ("obs_normalizer", self.obs_normalizer)):
            if (part is None) != (state.get(name) is None):
                raise ValueError(f"the checkpoint's {name} does not match this config (action_noise / normalize_obs)")
        self._load_base_state(state)
        for name, network in self.networks().items():
            network.load_state_dict(state[name])
        for name, optimizer in self.optimizers().items():
            optimizer.load_state_dict(state[name])
        self.updates = int(state["updates"])
        self.learning_rate = float(state["learning_rate"])
        if self.action_noise is not None:
            self.action_noise.load_state_dict(state["action_noise"])
        if self.obs_normalizer is not None:
            self.obs_normalizer.load_state_dict(state["obs_normalizer"])
        self._rows_seen = state["rows_seen"].numpy().astype(np.int64).copy()


def _floating(space: gym.Space) -> bool:
    """Whether a Box holds real numbers (other spaces: True, judged elsewhere)."""
    return not isinstance(space, spaces.Box) or bool(np.issubdtype(space.dtype, np.floating))


def _zero_width_dimensions(space: gym.Space) -> list[str]:
    """A Box's indices (as text) where ``high <= low``; other spaces: none."""
    if not isinstance(space, spaces.Box):
        return []
    return [str(index[0] if len(index) == 1 else index) for index in np.argwhere(space.high <= space.low).tolist()]


def _finite_bounds(space: gym.Space) -> bool:
    """Whether a Box has finite low and high everywhere (other spaces: True, judged elsewhere)."""
    if not isinstance(space, spaces.Box):
        return True
    return bool(np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high)))
