"""Games between two players on a two-player simulator (rlcore's native games, OpenSpiel games), all
played in lockstep so that network players evaluate the leaves of every game in one batched call.

A *player* chooses moves for a subset of the games at once (:meth:`NetworkPlayer.choose`);
:func:`play_games` alternates seats between games and scores the first player.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from rlcore.search.mcts import MCTS, BatchEvaluator, MCTSConfig
from rlcore.search.simulator import Simulator


@dataclass
class MatchResult:
    """Outcome of a match, seen by the first player."""

    wins: int = 0
    draws: int = 0
    losses: int = 0
    moves: list[int] = field(default_factory=list)
    """Moves of each finished game (both players'), in the order the games ended."""

    @property
    def games(self) -> int:
        return self.wins + self.draws + self.losses

    @property
    def score(self) -> float:
        """(wins + draws / 2) / games."""
        return (self.wins + 0.5 * self.draws) / max(self.games, 1)

    @property
    def score_std(self) -> float:
        """Standard deviation of the per-game scores (1 a win, 0.5 a draw, 0 a loss) around :attr:`score`."""
        games = max(self.games, 1)
        mean = self.score
        squares = self.wins * (1.0 - mean) ** 2 + self.draws * (0.5 - mean) ** 2 + self.losses * mean**2
        return float(np.sqrt(squares / games))


class Player(Protocol):
    def choose(self, states: list[Any], games: np.ndarray) -> np.ndarray:
        """Moves for ``games`` (``int64 [k]``) at ``states[g]`` (one state per game)."""
        ...


class NetworkPlayer:
    """PUCT search guided by a network; one tree per game, leaves evaluated in one batch.

    Args:
        evaluate: The network (see :data:`rlcore.search.mcts.BatchEvaluator`).
        config: Search settings (use no root noise and ``temperature = 0`` to play its best).
    """

    def __init__(self, simulator: Simulator[Any], evaluate: BatchEvaluator, config: MCTSConfig, num_games: int,
                 seed: int = 0) -> None:
        self.mcts = MCTS(simulator, config, num_trees=num_games, seed=seed)
        self.evaluate = evaluate

    def choose(self, states: list[Any], games: np.ndarray) -> np.ndarray:
        active = np.zeros(self.mcts.num_trees, bool)
        active[games] = True
        for b in games:
            self.mcts.sync_root(states[b], int(b))
        self.mcts.search_batch(self.evaluate, active)
        actions = np.array([self.mcts.best_action(int(b)) for b in games], np.int64)
        for b, action in zip(games, actions):
            self.mcts.advance(int(action), int(b))
        return actions


class RolloutPlayer:
    """Pure MCTS with random rollouts (UCT by default), one tree per game."""

    def __init__(self, simulator: Simulator[Any], config: MCTSConfig, num_games: int, seed: int = 0) -> None:
        self.mcts = MCTS(simulator, config, num_trees=num_games, seed=seed)

    def choose(self, states: list[Any], games: np.ndarray) -> np.ndarray:
        actions = np.array([self.mcts.choose(states[b], int(b)) for b in games], np.int64)
        for b, action in zip(games, actions):
            self.mcts.advance(int(action), int(b))
        return actions


def play_games(simulator: Simulator[Any], first: Player, second: Player, num_games: int,
               starts: list[Any] | None = None) -> MatchResult:
    """Plays ``num_games`` games; ``first`` takes the seat of player 0 in even games and of player 1 in odd ones.

    Both players must have been built for ``num_games`` games (game ``g`` is their tree ``g``). Games start
    from ``starts[g]`` (e.g. openings, to vary games between deterministic players), by default from the
    simulator's ``initial_state()``.
    """
    if starts is not None and len(starts) != num_games:
        raise ValueError(f"starts has {len(starts)} positions for {num_games} games")
    states = list(starts) if starts is not None else [simulator.initial_state()  # type: ignore[attr-defined]
                                                      for _ in range(num_games)]
    seat_of_first = np.arange(num_games) % 2
    result, running, moves = MatchResult(), np.ones(num_games, bool), np.zeros(num_games, np.int64)
    while running.any():
        to_play = np.array([simulator.to_play(state) for state in states])
        for player, seat in ((first, seat_of_first), (second, 1 - seat_of_first)):
            games = np.flatnonzero(running & (to_play == seat))
            if len(games) == 0:
                continue
            for b, action in zip(games, player.choose(states, games)):
                states[b], reward, done = simulator.step(states[b], int(action))
                moves[b] += 1
                if done:  # the final reward goes to the mover: > 0 a win, < 0 a loss (misere games), 0 a draw
                    running[b] = False
                    result.moves.append(int(moves[b]))
                    first_outcome = np.sign(reward) if player is first else -np.sign(reward)
                    result.wins += int(first_outcome > 0)
                    result.losses += int(first_outcome < 0)
                    result.draws += int(first_outcome == 0)
    return result
