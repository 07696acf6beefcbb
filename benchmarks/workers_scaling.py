"""Env steps/s of DQN training with 1 vs 2 local worker processes, for an env that costs ~100 us per step.

What is compared, in one script: ``rlcore.Trainer("dqn", ...)`` on CartPole-v1 made CPU-costly by a busy
wait of ``--env-cost-us`` microseconds in every ``step`` (a stand-in for a physics simulator; a sleep would
not use the core), trained with ``num_workers=0`` (the learner collects itself), ``num_workers=1`` and
``num_workers=2``. Workers write into the shared-memory replay while the learner trains; the learner's
load is light (``gradient_steps=1`` per ``train_freq=64`` env steps, batch 64, the preset's 256x256
network) and the rate limiter is off (``worker_lead=None``), so collection is what scales. On a 2-core
machine, 2 workers plus the learner share the 2 cores.

How: a monitor thread reads the run's env-step counter every 50 ms; the figure is the steady-state rate
between 20% and 90% of ``--steps`` (process start-up and the first weights are excluded). Each setting runs
``--repeats`` times, alternating the order; the median is reported. ``ratio_2_vs_1`` is the 2-worker rate
over the 1-worker rate (target >= 1.6 for an env of >= 100 us per step).

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/workers_scaling.py [--steps 60000] [--env-cost-us 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import torch  # noqa: E402

import rlcore  # noqa: E402


class CostlyCartPole(gym.Wrapper):
    """CartPole-v1 whose ``step`` also spins the CPU for ``cost_us`` microseconds."""

    def __init__(self, cost_us: float = 100.0) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.cost = cost_us * 1e-6

    def step(self, action):  # noqa: ANN001, ANN201
        deadline = time.perf_counter() + self.cost
        while time.perf_counter() < deadline:
            pass
        return self.env.step(action)


def measured_rate(num_workers: int, steps: int, seed: int, cost_us: float) -> float:
    """Steady-state env steps/s of one training run."""
    config = rlcore.TrainConfig(total_env_steps=steps, num_workers=num_workers, seed=seed, eval_freq=0,
                                checkpoint_freq=0, log_dir=None, progress_bar=False, worker_lead=None)
    algo_config = {"train_freq": 64, "gradient_steps": 1, "batch_size": 64, "learning_starts": 1_000,
                   "buffer_size": 100_000, "net_arch": [256, 256]}
    trainer = rlcore.Trainer("dqn", CostlyCartPole, config, algo_config, env_kwargs={"cost_us": cost_us})
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def monitor() -> None:
        while not done.is_set():
            samples.append((time.perf_counter(), trainer.env_steps))
            time.sleep(0.05)

    watcher = threading.Thread(target=monitor, daemon=True)
    watcher.start()
    trainer.run()
    done.set()
    watcher.join()
    window = [(t, n) for t, n in samples if 0.2 * steps <= n <= 0.9 * steps]
    if len(window) < 2:
        raise RuntimeError(f"too few samples in the measuring window ({len(window)}); raise --steps")
    (t0, n0), (t1, n1) = window[0], window[-1]
    return (n1 - n0) / (t1 - t0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--env-cost-us", type=float, default=100.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rates: dict[int, list[float]] = {0: [], 1: [], 2: []}
    for repeat in range(args.repeats):
        order = [0, 1, 2] if repeat % 2 == 0 else [2, 1, 0]
        for workers in order:
            rate = measured_rate(workers, args.steps, seed=repeat, cost_us=args.env_cost_us)
            rates[workers].append(rate)
            print(f"repeat {repeat}: {workers} workers {rate:,.0f} env steps/s", file=sys.stderr)
    median = {workers: statistics.median(values) for workers, values in rates.items()}
    result = {
        "benchmark": "workers_scaling",
        "env": f"CartPole-v1 + {args.env_cost_us:g} us busy wait per step",
        "steps": args.steps,
        "repeats": args.repeats,
        "env_steps_per_s": {f"{workers}_workers": round(value) for workers, value in median.items()},
        "runs": {f"{workers}_workers": [round(value) for value in values] for workers, values in rates.items()},
        "ratio_2_vs_1": round(median[2] / median[1], 3),
        "ratio_1_vs_in_process": round(median[1] / median[0], 3),
        "machine": {"cpus": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
