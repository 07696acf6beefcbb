"""Matches between rlcore's search and OpenSpiel's bots, on any OpenSpiel game (``pip install -e '.[games]'``).

rlcore plays tic-tac-toe and Connect Four with its native rules (numba), which use OpenSpiel's action ids
(tic-tac-toe: cell ``3 * row + col``; Connect Four: column), and every other game through
:class:`~rlcore.search.games.openspiel.OpenSpielSimulator`; either way a move of either side is applied to
both sides' states as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from rlcore.search.games.openspiel import OpenSpielSimulator, pyspiel_module
from rlcore.search.mcts import MCTS, MCTSConfig
from rlcore.search.selfplay import MatchResult, NetworkPlayer

logger = logging.getLogger(__name__)

GAMES = {"tic_tac_toe": "rlcore/TicTacToe-v0", "connect_four": "rlcore/ConnectFour-v0"}
"""OpenSpiel game name -> rlcore env id of the same game."""


def _pyspiel() -> Any:
    return pyspiel_module()


def game_simulator(game_name: str) -> Any:
    """rlcore's simulator of an OpenSpiel game: the native one for :data:`GAMES`, else the OpenSpiel adapter."""
    if game_name in GAMES:  # registered by rlcore (rlcore.env), built by gymnasium
        import gymnasium as gym

        return gym.make(GAMES[game_name]).unwrapped.simulator
    return OpenSpielSimulator(game_name)


def openspiel_mcts(game_name: str, num_simulations: int, *, solver: bool, seed: int, uct_c: float = 2.0) -> Any:
    """OpenSpiel's C++ ``MCTSBot`` with one random rollout per leaf."""
    pyspiel = _pyspiel()
    game = pyspiel.load_game(game_name)
    evaluator = pyspiel.RandomRolloutEvaluator(1, seed)
    return pyspiel.MCTSBot(game, evaluator, uct_c, num_simulations, 1000, solver, seed, False)


class RlcoreBot:
    """rlcore's MCTS following an OpenSpiel game by its action history.

    Args:
        game_name: An OpenSpiel game string (``connect_four``, ``hex(board_size=5)``, ...).
        config: Search settings (``reuse_tree`` keeps the subtree of each move played).
        seed: Seeds the search.
        simulator: The simulator to search with (default: :func:`game_simulator`).
    """

    def __init__(self, game_name: str, config: MCTSConfig, seed: int = 0, simulator: Any = None) -> None:
        self.simulator = simulator if simulator is not None else game_simulator(game_name)
        self.mcts = MCTS(self.simulator, config, seed=seed)
        self.restart()

    def restart(self) -> None:
        """Back to the start position (a new game)."""
        self._history: list[int] = []
        self.mcts.set_root(self.simulator.initial_state())

    def step(self, history: list[int]) -> int:
        """The move for the position reached by ``history`` (all moves so far, both sides)."""
        if history[: len(self._history)] != self._history:
            self.restart()
        for action in history[len(self._history):]:
            self.mcts.advance(action)
        self._history = list(history)
        return self.mcts.choose()


class ChooserBot:
    """Any ``choose(simulator, state) -> action`` (e.g. ``AlphaZero.choose_move``) as an OpenSpiel player."""

    def __init__(self, game_name: str, choose: Callable[[Any, Any], int], simulator: Any = None) -> None:
        self.simulator = simulator if simulator is not None else game_simulator(game_name)
        self.choose = choose

    def step(self, history: list[int]) -> int:
        state = self.simulator.initial_state()
        for action in history:
            state, _, _ = self.simulator.step(state, action)
        return int(self.choose(self.simulator, state))


def play_match(
    game_name: str,
    num_games: int,
    make_rlcore: Callable[[int], RlcoreBot | ChooserBot],
    make_opponent: Callable[[int], Any],
    *,
    on_game: Callable[[int, MatchResult], None] | None = None,
) -> MatchResult:
    """Plays ``num_games`` games, rlcore moving first in even games and second in odd ones.

    Args:
        make_rlcore: Game index -> a fresh :class:`RlcoreBot` or :class:`ChooserBot` (seed it by the index).
        make_opponent: Game index -> an OpenSpiel bot (anything with ``step(state) -> action``).
        on_game: Called after each game with its index and the running result.
    """
    pyspiel = _pyspiel()
    game = pyspiel.load_game(game_name)
    result = MatchResult()
    for index in range(num_games):
        ours, theirs, our_seat = make_rlcore(index), make_opponent(index), index % 2
        state = game.new_initial_state()
        while not state.is_terminal():
            if state.current_player() == our_seat:
                action = ours.step(list(state.history()))
            else:
                action = theirs.step(state)
            state.apply_action(int(action))
        outcome = state.returns()[our_seat]
        result.wins += outcome > 0
        result.draws += outcome == 0
        result.losses += outcome < 0
        if on_game is not None:
            on_game(index, result)
    return result


def network_match(
    game_name: str,
    player: NetworkPlayer,
    make_opponent: Callable[[int], Any],
    *,
    on_game: Callable[[int, MatchResult], None] | None = None,
) -> MatchResult:
    """rlcore's network search against OpenSpiel bots in ``player.mcts.num_trees`` games played in lockstep (the
    network evaluates the leaves of every game where rlcore moves in one call); rlcore moves first in even games.

    Args:
        player: rlcore's side, built for as many games as it has trees, on rlcore's simulator of the game.
        make_opponent: Game index -> an OpenSpiel bot (``step(state) -> action``).
        on_game: Called after each finished game with its index and the running result.
    """
    game = _pyspiel().load_game(game_name)
    simulator, num_games = player.mcts.simulator, player.mcts.num_trees
    theirs = [game.new_initial_state() for _ in range(num_games)]
    ours = [simulator.initial_state() for _ in range(num_games)]  # type: ignore[attr-defined]
    bots = [make_opponent(index) for index in range(num_games)]
    our_seat, running, result = np.arange(num_games) % 2, np.ones(num_games, bool), MatchResult()

    def play(index: int, action: int) -> None:
        theirs[index].apply_action(int(action))
        ours[index], _, _ = simulator.step(ours[index], int(action))
        if theirs[index].is_terminal():
            running[index] = False
            outcome = theirs[index].returns()[our_seat[index]]
            result.wins += int(outcome > 0)
            result.draws += int(outcome == 0)
            result.losses += int(outcome < 0)
            if on_game is not None:
                on_game(index, result)

    while running.any():
        to_play = np.array([state.current_player() for state in theirs])
        mine = np.flatnonzero(running & (to_play == our_seat))
        if len(mine):
            for index, action in zip(mine, player.choose(ours, mine)):
                play(int(index), int(action))
        for index in np.flatnonzero(running & (to_play != our_seat)):
            play(int(index), bots[index].step(theirs[index]))
    return result


def uct_match(
    game_name: str, num_games: int, num_simulations: int, *, solver: bool = False, seed: int = 0,
    on_game: Callable[[int, MatchResult], None] | None = None, adapter: bool = False,
) -> MatchResult:
    """rlcore's UCT against OpenSpiel's C++ MCTS, both with ``num_simulations`` random-rollout
    simulations per move from a fresh tree, ``uct_c = 2`` and the same solver setting.

    ``adapter``: rlcore searches through :class:`OpenSpielSimulator` (the Python Simulator protocol) even for
    the games it has native rules for.
    """
    config = MCTSConfig(num_simulations=num_simulations, rule="uct", c=2.0, solver=solver, reuse_tree=False)
    simulator = OpenSpielSimulator(game_name) if adapter else game_simulator(game_name)
    return play_match(
        game_name, num_games,
        lambda index: RlcoreBot(game_name, config, seed=seed * 100_003 + index, simulator=simulator),
        lambda index: openspiel_mcts(game_name, num_simulations, solver=solver, seed=seed * 100_019 + index + 1),
        on_game=on_game,
    )


class RandomBot:
    """An OpenSpiel-state player that picks uniformly among the legal actions."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def step(self, state: Any) -> int:
        return int(self.rng.choice(state.legal_actions()))
