"""Gumbel AlphaZero vs PUCT AlphaZero at the same small budget (16 simulations per move), head to head.

Both agents train with the game's preset (``rlcore/presets/alphazero.yaml``) for the same number of self-play moves,
changing only the search: ``search=puct`` (Dirichlet noise, visit-count targets, sampled opening moves) or
``search=gumbel`` (Gumbel top-k at the root, sequential halving, improved-policy targets), both with ``--sims``
simulations per move in self-play and in the match. Evaluation during training is off (it would cost the same for
both). The budget is the same per move: PUCT searches a fresh tree each move (``reuse_tree=False``), as Gumbel does;
with the preset's tree reuse (``--puct-reuse-tree``) PUCT's search at a move also holds the visits its tree gave
the moves played since, ~1.5x the simulations at 16. ``--set SEARCH:KEY=VALUE`` changes one agent's setting.

The match starts from every opening of ``--plies`` plies (all 49 two-move openings of Connect Four by
default), each played twice with the seats swapped, both agents searching without noise. The score counts
a draw as half a win, for Gumbel.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/gumbel_vs_puct.py [--game connect_four] [--sims 16] [--steps 100000]
    OMP_NUM_THREADS=1 python benchmarks/gumbel_vs_puct.py --runs RUN_PUCT RUN_GUMBEL [--cross]   # match only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import rlcore  # noqa: E402
from rlcore.cli import parse_setting  # noqa: E402
from rlcore.search.openspiel import GAMES, game_simulator  # noqa: E402
from rlcore.search.selfplay import NetworkPlayer, play_games  # noqa: E402


def train(game: str, search: str, sims: int, steps: int, seed: int, log_dir: str,
          settings: dict[str, Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    agent = rlcore.train("alphazero", GAMES[game], seed=seed, progress_bar=False, total_env_steps=steps,
                         eval_freq=0, log_dir=log_dir, search=search, num_simulations=sims, eval_simulations=sims,
                         **settings)
    seconds = time.perf_counter() - start
    sys.stderr.write(f"{search}: trained {steps} moves in {seconds:.0f} s ({agent.run_dir})\n")
    return agent, seconds


def openings(simulator: Any, plies: int) -> list[Any]:
    """Every position after ``plies`` legal moves from the start (none finished)."""
    found = [simulator.initial_state()]
    for _ in range(plies):
        found = [simulator.step(state, int(action))[0] for state in found for action in simulator.legal_actions(state)]
    return [state for state in found if not simulator.is_terminal(state)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", choices=sorted(GAMES), default="connect_four")
    parser.add_argument("--sims", type=int, default=16, help="simulations per move, self-play and match")
    parser.add_argument("--steps", type=int, default=100_000, help="self-play moves per agent")
    parser.add_argument("--plies", type=int, default=2, help="length of the match's openings")
    parser.add_argument("--runs", nargs=2, metavar=("PUCT_RUN", "GUMBEL_RUN"), help="trained runs (skip training)")
    parser.add_argument("--log-dir", default="runs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--puct-reuse-tree", action="store_true",
                        help="PUCT keeps the preset's tree reuse (more visits per search than Gumbel)")
    parser.add_argument("--cross", action="store_true",
                        help="also cross matches: each network with the other's search, and both at one simulation")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="SEARCH:KEY=VALUE",
                        help="a setting of one agent, e.g. gumbel:gumbel_value_scale=1.0 (repeatable)")
    args = parser.parse_args()
    settings: dict[str, dict[str, Any]] = {"puct": {"reuse_tree": args.puct_reuse_tree}, "gumbel": {}}
    for item in args.settings:
        search, _, assignment = item.partition(":")
        if search not in settings:
            parser.error(f"--set {item!r}: the search must be puct or gumbel")
        key, value = parse_setting(assignment)
        settings[search][key] = value
    torch.set_num_threads(1)
    record: dict[str, Any] = {"benchmark": "gumbel_vs_puct", "game": args.game, "simulations": args.sims,
                              "seed": args.seed, "settings": settings}
    if args.runs:
        puct, gumbel = (rlcore.load(run) for run in args.runs)
    else:
        (puct, puct_seconds), (gumbel, gumbel_seconds) = (
            train(args.game, search, args.sims, args.steps, args.seed, args.log_dir, settings[search])
            for search in ("puct", "gumbel"))
        record["training"] = {"self_play_moves": args.steps, "puct_seconds": round(puct_seconds),
                              "gumbel_seconds": round(gumbel_seconds), "puct_run": str(puct.run_dir),
                              "gumbel_run": str(gumbel.run_dir)}
    assert puct.algo.config.search == "puct" and gumbel.algo.config.search == "gumbel"
    simulator = game_simulator(args.game)
    starts = [state for state in openings(simulator, args.plies) for _ in range(2)]  # each opening, both seats

    def player(agent: Any, search: str, sims: int) -> NetworkPlayer:
        """``agent``'s network searching with ``search`` (its own or the other one), no noise, no tree reuse."""
        config = agent.algo.config
        if search != config.search:
            config = dataclasses.replace(config, search=search, reuse_tree=False)
        return NetworkPlayer(simulator, agent.algo.evaluator(), config.search_config(noise=False, simulations=sims),
                             len(starts), seed=args.seed)

    start = time.perf_counter()
    result = play_games(simulator, player(gumbel, "gumbel", args.sims), player(puct, "puct", args.sims), len(starts),
                        starts=starts)
    record["head_to_head"] = {"games": result.games, "gumbel_wins": result.wins, "draws": result.draws,
                              "puct_wins": result.losses, "gumbel_score": round(result.score, 3),
                              "openings": len(starts) // 2, "seconds": round(time.perf_counter() - start, 1)}
    if args.cross:  # which half falls short: the first player's score in each pairing
        pairings = {"gumbel_net_vs_puct_net_both_puct_search": (gumbel, "puct", puct, "puct", args.sims),
                    "gumbel_net_vs_puct_net_both_gumbel_search": (gumbel, "gumbel", puct, "gumbel", args.sims),
                    "gumbel_vs_puct_search_puct_net": (puct, "gumbel", puct, "puct", args.sims),
                    "gumbel_vs_puct_search_gumbel_net": (gumbel, "gumbel", gumbel, "puct", args.sims),
                    "gumbel_net_vs_puct_net_one_simulation": (gumbel, "puct", puct, "puct", 1)}
        record["cross"] = {name: round(play_games(simulator, player(first, first_search, sims),
                                                  player(second, second_search, sims), len(starts),
                                                  starts=starts).score, 3)
                           for name, (first, first_search, second, second_search, sims) in pairings.items()}
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
