"""CNN-PPO on MinAtar Breakout: rlcore vs Stable-Baselines3, same process, same network, same settings.

Both libraries train PPO on ``rlcore/MinAtar-Breakout-v0`` (10x10x4 bool images, 6 actions) with
the preset's hyperparameters (``rlcore/presets/ppo.yaml``), passed explicitly to both, and the same
network: rlcore's ``SmallCNN`` (3x3 conv of 16 filters, ReLU, flatten, a 128-unit linear layer, ReLU)
and, for SB3, a ``BaseFeaturesExtractor`` with the same layers written the plain PyTorch way
(:class:`SB3SmallCNN`: ``nn.Conv2d``, ``nn.ReLU``, ``nn.Flatten``, ``nn.Linear``), shared by the
policy and value heads like rlcore's ``ActorCritic`` (one extractor, then linear heads:
``net_arch=[]``). Runs alternate per seed (so slow drifts of the machine cancel), on the CPU with one
torch thread, logging files, progress bars and evaluations off.

Measured: env steps per second of a whole training run of ``--steps`` env steps (construction
included), median over seeds; ``throughput_ratio`` is rlcore's over SB3's (target 1.5).

To separate the library from the network code, a third runner, ``sb3_rlcore_cnn``, is SB3 with
rlcore's own ``SmallCNN`` module as its extractor (channels-last convolutions and a flatten that is
a view, see ``rlcore/nets/cnn.py``): ``ratio_same_network_module`` is rlcore over that one. A fourth,
``rlcore_bf16``, is rlcore with ``amp="bf16"`` (not part of the equal-settings comparison: SB3 has no
such switch; reported as ``ratio_rlcore_bf16_vs_sb3``).

Where the time goes, two ways: ``ms_per_rollout``, one more run of each runner with its phases timed
(env steps, acting, storing, updates, the rest; milliseconds per rollout of ``num_envs * n_steps``
env steps; no profiler), and ``profile``, one run of rlcore and of SB3 under cProfile (its overhead
inflates Python-heavy code), with rlcore's top functions by own time. A readable cProfile table goes
to stderr.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/ppo_cnn_vs_sb3.py [--steps 100000] [--seeds 3] [--quick]
        [--runners rlcore,sb3,...]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import sys
import time
import warnings
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import stable_baselines3  # noqa: E402
import torch  # noqa: E402
from sb3_extractors import SB3SmallCNN  # noqa: E402
from stable_baselines3 import PPO  # noqa: E402
from stable_baselines3.common.env_util import make_vec_env  # noqa: E402
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor  # noqa: E402
from torch import Tensor  # noqa: E402

import envs  # noqa: E402, F401  (registers rlcore/MinAtar-*)
import rlcore  # noqa: E402
from rlcore.nets.cnn import SmallCNN  # noqa: E402
from rlcore.presets import load_preset  # noqa: E402
from rlcore.trainer import TrainConfig, Trainer  # noqa: E402

ENV_ID = "rlcore/MinAtar-Breakout-v0"
TARGET_RATIO = 1.5
PRESET = load_preset("ppo", ENV_ID)
NUM_ENVS = int(PRESET["train"]["num_envs"])
SHARED = ("n_steps", "batch_size", "n_epochs", "learning_rate", "clip_range", "ent_coef", "vf_coef", "gamma",
          "gae_lambda", "max_grad_norm")
"""The PPO settings both libraries take under the same name (plus the linear learning-rate schedule)."""


class SB3WithRlcoreCNN(BaseFeaturesExtractor):
    """rlcore's ``SmallCNN`` module itself as an SB3 extractor (the attribution runner)."""

    def __init__(self, observation_space: gym.spaces.Box, features_dim: int = 128) -> None:
        super().__init__(observation_space, features_dim)
        self.cnn = SmallCNN(observation_space, features_dim=features_dim)

    def forward(self, observations: Tensor) -> Tensor:
        return self.cnn(observations)


def settings() -> dict[str, Any]:
    """The preset's PPO settings used by both libraries (the network settings are rlcore's names)."""
    algo = PRESET["algo"]
    expected = {"lr_schedule": "linear", "net_arch": [], "features_extractor": "small_cnn"}
    if any(algo.get(key) != value for key, value in expected.items()):
        raise ValueError(f"this benchmark expects the {ENV_ID} preset to use small_cnn, net_arch [] and a linear "
                         f"learning-rate schedule; got {algo}")
    return {key: algo[key] for key in SHARED}


# ------------------------------------------------------------------------------ one run each
def timed(owner: Any, attribute: str, timers: dict[str, float], key: str) -> None:
    """Replaces ``owner.attribute`` (a method) by a wrapper adding its wall time to ``timers[key]``."""
    method = getattr(owner, attribute)
    timers.setdefault(key, 0.0)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            timers[key] += time.perf_counter() - start

    setattr(owner, attribute, wrapper)


def rlcore_run(seed: int, steps: int, timers: dict[str, float] | None = None, amp: str | None = None) -> float:
    """Seconds of one rlcore training run of ``steps`` env steps, construction included.

    With ``timers``, the env steps, acting, storing and updates are timed into it (seconds).
    ``amp="bf16"`` runs the networks under bfloat16 autocast.
    """
    start = time.perf_counter()
    config = TrainConfig(total_env_steps=steps, num_envs=NUM_ENVS, seed=seed, device="cpu", eval_freq=0,
                         checkpoint_freq=0, log_dir=None, progress_bar=False)
    trainer = Trainer("ppo", ENV_ID, config, {**PRESET["algo"], "amp": amp})
    if timers is not None:
        timed(trainer.envs, "step", timers, "env_step")
        for method, key in (("explore", "act"), ("store", "store"), ("update", "update"),
                            ("gradient_step", "update_gradient_steps")):
            timed(trainer.algo, method, timers, key)
    trainer.run()
    return time.perf_counter() - start


def sb3_run(seed: int, steps: int, timers: dict[str, float] | None = None,
            extractor: type[BaseFeaturesExtractor] = SB3SmallCNN) -> float:
    """Seconds of one SB3 training run of ``steps`` env steps, construction included (``timers``: as rlcore's)."""
    start = time.perf_counter()
    spec = settings()
    start_lr = spec.pop("learning_rate")
    env = make_vec_env(ENV_ID, n_envs=NUM_ENVS, seed=seed)
    model = PPO("MlpPolicy", env, device="cpu", seed=seed, verbose=0,
                learning_rate=lambda progress: progress * start_lr,
                policy_kwargs={"features_extractor_class": extractor,
                               "features_extractor_kwargs": {"features_dim": 128},
                               "net_arch": [], "share_features_extractor": True},
                **spec)
    if timers is not None:
        timed(model.env, "step_wait", timers, "env_step")
        timed(model.policy, "forward", timers, "act")  # the rollout's forward pass (training uses evaluate_actions)
        timed(model.rollout_buffer, "add", timers, "store")
        timed(model, "train", timers, "update")
    model.learn(total_timesteps=steps)
    return time.perf_counter() - start


def sb3_rlcore_cnn_run(seed: int, steps: int, timers: dict[str, float] | None = None) -> float:
    """:func:`sb3_run` with rlcore's SmallCNN module as the extractor."""
    return sb3_run(seed, steps, timers, SB3WithRlcoreCNN)


def rlcore_bf16_run(seed: int, steps: int, timers: dict[str, float] | None = None) -> float:
    """:func:`rlcore_run` with ``amp="bf16"`` (bfloat16 autocast; this CPU has AVX-512 BF16)."""
    return rlcore_run(seed, steps, timers, amp="bf16")


RUNNERS = {"rlcore": rlcore_run, "sb3": sb3_run, "sb3_rlcore_cnn": sb3_rlcore_cnn_run, "rlcore_bf16": rlcore_bf16_run}

PHASES: dict[str, dict[str, tuple[str, str]]] = {
    "rlcore": {
        "collect": ("rlcore/collector.py", "step"),
        "env_step": ("gymnasium/vector/sync_vector_env.py", "step"),
        "act": ("rlcore/algos/onpolicy.py", "explore"),
        "store": ("rlcore/algos/onpolicy.py", "store"),
        "update": ("rlcore/algos/onpolicy.py", "update"),
        "gradient_step": ("rlcore/algos/onpolicy.py", "gradient_step"),
        "cnn_forward": ("rlcore/kernels/cnn.py", "forward"),  # the CPU fast path: acting and training
        "cnn_backward": ("rlcore/kernels/cnn.py", "backward"),
        "optimizer_step": ("rlcore/optim.py", "step"),
    },
    "sb3": {
        "collect": ("stable_baselines3/common/on_policy_algorithm.py", "collect_rollouts"),
        "env_step": ("stable_baselines3/common/vec_env/dummy_vec_env.py", "step_wait"),
        "update": ("stable_baselines3/ppo/ppo.py", "train"),
    },
}
"""Phases of a run: (file suffix, function name) whose cumulative profiled time is reported."""

TORCH_OPS = ("run_backward", "conv2d", "linear", "addmm", "index_select", "_fused_adam_")
"""Built-in torch calls whose own time is reported separately (autograd's backward, the forward kernels, the fast
path's linear forward and im2col gather, Adam)."""


def profile(name: str, seed: int, steps: int) -> dict[str, Any]:
    """One cProfiled run: seconds per phase and the top functions by own time (rlcore only)."""
    profiler = cProfile.Profile()
    profiler.enable()
    RUNNERS[name](seed, steps)
    profiler.disable()
    stats = pstats.Stats(profiler)
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(own for _, _, own, _, _ in entries.values())
    phases: dict[str, float] = {}
    for phase, (suffix, function) in PHASES[name].items():
        phases[phase] = round(sum(cumulative for (path, _, func), (_, _, _, cumulative, _) in entries.items()
                                  if func == function and path.endswith(suffix)), 3)
    summary: dict[str, Any] = {"profiled_seconds": round(total, 3), "phases_seconds": phases}
    if name == "rlcore":
        summary["torch_ops_own_seconds"] = {
            op: round(sum(own for (_, _, func), (_, _, own, _, _) in entries.items() if op in func), 3)
            for op in TORCH_OPS}
        ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:15]
        summary["top_own_time"] = [
            {"function": f"{os.path.basename(path)}:{line}({func})", "calls": calls, "own_s": round(own, 3),
             "cumulative_s": round(cumulative, 3)}
            for (path, line, func), (_, calls, own, cumulative, _) in ranked]
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        print(text.getvalue(), file=sys.stderr, flush=True)
    return summary


def breakdown(name: str, seed: int, steps: int) -> dict[str, float]:
    """One run with its phases timed (no profiler): milliseconds per rollout of each phase.

    ``other`` is the rest of the run: construction, the collector's and trainer's glue (SB3: its
    ``collect_rollouts`` loop and callbacks).
    """
    timers: dict[str, float] = {}
    total = RUNNERS[name](seed, steps, timers)
    rollouts = steps / (NUM_ENVS * int(PRESET["algo"]["n_steps"]))
    per_rollout = {key: round(1e3 * value / rollouts, 2) for key, value in timers.items()}
    phases = ("env_step", "act", "store", "update")
    per_rollout["other"] = round(1e3 * (total - sum(timers[key] for key in phases)) / rollouts, 2)
    per_rollout["total"] = round(1e3 * total / rollouts, 2)
    return per_rollout


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100_000, help="env steps of each timed run")
    parser.add_argument("--profile-steps", type=int, default=30_720, help="env steps of the profiled runs")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--runners", default=",".join(RUNNERS),
                        help="comma-separated subset of the runners (rlcore and sb3 always run; rlcore_bf16 takes "
                             "~10x longer on a CPU without bfloat16 products)")
    args = parser.parse_args(argv)
    chosen = {"rlcore", "sb3", *args.runners.split(",")}
    unknown = chosen - set(RUNNERS)
    if unknown:
        parser.error(f"unknown runners {sorted(unknown)}; choose among {', '.join(RUNNERS)}")
    runners = {name: runner for name, runner in RUNNERS.items() if name in chosen}
    rollout = NUM_ENVS * int(PRESET["algo"]["n_steps"])
    seeds, steps, profile_steps = (1, 2 * rollout, 2 * rollout) if args.quick else (
        args.seeds, args.steps, args.profile_steps)
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for runner in runners.values():  # untimed warm-up: imports, first kernels
        runner(1_000, rollout)
    rates: dict[str, list[float]] = {name: [] for name in runners}
    for seed in range(seeds):
        order = list(runners) if seed % 2 == 0 else list(reversed(runners))
        for name in order:
            rates[name].append(steps / runners[name](seed, steps))
            print(f"seed {seed} {name}: {rates[name][-1]:.0f} env steps/s", file=sys.stderr, flush=True)
    rate = {name: statistics.median(values) for name, values in rates.items()}
    breakdowns = {name: breakdown(name, 0, steps) for name in runners}
    optional = {}
    if "sb3_rlcore_cnn" in rate:
        optional.update(sb3_rlcore_cnn_steps_per_s=round(rate["sb3_rlcore_cnn"], 1),
                        ratio_same_network_module=round(rate["rlcore"] / rate["sb3_rlcore_cnn"], 3))
    if "rlcore_bf16" in rate:
        optional.update(rlcore_bf16_steps_per_s=round(rate["rlcore_bf16"], 1),
                        ratio_rlcore_bf16_vs_sb3=round(rate["rlcore_bf16"] / rate["sb3"], 3))
    profiles = {name: profile(name, 0, profile_steps) for name in ("rlcore", "sb3")}
    print(json.dumps({
        "benchmark": "ppo_cnn_vs_sb3",
        "env": ENV_ID,
        "rlcore_steps_per_s": round(rate["rlcore"], 1),
        "sb3_steps_per_s": round(rate["sb3"], 1),
        "throughput_ratio": round(rate["rlcore"] / rate["sb3"], 3),
        **optional,
        "target_ratio": TARGET_RATIO,
        "per_seed_steps_per_s": {name: [round(value, 1) for value in values] for name, values in rates.items()},
        "ms_per_rollout": {"rollout_env_steps": rollout, **breakdowns},
        "profile": {"env_steps": profile_steps, **profiles},
        "steps": steps,
        "seeds": seeds,
        "settings": {"num_envs": NUM_ENVS, **settings(), "lr_schedule": "linear", "network": "SmallCNN(16, 128), "
                     "shared by linear policy and value heads"},
        "versions": {"rlcore": rlcore.__version__, "torch": torch.__version__, "sb3": stable_baselines3.__version__,
                     "python": platform.python_version(), "torch_threads": torch.get_num_threads()},
    }))


if __name__ == "__main__":
    main()
