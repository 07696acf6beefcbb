"""rlcore's MCTS against OpenSpiel (``pip install open-spiel``): never loses at tic-tac-toe, as strong as
OpenSpiel's C++ MCTS at Connect Four with the same budget, and faster than its Python MCTS."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytestmark = pytest.mark.bench_extra  # OpenSpiel comes with the bench extra; without it these tests skip
pyspiel = pytest.importorskip("pyspiel")

from rlcore.search import MCTSConfig  # noqa: E402
from rlcore.search.openspiel import RandomBot, RlcoreBot, play_match, uct_match  # noqa: E402


def test_tic_tac_toe_never_loses_to_openspiel_mcts() -> None:
    result = uct_match("tic_tac_toe", 20, 1000, solver=True, seed=0)
    assert result.games == 20 and result.losses == 0


def test_tic_tac_toe_beats_random_play_without_losing() -> None:
    config = MCTSConfig(num_simulations=500)
    result = play_match("tic_tac_toe", 20, lambda i: RlcoreBot("tic_tac_toe", config, seed=i), RandomBot)
    assert result.losses == 0 and result.wins >= 15


def test_search_is_faster_than_openspiel_python_mcts() -> None:
    from open_spiel.python.algorithms import mcts

    game = pyspiel.load_game("connect_four")
    python_bot = mcts.MCTSBot(game, 2.0, 300, mcts.RandomRolloutEvaluator(1, np.random.RandomState(0)),
                              random_state=np.random.RandomState(0))
    ours = RlcoreBot("connect_four", MCTSConfig(num_simulations=300, reuse_tree=False), seed=0)
    ours.step([])  # compile
    start = time.perf_counter()
    for _ in range(5):
        ours.restart()
        ours.step([])
    rlcore_seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(5):
        python_bot.step(game.new_initial_state())
    assert time.perf_counter() - start > 3 * rlcore_seconds


@pytest.mark.slow
def test_connect_four_uct_matches_openspiel_cpp_mcts() -> None:
    """60 games at 1000 simulations (the benchmark plays 200): the score stays near one half."""
    result = uct_match("connect_four", 60, 1000, solver=False, seed=1)
    assert 0.3 <= result.score <= 0.7, result


@pytest.mark.slow
def test_alphazero_tic_tac_toe_never_loses_to_openspiel_mcts_10k(tmp_path) -> None:
    """The preset trains in a few minutes on one core; 40 games here (the benchmark plays 100)."""
    import rlcore
    from rlcore.search.openspiel import ChooserBot, openspiel_mcts

    agent = rlcore.train("alphazero", "rlcore/TicTacToe-v0", log_dir=str(tmp_path), progress_bar=False, seed=0)
    choose = lambda simulator, state: agent.algo.choose_move(simulator, state, 200)  # noqa: E731
    result = play_match("tic_tac_toe", 40, lambda i: ChooserBot("tic_tac_toe", choose),
                        lambda i: openspiel_mcts("tic_tac_toe", 10_000, solver=True, seed=1000 + i))
    assert result.losses == 0, result


def test_network_match_plays_every_game_in_lockstep_with_alternating_seats() -> None:
    from rlcore.search.openspiel import game_simulator, network_match
    from rlcore.search.selfplay import NetworkPlayer

    calls: list[int] = []

    def uniform(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(obs))
        return np.zeros((len(obs), 9), np.float32), np.zeros(len(obs), np.float32)

    simulator = game_simulator("tic_tac_toe")
    player = NetworkPlayer(simulator, uniform, MCTSConfig(num_simulations=50, rule="puct"), 10, seed=0)
    finished: list[int] = []
    result = network_match("tic_tac_toe", player, RandomBot, on_game=lambda index, running: finished.append(index))
    assert result.games == 10 and sorted(finished) == list(range(10))
    assert result.losses <= 2 and max(calls) >= 5  # one network call serves the games where rlcore moves


@pytest.mark.slow
def test_gumbel_alphazero_with_16_simulations_never_loses_tic_tac_toe_to_openspiel_mcts_10k(tmp_path) -> None:
    """Gumbel AlphaZero trained and playing with 16 simulations per move (the preset otherwise; ~4 min of training
    on one core); 40 games here (the benchmark plays 100)."""
    import rlcore
    from rlcore.search.openspiel import game_simulator, network_match, openspiel_mcts
    from rlcore.search.selfplay import NetworkPlayer

    agent = rlcore.train("alphazero", "rlcore/TicTacToe-v0", log_dir=str(tmp_path), progress_bar=False, seed=0,
                         search="gumbel", num_simulations=16, eval_simulations=16)
    player = NetworkPlayer(game_simulator("tic_tac_toe"), agent.algo.evaluator(),
                           agent.algo.config.search_config(noise=False, simulations=16), 40, seed=0)
    result = network_match("tic_tac_toe", player,
                           lambda i: openspiel_mcts("tic_tac_toe", 10_000, solver=True, seed=1000 + i))
    assert result.losses == 0, result
