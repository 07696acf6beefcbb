"""Monte-Carlo tree search over any :class:`~rlcore.search.simulator.Simulator`.

:class:`MCTS` keeps ``B`` array-based trees (:mod:`rlcore.search.tree`) and searches them in one
of three ways:

- native games (:class:`~rlcore.search.simulator.NativeSimulator`) with random rollouts: whole
  simulations run in numba (:func:`rlcore.search.native.rollout_search`);
- native games with a network: :meth:`MCTS.search_batch` advances all ``B`` trees by one
  simulation at a time and evaluates their leaves in one batched call, so a GPU sees batches;
- any other simulator (gymnasium adapters, user classes): selection and backup run in numba,
  states and rollouts in Python (:meth:`MCTS.search`), optionally with an ``evaluator``.

Example:
    >>> sim = gym.make("rlcore/ConnectFour-v0").unwrapped.simulator
    >>> mcts = MCTS(sim, MCTSConfig(num_simulations=1000))
    >>> action = mcts.choose(sim.initial_state())
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from rlcore.search import native, tree
from rlcore.search.native import SearchParams
from rlcore.search.simulator import NativeSimulator, Simulator

logger = logging.getLogger(__name__)


def _check_range(name: str, value: float, low: float, high: float = np.inf) -> None:
    """A ValueError naming the setting, its value and the valid range (no import of rlcore.algos here:
    the algorithms import this module)."""
    if not low <= value <= high:
        raise ValueError(f"MCTSConfig.{name} must be in [{low:g}, {high:g}], got {value!r}")

Evaluator = Callable[[Any, np.ndarray], tuple[np.ndarray, float]]
"""``(state, legal actions int64 [k]) -> (priors float [k], value for the player to move)``."""
BatchEvaluator = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``obs float32 [n, *obs_shape] -> (logits float32 [n, A], values float32 [n])``."""


@dataclass(frozen=True)
class MCTSConfig:
    """Settings of :class:`MCTS`."""

    num_simulations: int = 1000
    """Simulations per search (the root's children get this many visits)."""
    rule: Literal["uct", "puct"] = "uct"
    """Selection rule: ``uct`` (unvisited first, then ``Q + c sqrt(ln N / n)``) or ``puct`` (with priors)."""
    c: float = 2.0
    """Exploration constant of the selection rule (OpenSpiel's ``uct_c``)."""
    fpu: float = 0.0
    """PUCT: value assumed for unvisited children ("first-play urgency")."""
    dirichlet_alpha: float = 0.0
    """Dirichlet noise concentration mixed into the root priors; 0 disables the noise."""
    dirichlet_fraction: float = 0.25
    """Weight of the noise in the root priors."""
    temperature: float = 0.0
    """Action choice: 0 takes the most visited child; ``T > 0`` samples with probability ``n^(1/T)``."""
    solver: bool = False
    """MCTS-solver: prove wins and losses and stop searching proven subtrees."""
    reuse_tree: bool = True
    """Keep the subtree of the move played (see :meth:`MCTS.advance`)."""
    gamma: float = 1.0
    """Discount of rewards along a path."""
    normalize_q: bool | None = None
    """Rescale ``Q`` to ``[0, 1]`` by the tree's min/max (for returns of any scale); None: single-agent only."""
    rollout_depth: int = 1_000
    """Python simulators: steps per random rollout at most."""
    capacity: int | None = None
    """Nodes per tree; None sizes it for ``num_simulations`` with tree reuse."""

    def __post_init__(self) -> None:
        _check_range("num_simulations", self.num_simulations, 1)
        if self.rule not in ("uct", "puct"):
            raise ValueError(f"rule must be 'uct' or 'puct', got {self.rule!r}")
        _check_range("c", self.c, 0.0)
        _check_range("dirichlet_alpha", self.dirichlet_alpha, 0.0)
        _check_range("dirichlet_fraction", self.dirichlet_fraction, 0.0, 1.0)
        _check_range("temperature", self.temperature, 0.0)
        _check_range("gamma", self.gamma, 0.0, 1.0)
        _check_range("rollout_depth", self.rollout_depth, 1)
        if self.capacity is not None:
            _check_range("capacity", self.capacity, 2)


class MCTS:
    """``num_trees`` search trees over one simulator.

    Args:
        simulator: What to plan on.
        config: Search settings.
        num_trees: ``B``, trees searched side by side (games played in lockstep).
        evaluator: Python simulators: priors and a value instead of uniform priors and a rollout.
        seed: Seeds tie-breaks, rollouts, root noise and sampled actions.
    """

    def __init__(
        self,
        simulator: Simulator[Any],
        config: MCTSConfig | None = None,
        *,
        num_trees: int = 1,
        evaluator: Evaluator | None = None,
        seed: int = 0,
    ) -> None:
        self.simulator = simulator
        self.config = config = config or MCTSConfig()
        self.num_trees = num_trees
        self.evaluator = evaluator
        self.kernel = simulator.kernel if isinstance(simulator, NativeSimulator) else None
        self.num_actions = int(simulator.num_actions)
        capacity = config.capacity or 2 * (config.num_simulations + 2) * self.num_actions
        state_size = self.kernel.state_size if self.kernel is not None else 0
        self.arrays = tree.allocate(num_trees, capacity, state_size, seed)
        self._scratch = tree.allocate(1, capacity, state_size)
        self._states: list[list[Any]] = [[None] * capacity for _ in range(num_trees)]
        self.rng = np.random.default_rng(seed)
        single_agent = simulator.num_players == 1
        normalize = single_agent if config.normalize_q is None else config.normalize_q
        max_value = self.kernel.max_value if self.kernel is not None else (np.inf if single_agent else 1.0)
        self.params = SearchParams(
            rule=tree.UCT if config.rule == "uct" else tree.PUCT, c=config.c, fpu=config.fpu,
            normalize_q=normalize, solver=config.solver, max_value=max_value, gamma=config.gamma,
        )
        self._path = np.zeros(tree.MAX_DEPTH, np.int32)
        self._batch: dict[str, np.ndarray] = {}

    # ---------------------------------------------------------------------------- roots
    def set_root(self, state: Any, b: int = 0) -> None:
        """Starts tree ``b`` afresh at ``state``."""
        t = self.arrays
        tree.clear(t, b)
        if self.kernel is not None:
            t.states[b, 0] = state
        else:
            self._states[b][0] = state
        tree.set_state_info(t, b, 0, 0.0, self.simulator.is_terminal(state), self.simulator.to_play(state))

    def sync_root(self, state: Any, b: int = 0) -> None:
        """Makes ``state`` the root of tree ``b``, keeping the subtree when ``state`` is the root's
        state or one of its children's (the opponent's reply to the move just played)."""
        if self._is_root(state, b):
            return
        t = self.arrays
        first, count = int(t.first_child[b, 0]), int(t.num_children[b, 0])
        if self.config.reuse_tree and first >= 0 and self.kernel is not None:
            for child in range(first, first + count):
                if t.has_state[b, child] and np.array_equal(t.states[b, child], state):
                    self.advance(int(t.action[b, child]), b)
                    return
        self.set_root(state, b)

    def root_state(self, b: int = 0) -> Any:
        """The state at the root of tree ``b``."""
        return self.arrays.states[b, 0].copy() if self.kernel is not None else self._states[b][0]

    def advance(self, action: int, b: int = 0) -> None:
        """Moves tree ``b``'s root to the child of ``action``, keeping its subtree when ``reuse_tree``."""
        t = self.arrays
        first, count = t.first_child[b, 0], t.num_children[b, 0]
        children = range(first, first + count) if first >= 0 else range(0)
        child = next((i for i in children if t.action[b, i] == action), -1)
        if child < 0 or not self.config.reuse_tree:
            state, _, _ = self.simulator.step(self.root_state(b), int(action))
            self.set_root(state, b)
            return
        if not t.has_state[b, child]:
            self._compute_state(b, child)
        old_of = tree.reroot(t, b, child, self._scratch)
        if self.kernel is None:
            states = self._states[b]
            self._states[b] = [states[i] for i in old_of] + [None] * (len(states) - len(old_of))
        if t.size[b] > t.visits.shape[1] - (self.config.num_simulations + 2) * self.num_actions:
            self.set_root(self.root_state(b), b)  # no room left for a full search: start afresh

    def _compute_state(self, b: int, node: int) -> Any:
        t = self.arrays
        parent = int(t.parent[b, node])
        if self.kernel is not None:
            state, reward, done = native.step_state(self.kernel.step, t.states[b, parent], int(t.action[b, node]))
            t.states[b, node] = state
        else:
            state, reward, done = self.simulator.step(self._states[b][parent], int(t.action[b, node]))
            self._states[b][node] = state
        tree.set_state_info(t, b, node, reward, done, self.simulator.to_play(state))
        return state

    # ---------------------------------------------------------------------------- searching
    def search(self, state: Any = None, b: int = 0) -> np.ndarray:
        """Runs ``num_simulations`` simulations in tree ``b`` and returns the root's visit counts.

        Args:
            state: Where to search from; None continues from the current root (after :meth:`advance`).
                The tree is kept when ``state`` is the root's state or one of its children's (see
                :meth:`sync_root`; Python states are compared by the simulator's ``same_state``).

        Returns:
            Visits per action, ``int64 [A]``.
        """
        if state is not None:
            self.sync_root(state, b)
        if self.simulator.is_terminal(self.root_state(b)):
            raise ValueError("cannot search from a terminal state; the episode is over")
        if self.kernel is not None and self.evaluator is None:
            self._ensure_root_expanded_native(b)
            self._add_root_noise(b)
            done = native.rollout_search(self.arrays, b, self.config.num_simulations, self.params, self.kernel.step,
                                         self.kernel.to_play, self.kernel.legal, self.kernel.rollout)
        else:
            done = self._search_python(b)
        if done < 0:
            logger.warning("search tree %d is full after %d simulations (capacity %d); raise MCTSConfig.capacity",
                           b, -1 - done, self.arrays.visits.shape[1])
        return self.visit_counts(b)

    def _is_root(self, state: Any, b: int) -> bool:
        """Whether ``state`` is tree ``b``'s root state (native rows, or a simulator's ``same_state``)."""
        t = self.arrays
        if not t.has_state[b, 0]:
            return False
        if self.kernel is not None:
            return bool(np.array_equal(t.states[b, 0], state))
        same_state = getattr(self.simulator, "same_state", None)
        return bool(same_state(self._states[b][0], state)) if same_state is not None else False

    def _ensure_root_expanded_native(self, b: int) -> None:
        if self.arrays.first_child[b, 0] < 0:
            native.rollout_search(self.arrays, b, 0, self.params, self.kernel.step, self.kernel.to_play,
                                  self.kernel.legal, self.kernel.rollout)

    def _add_root_noise(self, b: int) -> None:
        """Mixes Dirichlet noise into the priors of tree ``b``'s (expanded) root's children."""
        alpha, fraction = self.config.dirichlet_alpha, self.config.dirichlet_fraction
        first, count = int(self.arrays.first_child[b, 0]), int(self.arrays.num_children[b, 0])
        if alpha <= 0.0 or fraction <= 0.0 or first < 0:
            return
        priors = self.arrays.prior[b, first:first + count]
        priors[:] = (1 - fraction) * priors + fraction * self.rng.dirichlet(np.full(count, alpha))

    def _search_python(self, b: int) -> int:
        t = self.arrays
        if t.first_child[b, 0] < 0 and not self._simulate_python(b):
            return -1
        self._add_root_noise(b)
        for done in range(self.config.num_simulations):
            if self.params.solver and t.solved[b, 0]:
                return done
            if not self._simulate_python(b):
                return -1 - done
        return self.config.num_simulations

    def _simulate_python(self, b: int) -> bool:
        t, p, path = self.arrays, self.params, self._path
        depth = tree.descend(t, b, p.rule, p.c, p.fpu, p.normalize_q, path)
        leaf = int(path[depth])
        state = self._states[b][leaf] if t.has_state[b, leaf] else self._compute_state(b, leaf)
        if t.terminal[b, leaf] or t.solved[b, leaf]:
            tree.finish_terminal_leaf(t, b, path, depth, p.solver, p.max_value, p.gamma)
            return True
        legal = np.asarray(self.simulator.legal_actions(state), np.int64)
        if self.evaluator is not None:
            priors, value = self.evaluator(state, legal)
        else:
            priors, value = np.full(len(legal), 1.0 / len(legal)), self._rollout(state)
        already_expanded = t.first_child[b, leaf] >= 0  # the walk stopped at MAX_DEPTH
        if not already_expanded and not tree.expand(t, b, leaf, legal, np.asarray(priors, np.float32), len(legal)):
            return False
        tree.backup(t, b, path, depth, float(value), p.gamma, False)
        return True

    def _rollout(self, state: Any) -> float:
        """A uniformly random playout's discounted return for the player to move at ``state``."""
        sim, depth, gamma = self.simulator, self.config.rollout_depth, self.config.gamma
        fast = getattr(sim, "rollout", None)
        if fast is not None:
            return float(fast(state, depth, gamma, self.rng))
        player, total, discount = sim.to_play(state), 0.0, 1.0
        for _ in range(depth):
            legal = sim.legal_actions(state)
            mover = sim.to_play(state)
            state, reward, done = sim.step(state, int(legal[self.rng.integers(len(legal))]))
            total += discount * (reward if mover == player else -reward)
            discount *= gamma
            if done:
                break
        return total

    # ---------------------------------------------------------------------------- batched
    def search_batch(self, evaluate: BatchEvaluator, active: np.ndarray | None = None) -> None:
        """One search in each active tree, evaluating the ``B`` leaves of each simulation in one call.

        Native simulators only. Roots must be set (:meth:`set_root` / :meth:`advance`). Unexpanded
        roots are expanded first (outside the count), then root noise is added.

        Args:
            evaluate: The network; called once per simulation round with the leaves that need it.
            active: ``bool [B]``: trees to search (default: all whose root is not terminal).
        """
        if self.kernel is None:
            raise TypeError("search_batch needs a NativeSimulator; use search() for Python simulators")
        t = self.arrays
        if active is None:
            active = ~t.terminal[:, 0]
        active = np.asarray(active, bool) & ~t.terminal[:, 0]
        self._round(evaluate, active & (t.first_child[:, 0] < 0))
        for b in np.flatnonzero(active):
            self._add_root_noise(int(b))
        for _ in range(self.config.num_simulations):
            self._round(evaluate, active)

    def _round(self, evaluate: BatchEvaluator, active: np.ndarray) -> None:
        if not active.any():
            return
        buffers, p, kernel = self._batch_buffers(), self.params, self.kernel
        count = native.select_leaves(self.arrays, active, p, kernel.step, kernel.to_play, kernel.encode,
                                     buffers["paths"], buffers["depths"], buffers["obs"], buffers["needs_eval"])
        if count == 0:
            return
        rows = np.flatnonzero(buffers["needs_eval"])
        logits, values = evaluate(buffers["obs"][rows])
        buffers["logits"][rows] = logits
        buffers["values"][rows] = values
        if not native.expand_and_backup(self.arrays, buffers["needs_eval"], buffers["paths"], buffers["depths"],
                                        buffers["logits"], buffers["values"], p, kernel.legal):
            logger.warning("a search tree is full (capacity %d); raise MCTSConfig.capacity",
                           self.arrays.visits.shape[1])

    def _batch_buffers(self) -> dict[str, np.ndarray]:
        if not self._batch:
            count, kernel = self.num_trees, self.kernel
            self._batch = {
                "paths": np.zeros((count, tree.MAX_DEPTH), np.int32), "depths": np.zeros(count, np.int32),
                "obs": np.zeros((count, *kernel.obs_shape), np.float32), "needs_eval": np.zeros(count, bool),
                "logits": np.zeros((count, self.num_actions), np.float32), "values": np.zeros(count, np.float32),
            }
        return self._batch

    # ---------------------------------------------------------------------------- results
    def _children(self, b: int) -> slice:
        first, count = int(self.arrays.first_child[b, 0]), int(self.arrays.num_children[b, 0])
        return slice(first, first + count) if first >= 0 else slice(0, 0)

    def visit_counts(self, b: int = 0) -> np.ndarray:
        """Visits of the root's children per action. ``int64 [A]``."""
        counts = np.zeros(self.num_actions, np.int64)
        children = self._children(b)
        counts[self.arrays.action[b, children]] = self.arrays.visits[b, children]
        return counts

    def root_value(self, b: int = 0) -> float:
        """Mean return of the search at the root of tree ``b``, for the player to move there."""
        children = self._children(b)
        visits = self.arrays.visits[b, children].sum()
        return float(self.arrays.value_sum[b, children].sum() / visits) if visits else 0.0

    def proven_value(self, b: int = 0) -> float | None:
        """The solver's exact value of the root for the player to move, or None if not proven."""
        t = self.arrays
        return float(t.solved_value[b, 0]) if t.solved[b, 0] else None

    def policy(self, b: int = 0, temperature: float | None = None) -> np.ndarray:
        """The search policy ``pi(a) ~ n(a)^(1/T)`` at the root. ``float64 [A]``; one-hot when ``T = 0``."""
        temperature = self.config.temperature if temperature is None else temperature
        counts = self.visit_counts(b).astype(np.float64)
        if temperature > 0.0:
            powered = counts ** (1.0 / temperature)
            return powered / powered.sum()
        policy = np.zeros(self.num_actions)
        policy[self.best_action(b)] = 1.0
        return policy

    def best_action(self, b: int = 0) -> int:
        """Proven wins first, proven losses last, then most visits, then the highest mean value."""
        t, children = self.arrays, self._children(b)
        visits = t.visits[b, children].astype(np.float64)
        mean = t.value_sum[b, children] / np.maximum(visits, 1)
        solved, solved_value = t.solved[b, children], t.solved_value[b, children].astype(np.float64)
        two_player = self.params.solver and self.simulator.num_players == 2
        rank = np.where(solved, np.sign(solved_value), 0.0) if two_player else np.zeros_like(visits)
        order = np.lexsort((mean, visits, rank))
        return int(t.action[b, children][order[-1]])

    def choose(self, state: Any = None, b: int = 0, temperature: float | None = None) -> int:
        """Searches from ``state`` and picks an action by :meth:`policy` (sampled when ``T > 0``)."""
        self.search(state, b)
        policy = self.policy(b, temperature)
        return int(self.rng.choice(self.num_actions, p=policy)) if policy.max() < 1.0 else int(policy.argmax())

    # ---------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """The trees (native simulators only; else their tie-break generators) and the generator, for checkpoints."""
        return {"trees": tree.state_dict(self.arrays) if self.kernel is not None else None,
                "tree_rng": self.arrays.rng.copy(), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["trees"] is not None:
            tree.load_state_dict(self.arrays, state["trees"])
        elif state.get("tree_rng") is not None:  # Python simulators: the trees are rebuilt, their tie-breaks go on
            self.arrays.rng[:] = state["tree_rng"]
        self.rng.bit_generator.state = state["rng"]
