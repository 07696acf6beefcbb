"""The settings of deep Q-learning (:class:`DQNConfig`), shared by :mod:`rlcore.algos.dqn` and
:mod:`rlcore.algos.r2d2` (whose config extends it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rlcore.algos.onpolicy_config import check_choice
from rlcore.buffers.transfer import check_replay_device
from rlcore.fields import with_absolute_paths
from rlcore.nets.recurrent_q import MEMORY_KINDS
from rlcore.precision import AMP_CHOICES
from rlcore.settings import check_range


@dataclass(frozen=True)
class DQNConfig:
    """Hyperparameters of :class:`DQN`. Defaults follow SB3's DQN; presets hold rl-zoo's per-env values."""

    ABSENT_IN_CHECKPOINT: ClassVar[dict[str, Any]] = {"amp": None}
    """What a checkpoint written before a field existed meant: float32 gradient steps."""

    learning_rate: float = 1e-4
    """Adam step size."""
    buffer_size: int = 1_000_000
    """Transitions kept in replay (over all envs)."""
    learning_starts: int = 100
    """Env steps collected before the first update, acting uniformly at random (as SB3, whatever epsilon is)."""
    batch_size: int = 32
    """Transitions per gradient step."""
    tau: float = 1.0
    """Target update coefficient: 1 copies the online network, < 1 is a Polyak average."""
    gamma: float = 0.99
    """Discount factor."""
    train_freq: int = 4
    """Vector-env steps between update phases (a count: SB3's ``(n, "episode")`` form is not supported)."""
    gradient_steps: int = 1
    """Gradient steps per update phase; ``-1``: as many as the env steps of a phase (``train_freq`` x
    ``num_envs``), as SB3's ``-1``."""
    target_update_interval: int = 10_000
    """Env steps (over all envs) between target updates. SB3 counts ``max(interval // num_envs, 1)`` vector steps:
    the same for intervals that are multiples of ``num_envs``; below ``num_envs`` rlcore still updates once per
    ``interval`` env steps (several Polyak steps per vector step with ``tau < 1``)."""
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
    amp: str | None = "auto"
    """``"bf16"``: the TD steps' network passes (online and target) under bfloat16 autocast (float32 weights,
    optimizer, losses and checkpoints; acting stays float32); ``"auto"``: bf16 on a CPU with AMX or AVX512-BF16 when
    every hidden layer is >= 256 wide, float32 elsewhere; None: float32. On a CPU without either, ``"bf16"`` falls
    back to float32 (logged). Not with memory (the recurrent Q-network trains in float32)."""
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
    """Steps before them that only warm up the memory from a zero state (memory only). Windows of
    ``burn_in + sequence_length`` steps may cross episode ends (the memory restarts where an episode starts)."""
    replay_device: str = "cpu"
    """Where replay storage lives: ``"cpu"`` (host memory) or ``"auto"``/``"device"`` (the training device)."""
    pin_memory: bool = True
    """With host storage and a CUDA training device, move batches through pinned memory (non-blocking)."""
    use_action_masks: bool = True
    """When the env gives action masks (an ``action_masks()`` method, or ``info["action_mask"]``), take greedy and
    exploratory actions and the targets' max over the legal actions only (replay stores each next state's mask);
    False ignores them. Not with memory."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        object.__setattr__(self, "features_kwargs", with_absolute_paths(self.features_kwargs))
        check_range("learning_rate", self.learning_rate, 0.0, low_open=True)
        check_range("buffer_size", self.buffer_size, 1)
        check_range("learning_starts", self.learning_starts, 0)
        check_range("batch_size", self.batch_size, 1)
        check_range("tau", self.tau, 0.0, 1.0, low_open=True)
        check_range("gamma", self.gamma, 0.0, 1.0)
        check_range("train_freq", self.train_freq, 1)
        if self.gradient_steps != -1:
            check_range("gradient_steps", self.gradient_steps, 1, hint="or -1: as many as the phase's env steps")
        check_range("target_update_interval", self.target_update_interval, 1)
        check_range("exploration_fraction", self.exploration_fraction, 0.0, 1.0)
        check_range("exploration_initial_eps", self.exploration_initial_eps, 0.0, 1.0)
        check_range("exploration_final_eps", self.exploration_final_eps, 0.0, 1.0)
        if self.max_grad_norm is not None:
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True, allow_inf=True)
        if self.loss not in ("huber", "mse"):
            raise ValueError(f"loss must be 'huber' or 'mse', got {self.loss!r}")
        check_range("n_step", self.n_step, 1)
        check_range("per_alpha", self.per_alpha, 0.0)
        check_range("per_beta_start", self.per_beta_start, 0.0, 1.0)
        check_range("per_eps", self.per_eps, 0.0, low_open=True)
        if any(width < 1 for width in self.net_arch):
            raise ValueError(f"net_arch widths must be >= 1, got {list(self.net_arch)}")
        self._check_memory()
        check_choice("amp", self.amp, AMP_CHOICES)
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
