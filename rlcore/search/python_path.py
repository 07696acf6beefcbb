"""Search over simulators whose states are Python objects (OpenSpiel games, gymnasium adapters, user classes).

The tree lives in the arrays of :mod:`rlcore.search.tree`; the states live in a Python list per tree (slot ->
state). A simulation costs rlcore two compiled calls, whatever the depth of the walk:

1. :func:`select_leaf` walks to a leaf (selection in numba), backs up exact leaves (terminal or proven) at
   once, and says which state to compute: ``(depth, leaf, parent, action)``;
2. the simulator runs in Python: ``step(parent's state, action)``, ``legal_actions``, then a rollout or the
   evaluator;
3. :func:`apply_leaf` records what the step gave, expands the leaf and backs up its value.

Both kernels are called through their compiled entry points (:class:`CompiledCall`): numba's dispatcher spends
~2 us working out the types of the 18 arrays of a tree on every call, which was a third of rlcore's own cost
per simulation before. What is left per simulation is a few microseconds of rlcore around the user's ``step``.

**Several leaves per round** (``MCTSConfig.leaves_per_round = K``): ``K`` walks in a row, each leaving a
*virtual loss* on its path (a visit that returned ``-virtual_loss``) so the next walk goes elsewhere; then the
``K`` leaves are stepped, evaluated and backed up together (the virtual visits replaced by real ones). With a
network evaluator, or a simulator with ``rollout_many`` (vectorised), the ``K`` leaves cost one call. A walk
that reaches a leaf already taken this round is dropped (its virtual loss given back), so a round may
evaluate fewer than ``K`` leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from rlcore.search.tree import TreeArrays, backup, descend, expand, finish_terminal_leaf, set_state_info

if TYPE_CHECKING:
    from rlcore.search.mcts import MCTS


# ------------------------------------------------------------------------------------------ kernels
@numba.njit(cache=True)
def _add_virtual_loss(t: TreeArrays, b: int, path: np.ndarray, depth: int, loss: float, sign: int) -> None:
    """Adds (``sign = 1``) or removes (``-1``) one virtual visit returning ``-loss`` along ``path[0..depth]``."""
    for d in range(1, depth + 1):
        node = path[d]
        t.visits[b, node] += sign
        t.value_sum[b, node] -= sign * loss
    t.visits[b, 0] += sign


@numba.njit(cache=True)
def select_leaf(
    t: TreeArrays, b: int, rule: int, c: float, fpu: float, normalize_q: bool, solver: bool, max_value: float,
    gamma: float, virtual: bool, virtual_loss: float, root_child: int, path: np.ndarray,
) -> tuple[int, int, int, int]:
    """Walks tree ``b`` to a leaf (``root_child >= 0`` forces the first step).

    Returns ``(depth, leaf, parent, action)``: ``depth = -1`` when the leaf had an exact value and was backed
    up here; ``parent >= 0`` when the leaf's state must be computed as ``step(state[parent], action)``.
    ``virtual`` leaves a virtual loss on the path (removed by :func:`apply_leaf`).
    """
    depth = descend(t, b, rule, c, fpu, normalize_q, path, root_child)
    leaf = path[depth]
    if t.has_state[b, leaf] and (t.terminal[b, leaf] or t.solved[b, leaf]):
        finish_terminal_leaf(t, b, path, depth, solver, max_value, gamma)
        return -1, leaf, -1, -1
    if virtual:
        _add_virtual_loss(t, b, path, depth, virtual_loss, 1)
    if t.has_state[b, leaf]:
        return depth, leaf, -1, -1
    return depth, leaf, t.parent[b, leaf], t.action[b, leaf]


@numba.njit(cache=True)
def apply_leaf(
    t: TreeArrays, b: int, path: np.ndarray, depth: int, stepped: bool, reward: float, done: bool, to_play: int,
    actions: np.ndarray, priors: np.ndarray, value: float, gamma: float, solver: bool, max_value: float,
    virtual: bool, virtual_loss: float,
) -> bool:
    """Finishes a simulation at ``path[depth]``: records the step (``stepped``), then backs up the terminal
    reward (``done``), or expands the leaf with ``actions`` (``int64 [k]``) and ``priors`` (``float32 [k]``;
    empty for uniform) and backs up ``value`` (for the player to move at the leaf). False if the tree is full.
    """
    leaf = path[depth]
    if virtual:
        _add_virtual_loss(t, b, path, depth, virtual_loss, -1)
    if stepped:
        set_state_info(t, b, leaf, reward, done, to_play)
    if done:
        finish_terminal_leaf(t, b, path, depth, solver, max_value, gamma)
        return True
    if t.first_child[b, leaf] < 0:  # else the walk stopped at MAX_DEPTH: back up without expanding
        count = actions.shape[0]
        if priors.shape[0] == 0:
            priors = np.full(count, 1.0 / count, np.float32)
        if not expand(t, b, leaf, actions, priors, count):
            return False
        t.raw_value[b, leaf] = value
    backup(t, b, path, depth, value, gamma, False)
    return True


class CompiledCall:
    """A numba function called through the entry point compiled for its first arguments' types.

    Skips the dispatcher's type resolution (~2 us for a tree's arrays). The caller guarantees that later
    calls pass the same types (same arrays and scalar kinds), as the loops below do.
    """

    def __init__(self, function: Any) -> None:
        self.function = function
        self._entry: Callable[..., Any] | None = None

    def __call__(self, *args: Any) -> Any:
        if self._entry is None:
            result = self.function(*args)
            signature = tuple(numba.typeof(arg) for arg in args)
            overload = self.function.overloads.get(signature)
            self._entry = overload.entry_point if overload is not None else self.function
            return result
        return self._entry(*args)


# ------------------------------------------------------------------------------------------ the loops
class PythonSearch:
    """The search loops of an :class:`~rlcore.search.mcts.MCTS` whose simulator keeps states in Python."""

    def __init__(self, mcts: MCTS) -> None:
        self.mcts = mcts
        self.simulator = mcts.simulator
        self._select = CompiledCall(select_leaf)
        self._apply = CompiledCall(apply_leaf)
        self._no_priors = np.zeros(0, np.float32)
        self._rollout_many = getattr(self.simulator, "rollout_many", None)
        p = mcts.params
        self._walk = (p.rule, p.c, p.fpu, p.normalize_q, p.solver, p.max_value, p.gamma)
        self._backup = (p.gamma, p.solver, p.max_value)

    # -- one simulation, in parts ------------------------------------------------------------------
    def select(self, b: int, path: np.ndarray, root_child: int, virtual: bool) -> tuple[int, int, Any, float, bool,
                                                                                          int, bool]:
        """Walks to a leaf and computes its state.

        Returns ``(depth, leaf, state, reward, done, to_play, stepped)``; ``depth = -1`` when the simulation
        already ended (an exact leaf).
        """
        mcts = self.mcts
        depth, leaf, parent, action = self._select(mcts.arrays, b, *self._walk, virtual, mcts.config.virtual_loss,
                                                   root_child, path)
        if depth < 0:
            return -1, leaf, None, 0.0, False, 0, False
        if parent < 0:
            return depth, leaf, mcts.get_state(b, leaf), 0.0, False, 0, False
        state, reward, done = self.simulator.step(mcts.get_state(b, parent), action)
        mcts.put_state(b, leaf, state)
        return depth, leaf, state, float(reward), bool(done), int(self.simulator.to_play(state)), True

    def finish(self, b: int, path: np.ndarray, depth: int, stepped: bool, reward: float, done: bool, to_play: int,
               legal: np.ndarray, priors: np.ndarray, value: float, virtual: bool) -> bool:
        return self._apply(self.mcts.arrays, b, path, depth, stepped, reward, done, to_play, legal, priors,
                           float(value), *self._backup, virtual, self.mcts.config.virtual_loss)

    def _terminal(self, b: int, path: np.ndarray, depth: int, reward: float, to_play: int, virtual: bool) -> bool:
        return self.finish(b, path, depth, True, reward, True, to_play, _NO_ACTIONS, self._no_priors, 0.0, virtual)

    # -- one tree, rollouts or a per-state evaluator ------------------------------------------------
    def search(self, b: int, num_simulations: int) -> int:
        """Up to ``num_simulations`` simulations in tree ``b`` (an unexpanded root is expanded first, outside
        the count). Returns the number run; ``-1 - n`` when the tree filled up after ``n``."""
        mcts = self.mcts
        t, path, solver = mcts.arrays, mcts.path_buffer(0), mcts.params.solver
        if t.first_child[b, 0] < 0 and not self.simulate(b, path, -1):
            return -1
        mcts.prepare_root(b)
        done, per_round = 0, mcts.config.leaves_per_round
        while done < num_simulations:
            if solver and t.solved[b, 0]:
                return done
            if per_round == 1:
                if not self.simulate(b, path, mcts.root_child(b, done)):
                    return -1 - done
                done += 1
                continue
            ran = self.run_round(b, min(per_round, num_simulations - done))
            if ran < 0:
                return -1 - done
            done += ran
        return num_simulations

    def simulate(self, b: int, path: np.ndarray, root_child: int) -> bool:
        """One simulation in tree ``b``; False if the tree is full."""
        depth, leaf, state, reward, finished, to_play, stepped = self.select(b, path, root_child, False)
        if depth < 0:
            return True
        if finished:
            return self._terminal(b, path, depth, reward, to_play, False)
        legal = np.asarray(self.simulator.legal_actions(state), np.int64)
        mcts = self.mcts
        if mcts.evaluator is not None:
            priors, value = mcts.evaluator(state, legal)
            priors = np.asarray(priors, np.float32)
        else:
            priors, value = self._no_priors, mcts.rollout(state)
        return self.finish(b, path, depth, stepped, reward, False, to_play, legal, priors, value, False)

    def run_round(self, b: int, count: int) -> int:
        """Selects up to ``count`` leaves of tree ``b`` with virtual loss, evaluates them together, backs them
        up. Returns the number of simulations done, -1 if the tree is full."""
        pending: list[tuple[int, np.ndarray, int, Any, float, int, bool]] = []
        done, ok = self.collect(b, count, True, 0, pending)
        if not ok:
            return -1
        if not pending:
            return done
        states = [entry[3] for entry in pending]
        legal = [np.asarray(self.simulator.legal_actions(state), np.int64) for state in states]
        priors, values = self.evaluate(states, legal)
        for (_, path, depth, _, reward, to_play, stepped), actions, prior, value in zip(pending, legal, priors, values):
            if not self.finish(b, path, depth, stepped, reward, False, to_play, actions, prior, value, True):
                return -1
        return done + len(pending)

    def collect(self, b: int, count: int, virtual: bool, first_simulation: int,
                pending: list[tuple[int, np.ndarray, int, Any, float, int, bool]]) -> tuple[int, bool]:
        """Up to ``count`` walks in tree ``b``. Leaves that need an evaluation are appended to ``pending`` as
        ``(b, path, depth, state, reward, to_play, stepped)``; a walk that reaches a leaf already pending is
        dropped. Returns the simulations finished here (exact leaves) and False if the tree is full."""
        mcts, taken, finished_here, ok = self.mcts, set(), 0, True
        for i in range(count):
            path = mcts.path_buffer(len(pending))
            depth, leaf, state, reward, finished, to_play, stepped = self.select(
                b, path, mcts.root_child(b, first_simulation + i), virtual)
            if depth < 0 or finished:
                ok &= depth < 0 or self._terminal(b, path, depth, reward, to_play, virtual)
                finished_here += 1
            elif leaf in taken:  # another walk of this round ends here: give its virtual visit back
                _add_virtual_loss(mcts.arrays, b, path, depth, mcts.config.virtual_loss, -1)
            else:
                taken.add(leaf)
                pending.append((b, path, depth, state, reward, to_play, stepped))
        return finished_here, ok

    def evaluate(self, states: list[Any], legal: list[np.ndarray]) -> tuple[list[np.ndarray], list[float]]:
        """Priors (empty arrays: uniform) and values of leaf ``states`` for the players to move there."""
        mcts = self.mcts
        if mcts.evaluator is not None:
            results = [mcts.evaluator(state, actions) for state, actions in zip(states, legal)]
            return [np.asarray(prior, np.float32) for prior, _ in results], [float(value) for _, value in results]
        if self._rollout_many is not None and len(states) > 1:
            config = mcts.config
            values = self._rollout_many(states, config.rollout_depth, config.gamma, mcts.rng)
            return [self._no_priors] * len(states), [float(value) for value in values]
        return [self._no_priors] * len(states), [mcts.rollout(state) for state in states]

    # -- B trees, one network call per round ------------------------------------------------------
    def search_batch(self, evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], active: np.ndarray,
                     num_simulations: int) -> bool:
        """One search in each active tree; each round evaluates every tree's leaves (``leaves_per_round``
        each) in one call of ``evaluate`` (observations -> logits, values). False if a tree filled up."""
        mcts = self.mcts
        t = mcts.arrays
        ok = self.batch_round(evaluate, active & (t.first_child[:, 0] < 0), 1)
        for b in np.flatnonzero(active):
            mcts.prepare_root(int(b))
        per_round = mcts.config.leaves_per_round
        for done in range(0, num_simulations, per_round):
            ok &= self.batch_round(evaluate, active, min(per_round, num_simulations - done), done)
        return ok

    def batch_round(self, evaluate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], active: np.ndarray,
                    count: int, first_simulation: int = 0) -> bool:
        mcts, simulator = self.mcts, self.simulator
        virtual, ok = count > 1, True
        pending: list[tuple[int, np.ndarray, int, Any, float, int, bool]] = []
        for b in np.flatnonzero(active & ~mcts.arrays.terminal[:, 0]):
            ok &= self.collect(int(b), count, virtual, first_simulation, pending)[1]
        if not pending:
            return ok
        obs = np.stack([simulator.observation(entry[3]) for entry in pending])
        logits, values = evaluate(obs)
        for (b, path, depth, state, reward, to_play, stepped), row, value in zip(pending, logits, values):
            actions = np.asarray(simulator.legal_actions(state), np.int64)
            ok &= self.finish(b, path, depth, stepped, reward, False, to_play, actions, softmax(row[actions]),
                              float(value), virtual)
        return ok


_NO_ACTIONS = np.zeros(0, np.int64)


def softmax(logits: np.ndarray) -> np.ndarray:
    """``float32 [k]`` probabilities of ``logits [k]``."""
    shifted = np.exp(logits - logits.max())
    return (shifted / shifted.sum()).astype(np.float32)

