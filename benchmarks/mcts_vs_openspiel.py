"""MCTS speed and strength on Connect Four: rlcore vs OpenSpiel, same process, same settings.

Speed: simulations per second of one search from the initial position (UCT, ``uct_c = 2``, one
uniformly random rollout per leaf, a fresh tree per search, no solver) for

- ``rlcore``: :class:`rlcore.search.MCTS` on the native Connect Four simulator (numba);
- ``rlcore_python_path``: the same search through the generic Python-simulator path (states and
  rollouts in Python, selection and backup in numba), as any gymnasium adapter gets it;
- ``openspiel_python``: ``open_spiel.python.algorithms.mcts.MCTSBot``;
- ``openspiel_cpp``: ``pyspiel.MCTSBot`` (C++).

Each is warmed up with one search (numba compiles then), then timed over ``--searches`` searches
(fewer for the Python implementations); the figure is total simulations / total seconds.

Strength: ``--games`` games of rlcore's UCT against OpenSpiel's C++ MCTS, both with ``--sims``
simulations per move from a fresh tree, seats alternating, the same solver setting
(``--solver``); the score counts a draw as half a win.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/mcts_vs_openspiel.py [--sims 1000] [--games 200] [--solver] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import pyspiel  # noqa: E402
from open_spiel.python.algorithms import mcts as openspiel_mcts  # noqa: E402

import envs  # noqa: E402, F401  (registers the games)
from rlcore.search import MCTS, MCTSConfig  # noqa: E402
from rlcore.search.openspiel import openspiel_mcts as openspiel_cpp_bot  # noqa: E402
from rlcore.search.openspiel import uct_match  # noqa: E402


class PythonPathSimulator:
    """The native Connect Four rules behind the plain :class:`~rlcore.search.Simulator` protocol,
    so that :class:`MCTS` takes its generic (Python-state) path."""

    def __init__(self, native: Any) -> None:
        self.native = native
        self.num_actions = native.num_actions
        self.num_players = 2

    def legal_actions(self, state: np.ndarray) -> np.ndarray:
        return self.native.legal_actions(state)

    def step(self, state: np.ndarray, action: int) -> tuple[np.ndarray, float, bool]:
        return self.native.step(state, action)

    def to_play(self, state: np.ndarray) -> int:
        return self.native.to_play(state)

    def is_terminal(self, state: np.ndarray) -> bool:
        return self.native.is_terminal(state)


def sims_per_second(search: Callable[[], Any], sims: int, searches: int) -> float:
    search()  # warm-up (numba compiles here)
    start = time.perf_counter()
    for _ in range(searches):
        search()
    return sims * searches / (time.perf_counter() - start)


def rlcore_search(simulator: Any, sims: int) -> Callable[[], Any]:
    mcts = MCTS(simulator, MCTSConfig(num_simulations=sims, c=2.0, reuse_tree=False), seed=0)
    initial = simulator.initial_state() if hasattr(simulator, "initial_state") else simulator.native.initial_state()

    def search() -> Any:
        mcts.set_root(initial)
        return mcts.search()

    return search


def measure_speed(sims: int, searches: int) -> dict[str, float]:
    native = gym.make("rlcore/ConnectFour-v0").unwrapped.simulator
    game = pyspiel.load_game("connect_four")
    initial = game.new_initial_state()
    cpp_bot = openspiel_cpp_bot("connect_four", sims, solver=False, seed=0)
    python_bot = openspiel_mcts.MCTSBot(game, 2.0, sims, openspiel_mcts.RandomRolloutEvaluator(
        n_rollouts=1, random_state=np.random.RandomState(0)), solve=False, random_state=np.random.RandomState(0))
    slow = max(searches // 10, 2)
    speeds = {
        "rlcore": sims_per_second(rlcore_search(native, sims), sims, searches),
        "rlcore_python_path": sims_per_second(rlcore_search(PythonPathSimulator(native), sims), sims, slow),
        "openspiel_cpp": sims_per_second(lambda: cpp_bot.step(initial), sims, searches),
        "openspiel_python": sims_per_second(lambda: python_bot.step(initial), sims, slow),
    }
    for name, value in speeds.items():
        sys.stderr.write(f"{name}: {value:,.0f} simulations/s\n")
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sims", type=int, default=1000, help="simulations per search / move")
    parser.add_argument("--searches", type=int, default=40, help="timed searches per implementation")
    parser.add_argument("--games", type=int, default=200, help="match games against OpenSpiel's C++ MCTS (0: none)")
    parser.add_argument("--solver", action="store_true", help="MCTS-solver on for both sides in the match")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10 searches and 20 games")
    args = parser.parse_args()
    if args.quick:
        args.searches, args.games = 10, min(args.games, 20)
    speeds = measure_speed(args.sims, args.searches)
    record: dict[str, Any] = {
        "benchmark": "mcts_vs_openspiel", "game": "connect_four", "simulations": args.sims,
        "sims_per_s": {name: round(value) for name, value in speeds.items()},
        "ratio_vs_openspiel_python": round(speeds["rlcore"] / speeds["openspiel_python"], 2),
        "ratio_vs_openspiel_cpp": round(speeds["rlcore"] / speeds["openspiel_cpp"], 2),
        "python_path_ratio_vs_openspiel_python": round(speeds["rlcore_python_path"] / speeds["openspiel_python"], 2),
    }
    if args.games:
        start = time.perf_counter()
        result = uct_match("connect_four", args.games, args.sims, solver=args.solver, seed=args.seed,
                           on_game=lambda index, running: sys.stderr.write(
                               f"game {index + 1}/{args.games}: score {running.score:.3f}\n"))
        record["match"] = {"opponent": "openspiel_cpp_mcts", "games": result.games, "wins": result.wins,
                           "draws": result.draws, "losses": result.losses, "score": round(result.score, 3),
                           "solver": args.solver, "seconds": round(time.perf_counter() - start, 1)}
    record["machine"] = {"python": platform.python_version(), "pyspiel": pyspiel.__version__
                         if hasattr(pyspiel, "__version__") else "unknown", "threads": 1}
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
