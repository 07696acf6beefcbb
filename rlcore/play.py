"""``rlcore play``: a human plays a two-player board game against a trained agent in the terminal.

The agent is an AlphaZero checkpoint (searching with its network) or ``mcts`` (pure search with
random rollouts). Moves are typed as action numbers (tic-tac-toe: cell 0-8, row by row;
Connect Four: column 0-6).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from rlcore.env import make_env
from rlcore.search import MCTS, MCTSConfig, NativeSimulator, make_simulator

logger = logging.getLogger(__name__)

Chooser = Callable[[NativeSimulator, np.ndarray], int]
"""``(simulator, state) -> action`` of the computer player."""


def agent_chooser(agent_path: str, simulations: int | None) -> tuple[Chooser, str | None]:
    """The computer player for ``agent_path`` (a checkpoint folder, or ``mcts``) and its env id."""
    if agent_path == "mcts":
        config = MCTSConfig(num_simulations=simulations or 2000, solver=True)
        return lambda simulator, state: MCTS(simulator, config).choose(state), None
    from rlcore.agent import load

    agent = load(agent_path)
    choose_move = getattr(agent.algo, "choose_move", None)
    if choose_move is None:
        raise ValueError(f"{agent_path} holds a {agent.name} agent, which cannot play board games; "
                         "train alphazero, or play against 'mcts'")
    return lambda simulator, state: choose_move(simulator, state, simulations), agent.env


def play_game(env_id: str, choose: Chooser, *, human_first: bool, read: Callable[[str], str],
              write: Callable[[str], Any]) -> int | None:
    """Plays one game; returns the winner (0 = first player, 1 = second) or None for a draw.

    Args:
        read: Prompt -> the human's line (``input`` in the terminal).
        write: Shows text (``sys.stdout.write`` in the terminal).
    """
    env = make_env(env_id, render_mode="ansi")
    simulator = make_simulator(env)
    if not isinstance(simulator, NativeSimulator):
        raise ValueError(f"rlcore play needs a two-player board game such as rlcore/ConnectFour-v0; got {env_id}")
    _, info = env.reset()
    human_seat = 0 if human_first else 1
    while True:
        write(env.render())
        if info["to_play"] == human_seat:
            action = _read_move(info["action_mask"], read, write)
        else:
            action = choose(simulator, env.unwrapped.state)
            write(f"computer plays {action}\n")
        _, _, terminated, _, info = env.step(action)
        if terminated:
            write(env.render())
            winner = env.unwrapped.winner()
            write("draw\n" if winner is None else ("you win\n" if winner == human_seat else "computer wins\n"))
            return winner


def _read_move(mask: np.ndarray, read: Callable[[str], str], write: Callable[[str], Any]) -> int:
    legal = np.flatnonzero(mask).tolist()
    while True:
        text = read(f"your move {legal}: ").strip()
        if text.isdigit() and int(text) in legal:
            return int(text)
        write(f"{text!r} is not a legal move; type one of {legal}\n")
