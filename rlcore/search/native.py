"""Whole simulations in numba, for games whose rules are numba kernels (see :class:`NativeKernel`).

A game in ``envs/`` (tic-tac-toe, Connect Four) gives its rules as ``@numba.njit`` functions over a
fixed-size ``int64`` state row; these loops take those functions as arguments, so one search
serves every such game. Numba compiles them once per game and process (first-class function
arguments cannot go into numba's on-disk cache; the tree kernels they call are cached).

Kernel signatures (``S`` = state size, ``A`` = number of actions):

- ``step(state: int64[S], action: int, out: int64[S]) -> (reward: float, done: bool)``: writes
  the next state into ``out``; ``reward`` goes to the player who moved (for a two-player game the
  terminal value: +1 win, 0 draw, -1 loss);
- ``to_play(state) -> int``: 0 or 1;
- ``legal(state, out: int64[A]) -> int``: writes the legal actions into ``out``, returns how many;
- ``rollout(state, rng: uint64[B], b: int, gamma: float) -> float``: a random playout's return for the player
  to move at ``state``, its ``k``-th move's reward discounted by ``gamma ** (k - 1)`` (as
  :meth:`rlcore.search.mcts.MCTS.rollout`), drawing from ``rng[b]`` (:func:`rlcore.search.tree.random_below`);
- ``encode(state, out: float32[*obs_shape])``: the network input (also the env's observation).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np

from rlcore.search.tree import (
    MAX_DEPTH,
    TreeArrays,
    backup,
    descend,
    expand,
    finish_terminal_leaf,
    set_state_info,
)


class NativeKernel(NamedTuple):
    """A game's rules as numba kernels (see the module docstring for their signatures)."""

    step: Callable[..., tuple[float, bool]]
    to_play: Callable[..., int]
    legal: Callable[..., int]
    rollout: Callable[..., float]
    encode: Callable[..., None]
    state_size: int
    """``S``: length of the ``int64`` state row."""
    num_actions: int
    """``A``: actions are ``0 .. A - 1``."""
    obs_shape: tuple[int, ...]
    """Shape of :attr:`encode`'s output."""
    max_value: float = 1.0
    """Largest value a player can get (a win); the solver's "proven win"."""


class SearchParams(NamedTuple):
    """Selection and backup settings passed to the numba loops."""

    rule: int
    c: float
    fpu: float
    normalize_q: bool
    solver: bool
    max_value: float
    gamma: float


@numba.njit
def _step_into_leaf(t: TreeArrays, b: int, leaf: int, step: Callable, to_play: Callable) -> None:
    """Computes a newly reached node's state from its parent's."""
    parent = t.parent[b, leaf]
    reward, done = step(t.states[b, parent], t.action[b, leaf], t.states[b, leaf])
    set_state_info(t, b, leaf, reward, done, to_play(t.states[b, leaf]))


@numba.njit
def _expand_uniform(t: TreeArrays, b: int, leaf: int, legal: Callable, actions: np.ndarray, priors: np.ndarray) -> bool:
    count = legal(t.states[b, leaf], actions)
    for j in range(count):
        priors[j] = 1.0 / count
    return expand(t, b, leaf, actions, priors, count)


@numba.njit
def _simulate(
    t: TreeArrays, b: int, p: SearchParams, step: Callable, to_play: Callable, legal: Callable,
    rollout: Callable, path: np.ndarray, actions: np.ndarray, priors: np.ndarray,
) -> bool:
    """One simulation with uniform priors and a random rollout; False when the tree is full."""
    depth = descend(t, b, p.rule, p.c, p.fpu, p.normalize_q, path)
    leaf = path[depth]
    if not t.has_state[b, leaf]:
        _step_into_leaf(t, b, leaf, step, to_play)
    if t.terminal[b, leaf] or t.solved[b, leaf]:
        finish_terminal_leaf(t, b, path, depth, p.solver, p.max_value, p.gamma)
        return True
    already_expanded = t.first_child[b, leaf] >= 0  # the walk stopped at MAX_DEPTH
    if not already_expanded and not _expand_uniform(t, b, leaf, legal, actions, priors):
        return False
    backup(t, b, path, depth, rollout(t.states[b, leaf], t.rng, b, p.gamma), p.gamma, False)
    return True


@numba.njit
def rollout_search(
    t: TreeArrays, b: int, num_simulations: int, p: SearchParams, step: Callable, to_play: Callable,
    legal: Callable, rollout: Callable,
) -> int:
    """Runs up to ``num_simulations`` UCT/PUCT simulations with rollouts in tree ``b``.

    An unexpanded root is expanded (and rolled out) first, outside the count, so that the root's
    children receive exactly ``num_simulations`` visits unless the solver proves the root or the
    tree fills up. Returns the number of simulations run; ``-1 - n`` when it stopped full after ``n``.
    """
    path = np.empty(MAX_DEPTH, np.int32)
    actions = np.empty(t.visits.shape[1], np.int64)
    priors = np.empty(t.visits.shape[1], np.float32)
    unexpanded_root = t.first_child[b, 0] < 0 and not t.terminal[b, 0]
    if unexpanded_root and not _simulate(t, b, p, step, to_play, legal, rollout, path, actions, priors):
        return -1
    for done in range(num_simulations):
        if t.terminal[b, 0] or (p.solver and t.solved[b, 0]):
            return done
        if not _simulate(t, b, p, step, to_play, legal, rollout, path, actions, priors):
            return -1 - done
    return num_simulations


@numba.njit
def select_leaves(
    t: TreeArrays, active: np.ndarray, p: SearchParams, step: Callable, to_play: Callable,
    encode: Callable, paths: np.ndarray, depths: np.ndarray, obs: np.ndarray, needs_eval: np.ndarray,
    root_children: np.ndarray,
) -> int:
    """First half of one batched simulation: one leaf per active tree.

    Leaves with an exact value (terminal or proven) are backed up at once. The others are
    encoded into ``obs[b]`` and flagged in ``needs_eval[b]`` for one batched network call.

    Shapes: ``active``, ``needs_eval`` ``bool [B]``; ``paths`` ``int32 [B, D]``; ``depths``
    ``int32 [B]``; ``obs`` ``float32 [B, *obs_shape]``; ``root_children`` ``int64 [B]``: the root child each
    walk must take (Gumbel's sequential halving), -1 to let the rule choose. Returns how many leaves need
    evaluation.
    """
    count = 0
    for b in range(active.shape[0]):
        needs_eval[b] = False
        if not active[b] or t.terminal[b, 0] or (p.solver and t.solved[b, 0]):
            continue
        depth = descend(t, b, p.rule, p.c, p.fpu, p.normalize_q, paths[b], root_children[b])
        leaf = paths[b, depth]
        if not t.has_state[b, leaf]:
            _step_into_leaf(t, b, leaf, step, to_play)
        if t.terminal[b, leaf] or t.solved[b, leaf]:
            finish_terminal_leaf(t, b, paths[b], depth, p.solver, p.max_value, p.gamma)
            continue
        depths[b] = depth
        encode(t.states[b, leaf], obs[b])
        needs_eval[b] = True
        count += 1
    return count


@numba.njit
def expand_and_backup(
    t: TreeArrays, needs_eval: np.ndarray, paths: np.ndarray, depths: np.ndarray, logits: np.ndarray,
    values: np.ndarray, p: SearchParams, legal: Callable,
) -> bool:
    """Second half of one batched simulation: expands each evaluated leaf with the softmax of the
    network's ``logits`` over its legal actions and backs up its ``value``.

    Shapes: ``logits`` ``float32 [B, A]``; ``values`` ``float32 [B]`` (for the player to move at
    the leaf). Rows of trees without a leaf are ignored. Returns False if a tree was full.
    """
    actions = np.empty(logits.shape[1], np.int64)
    priors = np.empty(logits.shape[1], np.float32)
    ok = True
    for b in range(needs_eval.shape[0]):
        if not needs_eval[b]:
            continue
        leaf = paths[b, depths[b]]
        if t.first_child[b, leaf] >= 0:  # the walk stopped at MAX_DEPTH: back up without expanding
            backup(t, b, paths[b], depths[b], float(values[b]), p.gamma, False)
            continue
        count = legal(t.states[b, leaf], actions)
        largest = -np.inf
        for j in range(count):
            largest = max(largest, logits[b, actions[j]])
        total = 0.0
        for j in range(count):
            priors[j] = math.exp(logits[b, actions[j]] - largest)
            total += priors[j]
        for j in range(count):
            priors[j] /= total
        if not expand(t, b, leaf, actions, priors, count):
            ok = False
            continue
        t.raw_value[b, leaf] = values[b]
        backup(t, b, paths[b], depths[b], float(values[b]), p.gamma, False)
    return ok


@numba.njit
def step_state(step: Callable, state: np.ndarray, action: int) -> tuple[np.ndarray, float, bool]:
    """``step`` as a pure function: a new state row, the reward and whether the game ended."""
    out = np.empty_like(state)
    reward, done = step(state, action, out)
    return out, reward, done
