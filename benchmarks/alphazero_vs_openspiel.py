"""AlphaZero on tic-tac-toe or Connect Four: train on this CPU (or load a run), then play OpenSpiel's C++ MCTS.

Training uses the preset in ``rlcore/presets/alphazero.yaml`` (``--steps`` overrides its length);
the match alternates seats, rlcore searching with its network (``--sims`` per move, no noise),
OpenSpiel's ``pyspiel.MCTSBot`` with ``--opponent-sims`` random-rollout simulations and the solver.
Acceptance: tic-tac-toe never loses 100 games to MCTS-10k; Connect Four scores >= 0.6 against
MCTS-1000 with <= 400 simulations.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/alphazero_vs_openspiel.py --game tic_tac_toe [--run RUN_DIR] [--games 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import rlcore  # noqa: E402
from rlcore.search.openspiel import GAMES, ChooserBot, openspiel_mcts, play_match  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", choices=sorted(GAMES), default="tic_tac_toe")
    parser.add_argument("--run", help="a trained run folder (default: train one now)")
    parser.add_argument("--steps", type=int, help="self-play moves to train for (default: the preset's)")
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--sims", type=int, default=200, help="rlcore simulations per move")
    parser.add_argument("--opponent-sims", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    record: dict = {"benchmark": "alphazero_vs_openspiel", "game": args.game}
    if args.run:
        agent = rlcore.load(args.run)
    else:
        start = time.perf_counter()
        settings = {"total_env_steps": args.steps} if args.steps else {}
        agent = rlcore.train("alphazero", GAMES[args.game], seed=args.seed, progress_bar=False, **settings)
        record["train_seconds"] = round(time.perf_counter() - start, 1)
        record["run"] = str(agent.run_dir)
    choose = lambda simulator, state: agent.algo.choose_move(simulator, state, args.sims)  # noqa: E731
    result = play_match(args.game, args.games, lambda index: ChooserBot(args.game, choose),
                        lambda index: openspiel_mcts(args.game, args.opponent_sims, solver=True, seed=1000 + index),
                        on_game=lambda index, running: sys.stderr.write(f"game {index + 1}: {running}\n"))
    record["match"] = {"opponent": f"openspiel_cpp_mcts_{args.opponent_sims}", "rlcore_simulations": args.sims,
                       "games": result.games, "wins": result.wins, "draws": result.draws, "losses": result.losses,
                       "score": round(result.score, 3)}
    sys.stdout.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
