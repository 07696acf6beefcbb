"""Checkpoint loading: rlcore's checked reader against the safetensors library on the same files, side by side.

Two cases, each timed in this process with the two readers interleaved (best of ``--repeats``):

- ``state``: reading a state file of ``--mb`` MB (a replay buffer's columns plus small network tensors) with its
  sha256 verified: ``rlcore.checkpoint_reader.StateFile`` (header validated, then one pass that reads each tensor
  into its buffer and hashes it) against the way rlcore read before (a sha256 pass, then
  ``safetensors.torch.load_file``).
- ``agent``: ``rlcore.load`` of a DQN and a PPO agent (schema check + the ``meta``-device build that compares the
  metadata with the saved tensors, then the real build) against building the same algorithm and loading its
  state from ``safetensors.torch.load_file`` without any check: the price of the checks.

Prints one JSON line.

    OMP_NUM_THREADS=1 python benchmarks/checkpoint_io.py [--mb 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402

import rlcore  # noqa: E402
from rlcore.agent import Agent, build_algorithm  # noqa: E402
from rlcore.checkpoint import unpack_state  # noqa: E402
from rlcore.checkpoint_reader import StateFile  # noqa: E402


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def read_checked(path: Path) -> None:
    with open(path, "rb", buffering=0) as handle:
        StateFile(handle, path.stat().st_size, path).read_tensors()


def read_library(path: Path) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    digest.hexdigest()
    safetensors.torch.load_file(str(path), device="cpu")


def load_unchecked(folder: Path, name: str, env_id: str, config: dict) -> None:
    env = gym.make(env_id)
    algo = build_algorithm(name, env.observation_space, env.action_space, config)
    meta = json.loads((folder / "meta.json").read_text())
    algo.load_state_dict(unpack_state(safetensors.torch.load_file(str(folder / "state.safetensors")),
                                      meta["skeleton"])["algo"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        rows = args.mb * 2**20 // (4 * 84 * 84)
        tensors = {"replay/obs": torch.randint(0, 255, (rows, 4, 84, 84), dtype=torch.uint8),
                   **{f"algo/net.{i}.weight": torch.randn(64, 64) for i in range(200)}}
        state = root / "state.safetensors"
        safetensors.torch.save_file(tensors, str(state))
        read_checked(state), read_library(state)  # warm the page cache
        checked = library = float("inf")
        for _ in range(args.repeats):
            checked = min(checked, best_of(1, lambda: read_checked(state)))
            library = min(library, best_of(1, lambda: read_library(state)))
        result = {"state_mb": round(state.stat().st_size / 2**20, 1), "state_checked_s": round(checked, 4),
                  "state_library_s": round(library, 4), "state_ratio_checked_over_library": round(checked / library, 3)}
        for name, env_id, config in (("dqn", "CartPole-v1", {"net_arch": [64, 64]}),
                                     ("ppo", "Pendulum-v1", {"net_arch": [64, 64], "normalize_obs": True})):
            env = gym.make(env_id)
            Agent(build_algorithm(name, env.observation_space, env.action_space, config), env=env_id).save(root / name)
            checked = library = float("inf")
            for _ in range(args.repeats):
                checked = min(checked, best_of(1, lambda name=name: rlcore.load(root / name)))
                library = min(library, best_of(1, lambda name=name, env_id=env_id, config=config:
                                               load_unchecked(root / name, name, env_id, config)))
            result.update({f"{name}_load_checked_s": round(checked, 4), f"{name}_load_unchecked_s": round(library, 4),
                           f"{name}_ratio_checked_over_unchecked": round(checked / library, 3)})
    print(json.dumps(result))


if __name__ == "__main__":
    main()
