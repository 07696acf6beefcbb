"""MCTS on the native games: forced wins, visit budgets, the solver against exact minimax, tree reuse,
root noise, temperature and batched leaf evaluation."""

from __future__ import annotations

import functools

import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401  (registers the games)
from rlcore.search import MCTS, MCTSConfig
from rlcore.search.simulator import NativeSimulator


@functools.cache
def simulator(env_id: str) -> NativeSimulator:
    return gym.make(env_id).unwrapped.simulator


TTT = "rlcore/TicTacToe-v0"
C4 = "rlcore/ConnectFour-v0"


def play(env_id: str, moves: list[int]) -> np.ndarray:
    sim = simulator(env_id)
    state = sim.initial_state()
    for move in moves:
        state, _, done = sim.step(state, move)
        assert not done
    return state


@functools.cache
def ttt_value(key: tuple[int, ...]) -> float:
    """Exact minimax value of a tic-tac-toe state for the player to move."""
    sim, state = simulator(TTT), np.array(key, np.int64)
    best = -np.inf
    for action in sim.legal_actions(state):
        child, reward, done = sim.step(state, int(action))
        best = max(best, reward if done else -ttt_value(tuple(child)))
    return best


def ttt_positions(min_stones: int) -> list[np.ndarray]:
    """Every reachable non-terminal tic-tac-toe position with at least ``min_stones`` stones."""
    sim, seen, frontier, found = simulator(TTT), set(), [simulator(TTT).initial_state()], []
    while frontier:
        state = frontier.pop()
        if tuple(state) in seen:
            continue
        seen.add(tuple(state))
        if state[2] >= min_stones:
            found.append(state)
        for action in sim.legal_actions(state):
            child, _, done = sim.step(state, int(action))
            if not done:
                frontier.append(child)
    return found


# ------------------------------------------------------------------------------ forced wins
@pytest.mark.parametrize("rule", ["uct", "puct"])
def test_finds_a_win_in_one_move(rule: str) -> None:
    # Connect Four: the first player has three stones in column 2; column 2 wins at once.
    state = play(C4, [2, 5, 2, 5, 2, 6])
    mcts = MCTS(simulator(C4), MCTSConfig(num_simulations=300, rule=rule, c=2.0 if rule == "uct" else 1.5), seed=1)
    assert mcts.choose(state) == 2
    # Tic-tac-toe: X holds 0 and 1, O holds 3 and 4; X wins with 2 (O would win with 5).
    state = play(TTT, [0, 3, 1, 4])
    assert MCTS(simulator(TTT), MCTSConfig(num_simulations=300, rule=rule), seed=1).choose(state) == 2


def test_finds_a_win_in_two_moves_and_the_solver_proves_it() -> None:
    # X on columns 1 and 2 of the bottom row, O stacked on column 6: only column 3 makes two threats.
    state = play(C4, [1, 6, 2, 6])
    plain = MCTS(simulator(C4), MCTSConfig(num_simulations=2000), seed=0)
    assert plain.choose(state) == 3
    solver = MCTS(simulator(C4), MCTSConfig(num_simulations=20_000, solver=True), seed=0)
    assert solver.choose(state) == 3
    assert solver.proven_value() == 1.0


def test_finds_every_unique_tic_tac_toe_win_in_two() -> None:
    """Positions with no win in one but exactly one move that wins by force two moves later."""
    sim, checked = simulator(TTT), 0
    for state in ttt_positions(2):
        results = [sim.step(state, int(a)) for a in sim.legal_actions(state)]
        if any(done and reward > 0 for _, reward, done in results):
            continue
        winning = [a for a, (child, reward, done) in zip(sim.legal_actions(state), results)
                   if not done and -ttt_value(tuple(child)) == 1.0]
        if len(winning) != 1 or state[2] < 4:
            continue
        assert MCTS(sim, MCTSConfig(num_simulations=1000), seed=checked).choose(state) == winning[0], state
        checked += 1
    assert checked >= 10


# ------------------------------------------------------------------------------ budgets
def test_visit_counts_sum_to_the_simulation_budget() -> None:
    for env_id, sims in ((C4, 777), (TTT, 123)):
        sim = simulator(env_id)
        for config in (MCTSConfig(num_simulations=sims), MCTSConfig(num_simulations=sims, rule="puct")):
            counts = MCTS(sim, config, seed=3).search(sim.initial_state())
            assert counts.sum() == sims and (counts > 0).sum() >= 2


def test_solver_proves_terminal_positions_like_minimax() -> None:
    sim, positions = simulator(TTT), ttt_positions(5)
    rng = np.random.default_rng(0)
    for index in rng.choice(len(positions), size=60, replace=False):
        state = positions[index]
        mcts = MCTS(sim, MCTSConfig(num_simulations=5000, solver=True), seed=int(index))
        action = mcts.choose(state)
        exact = ttt_value(tuple(state))
        assert mcts.proven_value() == exact, state
        child, reward, done = sim.step(state, action)
        assert (reward if done else -ttt_value(tuple(child))) == exact, (state, action)


def test_solver_stops_early_once_the_root_is_proven() -> None:
    state = play(TTT, [0, 3, 1, 4])  # X to move wins at once
    counts = MCTS(simulator(TTT), MCTSConfig(num_simulations=10_000, solver=True), seed=0).search(state)
    assert counts.sum() < 100 and counts.argmax() == 2


# ------------------------------------------------------------------------------ tree reuse
def assert_consistent(mcts: MCTS) -> None:
    t = mcts.arrays
    size = int(t.size[0])
    for node in range(size):
        first, count = t.first_child[0, node], t.num_children[0, node]
        if first >= 0:
            assert first + count <= size
            assert (t.parent[0, first:first + count] == node).all()
            assert t.visits[0, node] >= t.visits[0, first:first + count].sum()


def test_tree_reuse_keeps_the_subtree_of_the_move_played() -> None:
    sim = simulator(C4)
    mcts = MCTS(sim, MCTSConfig(num_simulations=2000), seed=0)
    first_counts = mcts.search(sim.initial_state())
    action = int(first_counts.argmax())
    mcts.advance(action)
    assert_consistent(mcts)
    kept = int(mcts.arrays.visits[0, 0])
    assert kept == first_counts[action]
    expected_state, _, _ = sim.step(sim.initial_state(), action)
    assert np.array_equal(mcts.root_state(), expected_state)
    counts = mcts.search(expected_state)  # an equal state keeps the tree
    assert counts.sum() == kept - 1 + 2000
    mcts.advance(int(counts.argmax()))
    assert_consistent(mcts)


def test_advancing_into_an_unexpanded_move_starts_a_fresh_tree() -> None:
    sim = simulator(TTT)
    mcts = MCTS(sim, MCTSConfig(num_simulations=5), seed=0)
    mcts.set_root(sim.initial_state())
    mcts.advance(4)
    assert mcts.arrays.size[0] == 1 and np.array_equal(mcts.root_state(), play(TTT, [4]))


# ------------------------------------------------------------------------------ noise, temperature
def test_dirichlet_noise_changes_the_root_priors() -> None:
    sim = simulator(C4)
    mcts = MCTS(sim, MCTSConfig(num_simulations=10, rule="puct", dirichlet_alpha=0.3), seed=0)
    mcts.search(sim.initial_state())
    priors = mcts.arrays.prior[0, 1:8]
    assert priors.sum() == pytest.approx(1.0, abs=1e-5) and priors.std() > 0.01


def test_temperature_samples_in_proportion_to_visits() -> None:
    sim = simulator(C4)
    mcts = MCTS(sim, MCTSConfig(num_simulations=700), seed=0)
    counts = mcts.search(sim.initial_state())
    assert np.allclose(mcts.policy(temperature=1.0), counts / counts.sum())
    assert mcts.policy(temperature=0.0)[counts.argmax()] == 1.0
    sharp = mcts.policy(temperature=0.25)
    assert sharp.max() > (counts / counts.sum()).max()


# ------------------------------------------------------------------------------ batched evaluation
def test_batched_search_evaluates_leaves_of_all_games_in_one_call() -> None:
    sim, num_games, sims = simulator(C4), 16, 50
    batch_sizes: list[int] = []

    def evaluate(obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert obs.shape[1:] == (3, 6, 7) and obs.dtype == np.float32
        batch_sizes.append(len(obs))
        return np.zeros((len(obs), 7), np.float32), np.zeros(len(obs), np.float32)

    mcts = MCTS(sim, MCTSConfig(num_simulations=sims, rule="puct"), num_trees=num_games, seed=0)
    for b in range(num_games):
        mcts.set_root(play(C4, [b % 7]), b)
    mcts.search_batch(evaluate)
    assert len(batch_sizes) == sims + 1 and max(batch_sizes) == num_games
    for b in range(num_games):
        assert mcts.visit_counts(b).sum() == sims


def test_batched_search_backs_up_terminal_leaves_without_the_network() -> None:
    sim = simulator(TTT)
    mcts = MCTS(sim, MCTSConfig(num_simulations=200, rule="puct", solver=True), num_trees=2, seed=0)
    mcts.set_root(play(TTT, [0, 3, 1, 4]), 0)  # win in one
    mcts.set_root(sim.initial_state(), 1)
    uniform = lambda obs: (np.zeros((len(obs), 9), np.float32), np.zeros(len(obs), np.float32))  # noqa: E731
    mcts.search_batch(uniform)
    assert mcts.best_action(0) == 2 and mcts.proven_value(0) == 1.0
    assert mcts.visit_counts(1).sum() == 200


def test_search_from_a_terminal_state_is_an_error() -> None:
    sim = simulator(TTT)
    state = play(TTT, [0, 3, 1, 4])
    state, _, done = sim.step(state, 2)
    assert done
    with pytest.raises(ValueError, match="terminal"):
        MCTS(sim, MCTSConfig(num_simulations=5)).search(state)


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ValueError, match="num_simulations"):
        MCTSConfig(num_simulations=0)
    with pytest.raises(ValueError, match="rule"):
        MCTSConfig(rule="ucb")  # type: ignore[arg-type]


def test_a_walk_cut_at_the_maximum_depth_backs_up_without_expanding_twice() -> None:
    """A chain of single-action states deeper than MAX_DEPTH: simulations still count and the tree stays sound."""
    from rlcore.search.tree import MAX_DEPTH

    class Chain:
        num_actions, num_players = 1, 1

        def legal_actions(self, state: int) -> np.ndarray:
            return np.zeros(1, np.int64)

        def step(self, state: int, action: int) -> tuple[int, float, bool]:
            return state + 1, 1.0, state + 1 >= 10 * MAX_DEPTH

        def to_play(self, state: int) -> int:
            return 0

        def is_terminal(self, state: int) -> bool:
            return state >= 10 * MAX_DEPTH

    mcts = MCTS(Chain(), MCTSConfig(num_simulations=MAX_DEPTH + 50, rollout_depth=1), seed=0)
    assert mcts.search(0).sum() == MAX_DEPTH + 50
    assert_consistent(mcts)


class Chain:
    """A single-agent walk: +1 moves right, 0 left; reward 1 on reaching state 5 (the end), -0.01 for other steps."""

    num_actions, num_players = 2, 1

    def initial_state(self) -> int:
        return 0

    def legal_actions(self, state: int) -> np.ndarray:
        return np.arange(2, dtype=np.int64)

    def step(self, state: int, action: int) -> tuple[int, float, bool]:
        moved = max(state + (1 if action == 1 else -1), 0)
        return moved, (1.0 if moved == 5 else -0.01), moved == 5

    def to_play(self, state: int) -> int:
        return 0

    def is_terminal(self, state: int) -> bool:
        return state == 5


def test_the_solver_takes_a_proven_child_over_a_more_visited_worse_one() -> None:
    """Proven children stop gathering visits: choosing by visits alone passed over the proven goal of a single-agent
    search (the walk went back and forth) and over a proven draw for losing moves with a discount."""
    search = MCTS(Chain(), MCTSConfig(num_simulations=200, rollout_depth=20, solver=True), seed=0)
    assert search.choose(4) == 1  # one step from the goal
    game = simulator(TTT)
    state = game.initial_state()
    for move in (4, 0, 8):  # O must take a corner (2 or 6) to draw; an edge loses
        state = game.step(state, move)[0]
    for gamma in (0.9, 1.0):
        picks = [MCTS(game, MCTSConfig(num_simulations=400, solver=True, gamma=gamma), seed=seed).choose(state)
                 for seed in range(5)]
        assert all(pick in (2, 6) for pick in picks), (gamma, picks)


class CostlyCorridor:
    """Single agent; positions 0..5, the goal at 5; actions +1, stay, -1; every step pays -1, so no state is worth
    more than -1 (``max_value``, a true bound)."""

    num_actions, num_players, max_value = 3, 1, -1.0

    def initial_state(self) -> int:
        return 0

    def legal_actions(self, state: int) -> np.ndarray:
        return np.arange(3, dtype=np.int64)

    def step(self, state: int, action: int) -> tuple[int, float, bool]:
        moved = min(max(state + (1, 0, -1)[int(action)], 0), 5)
        return moved, -1.0, moved == 5

    def to_play(self, state: int) -> int:
        return 0

    def is_terminal(self, state: int) -> bool:
        return state == 5


def test_the_solver_never_prefers_an_unvisited_move_to_a_proven_one() -> None:
    """The root was proven by its first child (worth max_value) before the others were visited, and an unvisited
    child's mean of 0 beat the proven -1: the walk stepped away from the goal in 6 of 20 seeds."""
    picks = [MCTS(CostlyCorridor(), MCTSConfig(num_simulations=200, solver=True), seed=seed).choose(4)
             for seed in range(20)]
    assert picks == [0] * 20


def test_openspiel_games_with_rewards_along_the_way_give_the_solver_no_win_bound() -> None:
    """cliff_walking's max_utility (-9) is the best total from the start, not of what is left after some steps:
    the solver proved positions next to the goal by it and played other moves in 10 of 40 seeds."""
    pytest.importorskip("pyspiel")
    from rlcore.search.games.openspiel import OpenSpielSimulator

    assert OpenSpielSimulator("tic_tac_toe").max_value == 1.0
    game = OpenSpielSimulator("cliff_walking(height=3,width=4)")
    assert game.max_value == float("inf")
    state = game.initial_state()
    for action in (1, 0, 0, 0):  # up, then right to the cell above the goal
        state = state.child(action)
    picks = [MCTS(game, MCTSConfig(num_simulations=300, solver=True, rollout_depth=20), seed=seed).choose(state)
             for seed in range(20)]
    assert picks == [3] * 20  # down, into the goal


class EarlyRewards:
    """Two players; from the root, move 0 wins at once (+1) and move 1 earns +0.8, after which the opponent's only
    move costs it 0.9 and ends the game: move 1 is worth 0.8 + 0.9 = 1.7 to the first player, more than a win."""

    num_actions, num_players = 2, 2
    moves = {(): {0: ((0,), 1.0, True), 1: ((1,), 0.8, False)}, (1,): {0: ((1, 0), -0.9, True)}}

    def initial_state(self) -> tuple[int, ...]:
        return ()

    def legal_actions(self, state: tuple[int, ...]) -> np.ndarray:
        return np.array(sorted(self.moves[state]), np.int64)

    def step(self, state: tuple[int, ...], action: int) -> tuple[tuple[int, ...], float, bool]:
        return self.moves[state][int(action)]

    def to_play(self, state: tuple[int, ...]) -> int:
        return len(state) % 2

    def is_terminal(self, state: tuple[int, ...]) -> bool:
        return state not in self.moves


def test_the_solver_proves_a_python_simulators_win_by_its_max_value_only() -> None:
    """A proven child worth +1 proved a two-player Python simulator's root at once (the solver assumed +1 is the
    most a state is worth), though rewards before the end made another move worth more."""
    for rule in ("uct", "puct"):
        search = MCTS(EarlyRewards(), MCTSConfig(num_simulations=50, rule=rule, solver=True), seed=0)
        assert search.choose(()) == 1
        assert search.proven_value() == pytest.approx(1.7)
    game = EarlyRewards()
    game.max_value = 1.0  # a simulator that says +1 is the most: the win proves the root at once
    search = MCTS(game, MCTSConfig(num_simulations=50, solver=True), seed=0)
    assert search.choose(()) == 0 and search.proven_value() == 1.0


@pytest.mark.parametrize(("env_id", "first_win", "last_move"), [(TTT, 5, 9), (C4, 7, 42)])
def test_native_rollouts_discount_each_move_after_the_first_by_gamma(env_id: str, first_win: int,
                                                                     last_move: int) -> None:
    """As MCTS.rollout does for Python simulators: the board games' rollouts returned an undiscounted +-1."""
    sim = simulator(env_id)
    outcomes = []
    for seed in range(1, 41):  # the same draws with either gamma: the same game, only its discount differs
        plain = sim.kernel.rollout(sim.initial_state(), np.array([seed], np.uint64), 0, 1.0)
        discounted = sim.kernel.rollout(sim.initial_state(), np.array([seed], np.uint64), 0, 0.5)
        outcomes.append(plain)
        if plain == 0.0:
            assert discounted == 0.0
        else:
            assert discounted / plain in [0.5 ** (moves - 1) for moves in range(first_win, last_move + 1)]
    assert any(outcomes)
