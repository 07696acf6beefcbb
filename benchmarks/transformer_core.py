"""The Transformer memory core: the newest-position-only last layer against the whole encoder, in one run.

:class:`~rlcore.nets.sequence.TransformerCore` keeps only the newest position's output, so its last encoder
layer runs for that position alone (:func:`~rlcore.nets.sequence.newest_position_layer`);
:meth:`~rlcore.nets.sequence.TransformerCore.forward_full` runs every position through the whole
``nn.TransformerEncoder`` (the reference). Both run on the same core and the same windows, interleaved:

- ``update``: forward and backward of ``--batch`` windows (a PPO minibatch of stored windows);
- ``act``: forward without autograd of ``--envs`` windows (one acting step).

The sizes are the recurrent PPO benchmark's (``recurrent_ppo_vs_contrib.py``: ``memory_size`` 64, 4 heads,
``context_length`` 16, 8 envs, batch 256). Reported per number of layers and mode: CPU milliseconds per call
(the best of ``--rounds`` rounds, robust to a busy machine; single-threaded, so CPU time holds under load) and
the speed-up. Prints one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/transformer_core.py [--layers 1,2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from rlcore.nets.sequence import TransformerCore  # noqa: E402


def cpu_ms_per_call(run: Callable[[], None], calls: int) -> float:
    """CPU milliseconds per call of ``run`` (after one warm-up call)."""
    run()
    start = time.process_time()
    for _ in range(calls):
        run()
    return (time.process_time() - start) / calls * 1e3


def measure(core: TransformerCore, batch: int, envs: int, rounds: int) -> dict[str, dict[str, float]]:
    """``update`` and ``act`` CPU ms of the newest-only path and the full encoder, and the speed-ups."""
    generator = torch.Generator().manual_seed(0)
    window = torch.randn(batch, core.context, core.in_dim, generator=generator)
    valid = torch.rand(batch, core.context, generator=generator) > 0.3  # some windows start mid-way an episode
    valid[:, -1] = True

    def update(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            core.zero_grad()
            forward(window, valid).sum().backward()
        return run

    def act(forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                forward(window[:envs], valid[:envs])
        return run

    best: dict[tuple[str, str], float] = {}
    for _ in range(rounds):
        for path, forward in (("full", core.forward_full), ("newest", core.forward)):
            for mode, make, calls in (("update", update, 20), ("act", act, 300)):
                ms = cpu_ms_per_call(make(forward), calls)
                best[mode, path] = min(ms, best.get((mode, path), float("inf")))
    return {mode: {"full_ms": round(best[mode, "full"], 3), "newest_ms": round(best[mode, "newest"], 3),
                   "speedup": round(best[mode, "full"] / best[mode, "newest"], 2)} for mode in ("update", "act")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", default="1,2", help="comma-separated numbers of encoder layers")
    parser.add_argument("--in-dim", type=int, default=2, help="encoded observation width (velocity-less CartPole: 2)")
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--context", type=int, default=16)
    parser.add_argument("--batch", type=int, default=256, help="windows per update minibatch")
    parser.add_argument("--envs", type=int, default=8, help="windows per acting step")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    results = {}
    for layers in (int(value) for value in args.layers.split(",")):
        core = TransformerCore(args.in_dim, args.context, args.d_model, args.heads, layers)
        assert core.computes_newest_only()
        results[f"layers_{layers}"] = measure(core, args.batch, args.envs, args.rounds)
    print(json.dumps({"benchmark": "transformer_core", **results, "settings": vars(args),
                      "load_average_1min": round(os.getloadavg()[0], 2), "cpu_count": os.cpu_count(),
                      "torch": torch.__version__, "torch_threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
