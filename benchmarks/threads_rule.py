"""The measurement behind ``threads="auto"`` (rlcore/threads.py): gradient steps/s per thread setting, per workload.

For each workload the same update runs, in turns within one process, under three thread settings:

- ``one``: torch 1 thread, numpy's BLAS 1 thread;
- ``torch_all``: torch every core (its own default), numpy's BLAS 1 thread (what ``"auto"`` picks for large work);
- ``both_all``: torch and numpy's BLAS every core each (what a process gets when nobody chooses).

Workloads: DQN on CartPole-v1 (the preset's MLP 256x256, minibatch 64), PPO on CartPole-v1 (MLP 64x64,
minibatch 64), PPO with MinAtar's SmallCNN (minibatch 256, the Breakout preset) and PPO with NatureCNN on
Atari-shaped frames (minibatches of 32 and 128), and rl-zoo's off-policy settings: DQN on Acrobot-v1 (256x256,
minibatch 128; with bfloat16 products and in float32), SAC (256x256) and TD3 (400x300) on Pendulum-v1 (minibatch
256), 16 gradient steps a call. Per workload the JSON line gives the forward multiply-adds per minibatch and the
largest product torch runs that the rule reads (:func:`rlcore.threads.algorithm_work`,
:func:`rlcore.threads.largest_torch_product`), gradient steps/s per setting (best of ``--repeats`` windows, the
settings alternating), the speed-ups over ``one``, the setting ``"auto"`` picks and whether it picked the fastest
(within 5%).

Run it with no thread variables set (it scrubs them and restarts itself otherwise):

    python benchmarks/threads_rule.py [--seconds 1.5] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlcore.threads import THREAD_VARIABLES

if any(name in os.environ for name in THREAD_VARIABLES):  # the libraries read them at import: start clean
    clean = {key: value for key, value in os.environ.items() if key not in THREAD_VARIABLES}
    os.execve(sys.executable, [sys.executable, *sys.argv], clean)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from gymnasium import spaces  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

import rlcore  # noqa: E402
from rlcore.agent import build_algorithm  # noqa: E402
from rlcore.collector import Collector  # noqa: E402
from rlcore.env import make_vec_env  # noqa: E402
from rlcore.presets import load_preset  # noqa: E402
from rlcore.threads import (  # noqa: E402
    PARALLEL_PRODUCT_MACS,
    PARALLEL_WORK_MACS,
    algorithm_work,
    available_cores,
    choose_threads,
    largest_torch_product,
)

sys.path.insert(0, str(Path(__file__).parent))
from cnn_update import SHAPES, fixed_batch  # noqa: E402

for _name in THREAD_VARIABLES:  # cnn_update sets OMP_NUM_THREADS for itself; this script sets threads in-process
    os.environ.pop(_name, None)


def ppo_update(space: spaces.Space, actions: int, rows: int, batch_size: int, settings: dict[str, Any]
               ) -> tuple[Any, Callable[[], int]]:
    """A PPO algorithm and one epoch of its update on a fixed rollout of ``rows`` (returns gradient steps)."""
    algo = build_algorithm("ppo", space, spaces.Discrete(actions),
                           {**settings, "n_steps": rows, "batch_size": batch_size, "n_epochs": 1}, seed=0)
    if isinstance(space, spaces.Box) and space.dtype == np.float32:
        generator = torch.Generator().manual_seed(0)
        batch = {"obs": torch.randn(rows, *space.shape, generator=generator),
                 "action": torch.randint(actions, (rows,), generator=generator),
                 "log_prob": torch.full((rows,), -float(np.log(actions))), "value": torch.zeros(rows),
                 "advantage": torch.randn(rows, generator=generator), "return": torch.randn(rows, generator=generator)}
    else:
        batch = fixed_batch(space, actions, rows, "cpu")
    steps = -(-rows // batch_size)

    def update() -> int:
        algo.optimize(batch)
        return steps

    return algo, update


def replay_update(algo_name: str, env_id: str, settings: dict[str, Any]) -> tuple[Any, Callable[[], int]]:
    """An off-policy algorithm with ``settings`` (a preset's, or rl-zoo's) for ``env_id``, its replay filled with 2,000
    steps of its acting; 16 gradient steps a call."""
    envs = make_vec_env(env_id, 1)
    algo = build_algorithm(algo_name, envs.single_observation_space, envs.single_action_space, settings, seed=0)
    collector = Collector(envs, seed=0)
    for _ in range(2_000):
        algo.replay.add(collector.step(algo.act))

    def update() -> int:
        algo.train(16)
        return 16

    return algo, update


def workloads(quick: bool) -> dict[str, Callable[[], tuple[Any, Callable[[], int]]]]:
    cartpole = spaces.Box(-np.inf, np.inf, (4,), np.float32)
    minatar = load_preset("ppo", "rlcore/MinAtar-Breakout-v0")["algo"]
    minatar = {key: value for key, value in minatar.items() if key in ("features_extractor", "net_arch")}
    atari = {"net_arch": []}
    return {
        "dqn_cartpole_mlp": lambda: replay_update("dqn", "CartPole-v1", load_preset("dqn", "CartPole-v1")["algo"]),
        "ppo_cartpole_mlp": lambda: ppo_update(cartpole, 2, 256 if quick else 2048, 64, {}),
        "ppo_minatar_small_cnn_256": lambda: ppo_update(SHAPES["minatar"]["space"], 3, 256 if quick else 1024,
                                                        256, minatar),
        "ppo_atari_nature_cnn_32": lambda: ppo_update(SHAPES["atari"]["space"], 4, 32 if quick else 128, 32, atari),
        "ppo_atari_nature_cnn_128": lambda: ppo_update(SHAPES["atari"]["space"], 4, 128, 128, atari),
        # rl-zoo's off-policy settings (zoo_suite.py's tasks): 256-400 wide layers, minibatches of 128-256
        "dqn_acrobot_zoo_mlp_128": lambda: replay_update("dqn", "Acrobot-v1", {
            "batch_size": 128, "net_arch": [256, 256], "target_update_interval": 250}),
        "dqn_acrobot_zoo_mlp_128_float32": lambda: replay_update("dqn", "Acrobot-v1", {
            "batch_size": 128, "net_arch": [256, 256], "target_update_interval": 250, "amp": None}),
        "sac_pendulum_zoo_mlp_256": lambda: replay_update("sac", "Pendulum-v1", {}),
        "td3_pendulum_zoo_mlp_256": lambda: replay_update("td3", "Pendulum-v1", {
            "net_arch": [400, 300], "action_noise": "normal", "noise_std": 0.1}),
    }


def settings(cores: int) -> dict[str, tuple[int, int]]:
    """Setting name -> (torch threads, BLAS threads)."""
    return {"one": (1, 1), "torch_all": (cores, 1), "both_all": (cores, cores)}


def rate(update: Callable[[], int], torch_threads: int, blas_threads: int, seconds: float) -> float:
    """Gradient steps/s of ``update`` under one thread setting, over at least ``seconds``."""
    torch.set_num_threads(torch_threads)
    with threadpool_limits(limits=blas_threads, user_api="blas"):
        update()  # the pools start (or shrink) outside the window
        steps, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds:
            steps += update()
    return steps / elapsed


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=1.5, help="timed seconds per window")
    parser.add_argument("--repeats", type=int, default=3, help="windows per (workload, setting); the best counts")
    parser.add_argument("--only", help="comma-separated workload names")
    parser.add_argument("--quick", action="store_true", help="smoke run: small batches, one 0.2 s window each")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    cores = available_cores()
    seconds, repeats = (0.2, 1) if args.quick else (args.seconds, args.repeats)
    chosen = workloads(args.quick)
    if args.only:
        chosen = {name: chosen[name] for name in args.only.split(",")}
    results: dict[str, Any] = {}
    for name, build in chosen.items():
        algo, update = build()
        work, product = algorithm_work(algo), largest_torch_product(algo)
        best = dict.fromkeys(settings(cores), 0.0)
        for _ in range(repeats):
            for setting, (torch_threads, blas_threads) in settings(cores).items():
                best[setting] = max(best[setting], rate(update, torch_threads, blas_threads, seconds))
        pick = choose_threads("auto", work, "cpu", product)
        picked = "one" if pick.threads == 1 else "torch_all"
        fastest = max(best, key=best.__getitem__)
        results[name] = {
            "forward_macs_per_minibatch": work,
            "largest_torch_product_macs": product,
            "grad_steps_per_s": {key: round(value, 1) for key, value in best.items()},
            "speedup_vs_one": {key: round(value / best["one"], 2) for key, value in best.items()},
            "auto_picks": picked,
            "auto_within_5pct_of_fastest": best[picked] >= 0.95 * best[fastest],
        }
        print(f"{name}: {work / 1e6:.1f}M MACs, product {product / 1e6:.1f}M, {results[name]['grad_steps_per_s']}, "
              f"auto -> {picked}", file=sys.stderr, flush=True)
    print(json.dumps({
        "benchmark": "threads_rule",
        "cores": cores,
        "parallel_work_macs": PARALLEL_WORK_MACS,
        "parallel_product_macs": PARALLEL_PRODUCT_MACS,
        "load_average": list(os.getloadavg()),
        "workloads": results,
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": platform.python_version(), "cpu": platform.processor() or platform.machine()},
    }))


if __name__ == "__main__":
    main()
