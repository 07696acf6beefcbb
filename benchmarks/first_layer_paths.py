"""The bfloat16 SAC/TD3 kernels' thin first layer: numba loops against BLAS products, side by side in one process.

:mod:`rlcore.kernels.thin_layers_bf16` runs a first layer of at least ``BLAS_MIN_INPUTS`` inputs (observation +
action) through numpy's BLAS and a thinner one through numba loops. This benchmark builds SAC and TD3 with rl-zoo's
networks (SAC 256x256, TD3 400x300, 256 rows a batch, ``amp="bf16"``) for observation + action sizes of the suite's
tasks (Pendulum 3 + 1, LunarLanderContinuous 8 + 2, Hopper 11 + 3, HalfCheetah 17 + 6, BipedalWalker 24 + 4) and
times the kernel's gradient step on a fixed batch with each path forced (the threshold set to 1 or out of reach),
alternating the two ``--rounds`` times and keeping each path's best round. Reported per shape: ms a step on each
path, ``loops / blas`` (above 1: BLAS faster) and which path the threshold picks.

bfloat16 products need a CPU with AVX512-BF16 or AMX (elsewhere the kernels take float32 and there is no thin
layer to compare); the script says so and exits.

Prints one JSON line to stdout.

    OMP_NUM_THREADS=1 python benchmarks/first_layer_paths.py [--algos sac,td3] [--rounds 6] [--steps 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gymnasium import spaces  # noqa: E402

import rlcore  # noqa: E402
from rlcore.agent import build_algorithm  # noqa: E402
from rlcore.kernels import thin_layers_bf16  # noqa: E402
from rlcore.kernels.mlp_bf16 import fast_bf16_matmul  # noqa: E402

SHAPES = {"Pendulum": (3, 1), "LunarLanderContinuous": (8, 2), "Hopper": (11, 3), "HalfCheetah": (17, 6),
          "BipedalWalker": (24, 4)}
NETS = {"sac": [256, 256], "td3": [400, 300]}
ROWS = 256


def batch_of(obs_dim: int, act_dim: int) -> dict[str, torch.Tensor]:
    """A fixed minibatch of ``ROWS`` transitions (random values: the step's cost does not depend on them)."""
    generator = torch.Generator().manual_seed(0)
    return {"obs": torch.randn(ROWS, obs_dim, generator=generator),
            "next_obs": torch.randn(ROWS, obs_dim, generator=generator),
            "action": torch.rand(ROWS, act_dim, generator=generator) * 2 - 1,
            "reward": torch.randn(ROWS, generator=generator), "discount": torch.full((ROWS,), 0.98)}


def timed_step_ms(kernel: Any, batch: dict[str, torch.Tensor], steps: int) -> float:
    """Milliseconds a gradient step of ``kernel`` on ``batch`` (after 3 warm-up steps)."""
    for _ in range(3):
        kernel.gradient_step(batch)
    start = time.perf_counter()
    for _ in range(steps):
        kernel.gradient_step(batch)
    return (time.perf_counter() - start) / steps * 1e3


def step_ms(kernel: Any, batch: dict[str, torch.Tensor], threshold: int, steps: int) -> float:
    """Milliseconds a gradient step with the first-layer threshold set to ``threshold``."""
    thin_layers_bf16.BLAS_MIN_INPUTS = threshold
    return timed_step_ms(kernel, batch, steps)


def parse_arguments(doc: str, argv: list[str] | None, **extra: str) -> argparse.Namespace:
    """``--algos``, ``--rounds``, ``--steps`` and ``extra`` string options (name -> default) of these benchmarks."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--algos", default="sac,td3")
    for name, default in extra.items():
        parser.add_argument(f"--{name}", default=default)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--steps", type=int, default=40)
    return parser.parse_args(argv)


def bf16_cpu(what_is_lost: str) -> bool:
    """Whether this CPU multiplies bfloat16 in hardware; if not, says so on stderr (``what_is_lost``: why then the
    comparison is empty)."""
    warnings.filterwarnings("ignore")
    if fast_bf16_matmul():
        return True
    print(f"this CPU has neither AVX512-BF16 nor AMX: the kernels run float32, {what_is_lost}", file=sys.stderr)
    return False


def measure(algo_name: str, obs_dim: int, act_dim: int, rounds: int, steps: int) -> dict[str, Any]:
    algo = build_algorithm(algo_name, spaces.Box(-1, 1, (obs_dim,), np.float32),
                           spaces.Box(-1, 1, (act_dim,), np.float32),
                           {"net_arch": NETS[algo_name], "batch_size": ROWS, "amp": "bf16"}, seed=0)
    kernel, batch, default = algo._kernel, batch_of(obs_dim, act_dim), thin_layers_bf16.BLAS_MIN_INPUTS
    assert kernel is not None and algo.amp == "bf16", f"{algo_name}: no bfloat16 kernel ({algo.amp!r})"
    best = {"loops": float("inf"), "blas": float("inf")}
    try:
        for _ in range(rounds):
            best["loops"] = min(best["loops"], step_ms(kernel, batch, 1_000_000, steps))
            best["blas"] = min(best["blas"], step_ms(kernel, batch, 1, steps))
    finally:
        thin_layers_bf16.BLAS_MIN_INPUTS = default
    inputs = obs_dim + act_dim
    return {"algo": algo_name, "inputs": f"{obs_dim}+{act_dim}", "loops_ms": round(best["loops"], 3),
            "blas_ms": round(best["blas"], 3), "loops_over_blas": round(best["loops"] / best["blas"], 3),
            "threshold_picks": "blas" if inputs >= default else "loops"}


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(__doc__, argv)
    if not bf16_cpu("without the fused thin layers"):
        return
    rows = []
    for algo_name in args.algos.split(","):
        for task, (obs_dim, act_dim) in SHAPES.items():
            row = {"task": task, **measure(algo_name, obs_dim, act_dim, args.rounds, args.steps)}
            print(json.dumps(row), file=sys.stderr)
            rows.append(row)
    versions = {"rlcore": rlcore.__version__, "torch": torch.__version__, "numpy": np.__version__}
    print(json.dumps({"benchmark": "first_layer_paths", "rows": ROWS,
                      "blas_min_inputs": thin_layers_bf16.BLAS_MIN_INPUTS, "results": rows,
                      "torch_threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine(),
                      "versions": versions}))


if __name__ == "__main__":
    main()
