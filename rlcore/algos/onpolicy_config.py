"""The settings REINFORCE, A2C and PPO share (:class:`OnPolicyConfig`); each algorithm's config adds its own."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rlcore.fields import with_absolute_paths
from rlcore.settings import check_range

SCHEDULES = ("constant", "linear")


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
    """Orthogonal initialisation of the feature extractor and heads (SB3/CleanRL); else torch's default."""
    log_std_init: float = 0.0
    """Initial log standard deviation of a Gaussian (Box) policy (with ``use_sde``: of each noise weight)."""
    use_sde: bool = False
    """Generalized state-dependent exploration (gSDE, SB3's ``use_sde``; Box actions): the exploration noise is a
    linear function of the actor's last hidden features, with weights drawn at each rollout's start (and every
    ``sde_sample_freq`` steps), instead of independent noise at every step
    (:class:`rlcore.distributions.StateDependentGaussian`; the CPU kernel trains it too)."""
    sde_sample_freq: int = -1
    """With ``use_sde``: draw new noise weights every this many vector steps; -1 (or 0): only at each rollout's
    start (SB3's)."""
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
    sequence_length: int | None = None
    """LSTM training: steps per stored sequence (``n_steps`` must be a multiple of it); None: the longest that fits a
    minibatch, i.e. each env's whole rollout (``n_steps``) or the longest divisor of ``n_steps`` up to PPO's
    ``batch_size`` (sb3-contrib's RecurrentPPO also cuts sequences only where its minibatches end)."""
    critic_memory: str = "shared"
    """With ``memory``: ``shared``: one core feeds both heads (both losses train it; half the memory compute; it
    learned as well as separate cores over 20-30 seeds, at 1.35-1.5x the env steps/s, docs/ARCHITECTURE.md);
    ``separate`` gives the critic a memory core of its own (as sb3-contrib's RecurrentPPO), so the value loss does
    not shape the actor's memory."""

    ABSENT_IN_CHECKPOINT: ClassVar[dict[str, Any]] = {"critic_memory": "shared", "sequence_length": 16}
    """Checkpoints saved before ``critic_memory`` existed had one core for both heads; a checkpoint without
    ``sequence_length`` (never written: it was always saved) meant the old default, 16."""

    use_action_masks: bool = True
    """When the env gives action masks (an ``action_masks()`` method, or ``info["action_mask"]``; Discrete and
    MultiDiscrete actions), sample, score and take the entropy over the legal actions only, as sb3-contrib's
    MaskablePPO; False ignores them."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(width) for width in self.net_arch))
        object.__setattr__(self, "features_kwargs", with_absolute_paths(self.features_kwargs))
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
            check_range("max_grad_norm", self.max_grad_norm, 0.0, low_open=True, allow_inf=True)
        check_range("clip_obs", self.clip_obs, 0.0, low_open=True, allow_inf=True)
        check_range("clip_reward", self.clip_reward, 0.0, low_open=True, allow_inf=True)
        check_range("sde_sample_freq", self.sde_sample_freq, -1)
        check_range("log_std_init", self.log_std_init)
        check_choice("optimizer", self.optimizer, ("adam", "rmsprop"))
        check_range("adam_eps", self.adam_eps, 0.0, low_open=True)
        if self.amp not in (None, "bf16"):
            raise ValueError(f"amp must be None or 'bf16', got {self.amp!r}")
        check_choice("memory", self.memory, (None, "lstm", "transformer"))
        check_range("memory_size", self.memory_size, 1)
        check_range("context_length", self.context_length, 1)
        if self.sequence_length is not None:
            check_range("sequence_length", self.sequence_length, 1)
        check_choice("critic_memory", self.critic_memory, ("separate", "shared"))
        if self.memory == "lstm" and self.n_steps % self.lstm_sequence_length:
            raise ValueError(f"memory='lstm' needs n_steps ({self.n_steps}) to be a multiple of sequence_length "
                             f"({self.sequence_length})")
        for name in ("net_arch", "vf_arch"):
            widths = getattr(self, name)
            if widths is not None and any(width < 1 for width in widths):
                raise ValueError(f"{name} widths must be >= 1, got {list(widths)}")

    @property
    def lstm_sequence_length(self) -> int:
        """Steps per stored LSTM sequence: ``sequence_length``, or when None the longest divisor of ``n_steps`` that
        fits a minibatch of :attr:`minibatch_rows` rows (``n_steps`` when the rollout is one minibatch)."""
        if self.sequence_length is not None:
            return self.sequence_length
        rows = self.minibatch_rows
        if rows is None or rows >= self.n_steps:
            return self.n_steps
        return max(length for length in range(1, max(rows, 1) + 1) if self.n_steps % length == 0)

    @property
    def minibatch_rows(self) -> int | None:
        """Rows per minibatch of an update; None: the whole rollout is one (A2C, REINFORCE)."""
        return None

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
