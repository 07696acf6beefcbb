"""Monte-Carlo tree search over any :class:`~rlcore.search.simulator.Simulator`.

:class:`MCTS` keeps ``B`` array-based trees (:mod:`rlcore.search.tree`) and searches them in one
of three ways:

- native games (:class:`~rlcore.search.simulator.NativeSimulator`) with random rollouts: whole
  simulations run in numba (:func:`rlcore.search.native.rollout_search`);
- with a network: :meth:`MCTS.search_batch` advances all ``B`` trees by one simulation round at a
  time and evaluates their leaves in one batched call, so a GPU sees batches (native games in
  numba; Python simulators through :mod:`rlcore.search.python_path`);
- any other simulator (OpenSpiel games, gymnasium adapters, user classes): selection and backup
  run in numba, states and rollouts in Python (:meth:`MCTS.search`), optionally with an
  ``evaluator``, optionally several leaves per round with virtual loss.

Selection is UCT, PUCT, or Gumbel (sequential halving at the root, :mod:`rlcore.search.gumbel`).

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

from rlcore.search import gumbel, native, tree
from rlcore.search.native import SearchParams
from rlcore.search.python_path import PythonSearch
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
RULES = {"uct": tree.UCT, "puct": tree.PUCT, "gumbel": tree.GUMBEL}
"""Selection rule names and their kernel ids."""


@dataclass(frozen=True)
class MCTSConfig:
    """Settings of :class:`MCTS`."""

    num_simulations: int = 1000
    """Simulations per search (the root's children get this many visits)."""
    rule: Literal["uct", "puct", "gumbel"] = "uct"
    """Selection rule: ``uct`` (unvisited first, then ``Q + c sqrt(ln N / n)``), ``puct`` (with priors) or
    ``gumbel`` (sequential halving over Gumbel-sampled root actions; Gumbel's deterministic rule below). Gumbel is
    made for an evaluator (a network's priors and values): with random rollouts alone its min-max rescaled values
    can keep following the first child tried, and ``uct`` searches better."""
    c: float = 2.0
    """Exploration constant of the selection rule (OpenSpiel's ``uct_c``)."""
    fpu: float = 0.0
    """PUCT: value assumed for unvisited children ("first-play urgency"); ``nan``: the node's value averaged with
    its visited children's mean returns (EfficientZero's)."""
    dirichlet_alpha: float = 0.0
    """Dirichlet noise concentration mixed into the root priors; 0 disables the noise (not with ``gumbel``)."""
    dirichlet_fraction: float = 0.25
    """Weight of the noise in the root priors."""
    temperature: float = 0.0
    """Action choice: 0 takes the most visited child; ``T > 0`` samples with probability ``n^(1/T)``."""
    solver: bool = False
    """MCTS-solver: prove wins and losses and stop searching proven subtrees."""
    reuse_tree: bool = True
    """Keep the subtree of the move played (see :meth:`MCTS.advance`; ``gumbel`` always starts afresh)."""
    gamma: float = 1.0
    """Discount of rewards along a path."""
    normalize_q: bool | None = None
    """Rescale ``Q`` to ``[0, 1]`` by the tree's min/max (for returns of any scale); None: single-agent only."""
    q_spread_floor: float = 0.0
    """``normalize_q``: divide by at least this spread (EfficientZero's 0.01), so that a tree whose returns are all
    ~0 does not stretch their noise over ``[0, 1]``."""
    rollout_depth: int = 1_000
    """Python simulators: steps per random rollout at most."""
    capacity: int | None = None
    """Nodes per tree; None sizes it for ``num_simulations`` with tree reuse."""
    gumbel_considered: int = 16
    """Gumbel: root actions sampled (Gumbel top-k) for sequential halving (``m``)."""
    gumbel_scale: float = 1.0
    """Gumbel: scale of the root's Gumbel noise; 0 plays the argmax of the improved policy (evaluation)."""
    gumbel_value_scale: float = 0.1
    """Gumbel: ``c_scale`` of ``sigma(q) = (c_visit + max n) * c_scale * q``."""
    gumbel_visit_offset: float = 50.0
    """Gumbel: ``c_visit`` of ``sigma(q)``."""
    leaves_per_round: int = 1
    """Python simulators: leaves selected (with virtual loss) and evaluated together per round; > 1 amortizes a
    network call or a simulator's ``rollout_many`` over that many leaves, at some cost in search quality."""
    virtual_loss: float = 1.0
    """Return that a pending leaf's path counts, until its value is backed up (``leaves_per_round > 1``)."""

    def __post_init__(self) -> None:
        _check_range("num_simulations", self.num_simulations, 1)
        if self.rule not in RULES:
            raise ValueError(f"MCTSConfig.rule must be one of {sorted(RULES)}, got {self.rule!r}")
        for name in ("c", "dirichlet_alpha", "temperature", "gumbel_scale", "gumbel_value_scale",
                     "gumbel_visit_offset", "virtual_loss", "q_spread_floor"):
            _check_range(name, getattr(self, name), 0.0)
        _check_range("dirichlet_fraction", self.dirichlet_fraction, 0.0, 1.0)
        _check_range("gamma", self.gamma, 0.0, 1.0)
        _check_range("rollout_depth", self.rollout_depth, 1)
        _check_range("gumbel_considered", self.gumbel_considered, 1)
        _check_range("leaves_per_round", self.leaves_per_round, 1)
        if self.capacity is not None:
            _check_range("capacity", self.capacity, 2)
        for name in ("dirichlet_alpha", "temperature"):
            if self.rule == "gumbel" and getattr(self, name) > 0:
                raise ValueError(f"MCTSConfig.{name}={getattr(self, name)} has no effect with rule='gumbel' (its root "
                                 "noise is the Gumbel draw, gumbel_scale; its move is the sequential-halving winner): "
                                 f"leave {name} at 0, or use rule='puct'")
        if self.rule == "gumbel" and self.leaves_per_round > 1:
            raise ValueError("MCTSConfig.leaves_per_round must be 1 with rule='gumbel' (sequential halving counts "
                             "visits one simulation at a time)")


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
        self.arrays = tree.allocate(num_trees, capacity, state_size, seed, config.q_spread_floor)
        self._scratch = tree.allocate(1, capacity, state_size)
        self.states: list[list[Any]] = [[None] * capacity for _ in range(num_trees)]
        """Python simulators: the state of each slot of each tree (native states live in ``arrays.states``)."""
        self.rng = np.random.default_rng(seed)
        single_agent = simulator.num_players == 1
        normalize = single_agent if config.normalize_q is None else config.normalize_q
        # the solver proves a win by a child worth the largest value a game can give; a Python simulator says it
        # (max_value), else none is assumed (rewards before the end can add up past 1)
        max_value = self.kernel.max_value if self.kernel is not None else float(getattr(simulator, "max_value",
                                                                                        np.inf))
        gumbel_rule = config.rule == "gumbel"
        self.params = SearchParams(
            rule=RULES[config.rule], c=config.gumbel_value_scale if gumbel_rule else config.c,
            fpu=config.gumbel_visit_offset if gumbel_rule else config.fpu,
            normalize_q=normalize, solver=config.solver, max_value=max_value, gamma=config.gamma,
        )
        self.gumbel_noise = np.zeros((num_trees, self.num_actions))
        """Gumbel: the noise ``g(a)`` of each tree's current search. ``float64 [B, A]``."""
        self.gumbel_scales = np.full(num_trees, config.gumbel_scale)
        """Gumbel: each tree's noise scale (``config.gumbel_scale`` unless its owner sets it per search). ``[B]``"""
        self._halving: list[np.ndarray | None] = [None] * num_trees
        self._paths: list[np.ndarray] = []
        self._batch: dict[str, np.ndarray] = {}
        self._simulator_rollout = getattr(simulator, "rollout", None)
        self._python = PythonSearch(self)

    # ---------------------------------------------------------------------------- roots
    def set_root(self, state: Any, b: int = 0) -> None:
        """Starts tree ``b`` afresh at ``state``."""
        t = self.arrays
        tree.clear(t, b)
        self.put_state(b, 0, state)
        tree.set_state_info(t, b, 0, 0.0, self.simulator.is_terminal(state), self.simulator.to_play(state))

    def sync_root(self, state: Any, b: int = 0) -> None:
        """Makes ``state`` the root of tree ``b``, keeping the subtree when ``state`` is the root's
        state or one of its children's (the opponent's reply to the move just played)."""
        if self._is_root(state, b):
            return
        t = self.arrays
        first, count = int(t.first_child[b, 0]), int(t.num_children[b, 0])
        if self.config.reuse_tree and first >= 0:
            for child in range(first, first + count):
                if t.has_state[b, child] and self.same_state(self.get_state(b, child), state):
                    self.advance(int(t.action[b, child]), b)
                    return
        self.set_root(state, b)

    def root_state(self, b: int = 0) -> Any:
        """The state at the root of tree ``b``."""
        return self.arrays.states[b, 0].copy() if self.kernel is not None else self.states[b][0]

    def get_state(self, b: int, slot: int) -> Any:
        """The state of ``slot`` in tree ``b`` (a native row is a view)."""
        return self.arrays.states[b, slot] if self.kernel is not None else self.states[b][slot]

    def put_state(self, b: int, slot: int, state: Any) -> None:
        """Stores ``state`` as the state of ``slot`` in tree ``b``."""
        if self.kernel is not None:
            self.arrays.states[b, slot] = state
        else:
            self.states[b][slot] = state

    def advance(self, action: int, b: int = 0) -> None:
        """Moves tree ``b``'s root to the child of ``action``, keeping its subtree when ``reuse_tree``
        (never with ``gumbel``: sequential halving needs a root without visits)."""
        t = self.arrays
        first, count = t.first_child[b, 0], t.num_children[b, 0]
        children = range(first, first + count) if first >= 0 else range(0)
        child = next((i for i in children if t.action[b, i] == action), -1)
        if child < 0 or not self.config.reuse_tree or self.config.rule == "gumbel":
            state, _, _ = self.simulator.step(self.root_state(b), int(action))
            self.set_root(state, b)
            return
        if not t.has_state[b, child]:
            self._compute_state(b, child)
        old_of = tree.reroot(t, b, child, self._scratch)
        if self.kernel is None:
            states = self.states[b]
            self.states[b] = [states[i] for i in old_of] + [None] * (len(states) - len(old_of))
        if t.size[b] > t.visits.shape[1] - (self.config.num_simulations + 2) * self.num_actions:
            self.set_root(self.root_state(b), b)  # no room left for a full search: start afresh

    def _compute_state(self, b: int, node: int) -> Any:
        t = self.arrays
        parent = int(t.parent[b, node])
        state, reward, done = self.simulator.step(self.get_state(b, parent), int(t.action[b, node]))
        self.put_state(b, node, state)
        tree.set_state_info(t, b, node, reward, done, self.simulator.to_play(state))
        return state

    def _is_root(self, state: Any, b: int) -> bool:
        """Whether ``state`` is tree ``b``'s root state."""
        return bool(self.arrays.has_state[b, 0]) and self.same_state(self.get_state(b, 0), state)

    def same_state(self, first: Any, second: Any) -> bool:
        """Native rows compare by value; Python states by the simulator's ``same_state`` (never equal without)."""
        if self.kernel is not None:
            return bool(np.array_equal(first, second))
        same_state = getattr(self.simulator, "same_state", None)
        return bool(same_state(first, second)) if same_state is not None else False

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
        self._fresh_root_for_gumbel(b)
        if self.kernel is not None and self.evaluator is None and self.config.rule != "gumbel":
            self._ensure_root_expanded_native(b)
            self.prepare_root(b)
            done = native.rollout_search(self.arrays, b, self.config.num_simulations, self.params, self.kernel.step,
                                         self.kernel.to_play, self.kernel.legal, self.kernel.rollout)
        else:
            done = self._python.search(b, self.config.num_simulations)
        if done < 0:
            logger.warning("search tree %d is full after %d simulations (capacity %d); raise MCTSConfig.capacity",
                           b, -1 - done, self.arrays.visits.shape[1])
        return self.visit_counts(b)

    def _fresh_root_for_gumbel(self, b: int) -> None:
        if self.config.rule == "gumbel" and self.arrays.visits[b, 0] > 0:
            self.set_root(self.root_state(b), b)

    def _ensure_root_expanded_native(self, b: int) -> None:
        if self.arrays.first_child[b, 0] < 0:
            native.rollout_search(self.arrays, b, 0, self.params, self.kernel.step, self.kernel.to_play,
                                  self.kernel.legal, self.kernel.rollout)

    def prepare_root(self, b: int) -> None:
        """Before the simulations of a search, on an expanded root: mixes Dirichlet noise into the root's
        priors, or (``gumbel``) draws the root's Gumbel noise and its sequential-halving schedule."""
        config, t = self.config, self.arrays
        first, count = int(t.first_child[b, 0]), int(t.num_children[b, 0])
        if first < 0:
            return
        if config.rule == "gumbel":
            self.gumbel_noise[b] = self.gumbel_scales[b] * self.rng.gumbel(size=self.num_actions)
            self._halving[b] = gumbel.considered_visits(min(config.gumbel_considered, count), config.num_simulations)
            return
        alpha, fraction = config.dirichlet_alpha, config.dirichlet_fraction
        if alpha <= 0.0 or fraction <= 0.0:
            return
        priors = t.prior[b, first:first + count]
        priors[:] = (1 - fraction) * priors + fraction * self.rng.dirichlet(np.full(count, alpha))

    def root_child(self, b: int, simulation: int) -> int:
        """The root child (slot) that simulation ``simulation`` of tree ``b``'s search must visit: sequential
        halving's pick with ``gumbel``, else -1 (the selection rule decides)."""
        halving = self._halving[b]
        if halving is None or self.arrays.first_child[b, 0] < 0 or simulation >= len(halving):
            return -1
        p = self.params
        return int(gumbel.root_child(self.arrays, b, self.gumbel_noise[b], int(halving[simulation]), p.c, p.fpu))

    def path_buffer(self, index: int) -> np.ndarray:
        """The ``index``-th preallocated path (``int32 [MAX_DEPTH]``) of a simulation round."""
        while len(self._paths) <= index:
            self._paths.append(np.zeros(tree.MAX_DEPTH, np.int32))
        return self._paths[index]

    def rollout(self, state: Any) -> float:
        """A uniformly random playout's discounted return for the player to move at ``state``.

        Uses the simulator's own ``rollout(state, depth, gamma, rng)`` when it has one. Otherwise it calls only
        ``legal_actions`` and ``step`` per move (``to_play`` only when a reward is nonzero, to give it its sign),
        drawing the random moves from blocks of uniforms.
        """
        config = self.config
        if self._simulator_rollout is not None:
            return float(self._simulator_rollout(state, config.rollout_depth, config.gamma, self.rng))
        sim, gamma = self.simulator, config.gamma
        single_agent = sim.num_players == 1
        player, total, discount = sim.to_play(state), 0.0, 1.0
        uniforms, used = self.rng.random(64), 0
        for _ in range(config.rollout_depth):
            if used == 64:
                uniforms, used = self.rng.random(64), 0
            legal = sim.legal_actions(state)
            previous = state
            state, reward, done = sim.step(state, int(legal[int(uniforms[used] * len(legal))]))
            used += 1
            if reward:
                total += discount * (reward if single_agent or sim.to_play(previous) == player else -reward)
            discount *= gamma
            if done:
                break
        return total

    # ---------------------------------------------------------------------------- batched
    def search_batch(self, evaluate: BatchEvaluator, active: np.ndarray | None = None) -> None:
        """One search in each active tree, evaluating the leaves of each simulation round in one call.

        Roots must be set (:meth:`set_root` / :meth:`advance`). Unexpanded roots are expanded first
        (outside the count), then root noise is added. Native games run the rounds in numba; Python
        simulators need ``observation(state)`` (the network input) and may take ``leaves_per_round``
        leaves per tree and round.

        Args:
            evaluate: The network; called once per simulation round with the leaves that need it.
            active: ``bool [B]``: trees to search (default: all whose root is not terminal).
        """
        t = self.arrays
        if active is None:
            active = ~t.terminal[:, 0]
        active = np.asarray(active, bool) & ~t.terminal[:, 0]
        for b in np.flatnonzero(active):
            self._fresh_root_for_gumbel(int(b))
        if self.kernel is None:
            if not hasattr(self.simulator, "observation"):
                raise TypeError(f"search_batch evaluates observations; {type(self.simulator).__name__} has no "
                                "observation(state) method (add one, or search() with a per-state evaluator)")
            if not self._python.search_batch(evaluate, active, self.config.num_simulations):
                logger.warning("a search tree is full (capacity %d); raise MCTSConfig.capacity", t.visits.shape[1])
            return
        self._round(evaluate, active & (t.first_child[:, 0] < 0), -1)
        for b in np.flatnonzero(active):
            self.prepare_root(int(b))
        for simulation in range(self.config.num_simulations):
            self._round(evaluate, active, simulation)

    def _round(self, evaluate: BatchEvaluator, active: np.ndarray, simulation: int) -> None:
        if not active.any():
            return
        buffers, p, kernel = self._batch_buffers(), self.params, self.kernel
        root_children = buffers["root_children"]
        root_children[:] = -1
        if self.config.rule == "gumbel" and simulation >= 0:
            for b in np.flatnonzero(active):
                root_children[b] = self.root_child(int(b), simulation)
        count = native.select_leaves(self.arrays, active, p, kernel.step, kernel.to_play, kernel.encode,
                                     buffers["paths"], buffers["depths"], buffers["obs"], buffers["needs_eval"],
                                     root_children)
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
                "root_children": np.full(count, -1, np.int64),
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

    def policy_value(self, policy: np.ndarray, b: int = 0) -> float:
        """Mean return of tree ``b``'s root children under ``policy`` (``float64 [A]``, by action; e.g.
        :meth:`target_policy`), for the player to move at the root; an unvisited child counts as :meth:`root_value`."""
        t, children = self.arrays, self._children(b)
        root = self.root_value(b)
        visits = t.visits[b, children]
        by_action = np.full(len(policy), root)
        by_action[t.action[b, children]] = np.where(visits > 0, t.value_sum[b, children] / np.maximum(visits, 1), root)
        total = float(policy.sum())
        return float(policy @ by_action) / total if total > 0 else root

    def proven_value(self, b: int = 0) -> float | None:
        """The solver's exact value of the root for the player to move, or None if not proven."""
        t = self.arrays
        return float(t.solved_value[b, 0]) if t.solved[b, 0] else None

    def policy(self, b: int = 0, temperature: float | None = None) -> np.ndarray:
        """The search policy ``pi(a) ~ n(a)^(1/T)`` at the root. ``float64 [A]``; one-hot when ``T = 0``
        (and always with ``gumbel``, whose choice :meth:`best_action` already samples through its noise)."""
        temperature = self.config.temperature if temperature is None else temperature
        counts = self.visit_counts(b).astype(np.float64)
        if temperature > 0.0 and self.config.rule != "gumbel":
            powered = counts ** (1.0 / temperature)
            return powered / powered.sum()
        policy = np.zeros(self.num_actions)
        policy[self.best_action(b)] = 1.0
        return policy

    def target_policy(self, b: int = 0) -> np.ndarray:
        """What a policy network should learn from this search (``float64 [A]``): the visit distribution, or
        with ``gumbel`` the improved policy ``softmax(log P + sigma(completed Q))``."""
        if self.config.rule == "gumbel":
            out = np.zeros(self.num_actions)
            gumbel.improved_policy(self.arrays, b, self.params.c, self.params.fpu, out)
            return out
        counts = self.visit_counts(b).astype(np.float64)
        return counts / max(counts.sum(), 1.0)

    def best_action(self, b: int = 0) -> int:
        """``gumbel``: the sequential-halving winner. Otherwise the most visited child (then the highest mean
        value); with the solver, two-player wins first and losses last, and a proven child whose exact value is at
        least the mean of the most visited unproven one is taken over it (proven children stop gathering visits, so
        visits alone passed over a proven goal or a proven draw)."""
        t, children = self.arrays, self._children(b)
        if self.config.rule == "gumbel" and children.stop > children.start:
            return int(gumbel.chosen_action(t, b, self.gumbel_noise[b], self.params.c, self.params.fpu))
        visits = t.visits[b, children].astype(np.float64)
        mean = t.value_sum[b, children] / np.maximum(visits, 1)
        solved, solved_value = t.solved[b, children], t.solved_value[b, children].astype(np.float64)
        actions = t.action[b, children]
        if not (self.params.solver and solved.any()):
            return int(actions[_best(np.ones_like(solved), mean, visits)])
        two_player = self.simulator.num_players == 2
        rank = np.where(solved, np.sign(solved_value), 0.0) if two_player else np.zeros_like(visits)
        group = rank == rank.max()
        proven, unproven = group & solved, group & ~solved
        if not proven.any():
            return int(actions[_best(unproven, mean, visits)])
        best_proven = _best(proven, visits, solved_value)
        unproven &= visits > 0  # an unvisited child's mean (0) is no estimate: it never beats a proven value
        if unproven.any():
            most_visited = _best(unproven, mean, visits)
            if solved_value[best_proven] < mean[most_visited]:
                return int(actions[most_visited])
        return int(actions[best_proven])

    def choose(self, state: Any = None, b: int = 0, temperature: float | None = None) -> int:
        """Searches from ``state`` and picks an action by :meth:`policy` (sampled when ``T > 0``)."""
        self.search(state, b)
        policy = self.policy(b, temperature)
        return int(self.rng.choice(self.num_actions, p=policy)) if policy.max() < 1.0 else int(policy.argmax())

    # ---------------------------------------------------------------------------- persistence
    def state_dict(self) -> dict[str, Any]:
        """The trees (native simulators only; else their tie-break generators), the generator and the Gumbel noise,
        for checkpoints."""
        return {"trees": tree.state_dict(self.arrays) if self.kernel is not None else None,
                "tree_rng": self.arrays.rng.copy(), "rng": self.rng.bit_generator.state,
                "gumbel_noise": self.gumbel_noise.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["trees"] is not None and self.kernel is not None:
            tree.load_state_dict(self.arrays, state["trees"])
        elif state.get("tree_rng") is not None:  # Python simulators: the trees are rebuilt, their tie-breaks go on
            self.arrays.rng[:] = state["tree_rng"]
        self.rng.bit_generator.state = state["rng"]
        if "gumbel_noise" in state:
            self.gumbel_noise[...] = state["gumbel_noise"]


def _best(candidates: np.ndarray, tie_break: np.ndarray, key: np.ndarray) -> int:
    """The index of the candidate (bool mask) with the largest ``key``, ties broken by the larger ``tie_break``."""
    rows = np.flatnonzero(candidates)
    return int(rows[np.lexsort((tie_break[rows], key[rows]))[-1]])
