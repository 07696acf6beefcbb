"""The board games as gymnasium envs: rules checked against a plain numpy referee, masks, illegal moves."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401


def four_in_a_row(board: np.ndarray, player: int, length: int) -> bool:
    """Plain referee: ``length`` stones of ``player`` in a line on ``board [rows, cols]``."""
    rows, cols = board.shape
    for r in range(rows):
        for c in range(cols):
            for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                cells = [(r + k * dr, c + k * dc) for k in range(length)]
                if all(0 <= y < rows and 0 <= x < cols and board[y, x] == player for y, x in cells):
                    return True
    return False


@pytest.mark.parametrize(("env_id", "length"), [("rlcore/TicTacToe-v0", 3), ("rlcore/ConnectFour-v0", 4)])
def test_random_games_follow_the_rules(env_id: str, length: int) -> None:
    env = gym.make(env_id).unwrapped
    rng = np.random.default_rng(0)
    for game in range(200):
        obs, info = env.reset(seed=game)
        board = np.zeros((env.rows, env.cols), np.int8)
        for ply in range(env.rows * env.cols):
            assert info["to_play"] == ply % 2
            legal = np.flatnonzero(info["action_mask"])
            if env_id.endswith("ConnectFour-v0"):
                assert list(legal) == [c for c in range(env.cols) if board[0, c] == 0]
                column = int(rng.choice(legal))
                row = max(r for r in range(env.rows) if board[r, column] == 0)
                board[row, column] = 1 + ply % 2
            else:
                assert list(legal) == list(np.flatnonzero(board.reshape(-1) == 0))
                cell = int(rng.choice(legal))
                board.reshape(-1)[cell] = 1 + ply % 2
                column = cell
            obs, reward, terminated, truncated, info = env.step(column)
            assert np.array_equal(env.board(env.state), board) and not truncated
            won = four_in_a_row(board, 1 + ply % 2, length)
            assert reward == float(won)
            assert terminated == (won or ply == env.rows * env.cols - 1)
            if terminated:
                assert env.winner() == (ply % 2 if won else None)
                break
            mover_next = 1 + (ply + 1) % 2
            assert np.array_equal(obs[0], (board == mover_next).astype(np.float32))
            assert np.array_equal(obs[1], (board == 3 - mover_next).astype(np.float32))
            assert (obs[2] == (ply + 1) % 2).all()


def test_illegal_move_loses_and_mask_is_in_info() -> None:
    env = gym.make("rlcore/TicTacToe-v0")
    _, info = env.reset(seed=0)
    assert info["action_mask"].dtype == np.int8 and info["action_mask"].sum() == 9
    env.step(4)
    _, reward, terminated, _, info = env.step(4)
    assert reward == -1.0 and terminated and info["illegal_action"]


def test_ansi_render_shows_the_board() -> None:
    env = gym.make("rlcore/ConnectFour-v0", render_mode="ansi")
    env.reset(seed=0)
    env.step(3)
    env.step(3)
    text = env.render()
    assert text.splitlines()[-2] == ". . . X . . ." and text.splitlines()[-3] == ". . . O . . ."
