"""How many threads the CPU maths uses: chosen by rlcore from the work, unless the user chose.

Left alone, torch starts one intra-op thread per core and numpy's OpenBLAS its own pool of as many. rlcore's
fast paths alternate between the two (torch ops and numpy products), and each pool's idle workers spin for a
while before they sleep, so on a small machine the two pools fight for the cores: DQN on CartPole-v1 trained
~13x slower on 2 cores than with one thread (``docs/performance.md``). The matrix products of small networks are
far too small to share out anyway; only large convolutional batches (Atari frames) gain from more threads.

The rule (``threads="auto"``, measured by ``benchmarks/threads_rule.py``):

- the work is the multiply-adds of one forward pass of the algorithm's networks over one minibatch
  (:func:`forward_macs_per_sample` times the config's ``batch_size``);
- and the largest matrix product torch runs in one gradient step (:func:`largest_torch_product`: rows x inputs x
  outputs of the widest layer that an algorithm's CPU kernel hands to torch: DQN's, SAC's and TD3's wide layers;
  PPO's and A2C's kernels multiply in numpy and count none);
- on the CPU, below :data:`PARALLEL_WORK_MACS` of work and :data:`PARALLEL_PRODUCT_MACS` of product it is one
  thread; from either on it is every core torch would use (its own default, within the process's CPU affinity);
  with the networks on a GPU rlcore leaves the threads alone;
- numpy's BLAS pool (rlcore's own products are small) always gets one thread.

An explicit ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` in the environment wins over
``"auto"`` (the libraries read it at start-up and rlcore leaves them as they are); an explicit number
``threads=N`` wins over everything (torch gets ``N``, numpy's BLAS one); ``threads=None`` leaves the process's
settings untouched (what rlcore did before it chose).
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
"""Environment variables through which a user sets the threads of torch's and numpy's pools."""
PARALLEL_WORK_MACS = 100_000_000
"""Forward multiply-adds per minibatch from which more threads pay. Measured on a 2-core AVX-512 CPU
(``benchmarks/threads_rule.py``): a NatureCNN minibatch of 32 Atari frames (~300M) trains 1.6x faster on 2
threads; MinAtar's SmallCNN at 256 rows (~50M) gains ~1.1x at best and loses on a busy machine; MLPs of
classic control (< 20M) gain nothing."""
PARALLEL_PRODUCT_MACS = 8_000_000
"""The largest product torch runs in a gradient step (rows x inputs x outputs) from which more threads pay. Measured
on a 2-core AVX512-BF16 CPU (``benchmarks/threads_rule.py``, ``benchmarks/results/threads_rule.jsonl``), gradient
steps/s on 2 threads over 1: DQN 128x256x256 (rl-zoo's Acrobot, bfloat16) 1.26x (float32: 1.15x), SAC 256x256x256
1.40x, TD3 256x400x300 1.46x; DQN's CartPole preset (64x256x256, 4.2M) 1.21x in that loop of gradient steps, but no
faster end to end (``benchmarks/first_run.py``: 0.98x the wall time for 1.8x the CPU time: its gradient steps come
in bursts between env steps); 64x128x128 (1M, float32) 0.76x."""
THREAD_SETTINGS = ("auto", None)
"""The non-numeric values of ``threads``: rlcore chooses, or leaves the process as it is."""


@dataclass(frozen=True)
class ThreadChoice:
    """What :func:`apply_threads` did.

    Attributes:
        threads: torch's intra-op threads after the call (the process's count when left alone).
        blas_threads: numpy's BLAS threads rlcore set, or None when it left them alone.
        reason: One line a user reads: why this count, and how to change it.
    """

    threads: int
    blas_threads: int | None
    reason: str


def check_threads(value: Any) -> None:
    """Raises a ValueError naming the field and the accepted forms unless ``value`` is a valid ``threads``."""
    if value in THREAD_SETTINGS or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return
    raise ValueError(f"threads must be 'auto', a number of threads >= 1 or None (leave torch's and numpy's "
                     f"defaults), got {value!r}")


def environment_threads() -> tuple[str, str] | None:
    """``(variable, value)`` of the first thread variable the user set, or None."""
    for name in THREAD_VARIABLES:
        if os.environ.get(name, "").strip():
            return name, os.environ[name].strip()
    return None


@functools.lru_cache(maxsize=1)
def available_cores() -> int:
    """The threads torch would start by default, within the CPU cores this process may run on.

    Read once, before rlcore changes anything: torch's default is one thread per physical core.
    """
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        affinity = os.cpu_count() or 1
    return max(1, min(torch.get_num_threads(), affinity))


def forward_macs_per_sample(modules: list[nn.Module], observation_space: Any = None) -> int:
    """Multiply-adds of one forward pass of ``modules`` for one observation.

    Linear layers count ``in * out``; convolutions count their weights times their output positions, which a
    forward of every feature extractor (:class:`rlcore.nets.base.FeatureExtractor`) over one zero observation of
    ``observation_space`` measures (a convolution it does not reach counts one position).
    """
    from rlcore.nets.base import FeatureExtractor

    positions: dict[int, int] = {}

    def record(layer: nn.Module, inputs: Any, output: torch.Tensor) -> None:
        positions[id(layer)] = int(np.prod(output.shape[2:]))

    convolutions = [layer for module in modules for layer in module.modules() if isinstance(layer, nn.Conv2d)]
    if convolutions and observation_space is not None:
        hooks = [layer.register_forward_hook(record) for layer in convolutions]
        try:
            extractors = {id(layer): layer for module in modules for layer in module.modules()
                          if isinstance(layer, FeatureExtractor)}
            for extractor in extractors.values():
                _forward_one(extractor, observation_space)
        finally:
            for hook in hooks:
                hook.remove()
    macs = 0
    seen: set[int] = set()
    for module in modules:
        for layer in module.modules():
            if id(layer) in seen:
                continue
            seen.add(id(layer))
            if isinstance(layer, nn.Linear):
                macs += layer.weight.numel()
            elif isinstance(layer, nn.Conv2d):
                macs += layer.weight.numel() * positions.get(id(layer), 1)
    return macs


def _forward_one(extractor: nn.Module, observation_space: Any) -> None:
    """Runs ``extractor`` on one zero observation (a space it cannot take is skipped: its convolutions then
    count one position)."""
    from gymnasium import spaces

    def zeros(space: Any) -> Any:
        if isinstance(space, spaces.Dict):
            return {key: zeros(sub) for key, sub in space.spaces.items()}
        sample = np.zeros(space.shape, dtype=space.dtype)
        return torch.as_tensor(sample)[None]

    device = next(extractor.parameters(), torch.empty(0)).device
    try:
        batch = zeros(observation_space)
        batch = {k: v.to(device) for k, v in batch.items()} if isinstance(batch, dict) else batch.to(device)
        with torch.no_grad():
            extractor(batch)
    except (RuntimeError, TypeError, ValueError, AttributeError, IndexError) as error:
        logger.debug("threads: could not measure %s's work on %s (%s)", type(extractor).__name__,
                     observation_space, error)


def algorithm_work(algo: Any) -> int:
    """Forward multiply-adds of ``algo``'s networks over one minibatch (``config.batch_size`` rows, else 1)."""
    modules = [value for value in vars(algo).values() if isinstance(value, nn.Module)]
    rows = int(getattr(algo.config, "batch_size", 1) or 1)
    return forward_macs_per_sample(modules, getattr(algo, "observation_space", None)) * rows


def largest_torch_product(algo: Any) -> int:
    """Multiply-adds of the largest matrix product torch runs in one of ``algo``'s gradient steps: ``batch_size``
    rows times the inputs and outputs of the widest layer its CPU kernel hands to torch (each network kernel's
    ``torch_product_dims``); 0 without such a kernel (autograd, or a kernel that multiplies in numpy)."""
    networks = getattr(getattr(algo, "_kernel", None), "kernels", None)
    if networks is None:
        return 0
    rows = int(getattr(algo.config, "batch_size", 1) or 1)
    return max((rows * inputs * outputs for network in networks() for inputs, outputs in network.torch_product_dims()),
               default=0)


def choose_threads(setting: int | str | None, work_macs: int, device: torch.device | str = "cpu",
                   product_macs: int = 0) -> ThreadChoice:
    """The thread counts for ``setting``, the work and the largest torch product, without applying them (see the
    module docstring)."""
    check_threads(setting)
    current = torch.get_num_threads()
    if setting is None:
        return ThreadChoice(current, None, "left as they are (threads=None)")
    if isinstance(setting, int):
        return ThreadChoice(setting, 1, f"threads={setting} as set (numpy's BLAS: 1)")
    variable = environment_threads()
    if variable is not None:
        return ThreadChoice(current, None, f"{variable[0]}={variable[1]} is set: rlcore leaves torch's and "
                                           "numpy's threads as they are")
    if torch.device(device).type != "cpu":
        return ThreadChoice(current, None, f"left as they are (the networks run on {torch.device(device).type})")
    work = f"{work_macs / 1e6:,.1f}M multiply-adds per minibatch forward"
    if product_macs:
        work += f", largest torch product {product_macs / 1e6:,.1f}M"
    change = "threads=N or OMP_NUM_THREADS=N sets another count"
    large = work_macs >= PARALLEL_WORK_MACS or product_macs >= PARALLEL_PRODUCT_MACS
    if not large or available_cores() == 1:
        return ThreadChoice(1, 1, f"1 ({work}; more threads pay from {PARALLEL_WORK_MACS / 1e6:,.0f}M, or from an "
                                  f"{PARALLEL_PRODUCT_MACS / 1e6:,.0f}M product); {change}")
    cores = available_cores()
    return ThreadChoice(cores, 1, f"{cores} ({work}: more threads pay from {PARALLEL_WORK_MACS / 1e6:,.0f}M, or "
                                  f"from an {PARALLEL_PRODUCT_MACS / 1e6:,.0f}M product; numpy's BLAS: 1); {change}")


_last_logged: list[str] = []


def apply_threads(setting: int | str | None, *, algo: Any = None, device: torch.device | str = "cpu") -> ThreadChoice:
    """Chooses (:func:`choose_threads`) and sets torch's intra-op threads and numpy's BLAS pool.

    The choice is logged once at INFO (again only when it changes).

    Args:
        setting: ``"auto"``, a number of threads, or None to leave the process as it is.
        algo: The algorithm whose networks' work decides ``"auto"`` (None counts as small work).
        device: Where the networks run.
    """
    available_cores()  # torch's own default, read before the first change
    auto = algo is not None and setting == "auto"
    work, product = (algorithm_work(algo), largest_torch_product(algo)) if auto else (0, 0)
    choice = choose_threads(setting, work, device, product)
    if choice.blas_threads is not None:
        torch.set_num_threads(choice.threads)
        _limit_blas(choice.blas_threads)
    message = f"threads: {choice.reason}"
    if _last_logged != [message]:
        logger.info("%s", message)
        _last_logged[:] = [message]
    return choice


def _limit_blas(threads: int) -> None:
    """Sets the BLAS libraries loaded in this process (numpy's OpenBLAS, MKL) to ``threads`` threads."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; without it numpy keeps its pool
        logger.debug("threadpoolctl is not installed; numpy's BLAS threads are left as they are")
        return
    threadpool_limits(limits=threads, user_api="blas")
