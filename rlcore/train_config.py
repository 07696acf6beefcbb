"""The training loop's settings (:class:`TrainConfig`), below the Trainer so that checkpoint validation and the
CLI can read them without importing the loop."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch

from rlcore.presets import PRESET_CHOICES
from rlcore.settings import MAX_SEED, check_range
from rlcore.threads import check_threads

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Settings of the training loop, shared by every algorithm."""

    total_env_steps: int = 100_000
    """Environment steps to train for (summed over the vector env's sub-envs)."""
    num_envs: int = 1
    """Sub-envs stepped together."""
    seed: int = 0
    """Seeds the networks, the algorithm's generator and the envs (sub-env ``i`` gets ``seed + i``)."""
    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``, ..."""
    vectorization: str = "sync"
    """``sync`` (one process) or ``async`` (a process per sub-env)."""
    eval_freq: int = 10_000
    """Env steps between deterministic evaluations; 0 disables them."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    checkpoint_freq: int = 10_000
    """Env steps between resumable checkpoints; 0 keeps only the final one."""
    save_buffer: bool = True
    """Include the replay buffer in resumable checkpoints (needed for an exact resume)."""
    log_dir: str | None = "runs"
    """Root of the run folders ``<log_dir>/<env>/<algo>/seed<k>-<time>``; None disables files."""
    log_interval: int = 1_000
    """Env steps between scalar logs."""
    progress_bar: bool = True
    """Show a rich progress bar on the console."""
    stop_at_reward: float | None = None
    """Stop training once an evaluation's mean reward reaches this (SB3's StopTrainingOnRewardThreshold)."""
    num_workers: int = 0
    """Collector processes (``backend="local"``) or Ray actors (``backend="ray"``), each stepping ``num_envs``
    sub-envs; 0 collects in the learner's own process."""
    backend: str = "local"
    """``local``: worker processes (``spawn``) writing into shared memory; ``ray``: Ray actors."""
    ray_address: str | None = None
    """``backend="ray"``: an existing cluster to join (``"auto"``, ``"ray://head:10001"``); None starts a local Ray."""
    worker_resources: dict[str, float] | None = None
    """``backend="ray"``: custom Ray resources each collector actor asks for, e.g. ``{"collector": 1}``, so actors run
    only on nodes started with ``ray start --resources='{"collector": 4}'`` (not beside the learner); None: any node."""
    weight_pull_interval: int = 50
    """Vector steps a worker takes between pulls of newer weights (off-policy algorithms; on-policy workers
    always act with the weights of the current update)."""
    worker_lead: int | None = 0
    """Off-policy workers: env steps they may collect beyond what the learner has trained on at the algorithm's
    gradient-steps-per-env-step ratio (a rate limiter, so a slow learner keeps the single-process sample
    efficiency); 0: ``train_freq * num_envs`` per worker; None: unlimited (Ape-X: workers never wait)."""
    worker_epsilon: str = "schedule"
    """DQN workers' exploration: ``schedule`` (every worker follows the config's decay) or ``apex`` (worker ``i`` of
    ``N`` keeps ``0.4 ** (1 + 7 i / (N - 1))``, as in Ape-X)."""
    env_kwargs: dict[str, Any] | None = None
    """Keyword arguments for ``gym.make`` / the env factory, as rl-zoo's ``env_kwargs`` (a preset may set them);
    the ``env_kwargs=`` of :class:`Trainer` and :func:`rlcore.train` override them key by key."""
    check_env: bool = True
    """Check a user's env once before training (gymnasium's API: spaces, ``reset``/``step`` returns, observations
    inside their space with its dtype, seeding, action masks): each finding is one error saying how to fix it. Ids of
    gymnasium's and rlcore's own envs are not checked; False skips the check."""
    threads: int | str | None = "auto"
    """CPU threads of torch and numpy's BLAS: ``auto`` (one for small networks, every core for large CNN batches;
    an ``OMP_NUM_THREADS`` set by the user wins), a number, or None to leave them as they are
    (see :mod:`rlcore.threads`)."""
    tf32: bool = True
    """On CUDA, float32 matrix products and convolutions use TF32 tensor cores (``torch.set_float32_matmul_precision
    ("high")`` and cuDNN's ``allow_tf32``; what PyTorch users turn on for speed on Ampere and later GPUs); False keeps
    full float32 precision. No effect on the CPU."""
    init_from: str | None = None
    """A saved agent (its folder, or a run folder: its ``best/``) whose networks and observation/reward statistics a
    new run starts from, to train it on (fine-tuning); the optimizer, generator, counters and schedules are the new
    run's. Its algorithm settings are the base of the run's (yours override them); its spaces must be the env's."""
    preset: str = "auto"
    """Which variant of the (algorithm, env) preset ``rlcore.train`` starts from, where it has a GPU-sized one (more
    envs, larger batches; ``rlcore presets`` lists them): ``auto`` takes it when the run trains on CUDA, ``gpu``
    on any device, ``cpu`` never. Your own settings override either."""

    def __post_init__(self) -> None:
        check_range("seed", self.seed, 0, MAX_SEED)
        check_range("total_env_steps", self.total_env_steps, 1)
        check_range("num_envs", self.num_envs, 1)
        check_range("eval_freq", self.eval_freq, 0)
        check_range("eval_episodes", self.eval_episodes, 1)
        check_range("checkpoint_freq", self.checkpoint_freq, 0)
        check_range("log_interval", self.log_interval, 1)
        if self.stop_at_reward is not None:
            check_range("stop_at_reward", self.stop_at_reward)
            if not self.eval_freq:
                raise ValueError(f"stop_at_reward={self.stop_at_reward:g} stops at an evaluation's mean reward, and "
                                 "eval_freq=0 runs none: set eval_freq > 0 (env steps between evaluations)")
        if self.vectorization not in ("sync", "async"):
            raise ValueError(f"vectorization must be 'sync' or 'async', got {self.vectorization!r}")
        check_range("num_workers", self.num_workers, 0)
        check_range("weight_pull_interval", self.weight_pull_interval, 1)
        if self.worker_lead is not None:
            check_range("worker_lead", self.worker_lead, 0)
        if self.backend not in ("local", "ray"):
            raise ValueError(f"backend must be 'local' or 'ray', got {self.backend!r}")
        if self.worker_resources is not None and self.backend != "ray":
            raise ValueError(f"worker_resources={self.worker_resources!r} places Ray actors: set backend='ray'")
        if self.ray_address is not None and self.backend != "ray":
            raise ValueError(f"ray_address={self.ray_address!r} joins a Ray cluster for backend='ray' (with "
                             "num_workers > 0): set backend='ray', or drop ray_address")
        if self.backend == "ray" and self.num_workers == 0:
            raise ValueError("backend='ray' runs the collectors as Ray actors: set num_workers >= 1 (with "
                             "num_workers=0 the run collects in this process, without Ray)")
        if self.backend == "local" and self.num_workers > 0 and self.vectorization == "async":
            raise ValueError("vectorization='async' with local workers (num_workers > 0): each worker process steps "
                             "its num_envs sub-envs itself and cannot start processes of its own; use "
                             "vectorization='sync' (the workers are the parallel processes), or backend='ray'")
        if self.worker_epsilon not in ("schedule", "apex"):
            raise ValueError(f"worker_epsilon must be 'schedule' or 'apex', got {self.worker_epsilon!r}")
        if self.env_kwargs is not None and (
            not isinstance(self.env_kwargs, dict) or not all(isinstance(key, str) for key in self.env_kwargs)
        ):
            raise ValueError(f"env_kwargs must be a dict of keyword arguments (str keys) or None, got "
                             f"{self.env_kwargs!r}")
        check_threads(self.threads)
        if not isinstance(self.tf32, bool):
            raise ValueError(f"tf32 must be True or False, got {self.tf32!r}")
        resolve_device(self.device)
        if self.preset not in PRESET_CHOICES:
            raise ValueError(f"preset must be one of {', '.join(PRESET_CHOICES)}, got {self.preset!r}")


def apply_tf32(device: torch.device, enabled: bool) -> None:
    """Sets torch's float32 matmul precision and cuDNN's TF32 switch for a run on ``device`` (CUDA only: on the CPU
    the process's settings are left as they are)."""
    if device.type != "cuda":
        return
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled
    logger.info("float32 products on %s: %s", device, "TF32 tensor cores (tf32=True)" if enabled
                else "full float32 precision (tf32=False)")


def resolve_device(device: str) -> torch.device:
    """``auto`` -> ``cuda`` when available, else ``cpu``; anything else is parsed by torch."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:i]', got {device!r}") from error
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} but CUDA is not available here; use device='auto' or 'cpu'")
    return resolved
