"""rlcore's MCTS through the Python ``Simulator`` protocol vs OpenSpiel's MCTS, on an OpenSpiel game rlcore does not
ship (Hex 5x5 by default): speed against OpenSpiel's Python ``MCTSBot``, strength against its C++ ``MCTSBot``.

All searches are UCT with ``uct_c = 2``, one uniformly random rollout per leaf played to the end of the game, no
solver, a fresh tree per search, the same number of simulations.

Speed (simulations per second over the same positions: the start and ``--positions - 1`` positions after a few
random moves; the implementations take turns, ``--rounds`` times, so load on the machine hits them alike):

- ``rlcore``: :class:`rlcore.search.MCTS` on :class:`~rlcore.search.games.openspiel.OpenSpielSimulator`, rlcore's
  adapter, which implements the protocol's optional ``rollout`` (a random playout on one clone of the state);
- ``rlcore_plain_protocol``: the same search on a user-style class with only the four required methods
  (``legal_actions``, ``step`` returning a child state, ``to_play``, ``is_terminal``), so rlcore's own rollout loop
  plays the random moves through ``step``;
- ``openspiel_python``: ``open_spiel.python.algorithms.mcts.MCTSBot`` with ``RandomRolloutEvaluator(1)``;
- ``openspiel_cpp``: ``pyspiel.MCTSBot`` (C++), for scale.

Where rlcore's time goes: ``simulator_share`` is the share of rlcore's search time spent inside the simulator's
methods (timed by a wrapper), ``rlcore_us_per_simulation`` rlcore's own cost per simulation measured on a simulator
whose methods cost almost nothing.

Strength: ``--games`` games of rlcore (through the adapter) against OpenSpiel's C++ MCTS with the same budget, seats
alternating; the score counts a draw as half a win.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/mcts_python_simulator.py [--game 'hex(board_size=5)'] [--sims 1000] \\
        [--games 100] [--quick]
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

import numpy as np  # noqa: E402
import pyspiel  # noqa: E402
from open_spiel.python.algorithms import mcts as openspiel_mcts  # noqa: E402

from rlcore.search import MCTS, MCTSConfig  # noqa: E402
from rlcore.search.games.openspiel import OpenSpielSimulator  # noqa: E402
from rlcore.search.openspiel import openspiel_mcts as openspiel_cpp_bot  # noqa: E402
from rlcore.search.openspiel import uct_match  # noqa: E402


class PlainProtocol:
    """An OpenSpiel game as a user would first wrap it: the four required methods, nothing else."""

    def __init__(self, game: Any) -> None:
        self.num_actions = game.num_distinct_actions()
        self.num_players = game.num_players()

    def legal_actions(self, state: Any) -> np.ndarray:
        return np.asarray(state.legal_actions(), np.int64)

    def step(self, state: Any, action: int) -> tuple[Any, float, bool]:
        mover, child = state.current_player(), state.child(action)
        done = child.is_terminal()
        return child, (child.returns()[mover] if done else 0.0), done

    def to_play(self, state: Any) -> int:
        return max(state.current_player(), 0)

    def is_terminal(self, state: Any) -> bool:
        return state.is_terminal()


class TimedSimulator:
    """Forwards the protocol to ``inner`` and adds up the seconds spent inside it."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.seconds = inner, 0.0
        self.num_actions, self.num_players = inner.num_actions, inner.num_players

    def _timed(self, method: Callable[..., Any], *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args)
        finally:
            self.seconds += time.perf_counter() - start

    def legal_actions(self, state: Any) -> np.ndarray:
        return self._timed(self.inner.legal_actions, state)

    def step(self, state: Any, action: int) -> tuple[Any, float, bool]:
        return self._timed(self.inner.step, state, action)

    def to_play(self, state: Any) -> int:
        return self._timed(self.inner.to_play, state)

    def is_terminal(self, state: Any) -> bool:
        return self._timed(self.inner.is_terminal, state)

    def rollout(self, state: Any, depth: int, gamma: float, rng: np.random.Generator) -> float:
        return self._timed(self.inner.rollout, state, depth, gamma, rng)


class FreeSimulator:
    """A two-player game tree (branching 5, depth 10) whose methods cost almost nothing: rlcore's own cost."""

    num_players, num_actions = 2, 5
    legal = np.arange(5, dtype=np.int64)

    def legal_actions(self, state: int) -> np.ndarray:
        return self.legal

    def step(self, state: int, action: int) -> tuple[int, float, bool]:
        return state + 1, 0.0, state + 1 >= 10

    def to_play(self, state: int) -> int:
        return state & 1

    def is_terminal(self, state: int) -> bool:
        return state >= 10

    def rollout(self, state: int, depth: int, gamma: float, rng: np.random.Generator) -> float:
        return 0.0


def positions(game: Any, count: int, seed: int) -> list[Any]:
    """The start and ``count - 1`` positions after 2-6 random moves (none terminal)."""
    rng, found = np.random.default_rng(seed), [game.new_initial_state()]
    while len(found) < count:
        state = game.new_initial_state()
        for _ in range(int(rng.integers(2, 7))):
            state.apply_action(int(rng.choice(state.legal_actions())))
        if not state.is_terminal():
            found.append(state)
    return found


def rlcore_searcher(simulator: Any, sims: int) -> Callable[[Any], Any]:
    mcts = MCTS(simulator, MCTSConfig(num_simulations=sims, c=2.0, reuse_tree=False), seed=0)

    def search(state: Any) -> Any:
        mcts.set_root(state)
        return mcts.search()

    return search


def measure_speed(game: Any, sims: int, rounds: int, starts: list[Any]) -> dict[str, float]:
    cpp_bot = openspiel_cpp_bot(str(game), sims, solver=False, seed=0)
    python_bot = openspiel_mcts.MCTSBot(game, 2.0, sims, openspiel_mcts.RandomRolloutEvaluator(
        n_rollouts=1, random_state=np.random.RandomState(0)), solve=False, random_state=np.random.RandomState(0))
    searchers = {
        "rlcore": rlcore_searcher(OpenSpielSimulator(game), sims),
        "rlcore_plain_protocol": rlcore_searcher(PlainProtocol(game), sims),
        "openspiel_python": python_bot.step,
        "openspiel_cpp": cpp_bot.step,
    }
    for search in searchers.values():
        search(starts[0])  # warm-up (numba compiles its kernels once)
    seconds = dict.fromkeys(searchers, 0.0)
    for round_index in range(rounds):
        for name, search in searchers.items():
            start = time.perf_counter()
            for state in starts:
                search(state)
            seconds[name] += time.perf_counter() - start
        done = sims * len(starts) * (round_index + 1)
        sys.stderr.write(f"round {round_index + 1}/{rounds}: "
                         + ", ".join(f"{name} {done / value:,.0f}/s" for name, value in seconds.items()) + "\n")
    return {name: sims * len(starts) * rounds / value for name, value in seconds.items()}


def simulator_share(game: Any, sims: int, starts: list[Any]) -> float:
    """Share of rlcore's search time spent inside the adapter's methods."""
    timed = TimedSimulator(OpenSpielSimulator(game))
    search = rlcore_searcher(timed, sims)
    search(starts[0])
    timed.seconds, start = 0.0, time.perf_counter()
    for state in starts:
        search(state)
    return timed.seconds / (time.perf_counter() - start)


def own_cost_us(sims: int = 20_000) -> float:
    search = rlcore_searcher(FreeSimulator(), sims)
    search(0)
    start = time.perf_counter()
    search(0)
    return 1e6 * (time.perf_counter() - start) / sims


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", default="hex(board_size=5)", help="an OpenSpiel game string")
    parser.add_argument("--sims", type=int, default=1000, help="simulations per search / move")
    parser.add_argument("--positions", type=int, default=5, help="positions searched per round")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of speed measurement")
    parser.add_argument("--games", type=int, default=100, help="match games against OpenSpiel's C++ MCTS (0: none)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="2 rounds and 10 games")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.games = 2, min(args.games, 10)
    game = pyspiel.load_game(args.game)
    starts = positions(game, args.positions, args.seed)
    speeds = measure_speed(game, args.sims, args.rounds, starts)
    record: dict[str, Any] = {
        "benchmark": "mcts_python_simulator", "game": args.game, "simulations": args.sims,
        "rollouts": "one uniformly random playout to the end per leaf, both sides", "uct_c": 2.0,
        "sims_per_s": {name: round(value) for name, value in speeds.items()},
        "ratio_vs_openspiel_python": round(speeds["rlcore"] / speeds["openspiel_python"], 2),
        "plain_protocol_ratio_vs_openspiel_python": round(
            speeds["rlcore_plain_protocol"] / speeds["openspiel_python"], 2),
        "ratio_vs_openspiel_cpp": round(speeds["rlcore"] / speeds["openspiel_cpp"], 2),
        "simulator_share": round(simulator_share(game, args.sims, starts), 3),
        "rlcore_us_per_simulation": round(own_cost_us(), 2),
    }
    if args.games:
        start = time.perf_counter()
        result = uct_match(args.game, args.games, args.sims, seed=args.seed, adapter=True,
                           on_game=lambda index, running: sys.stderr.write(
                               f"game {index + 1}/{args.games}: score {running.score:.3f}\n"))
        record["match"] = {"opponent": "openspiel_cpp_mcts", "simulations": args.sims, "games": result.games,
                           "wins": result.wins, "draws": result.draws, "losses": result.losses,
                           "score": round(result.score, 3), "seconds": round(time.perf_counter() - start, 1)}
    record["machine"] = {"python": platform.python_version(), "cpus": os.cpu_count(), "threads": 1,
                         "load_average_1m": round(os.getloadavg()[0], 2)}
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
