"""An array-based search tree for ``B`` independent searches, and the numba kernels that walk it.

There is no Python object per node. A :class:`Tree` holds ``B`` trees side by side in preallocated
numpy arrays of shape ``[B, M]`` (``M`` = capacity in nodes), bundled in :class:`TreeArrays` so that
numba kernels take one argument. The children of a node occupy consecutive slots
``first_child .. first_child + num_children - 1``; the root is always slot 0 (moving the root to a
child, for tree reuse, copies that subtree to the front, see :func:`reroot`).

Values follow the player who *chose* the edge into a node (the player to move at its parent):
``value_sum[c] / visits[c]`` is the mean return of taking the edge into ``c`` from the parent's
point of view. Single-agent search (``to_play`` always 0) and two-player zero-sum search (values
change sign when the player changes) share the same kernels; the sign is read from ``to_play``.

Selection rules (Kocsis & Szepesvari 2006; Silver et al. 2017):

- UCT: ``Q + c * sqrt(ln N / n)``, unvisited children first (ties broken at random);
- PUCT: ``Q + c * P * sqrt(N) / (1 + n)``, with ``fpu`` as the value of unvisited children;
- Gumbel (Danihelka et al. 2022, below the root): the child maximising ``pi'(a) - n(a) / (1 + N)``, where
  ``pi' = softmax(log P + sigma(completed Q))`` (see :func:`completed_q`), so that visits follow the improved
  policy ``pi'``; the root's actions are chosen by sequential halving (:mod:`rlcore.search.gumbel`).

With ``normalize_q`` (single-agent returns of any scale) ``Q`` is rescaled to ``[0, 1]`` by the
smallest and largest ``Q`` seen in that tree, as in MuZero (Schrittwieser et al. 2020).

MCTS-solver (Winands et al. 2008): a terminal node is *proven*; a node is proven when one child is
a proven win of ``max_value`` for the player to move there, or when all its children are proven
(its exact value is then the best of theirs). Proven nodes are not searched below.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numba
import numpy as np

UCT = 0
"""Selection rule id: UCT with unvisited children first."""
PUCT = 1
"""Selection rule id: PUCT with priors."""
GUMBEL = 2
"""Selection rule id: Gumbel's deterministic selection below the root (the root: sequential halving)."""
MAX_DEPTH = 512
"""Longest root-to-leaf path a search may walk (sizes the path buffers)."""


class TreeArrays(NamedTuple):
    """The arrays of ``B`` trees of capacity ``M``; numba kernels take this as one argument.

    Node ``[b, i]`` is slot ``i`` of tree ``b``; slot 0 is the root.
    """

    visits: np.ndarray
    """Visit counts ``n``. ``int32 [B, M]``."""
    value_sum: np.ndarray
    """Sum of backed-up returns, seen by the player who chose the edge into the node. ``float64 [B, M]``."""
    prior: np.ndarray
    """Prior probability of the edge into the node (uniform for UCT). ``float32 [B, M]``."""
    reward: np.ndarray
    """Reward of the edge into the node, to the player who chose it. ``float32 [B, M]``."""
    action: np.ndarray
    """Action of the edge into the node. ``int32 [B, M]``."""
    parent: np.ndarray
    """Parent slot (-1 for the root). ``int32 [B, M]``."""
    first_child: np.ndarray
    """Slot of the first child; -1 while the node is not expanded. ``int32 [B, M]``."""
    num_children: np.ndarray
    """Number of children (legal actions). ``int32 [B, M]``."""
    to_play: np.ndarray
    """Player to move at the node's state (0 or 1). ``int8 [B, M]``."""
    has_state: np.ndarray
    """Whether the node's state was computed (children get theirs when first selected). ``bool [B, M]``."""
    terminal: np.ndarray
    """Whether the node's state is terminal. ``bool [B, M]``."""
    solved: np.ndarray
    """Whether the node's value is proven (MCTS-solver). ``bool [B, M]``."""
    solved_value: np.ndarray
    """Proven value of the edge into the node (for the root: of its state). ``float32 [B, M]``."""
    states: np.ndarray
    """Native game states, one row per node. ``int64 [B, M, S]`` (``S = 0`` for Python simulators)."""
    size: np.ndarray
    """Slots in use per tree. ``int32 [B]``."""
    q_bounds: np.ndarray
    """Smallest and largest ``Q`` seen per tree, for ``normalize_q``. ``float64 [B, 2]``."""
    rng: np.ndarray
    """xorshift64* state per tree (tie-breaks and rollouts). ``uint64 [B]``."""
    raw_value: np.ndarray
    """The evaluator's value of the node's state for the player to move there (Gumbel's completed Q).
    ``float32 [B, M]``."""
    q_spread_floor: np.ndarray
    """Smallest ``max - min`` that ``normalize_q`` divides by (EfficientZero's 0.01: early in training, when every
    return is ~0, a tiny spread would blow noise up to the whole ``[0, 1]`` range). ``float64 [B]``."""


def allocate(num_trees: int, capacity: int, state_size: int = 0, seed: int = 0, q_spread_floor: float = 0.0
             ) -> TreeArrays:
    """Preallocates ``num_trees`` empty trees of ``capacity`` nodes each (see :class:`TreeArrays`)."""
    if num_trees < 1 or capacity < 2:
        raise ValueError(f"need num_trees >= 1 and capacity >= 2, got {num_trees} and {capacity}")
    shape = (num_trees, capacity)
    seeds = np.random.default_rng(seed).integers(1, 2**63 - 1, size=num_trees, dtype=np.int64)
    arrays = TreeArrays(
        visits=np.zeros(shape, np.int32), value_sum=np.zeros(shape, np.float64),
        prior=np.zeros(shape, np.float32), reward=np.zeros(shape, np.float32),
        action=np.full(shape, -1, np.int32), parent=np.full(shape, -1, np.int32),
        first_child=np.full(shape, -1, np.int32), num_children=np.zeros(shape, np.int32),
        to_play=np.zeros(shape, np.int8), has_state=np.zeros(shape, np.bool_),
        terminal=np.zeros(shape, np.bool_), solved=np.zeros(shape, np.bool_),
        solved_value=np.zeros(shape, np.float32), states=np.zeros((*shape, state_size), np.int64),
        size=np.ones(num_trees, np.int32), q_bounds=np.zeros((num_trees, 2), np.float64),
        rng=seeds.astype(np.uint64), raw_value=np.zeros(shape, np.float32),
        q_spread_floor=np.full(num_trees, q_spread_floor, np.float64),
    )
    for b in range(num_trees):
        clear(arrays, b)
    return arrays


# ----------------------------------------------------------------------------- random numbers
@numba.njit(cache=True)
def next_random(rng: np.ndarray, b: int) -> np.uint64:
    """Advances tree ``b``'s xorshift64* generator; returns 64 random bits."""
    x = rng[b]
    x ^= x >> np.uint64(12)
    x ^= x << np.uint64(25)
    x ^= x >> np.uint64(27)
    rng[b] = x
    return x * np.uint64(2685821657736338717)


@numba.njit(cache=True)
def random_below(rng: np.ndarray, b: int, n: int) -> int:
    """A uniform integer in ``[0, n)`` from tree ``b``'s generator."""
    return int((next_random(rng, b) >> np.uint64(33)) % np.uint64(n))


# ----------------------------------------------------------------------------- node bookkeeping
@numba.njit(cache=True)
def _reset_node(t: TreeArrays, b: int, i: int) -> None:
    t.visits[b, i] = 0
    t.value_sum[b, i] = 0.0
    t.prior[b, i] = 0.0
    t.reward[b, i] = 0.0
    t.action[b, i] = -1
    t.parent[b, i] = -1
    t.first_child[b, i] = -1
    t.num_children[b, i] = 0
    t.to_play[b, i] = 0
    t.has_state[b, i] = False
    t.terminal[b, i] = False
    t.solved[b, i] = False
    t.solved_value[b, i] = 0.0
    t.raw_value[b, i] = 0.0


@numba.njit(cache=True)
def clear(t: TreeArrays, b: int) -> None:
    """Empties tree ``b``: only a root without state remains."""
    _reset_node(t, b, 0)
    t.size[b] = 1
    t.q_bounds[b, 0] = np.inf
    t.q_bounds[b, 1] = -np.inf


@numba.njit(cache=True)
def expand(t: TreeArrays, b: int, node: int, actions: np.ndarray, priors: np.ndarray, count: int) -> bool:
    """Gives ``node`` one child per legal action. ``actions``, ``priors``: ``[>= count]``.

    Returns False (and changes nothing) when the tree has no room for ``count`` more nodes.
    """
    start = t.size[b]
    if start + count > t.visits.shape[1]:
        return False
    for j in range(count):
        child = start + j
        _reset_node(t, b, child)
        t.action[b, child] = actions[j]
        t.prior[b, child] = priors[j]
        t.parent[b, child] = node
    t.first_child[b, node] = start
    t.num_children[b, node] = count
    t.size[b] = start + count
    return True


@numba.njit(cache=True)
def set_state_info(t: TreeArrays, b: int, node: int, reward: float, terminal: bool, to_play: int) -> None:
    """Records what stepping into ``node`` gave: the edge reward, termination, the player to move."""
    t.reward[b, node] = reward
    t.terminal[b, node] = terminal
    t.to_play[b, node] = to_play
    t.has_state[b, node] = True


# ----------------------------------------------------------------------------- selection
@numba.njit(cache=True)
def _q(t: TreeArrays, b: int, value: float, normalize_q: bool) -> float:
    if not normalize_q:
        return value
    low, high = t.q_bounds[b, 0], t.q_bounds[b, 1]
    spread = max(high - low, t.q_spread_floor[b])
    if spread > 0.0 and high >= low:
        return (value - low) / spread
    return 0.5


@numba.njit(cache=True)
def completed_q(t: TreeArrays, b: int, node: int, value_scale: float, maxvisit_init: float, out: np.ndarray) -> None:
    """Gumbel's ``sigma(completed Q)`` of ``node``'s children into ``out[:num_children]``.

    A visited child's ``Q`` is its mean return; an unvisited child's is the node's mixed value
    ``(v + N * sum_visited(P Q) / sum_visited(P)) / (1 + N)`` (``v`` the evaluator's value of the node, ``N``
    its children's visits). The completed values are rescaled to ``[0, 1]`` by their min and max, then
    multiplied by ``(maxvisit_init + max_a n(a)) * value_scale`` (Danihelka et al. 2022, appendix D).
    """
    first, count = t.first_child[b, node], t.num_children[b, node]
    total_visits, max_visits, prior_sum, weighted_q = 0, 0, 0.0, 0.0
    for j in range(count):
        child = first + j
        n = t.visits[b, child]
        if n > 0:
            q = t.solved_value[b, child] if t.solved[b, child] else t.value_sum[b, child] / n
            prior = max(t.prior[b, child], 1e-30)
            prior_sum += prior
            weighted_q += prior * q
            total_visits += n
            max_visits = max(max_visits, n)
    mixed = float(t.raw_value[b, node])
    if total_visits > 0:
        mixed = (mixed + total_visits * weighted_q / prior_sum) / (1 + total_visits)
    low, high = np.inf, -np.inf
    for j in range(count):
        child = first + j
        n = t.visits[b, child]
        if n > 0:
            out[j] = t.solved_value[b, child] if t.solved[b, child] else t.value_sum[b, child] / n
        else:
            out[j] = mixed
        low, high = min(low, out[j]), max(high, out[j])
    scale = (maxvisit_init + max_visits) * value_scale / max(high - low, 1e-8)
    for j in range(count):
        out[j] = (out[j] - low) * scale


@numba.njit(cache=True)
def log_prior(t: TreeArrays, b: int, child: int) -> float:
    """``log P`` of the edge into ``child`` (the policy's logit up to a constant)."""
    return math.log(max(t.prior[b, child], 1e-30))


@numba.njit(cache=True)
def select_gumbel_interior(t: TreeArrays, b: int, node: int, value_scale: float, maxvisit_init: float) -> int:
    """Gumbel's deterministic choice below the root: ``argmax pi'(a) - n(a) / (1 + N)`` with
    ``pi' = softmax(log P + sigma(completed Q))``."""
    first, count = t.first_child[b, node], t.num_children[b, node]
    scores = np.empty(count, np.float64)
    completed_q(t, b, node, value_scale, maxvisit_init, scores)
    largest, total_visits = -np.inf, 0
    for j in range(count):
        scores[j] += log_prior(t, b, first + j)
        largest = max(largest, scores[j])
        total_visits += t.visits[b, first + j]
    normalizer = 0.0
    for j in range(count):
        scores[j] = math.exp(scores[j] - largest)
        normalizer += scores[j]
    best, best_score = first, -np.inf
    for j in range(count):
        score = scores[j] / normalizer - t.visits[b, first + j] / (1.0 + total_visits)
        if score > best_score:
            best, best_score = first + j, score
    return best


@numba.njit(cache=True)
def visited_mean_q(t: TreeArrays, b: int, node: int) -> float:
    """``(v + sum_visited Q) / (1 + #visited)``: the evaluator's value ``v`` of ``node``'s state averaged with its
    visited children's mean returns (EfficientZero's value of unvisited children; ``fpu = nan`` selects it)."""
    total, count = float(t.raw_value[b, node]), 1
    for child in range(t.first_child[b, node], t.first_child[b, node] + t.num_children[b, node]):
        n = t.visits[b, child]
        if n > 0:
            total += t.solved_value[b, child] if t.solved[b, child] else t.value_sum[b, child] / n
            count += 1
    return total / count


@numba.njit(cache=True)
def select_child(
    t: TreeArrays, b: int, node: int, rule: int, c: float, fpu: float, normalize_q: bool
) -> int:
    """The child of an expanded ``node`` that the selection rule picks; exact ties are broken at random.

    For ``GUMBEL``, ``c`` is the value scale and ``fpu`` the visit offset of :func:`completed_q`.
    """
    if rule == GUMBEL:
        return select_gumbel_interior(t, b, node, c, fpu)
    first, count = t.first_child[b, node], t.num_children[b, node]
    parent_visits = max(t.visits[b, node], 1)
    log_n, sqrt_n = math.log(parent_visits), math.sqrt(parent_visits)
    if rule == PUCT and math.isnan(fpu):
        fpu = _q(t, b, visited_mean_q(t, b, node), normalize_q)
    best, best_score, ties = first, -np.inf, 0
    for child in range(first, first + count):
        n = t.visits[b, child]
        if t.solved[b, child]:
            score = _q(t, b, t.solved_value[b, child], normalize_q)
        elif rule == UCT:
            score = np.inf if n == 0 else _q(t, b, t.value_sum[b, child] / n, normalize_q) + c * math.sqrt(log_n / n)
        else:
            q = fpu if n == 0 else _q(t, b, t.value_sum[b, child] / n, normalize_q)
            score = q + c * t.prior[b, child] * sqrt_n / (1 + n)
        if score > best_score:
            best, best_score, ties = child, score, 1
        elif score == best_score:
            ties += 1
            if random_below(t.rng, b, ties) == 0:
                best = child
    return best


@numba.njit(cache=True)
def descend(
    t: TreeArrays, b: int, rule: int, c: float, fpu: float, normalize_q: bool, path: np.ndarray,
    root_child: int = -1,
) -> int:
    """Walks from the root to a leaf, writing the slots into ``path`` (``int32 [MAX_DEPTH]``).

    A leaf is a node that is not expanded, is proven, or was just reached for the first time
    (its state is still to be computed). ``root_child >= 0`` forces the first step (Gumbel's sequential
    halving picks the root's child). Returns the leaf's depth ``d`` (``path[d]`` is the leaf).
    """
    node, depth = 0, 0
    path[0] = 0
    while t.first_child[b, node] >= 0 and not t.solved[b, node] and depth + 1 < path.shape[0]:
        if depth == 0 and root_child >= 0:
            node = root_child
        else:
            node = select_child(t, b, node, rule, c, fpu, normalize_q)
        depth += 1
        path[depth] = node
        if not t.has_state[b, node]:
            break
    return depth


# ----------------------------------------------------------------------------- backup
@numba.njit(cache=True)
def edge_value(t: TreeArrays, b: int, node: int, value: float, gamma: float) -> float:
    """Return of the edge into ``node`` for the player who chose it, given ``value`` of ``node``'s
    state for the player to move there."""
    parent = t.parent[b, node]
    if t.to_play[b, node] != t.to_play[b, parent]:
        value = -value
    return t.reward[b, node] + gamma * value


@numba.njit(cache=True)
def backup(t: TreeArrays, b: int, path: np.ndarray, depth: int, value: float, gamma: float, leaf_is_edge: bool) -> None:
    """Adds one visit along ``path[0..depth]``.

    Args:
        value: The leaf's value: of its state for the player to move there, or (``leaf_is_edge``)
            already the return of the edge into the leaf for the player who chose it.
    """
    q = value
    for d in range(depth, 0, -1):
        node = path[d]
        if not (leaf_is_edge and d == depth):
            q = edge_value(t, b, node, q, gamma)
        t.visits[b, node] += 1
        t.value_sum[b, node] += q
        t.q_bounds[b, 0] = min(t.q_bounds[b, 0], q)
        t.q_bounds[b, 1] = max(t.q_bounds[b, 1], q)
    t.visits[b, 0] += 1


@numba.njit(cache=True)
def _proven_state_value(t: TreeArrays, b: int, node: int, max_value: float) -> tuple[bool, float]:
    """Whether ``node``'s state value is proven by its children, and that value (for its player)."""
    first, count = t.first_child[b, node], t.num_children[b, node]
    if first < 0:
        return False, 0.0
    best, all_solved = -np.inf, True
    for child in range(first, first + count):
        if t.solved[b, child]:
            best = max(best, t.solved_value[b, child])
        else:
            all_solved = False
    if best >= max_value or (all_solved and count > 0):
        return True, best
    return False, 0.0


@numba.njit(cache=True)
def prove(t: TreeArrays, b: int, path: np.ndarray, depth: int, max_value: float, gamma: float) -> None:
    """MCTS-solver: after the leaf ``path[depth]`` was proven, proves its ancestors where possible.

    The root's ``solved_value`` is the value of its state for the player to move there.
    """
    for d in range(depth - 1, -1, -1):
        node = path[d]
        proven, value = _proven_state_value(t, b, node, max_value)
        if not proven:
            return
        t.solved[b, node] = True
        t.solved_value[b, node] = value if d == 0 else edge_value(t, b, node, value, gamma)


@numba.njit(cache=True)
def finish_terminal_leaf(
    t: TreeArrays, b: int, path: np.ndarray, depth: int, solver: bool, max_value: float, gamma: float
) -> None:
    """Backs up a leaf whose value is exact: a terminal state, or a node the solver proved."""
    leaf = path[depth]
    if depth == 0:
        t.visits[b, 0] += 1
        return
    if t.terminal[b, leaf] and not t.solved[b, leaf]:
        t.solved[b, leaf] = solver
        t.solved_value[b, leaf] = t.reward[b, leaf]
        backup(t, b, path, depth, float(t.reward[b, leaf]), gamma, True)
    else:
        backup(t, b, path, depth, float(t.solved_value[b, leaf]), gamma, True)
    if solver:
        prove(t, b, path, depth, max_value, gamma)


# ----------------------------------------------------------------------------- tree reuse
@numba.njit(cache=True)
def reroot(t: TreeArrays, b: int, new_root: int, scratch: TreeArrays) -> np.ndarray:
    """Makes ``new_root``'s subtree the whole tree ``b``, copied breadth-first to the front.

    ``scratch`` is a one-tree :class:`TreeArrays` of the same capacity. The new root's proof, if
    any, is dropped: the next simulation proves it again from its children. Returns the old slot
    of each new slot, ``int64 [new_size]`` (for callers that keep per-node data of their own).
    """
    capacity = t.visits.shape[1]
    old_of = np.empty(capacity, np.int64)
    new_parent = np.empty(capacity, np.int32)
    old_of[0], new_parent[0] = new_root, -1
    head, tail = 0, 1
    while head < tail:
        old = old_of[head]
        _copy_node(t, b, old, scratch, 0, head)
        scratch.parent[0, head] = new_parent[head]
        first, count = t.first_child[b, old], t.num_children[b, old]
        scratch.first_child[0, head] = tail if first >= 0 else -1
        if first >= 0:
            for j in range(count):
                old_of[tail + j] = first + j
                new_parent[tail + j] = head
            tail += count
        head += 1
    for i in range(tail):
        _copy_node(scratch, 0, i, t, b, i)
    t.solved[b, 0] = False
    t.size[b] = tail
    return old_of[:tail].copy()


@numba.njit(cache=True)
def _copy_node(src: TreeArrays, sb: int, si: int, dst: TreeArrays, db: int, di: int) -> None:
    """Copies every field of node ``src[sb, si]`` to ``dst[db, di]``."""
    dst.visits[db, di] = src.visits[sb, si]
    dst.value_sum[db, di] = src.value_sum[sb, si]
    dst.prior[db, di] = src.prior[sb, si]
    dst.reward[db, di] = src.reward[sb, si]
    dst.action[db, di] = src.action[sb, si]
    dst.parent[db, di] = src.parent[sb, si]
    dst.first_child[db, di] = src.first_child[sb, si]
    dst.num_children[db, di] = src.num_children[sb, si]
    dst.to_play[db, di] = src.to_play[sb, si]
    dst.has_state[db, di] = src.has_state[sb, si]
    dst.terminal[db, di] = src.terminal[sb, si]
    dst.solved[db, di] = src.solved[sb, si]
    dst.solved_value[db, di] = src.solved_value[sb, si]
    dst.raw_value[db, di] = src.raw_value[sb, si]
    dst.states[db, di, :] = src.states[sb, si, :]


def state_dict(arrays: TreeArrays) -> dict[str, Any]:
    """The trees as plain arrays (for checkpoints)."""
    return {name: value.copy() for name, value in arrays._asdict().items()}


def load_state_dict(arrays: TreeArrays, state: dict[str, Any]) -> None:
    """Restores :func:`state_dict` into preallocated ``arrays`` of the same shapes (trees saved before
    ``raw_value`` existed get zeros there)."""
    for name, value in arrays._asdict().items():
        if name == "raw_value" and name not in state:
            value[...] = 0.0
            continue
        saved = np.asarray(state[name])
        if saved.shape != value.shape:
            raise ValueError(f"saved tree array {name!r} has shape {saved.shape}, this search needs {value.shape}")
        value[...] = saved
