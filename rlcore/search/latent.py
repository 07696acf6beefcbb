"""Search over a learned model's latent states (MuZero, Schrittwieser et al. 2020), ``B`` trees in lockstep.

There is no simulator: a node's state is a latent vector that the model's dynamics computed from its parent's, and
its value and priors come from the model's prediction. :class:`LatentSearch` keeps ``B`` trees in the arrays of
:mod:`rlcore.search.tree` (the bookkeeping of an :class:`~rlcore.search.mcts.MCTS` whose simulator is
:class:`LatentActions`) and the latent states beside them, ``float32 [B, M, H]``. One simulation round is

1. :func:`select_leaves` (numba, all trees in one call): each tree walks from its root to a node not yet computed;
2. one batched model call for the ``B`` leaves: ``(parent's latent state, action) -> (latent state, reward, policy
   logits, value)``;
3. :func:`expand_leaves` (numba, all trees): records the reward, expands the leaf with every action (the model
   knows no illegal moves and no episode end) and backs the value up the path.

So a search of ``n`` simulations costs ``n`` network calls of batch ``B`` and ``2n`` compiled calls, whatever
``B`` is. Selection is PUCT with MuZero's min-max normalisation of ``Q`` within each tree (``normalize_q``, unvisited
children valued ``fpu``, 0 as in the paper) and Dirichlet noise at the root, or Gumbel (sequential halving at the
root, Danihelka et al. 2022), as in :class:`~rlcore.search.mcts.MCTS`, whose root handling, action choice and
policy targets are used as they are. Every search starts from fresh roots (latent roots change with every
observation): no tree reuse.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numba
import numpy as np

from rlcore.search import gumbel
from rlcore.search.mcts import MCTS, MCTSConfig
from rlcore.search.tree import MAX_DEPTH, TreeArrays, backup, clear, descend, expand, set_state_info

LatentModel = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]
"""``(latent states float32 [n, H], actions int64 [n]) -> (next latent states float32 [n, H], rewards [n],
policy logits [n, A], values [n])``: the model's dynamics and prediction, in one call."""


class LatentActions:
    """The action set of a learned model, as the tree's bookkeeping sees it: one player, ``num_actions`` actions,
    every action legal in every latent state, no terminal state. Its states are never stepped one by one:
    :class:`LatentSearch` computes them in batches with the model."""

    num_players = 1

    def __init__(self, num_actions: int) -> None:
        self.num_actions = num_actions

    def legal_actions(self, state: Any) -> np.ndarray:
        return np.arange(self.num_actions, dtype=np.int64)

    def step(self, state: Any, action: int) -> tuple[Any, float, bool]:
        raise TypeError("latent states are computed by LatentSearch in batches with the learned model")

    def to_play(self, state: Any) -> int:
        return 0

    def is_terminal(self, state: Any) -> bool:
        return False


# ------------------------------------------------------------------------------------------ kernels
@numba.njit(cache=True)
def softmax_into(logits: np.ndarray, out: np.ndarray) -> None:
    """``out[:] = softmax(logits)`` for one row (float32 ``[A]``)."""
    largest = logits.max()
    total = 0.0
    for j in range(logits.shape[0]):
        out[j] = math.exp(logits[j] - largest)
        total += out[j]
    for j in range(logits.shape[0]):
        out[j] /= total


@numba.njit(cache=True)
def start_trees(t: TreeArrays, logits: np.ndarray, values: np.ndarray, legal: np.ndarray) -> None:
    """Empties every tree and expands its root with its legal actions (``legal``, bool ``[B, A]``), in slots
    ``1 .. L`` in action order, with the priors ``softmax`` of their ``logits [B, A]``; ``values [B]`` is the model's
    value of each root (Gumbel's completed Q reads it)."""
    num_actions = logits.shape[1]
    actions = np.empty(num_actions, np.int64)
    chosen_logits = np.empty(num_actions, np.float32)
    priors = np.empty(num_actions, np.float32)
    for b in range(logits.shape[0]):
        clear(t, b)
        set_state_info(t, b, 0, 0.0, False, 0)
        count = 0
        for a in range(num_actions):
            if legal[b, a]:
                actions[count] = a
                chosen_logits[count] = logits[b, a]
                count += 1
        softmax_into(chosen_logits[:count], priors[:count])
        expand(t, b, 0, actions[:count], priors[:count], count)
        t.raw_value[b, 0] = values[b]


@numba.njit(cache=True)
def select_leaves(t: TreeArrays, rule: int, c: float, fpu: float, normalize_q: bool, root_children: np.ndarray,
                  paths: np.ndarray, depths: np.ndarray, parents: np.ndarray, actions: np.ndarray) -> None:
    """Walks every tree to a node whose latent state is not computed yet.

    Writes each tree's path (``paths [B, MAX_DEPTH]``), the leaf's depth (``depths [B]``), its parent's slot
    (``parents [B]``) and the action into it (``actions [B]``). ``root_children [B]``: a forced first step (Gumbel's
    sequential halving), or -1.
    """
    for b in range(paths.shape[0]):
        depth = descend(t, b, rule, c, fpu, normalize_q, paths[b], root_children[b])
        leaf = paths[b, depth]
        depths[b] = depth
        parents[b] = t.parent[b, leaf]
        actions[b] = t.action[b, leaf]


@numba.njit(cache=True)
def expand_leaves(t: TreeArrays, paths: np.ndarray, depths: np.ndarray, rewards: np.ndarray, logits: np.ndarray,
                  values: np.ndarray, gamma: float) -> bool:
    """Finishes the round :func:`select_leaves` started: each leaf gets its edge's ``rewards [B]``, one child per
    action with the priors ``softmax(logits [B, A])``, and its ``values [B]`` backed up along the path. False if a
    tree is full."""
    num_actions = logits.shape[1]
    actions = np.arange(num_actions)
    priors = np.empty(num_actions, np.float32)
    room = True
    for b in range(paths.shape[0]):
        depth = depths[b]
        leaf = paths[b, depth]
        set_state_info(t, b, leaf, rewards[b], False, 0)
        softmax_into(logits[b], priors)
        room &= expand(t, b, leaf, actions, priors, num_actions)
        t.raw_value[b, leaf] = values[b]
        backup(t, b, paths[b], depth, float(values[b]), gamma, False)
    return room


# ------------------------------------------------------------------------------------------ the driver
class LatentSearch:
    """``num_trees`` searches over a learned model, one per env, run in lockstep.

    Args:
        num_actions: ``A``.
        latent_size: ``H``.
        config: The search (``rule`` ``"puct"`` or ``"gumbel"``, ``num_simulations``, ``c``, ``fpu``, ``gamma``,
            root noise); ``capacity`` and ``reuse_tree`` are set here (each simulation adds ``A`` nodes).
        num_trees: ``B``.
        seed: Seeds the root noise and tie-breaks.
    """

    def __init__(self, num_actions: int, latent_size: int, config: MCTSConfig, *, num_trees: int, seed: int = 0
                 ) -> None:
        if config.rule == "uct":
            raise ValueError("a latent search needs priors: rule 'puct' or 'gumbel', not 'uct'")
        if config.num_simulations > MAX_DEPTH - 2:
            raise ValueError(f"a latent search runs at most {MAX_DEPTH - 2} simulations, got {config.num_simulations}")
        capacity = 1 + num_actions * (config.num_simulations + 1)
        self.config = replace(config, capacity=capacity, reuse_tree=False, normalize_q=True)
        self.mcts = MCTS(LatentActions(num_actions), self.config, num_trees=num_trees, seed=seed)
        """The trees' bookkeeping: root noise, Gumbel's halving, action choice and policy targets."""
        self.num_trees, self.num_actions = num_trees, num_actions
        self.latent = np.zeros((num_trees, capacity, latent_size), np.float32)
        """Latent state of each node, ``[B, M, H]`` (slot 0: the root)."""
        self._paths = np.zeros((num_trees, MAX_DEPTH), np.int32)
        self._depths = np.zeros(num_trees, np.int32)
        self._parents = np.zeros(num_trees, np.int64)
        self._actions = np.zeros(num_trees, np.int64)
        self._root_children = np.full(num_trees, -1, np.int64)
        self._rows = np.arange(num_trees)
        self._all_legal = np.ones((num_trees, num_actions), dtype=bool)
        self._seed = seed
        self._initial_tree_rng = self.mcts.arrays.rng.copy()

    @property
    def arrays(self) -> TreeArrays:
        return self.mcts.arrays

    def search(self, roots: np.ndarray, root_logits: np.ndarray, root_values: np.ndarray, model: LatentModel,
               legal: np.ndarray | None = None) -> None:
        """Runs ``num_simulations`` simulations in every tree, from fresh roots.

        Args:
            roots: Latent states of the roots, ``float32 [B, H]``.
            root_logits: The model's policy logits there, ``[B, A]``.
            root_values: The model's values there, ``[B]``.
            model: The dynamics and prediction (see :data:`LatentModel`), called once per simulation.
            legal: The env's legal actions at each root, bool ``[B, A]`` (its action masks; None: all). Only the
                roots' children are restricted, as in MuZero: the model knows no rules below them.
        """
        mcts, t, p = self.mcts, self.mcts.arrays, self.mcts.params
        legal = self._all_legal if legal is None else np.asarray(legal, dtype=bool)
        if legal.shape != self._all_legal.shape:
            raise ValueError(f"action masks must be bool {list(self._all_legal.shape)}, got shape {legal.shape}")
        if not legal.any(axis=1).all():
            raise ValueError("action masks must leave a legal action in every row; got a row of no legal action")
        start_trees(t, np.asarray(root_logits, np.float32), np.asarray(root_values, np.float32), legal)
        self.latent[:, 0] = roots
        self._prepare_roots()
        rows, gumbel_rule = self._rows, self.config.rule == "gumbel"
        for simulation in range(self.config.num_simulations):
            if gumbel_rule:
                for b in range(self.num_trees):
                    self._root_children[b] = mcts.root_child(b, simulation)
            select_leaves(t, p.rule, p.c, p.fpu, p.normalize_q, self._root_children, self._paths, self._depths,
                          self._parents, self._actions)
            states, rewards, logits, values = model(self.latent[rows, self._parents], self._actions)
            self.latent[rows, self._paths[rows, self._depths]] = states
            if not expand_leaves(t, self._paths, self._depths, np.asarray(rewards, np.float32),
                                 np.asarray(logits, np.float32), np.asarray(values, np.float32), p.gamma):
                raise AssertionError("a latent search tree overflowed its capacity")  # sized for every simulation

    def _prepare_roots(self) -> None:
        """:meth:`MCTS.prepare_root <rlcore.search.mcts.MCTS.prepare_root>` for all trees at once (each root's
        ``L`` legal actions are in slots ``1 .. L``): Dirichlet noise mixed into the priors of the legal actions,
        or Gumbel's noise and its sequential-halving schedule over them."""
        config, mcts, count = self.config, self.mcts, self.num_actions
        counts = mcts.arrays.num_children[:, 0].tolist()
        if config.rule == "gumbel":
            mcts.gumbel_noise[:] = config.gumbel_scale * mcts.rng.gumbel(size=(self.num_trees, count))
            mcts._halving[:] = [gumbel.considered_visits(min(config.gumbel_considered, legal_count),
                                                         config.num_simulations) for legal_count in counts]
            return
        alpha, fraction = config.dirichlet_alpha, config.dirichlet_fraction
        if alpha <= 0.0 or fraction <= 0.0:
            return
        priors = mcts.arrays.prior
        if all(legal_count == count for legal_count in counts):  # every action legal: one draw for all trees
            priors[:, 1 : 1 + count] = ((1 - fraction) * priors[:, 1 : 1 + count]
                                        + fraction * mcts.rng.dirichlet(np.full(count, alpha), self.num_trees))
            return
        for b, legal_count in enumerate(counts):
            noise = mcts.rng.dirichlet(np.full(legal_count, alpha))
            priors[b, 1 : 1 + legal_count] = (1 - fraction) * priors[b, 1 : 1 + legal_count] + fraction * noise

    # ------------------------------------------------------------------------------------ results
    def _root_slots(self) -> tuple[np.ndarray, np.ndarray]:
        """``(rows, slots)`` of every root child: tree ``rows[i]``'s child in slot ``slots[i]`` (slots ``1 .. L``)."""
        t = self.mcts.arrays
        rows, offsets = np.nonzero(np.arange(self.num_actions)[None, :] < t.num_children[:, 0][:, None])
        return rows, offsets + 1

    def visit_counts(self) -> np.ndarray:
        """Visits of each root's children by action, ``int64 [B, A]`` (0 for illegal actions)."""
        t = self.mcts.arrays
        rows, slots = self._root_slots()
        counts = np.zeros((self.num_trees, self.num_actions), np.int64)
        counts[rows, t.action[rows, slots]] = t.visits[rows, slots]
        return counts

    def root_values(self) -> np.ndarray:
        """The search's value of each root (mean return over its simulations), ``float32 [B]``."""
        t = self.mcts.arrays
        rows, slots = self._root_slots()
        visits = np.bincount(rows, weights=t.visits[rows, slots], minlength=self.num_trees)
        value_sum = np.bincount(rows, weights=t.value_sum[rows, slots], minlength=self.num_trees)
        return (value_sum / np.maximum(visits, 1)).astype(np.float32)

    def target_policies(self) -> np.ndarray:
        """What the policy learns from each search, ``float32 [B, A]``: the visit distribution (PUCT) or the
        improved policy ``softmax(log P + sigma(completed Q))`` (Gumbel)."""
        if self.config.rule == "gumbel":
            return np.stack([self.mcts.target_policy(b) for b in range(self.num_trees)]).astype(np.float32)
        counts = self.visit_counts().astype(np.float32)
        return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)

    def best_actions(self) -> np.ndarray:
        """Each tree's move, ``int64 [B]``: Gumbel's sequential-halving winner (a sample of the improved policy
        when the root noise is on), else the most visited child (ties: the higher mean value)."""
        return np.array([self.mcts.best_action(b) for b in range(self.num_trees)], np.int64)

    def reseed(self) -> None:
        """Puts the generators (root noise, tie-breaks) back where they started, so that a search without noise
        gives the same result for the same roots whatever ran before it."""
        self.mcts.arrays.rng[:] = self._initial_tree_rng
        self.mcts.rng = np.random.default_rng(self._seed)

    # ------------------------------------------------------------------------------------ persistence
    def state_dict(self) -> dict[str, Any]:
        """The generators (root noise, tie-breaks) and the last Gumbel noise; the trees are rebuilt every search."""
        return self.mcts.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mcts.load_state_dict(state)
