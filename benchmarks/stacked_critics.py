"""The bfloat16 SAC/TD3 kernels' twin critics: batched wide products against the critics one by one, in one process.

:mod:`rlcore.kernels.stacked_bf16` runs the critics' wide products as one ``baddbmm``/``bmm`` per layer; the
critics run one by one (``CriticsKernel``'s path for what does not stack) are its reference. This benchmark builds
SAC and TD3 with rl-zoo's networks (SAC 256x256, TD3 400x300, 256 rows a batch, ``amp="bf16"``) on BipedalWalker's
24 + 4 inputs and Pendulum's 3 + 1, and times the kernel's gradient step on a fixed batch with the stacked path on
and off (the stacked objects set aside), alternating the two ``--rounds`` times and keeping each path's best round,
at 1 thread and at 2 (``--threads``). Reported per row: ms a step on each path and ``one_by_one / stacked`` (above
1: stacking faster).

bfloat16 products need a CPU with AVX512-BF16 or AMX (elsewhere the kernels take float32 and nothing stacks); the
script says so and exits.

Prints one JSON line to stdout.

    python benchmarks/stacked_critics.py [--threads 1,2] [--rounds 6] [--steps 40]
"""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

import rlcore
from rlcore.threads import apply_threads

sys.path.insert(0, str(Path(__file__).parent))
from first_layer_paths import NETS, ROWS, SHAPES, batch_of, bf16_cpu, parse_arguments, timed_step_ms  # noqa: E402

TASKS = ("Pendulum", "BipedalWalker")


def step_ms(kernel: Any, batch: dict[str, torch.Tensor], stacked: tuple[Any, Any], steps: int) -> float:
    """Milliseconds a gradient step with the critics' stacked objects ``stacked`` (None, None: one by one)."""
    kernel.critics.stacked_online, kernel.critics.stacked_target = stacked
    return timed_step_ms(kernel, batch, steps)


def measure(algo_name: str, task: str, threads: int, rounds: int, steps: int) -> dict[str, Any]:
    from gymnasium import spaces

    from rlcore.agent import build_algorithm

    obs_dim, act_dim = SHAPES[task]
    algo = build_algorithm(algo_name, spaces.Box(-1, 1, (obs_dim,), np.float32),
                           spaces.Box(-1, 1, (act_dim,), np.float32),
                           {"net_arch": NETS[algo_name], "batch_size": ROWS, "amp": "bf16"}, seed=0)
    apply_threads(threads)  # torch's threads; numpy's BLAS (the first layer's products) one, as in training
    kernel, batch = algo._kernel, batch_of(obs_dim, act_dim)
    stacked = (kernel.critics.stacked_online, kernel.critics.stacked_target)
    assert stacked[0] is not None and stacked[1] is not None, f"{algo_name}: the critics do not stack"
    best = {"stacked": float("inf"), "one_by_one": float("inf")}
    try:
        for _ in range(rounds):
            best["one_by_one"] = min(best["one_by_one"], step_ms(kernel, batch, (None, None), steps))
            best["stacked"] = min(best["stacked"], step_ms(kernel, batch, stacked, steps))
    finally:
        kernel.critics.stacked_online, kernel.critics.stacked_target = stacked
    return {"algo": algo_name, "task": task, "inputs": f"{obs_dim}+{act_dim}", "threads": threads,
            "one_by_one_ms": round(best["one_by_one"], 3), "stacked_ms": round(best["stacked"], 3),
            "one_by_one_over_stacked": round(best["one_by_one"] / best["stacked"], 3)}


def main(argv: list[str] | None = None) -> None:
    args = parse_arguments(__doc__, argv, threads="1,2")
    if not bf16_cpu("where the critics do not stack"):
        return
    rows = []
    for threads in (int(count) for count in args.threads.split(",")):
        for algo_name in args.algos.split(","):
            for task in TASKS:
                row = measure(algo_name, task, threads, args.rounds, args.steps)
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
    versions = {"rlcore": rlcore.__version__, "torch": torch.__version__, "numpy": np.__version__}
    print(json.dumps({"benchmark": "stacked_critics", "rows": ROWS, "results": rows,
                      "cpu": platform.processor() or platform.machine(), "versions": versions}))


if __name__ == "__main__":
    main()
