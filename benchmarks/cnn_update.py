"""CNN-PPO update throughput: fp32, bf16 autocast and torch.compile side by side, in one run.

For two image shapes, a PPO algorithm with the automatic CNN is built and its update
(:meth:`PPO.optimize`: minibatch forward, clipped loss, backward, Adam) runs on a fixed batch:

- ``minatar``: ``[10, 10, 4]`` bool images (SmallCNN, the MinAtar Breakout preset's heads),
  ``--minatar-rows`` rows per update in minibatches of ``--minatar-batch``;
- ``atari``: ``[4, 84, 84]`` uint8 frames (NatureCNN, 512 features), ``--atari-rows`` rows in
  minibatches of ``--atari-batch``.

Modes: ``fp32`` (for SmallCNN on the CPU the hand-written kernel, :mod:`rlcore.kernels.cnn`;
NatureCNN trains through autograd); ``fp32_autograd`` (``fast_path=False``: autograd for every encoder);
``bf16`` (``amp="bf16"``: autocast of the forward passes, through autograd); ``compile`` (``compile=True``,
inductor; its compile time, cold: a fresh cache unless ``TORCHINDUCTOR_CACHE_DIR`` is set, is in the
warm-up seconds and excluded from the rate); ``compile_bf16``. Each mode is warmed up, then timed for at
least ``--seconds`` (the best of three timing windows, robust to a busy machine). Reported per shape and
mode: gradient steps/s, samples/s
(minibatch rows per second), the speed-up over fp32, the warm-up seconds (compile included) and
how far its first update differs from fp32's first update (``|delta - delta_fp32| / |delta_fp32|``, the
parameter changes of the same first update from the same initial parameters).

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/cnn_update.py [--modes fp32,fp32_autograd,bf16,compile] [--device cpu]
        [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
# a fresh inductor cache, so that the compile modes' warm-up is a cold compile (set the variable to reuse one)
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", tempfile.mkdtemp(prefix="rlcore-cnn-update-inductor-"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gymnasium import spaces  # noqa: E402

import rlcore  # noqa: E402
from rlcore.agent import build_algorithm  # noqa: E402

SHAPES: dict[str, dict[str, Any]] = {
    "minatar": {"space": spaces.Box(0, 1, (10, 10, 4), np.bool_), "actions": 6,
                "settings": {"net_arch": [], "n_epochs": 1}},
    "atari": {"space": spaces.Box(0, 255, (4, 84, 84), np.uint8), "actions": 4,
              "settings": {"net_arch": [], "n_epochs": 1}},
}
MODES: dict[str, dict[str, Any]] = {
    "fp32": {},
    "fp32_autograd": {"fast_path": False},
    "bf16": {"amp": "bf16"},
    "compile": {"compile": True},
    "compile_bf16": {"compile": True, "amp": "bf16"},
}


def fixed_batch(space: spaces.Box, actions: int, rows: int, device: str) -> dict[str, torch.Tensor]:
    """A rollout-shaped batch ``[rows, ...]``: random images, actions, log-probs, values, advantages, returns."""
    generator = torch.Generator().manual_seed(0)
    if space.dtype == np.bool_:
        obs = torch.rand(rows, *space.shape, generator=generator) > 0.9
    else:
        obs = torch.randint(0, 256, (rows, *space.shape), generator=generator, dtype=torch.uint8)
    batch = {"obs": obs, "action": torch.randint(actions, (rows,), generator=generator),
             "log_prob": torch.full((rows,), -float(np.log(actions))), "value": torch.zeros(rows),
             "advantage": torch.randn(rows, generator=generator), "return": torch.randn(rows, generator=generator)}
    return {key: value.to(device) for key, value in batch.items()}


def parameters(algo: Any) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1).float().cpu() for p in algo.policy.parameters()])


def measure(shape: str, mode: str, rows: int, batch_size: int, seconds: float, device: str,
            reference: torch.Tensor | None) -> dict[str, Any]:
    """Throughput of one (shape, mode); ``reference`` is fp32's parameter change in its first update (or None)."""
    spec = SHAPES[shape]
    settings = {**spec["settings"], **MODES[mode], "n_steps": rows, "batch_size": batch_size, "learning_rate": 1e-4}
    algo = build_algorithm("ppo", spec["space"], spaces.Discrete(spec["actions"]), settings, seed=0, num_envs=1,
                           device=device)
    batch = fixed_batch(spec["space"], spec["actions"], rows, device)
    steps_per_update = -(-rows // batch_size)

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    initial = parameters(algo)
    start = time.perf_counter()
    algo.optimize(batch)  # warm-up: the first kernels, and the compilation in the compile modes
    sync()
    first_change = parameters(algo) - initial
    algo.optimize(batch)
    sync()
    warm_up = time.perf_counter() - start
    best = 0.0
    for _ in range(3):
        updates, window_start = 0, time.perf_counter()
        while True:
            algo.optimize(batch)
            updates += 1
            sync()
            elapsed = time.perf_counter() - window_start
            if elapsed >= seconds / 3:
                break
        best = max(best, updates * steps_per_update / elapsed)
    result = {"grad_steps_per_s": round(best, 2), "samples_per_s": round(best * batch_size, 1),
              "warm_up_seconds": round(warm_up, 1)}
    if reference is not None:
        result["first_update_diff_vs_fp32"] = round(float((first_change - reference).norm() / reference.norm()), 6)
    result["_change"] = first_change
    print(f"{shape} {mode}: {result['grad_steps_per_s']} gradient steps/s ({result['samples_per_s']} samples/s), "
          f"warm-up {result['warm_up_seconds']} s", file=sys.stderr, flush=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--modes", default="fp32,fp32_autograd,bf16,compile",
                        help=f"comma-separated: {', '.join(MODES)}")
    parser.add_argument("--shapes", default="minatar,atari", help="comma-separated: minatar, atari")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seconds", type=float, default=6.0, help="timed seconds per (shape, mode)")
    parser.add_argument("--minatar-rows", type=int, default=1024)
    parser.add_argument("--minatar-batch", type=int, default=256)
    parser.add_argument("--atari-rows", type=int, default=256)
    parser.add_argument("--atari-batch", type=int, default=128)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: fp32, fp32_autograd and bf16, 0.5 s each, small batches")
    args = parser.parse_args(argv)
    modes = ["fp32", "fp32_autograd", "bf16"] if args.quick else args.modes.split(",")
    unknown = set(modes) - set(MODES)
    if unknown or "fp32" not in modes:
        parser.error(f"--modes must include fp32 and be among {list(MODES)}; got {modes}")
    seconds = 0.5 if args.quick else args.seconds
    sizes = {"minatar": (args.minatar_rows, args.minatar_batch), "atari": (args.atari_rows, args.atari_batch)}
    if args.quick:
        sizes = {"minatar": (256, 128), "atari": (32, 16)}
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    warnings.filterwarnings("ignore")
    results: dict[str, Any] = {}
    for shape in args.shapes.split(","):
        rows, batch_size = sizes[shape]
        per_mode: dict[str, Any] = {}
        for mode in modes:
            reference = per_mode["fp32"]["_change"] if "fp32" in per_mode else None
            per_mode[mode] = measure(shape, mode, rows, batch_size, seconds, args.device, reference)
        base = per_mode["fp32"]["grad_steps_per_s"]
        for values in per_mode.values():
            values.pop("_change")
            values["speedup_vs_fp32"] = round(values["grad_steps_per_s"] / base, 3)
        results[shape] = {"rows": rows, "batch_size": batch_size,
                          "image": list(SHAPES[shape]["space"].shape), **per_mode}
    print(json.dumps({
        "benchmark": "cnn_update",
        "device": args.device,
        **results,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "python": platform.python_version(),
                     "torch_threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
