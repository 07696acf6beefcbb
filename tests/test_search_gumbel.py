"""Gumbel search (Danihelka et al. 2022): the sequential-halving schedule, completed Q-values against a plain
reference, the budget at the root, the improved policy, forced wins with 16 simulations, and the numba and Python
paths running the very same search."""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the games)
from rlcore.search import MCTS, MCTSConfig, tree
from rlcore.search.gumbel import considered_visits

TTT = "rlcore/TicTacToe-v0"


def ttt() -> Any:
    return gym.make(TTT).unwrapped.simulator


def test_sequential_halving_schedule() -> None:
    # m = 4, n = 8: two phases; 4 actions once each, then 2 actions twice each
    assert considered_visits(4, 8).tolist() == [0, 0, 0, 0, 1, 1, 2, 2]
    # m = 7, n = 16: 7 x 1, then 3 x 1, then 2 x 2 repeated until the budget ends
    assert considered_visits(7, 16).tolist() == [0] * 7 + [1] * 3 + [2, 2, 3, 3, 4, 4]
    assert considered_visits(1, 3).tolist() == [0, 1, 2]


def reference_completed_q(visits: np.ndarray, q: np.ndarray, priors: np.ndarray, raw_value: float,
                          value_scale: float = 0.1, visit_offset: float = 50.0) -> np.ndarray:
    """Appendix D of the paper, written plainly."""
    visited = visits > 0
    total = visits.sum()
    mixed = raw_value
    if total > 0:
        mixed = (raw_value + total * (priors[visited] * q[visited]).sum() / priors[visited].sum()) / (1 + total)
    completed = np.where(visited, q, mixed)
    completed = (completed - completed.min()) / max(completed.max() - completed.min(), 1e-8)
    return (visit_offset + visits.max()) * value_scale * completed


def test_completed_q_matches_the_paper() -> None:
    rng = np.random.default_rng(0)
    t = tree.allocate(1, 32)
    count = 6
    visits = np.array([0, 3, 1, 0, 5, 2])
    q = rng.uniform(-1, 1, count)
    priors = rng.dirichlet(np.ones(count)).astype(np.float32)
    tree.expand(t, 0, 0, np.arange(count), priors, count)
    t.visits[0, 1:1 + count] = visits
    t.value_sum[0, 1:1 + count] = q * visits
    t.raw_value[0, 0] = 0.3
    out = np.zeros(count)
    tree.completed_q(t, 0, 0, 0.1, 50.0, out)
    np.testing.assert_allclose(out, reference_completed_q(visits, q, priors.astype(np.float64), 0.3), rtol=1e-5)


def uniform_network(num_actions: int) -> Any:
    def evaluate(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros((len(obs), num_actions), np.float32), np.zeros(len(obs), np.float32)
    return evaluate


def position(moves: list[int]) -> np.ndarray:
    sim, state = ttt(), ttt().initial_state()
    for move in moves:
        state, _, _ = sim.step(state, move)
    return state


@pytest.mark.parametrize("noise", [0.0, 1.0])
def test_sixteen_simulations_find_the_win_and_spend_the_budget_at_the_root(noise: float) -> None:
    # x: 0 1 _ / o: 3 4 _ ; x to move, 2 wins at once
    sim = ttt()
    mcts = MCTS(sim, MCTSConfig(num_simulations=16, rule="gumbel", gumbel_scale=noise), num_trees=1, seed=3)
    mcts.set_root(position([0, 3, 1, 4]))
    mcts.search_batch(uniform_network(9))
    counts = mcts.visit_counts()
    assert counts.sum() == 16 and (counts > 0).sum() == 5  # every legal move considered (m = 16 >= 5)
    policy = mcts.target_policy()
    assert math.isclose(policy.sum(), 1.0, rel_tol=1e-9) and policy[[0, 1, 3, 4]].sum() == 0.0
    assert mcts.best_action() == 2 and policy.argmax() == 2 and policy[2] > 0.5


def test_gumbel_considers_only_the_sampled_actions() -> None:
    sim = ttt()
    mcts = MCTS(sim, MCTSConfig(num_simulations=16, rule="gumbel", gumbel_considered=4), seed=0)
    mcts.set_root(sim.initial_state())
    mcts.search_batch(uniform_network(9))
    counts = mcts.visit_counts()
    assert (counts > 0).sum() == 4 and sorted(counts[counts > 0]) == [2, 2, 6, 6]  # 4 x 2, then 2 x 4 more


class PythonTicTacToe:
    """The native tic-tac-toe rules behind the plain protocol (plus observation), so MCTS takes its Python path."""

    def __init__(self) -> None:
        self.native = ttt()
        self.num_actions, self.num_players = 9, 2

    def __getattr__(self, name: str) -> Any:
        if name in ("legal_actions", "step", "to_play", "is_terminal", "observation", "initial_state"):
            return getattr(self.native, name)
        raise AttributeError(name)

    def same_state(self, first: np.ndarray, second: np.ndarray) -> bool:
        return bool(np.array_equal(first, second))


@pytest.mark.parametrize("rule", ["gumbel", "puct"])
def test_python_path_runs_the_same_search_as_numba(rule: str) -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(27, 9)).astype(np.float32)

    def network(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat = obs.reshape(len(obs), -1)
        return flat @ weights, np.tanh(flat @ weights[:, 0]).astype(np.float32)

    config = MCTSConfig(num_simulations=40, rule=rule)
    searches = [MCTS(simulator, config, num_trees=3, seed=5) for simulator in (ttt(), PythonTicTacToe())]
    for mcts in searches:
        for b, moves in enumerate(([], [4], [0, 4, 8])):
            mcts.set_root(position(moves), b)
        mcts.search_batch(network)
    native, python = searches
    assert type(python.simulator) is PythonTicTacToe and python.kernel is None
    for b in range(3):
        np.testing.assert_array_equal(native.visit_counts(b), python.visit_counts(b))
        np.testing.assert_allclose(native.target_policy(b), python.target_policy(b), rtol=1e-5)  # float32 softmax
        assert native.best_action(b) == python.best_action(b)


def test_gumbel_refuses_several_leaves_per_round_and_settings_it_ignores() -> None:
    with pytest.raises(ValueError, match="leaves_per_round"):
        MCTSConfig(rule="gumbel", leaves_per_round=4)
    for name in ("dirichlet_alpha", "temperature"):  # accepted and ignored before
        with pytest.raises(ValueError, match=rf"MCTSConfig.{name}=0.3 has no effect with rule='gumbel'"):
            MCTSConfig(rule="gumbel", **{name: 0.3})


def test_gumbel_with_rollouts_on_a_native_game_takes_the_python_path_and_wins() -> None:
    sim = ttt()
    mcts = MCTS(sim, MCTSConfig(num_simulations=64, rule="gumbel", gumbel_scale=0.0), seed=0)
    assert mcts.choose(position([0, 3, 1, 4])) == 2 and mcts.visit_counts().sum() == 64


@pytest.mark.parametrize("reuse_tree", [True, False])
def test_alphazero_puct_without_tree_reuse_spends_exactly_its_budget_each_move(reuse_tree: bool) -> None:
    # the same-budget comparison with Gumbel (which never reuses) needs PUCT's searches to hold num_simulations visits
    from rlcore.algos.alphazero import AlphaZeroConfig

    config = AlphaZeroConfig(num_simulations=16, reuse_tree=reuse_tree).search_config(noise=False)
    assert config.reuse_tree is reuse_tree
    mcts = MCTS(ttt(), config, num_trees=1, seed=0)
    mcts.set_root(ttt().initial_state())
    mcts.search_batch(uniform_network(9))
    mcts.advance(mcts.best_action())
    mcts.search_batch(uniform_network(9))
    carried = int(mcts.visit_counts().sum()) - 16
    assert (carried > 0) if reuse_tree else (carried == 0)
