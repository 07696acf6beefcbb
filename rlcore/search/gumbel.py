"""Gumbel search at the root: Gumbel top-k sampling with sequential halving (Danihelka et al. 2022).

A search with ``n`` simulations draws ``g(a) ~ Gumbel(0, 1)`` for every legal root action and considers the
``m`` actions with the largest ``g(a) + log P(a)``. Sequential halving spreads the budget over ``log2 m``
phases: each phase gives every remaining action the same number of visits, then keeps the better half by
``g(a) + log P(a) + sigma(q(a))``. The move played is the survivor with the largest score, which is a sample
from the improved policy (without noise, ``g = 0``, its argmax). The policy target is the improved policy
itself, ``softmax(log P + sigma(completed Q))`` over the legal actions (:func:`improved_policy`), which improves
on ``P`` even with very few simulations (e.g. 16), where visit counts say little.

The halving is driven by visit counts, as in DeepMind's ``mctx``: simulation ``i`` may visit only the
considered actions whose visit count equals ``considered_visits(m, n)[i]``, which makes the first ``m``
simulations visit the top ``m`` actions once each, and so on. Below the root, selection is Gumbel's
deterministic rule (:func:`rlcore.search.tree.select_gumbel_interior`).

References:
    Danihelka, Guez, Schrittwieser & Silver, 2022. Policy improvement by planning with Gumbel. ICLR.
    Karnin, Koren & Somekh, 2013. Almost optimal exploration in multi-armed bandits. ICML.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np

from rlcore.search.tree import TreeArrays, completed_q, log_prior


@functools.lru_cache(maxsize=256)
def considered_visits(num_considered: int, num_simulations: int) -> np.ndarray:
    """Visit count that simulation ``i`` requires of the root action it visits. ``int32 [num_simulations]``.

    Phase ``k`` keeps ``max(2, m // 2^k)`` actions and gives each ``max(1, n // (ceil(log2 m) * kept))``
    visits; phases repeat at two actions until the budget is spent.
    """
    if num_considered <= 1:
        return np.arange(num_simulations, dtype=np.int32)
    phases = math.ceil(math.log2(num_considered))
    sequence: list[int] = []
    visits, kept = 0, num_considered
    while len(sequence) < num_simulations:
        rounds = max(1, num_simulations // (phases * kept))
        for _ in range(rounds):
            sequence.extend([visits] * kept)
            visits += 1
        kept = max(2, kept // 2)
    table = np.array(sequence[:num_simulations], np.int32)
    table.setflags(write=False)
    return table


@numba.njit(cache=True)
def root_scores(t: TreeArrays, b: int, gumbel: np.ndarray, value_scale: float, maxvisit_init: float,
                out: np.ndarray) -> None:
    """``g(a) + log P(a) + sigma(completed Q)(a)`` of the root's children into ``out[:num_children]``
    (``gumbel``: ``float64 [A]``, by action)."""
    first, count = t.first_child[b, 0], t.num_children[b, 0]
    completed_q(t, b, 0, value_scale, maxvisit_init, out)
    for j in range(count):
        out[j] += gumbel[t.action[b, first + j]] + log_prior(t, b, first + j)


@numba.njit(cache=True)
def root_child(t: TreeArrays, b: int, gumbel: np.ndarray, considered_visit: int, value_scale: float,
               maxvisit_init: float) -> int:
    """The root child that sequential halving visits next: the best-scoring child among those with
    ``considered_visit`` visits (the slot; the first child if none has, which cannot happen mid-schedule)."""
    first, count = t.first_child[b, 0], t.num_children[b, 0]
    scores = np.empty(count, np.float64)
    root_scores(t, b, gumbel, value_scale, maxvisit_init, scores)
    best, best_score = first, -np.inf
    for j in range(count):
        if t.visits[b, first + j] == considered_visit and scores[j] > best_score:
            best, best_score = first + j, scores[j]
    return best


@numba.njit(cache=True)
def chosen_action(t: TreeArrays, b: int, gumbel: np.ndarray, value_scale: float, maxvisit_init: float) -> int:
    """The move after the search: among the most visited root children (the halving's survivors), the one
    with the largest ``g + log P + sigma(q)``."""
    first, count = t.first_child[b, 0], t.num_children[b, 0]
    scores = np.empty(count, np.float64)
    root_scores(t, b, gumbel, value_scale, maxvisit_init, scores)
    most = 0
    for j in range(count):
        most = max(most, t.visits[b, first + j])
    best, best_score = first, -np.inf
    for j in range(count):
        if t.visits[b, first + j] == most and scores[j] > best_score:
            best, best_score = first + j, scores[j]
    return t.action[b, best]


@numba.njit(cache=True)
def improved_policy(t: TreeArrays, b: int, value_scale: float, maxvisit_init: float, out: np.ndarray) -> None:
    """The policy target ``softmax(log P + sigma(completed Q))`` at the root into ``out`` (``float64 [A]``,
    by action; zero on illegal actions)."""
    first, count = t.first_child[b, 0], t.num_children[b, 0]
    out[:] = 0.0
    if first < 0:
        return
    scores = np.empty(count, np.float64)
    completed_q(t, b, 0, value_scale, maxvisit_init, scores)
    largest = -np.inf
    for j in range(count):
        scores[j] += log_prior(t, b, first + j)
        largest = max(largest, scores[j])
    total = 0.0
    for j in range(count):
        scores[j] = math.exp(scores[j] - largest)
        total += scores[j]
    for j in range(count):
        out[t.action[b, first + j]] = scores[j] / total
