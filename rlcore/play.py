"""``rlcore play``: a human plays a two-player board game against a trained agent in the terminal.

The agent is an AlphaZero checkpoint (searching with its network) or ``mcts`` (pure search with
random rollouts). The game is rlcore's (``rlcore/TicTacToe-v0``, ``rlcore/ConnectFour-v0``) or any
OpenSpiel game (``openspiel/hex(board_size=5)``). Moves are typed as action numbers (tic-tac-toe:
cell 0-8, row by row; Connect Four: column 0-6) or, for OpenSpiel games, by their OpenSpiel name
(e.g. ``c3`` in Hex).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from rlcore.env import env_spaces, make_env
from rlcore.search import MCTS, MCTSConfig, Simulator, make_simulator
from rlcore.search.simulator import SnapshotError, current_state
from rlcore.spaces import space_difference

logger = logging.getLogger(__name__)

Chooser = Callable[[Simulator[Any], Any], int]
"""``(simulator, state) -> action`` of the computer player."""


def agent_chooser(agent_path: str, simulations: int | None,
                  env_id: str | None = None) -> tuple[Chooser, str | None]:
    """The computer player for ``agent_path`` (a checkpoint folder, or ``mcts``) and its env id; ``env_id``, a game
    other than the agent's, must have the agent's spaces (else a ValueError naming both games)."""
    if agent_path == "mcts":
        config = MCTSConfig(num_simulations=simulations or 2000, solver=True)
        return lambda simulator, state: MCTS(simulator, config).choose(state), None
    from rlcore.agent import load

    agent = load(agent_path)
    choose_move = getattr(agent.algo, "choose_move", None)
    if choose_move is None:
        raise ValueError(f"{agent_path} holds a {agent.name} agent, which cannot play board games; "
                         "train alphazero, or play against 'mcts'")
    if env_id is not None and env_id != agent.env:
        spaces = env_spaces(env_id)
        if space_difference(spaces, (agent.algo.observation_space, agent.algo.action_space)) is not None:
            raise ValueError(f"{agent_path} plays {agent.env}, whose board differs from {env_id}'s (spaces "
                             f"{agent.algo.observation_space} and {agent.algo.action_space} against {spaces[0]} and "
                             f"{spaces[1]}); play it on {agent.env}, or play {env_id} against 'mcts'")
    return lambda simulator, state: choose_move(simulator, state, simulations), agent.env


def play_game(env_id: str, choose: Chooser, *, human_first: bool, read: Callable[[str], str],
              write: Callable[[str], Any]) -> int | None:
    """Plays one game; returns the winner (0 = first player, 1 = second) or None for a draw.

    Args:
        read: Prompt -> the human's line (``input`` in the terminal).
        write: Shows text (``sys.stdout.write`` in the terminal).
    """
    env = make_env(env_id, render_mode="ansi")
    try:
        simulator = make_simulator(env)
    except SnapshotError:
        simulator = None
    if simulator is None or simulator.num_players != 2 or not hasattr(env.unwrapped, "winner"):
        raise ValueError(f"rlcore play needs a two-player board game such as rlcore/ConnectFour-v0 or "
                         f"openspiel/hex(board_size=5); got {env_id}")
    _, info = env.reset()
    human_seat = 0 if human_first else 1
    while True:
        write(env.render())
        state = current_state(simulator, env)
        names = _move_names(simulator, state, info["action_mask"])
        if info["to_play"] == human_seat:
            action = _read_move(info["action_mask"], names, read, write)
        else:
            action = choose(simulator, state)
            write(f"computer plays {action}{_named(names, action)}\n")
        _, _, terminated, _, info = env.step(action)
        if terminated:
            write(env.render())
            winner = env.unwrapped.winner()
            write("draw\n" if winner is None else ("you win\n" if winner == human_seat else "computer wins\n"))
            return winner


def _move_names(simulator: Simulator[Any], state: Any, mask: np.ndarray) -> dict[int, str]:
    """Legal action -> its name, for simulators that name their actions (OpenSpiel games)."""
    name = getattr(simulator, "action_name", None)
    if name is None:
        return {}
    return {int(action): name(state, int(action)) for action in np.flatnonzero(mask)}


def _named(names: dict[int, str], action: int) -> str:
    return f" ({names[action]})" if action in names and names[action] != str(action) else ""


def _read_move(mask: np.ndarray, names: dict[int, str], read: Callable[[str], str],
               write: Callable[[str], Any]) -> int:
    legal = np.flatnonzero(mask).tolist()
    by_name = {text: action for action, text in names.items()}
    shown = [f"{action}{_named(names, action)}" for action in legal] if names else legal
    while True:
        text = read(f"your move {shown}: ".replace("'", "")).strip()
        if text.isdigit() and int(text) in legal:
            return int(text)
        if text in by_name:
            return by_name[text]
        write(f"{text!r} is not a legal move; type one of {legal}\n")
