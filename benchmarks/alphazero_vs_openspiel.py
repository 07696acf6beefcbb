"""AlphaZero on tic-tac-toe or Connect Four: train on this CPU (or load a run), then play OpenSpiel's C++ MCTS.

Training uses the preset in ``rlcore/presets/alphazero.yaml`` (``--steps`` overrides its length, ``--set
key=value`` any other field, e.g. ``--set search=gumbel --set num_simulations=16``); the match alternates
seats, rlcore searching with its network (``--sims`` per move, no noise, with the trained agent's search:
PUCT or Gumbel), OpenSpiel's ``pyspiel.MCTSBot`` with ``--opponent-sims`` random-rollout simulations and
the solver. Acceptance: tic-tac-toe never loses 100 games to MCTS-10k (PUCT with the preset; Gumbel
AlphaZero with 16 simulations); Connect Four scores >= 0.6 against MCTS-1000 with <= 400 simulations.

Prints one JSON line to stdout; progress goes to stderr.

    OMP_NUM_THREADS=1 python benchmarks/alphazero_vs_openspiel.py --game tic_tac_toe [--run RUN_DIR] [--games 100]
    OMP_NUM_THREADS=1 python benchmarks/alphazero_vs_openspiel.py --game tic_tac_toe --sims 16 \
        --set search=gumbel --set num_simulations=16 --set eval_simulations=16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

import rlcore  # noqa: E402
from rlcore.cli import parse_setting  # noqa: E402
from rlcore.search.openspiel import GAMES, game_simulator, network_match, openspiel_mcts  # noqa: E402
from rlcore.search.selfplay import NetworkPlayer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--game", choices=sorted(GAMES), default="tic_tac_toe")
    parser.add_argument("--run", help="a trained run folder (default: train one now)")
    parser.add_argument("--steps", type=int, help="self-play moves to train for (default: the preset's)")
    parser.add_argument("--games", type=int, default=100)
    parser.add_argument("--sims", type=int, default=200, help="rlcore simulations per move")
    parser.add_argument("--opponent-sims", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (training and the match)")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[],
                        metavar="KEY=VALUE", help="a TrainConfig or AlphaZeroConfig field; repeatable")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    record: dict = {"benchmark": "alphazero_vs_openspiel", "game": args.game, "torch_threads": args.threads}
    if args.run:
        agent = rlcore.load(args.run)
    else:
        start = time.perf_counter()
        settings = {**({"total_env_steps": args.steps} if args.steps else {}), **dict(args.settings)}
        record["settings"] = settings
        agent = rlcore.train("alphazero", GAMES[args.game], seed=args.seed, progress_bar=False, **settings)
        record["train_seconds"] = round(time.perf_counter() - start, 1)
        record["run"] = str(agent.run_dir)
        record["training"] = training_figures(agent.algo)
    simulator = game_simulator(args.game)
    player = NetworkPlayer(simulator, agent.algo.evaluator(), agent.algo.config.search_config(
        noise=False, simulations=args.sims), args.games, seed=args.seed)
    start = time.perf_counter()
    result = network_match(args.game, player, lambda index: openspiel_mcts(
        args.game, args.opponent_sims, solver=True, seed=1000 + index),
        on_game=lambda index, running: sys.stderr.write(f"game {index + 1} over: {running}\n"))
    record["match"] = {"opponent": f"openspiel_cpp_mcts_{args.opponent_sims}_solver", "rlcore_simulations": args.sims,
                       "rlcore_search": agent.algo.config.search, "games": result.games, "wins": result.wins,
                       "draws": result.draws, "losses": result.losses, "score": round(result.score, 3),
                       "seconds": round(time.perf_counter() - start, 1)}
    sys.stdout.write(json.dumps(record) + "\n")


def training_figures(algo: Any) -> dict[str, float]:
    """Self-play throughput and where the time went, from the algorithm's timers."""
    timings = algo.timings
    busy = timings["self_play_s"] + timings["train_s"]
    return {"self_play_moves": int(timings["self_play_moves"]),
            "self_play_moves_per_s": round(timings["self_play_moves"] / max(timings["self_play_s"], 1e-9), 1),
            "network_share_of_self_play": round(timings["network_s"] / max(timings["self_play_s"], 1e-9), 3),
            "network_share_of_training": round((timings["network_s"] + timings["train_s"]) / max(busy, 1e-9), 3),
            "train_share": round(timings["train_s"] / max(busy, 1e-9), 3),
            "games": int(algo.games_played), "gradient_steps": int(algo.updates)}


if __name__ == "__main__":
    main()
