"""Array-backed sum tree (with a parallel min tree) for proportional prioritized replay.

Layout: the tree lives in two float64 arrays of length ``2 * P`` where ``P`` is the
smallest power of two ``>= capacity``. Node ``1`` is the root, node ``i`` has children
``2i`` and ``2i + 1``, and leaf ``j`` (``0 <= j < capacity``) sits at node ``P + j``.
Index ``0`` and the padding leaves ``capacity <= j < P`` are never written (sum 0, min +inf).

Every operation is vectorized over a batch of indices / targets; the only Python loops run
over the ``log2(P)`` tree levels.
"""

from __future__ import annotations

import logging

import numpy as np
import numpy.typing as npt

__all__ = ["SumTree"]

logger = logging.getLogger(__name__)


class SumTree:
    """Sum tree plus min tree over ``capacity`` non-negative float64 leaves.

    * ``total()`` is the sum of all leaves, ``min()`` the minimum over leaves that have been
      set at least once (leaves never set count as ``+inf``; an empty tree returns ``inf``).
    * ``find_prefix_sum(targets)`` maps each target in ``[0, total)`` to the leaf whose
      cumulative-sum interval ``[cumsum[j-1], cumsum[j])`` contains it, so leaf ``j`` is hit
      with probability ``value[j] / total`` for uniform targets. Zero-valued leaves are never
      returned.

    Args:
        capacity: number of leaves, ``> 0``.
    """

    def __init__(self, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity <= 0:
            raise ValueError(f"capacity must be an integer > 0, got {capacity!r}")
        self._capacity = int(capacity)
        self._depth = max(0, (self._capacity - 1).bit_length())  # levels below the root
        self._size = 1 << self._depth  # P: number of (padded) leaves
        self._sum: npt.NDArray[np.float64] = np.zeros(2 * self._size, dtype=np.float64)
        self._min: npt.NDArray[np.float64] = np.full(2 * self._size, np.inf, dtype=np.float64)

    # ------------------------------------------------------------------ properties
    @property
    def capacity(self) -> int:
        """Number of leaves."""
        return self._capacity

    def total(self) -> float:
        """Sum of all leaf values (0.0 for an empty tree)."""
        return float(self._sum[1])

    def min(self) -> float:
        """Minimum over leaves that were set; ``inf`` if none was set."""
        return float(self._min[1])

    # ------------------------------------------------------------------ helpers
    def _check_indices(self, indices: npt.ArrayLike) -> npt.NDArray[np.int64]:
        idx = np.asarray(indices)
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self._capacity):
            raise IndexError(
                f"indices must lie in [0, {self._capacity}), got range [{idx.min()}, {idx.max()}]"
            )
        return idx

    # ------------------------------------------------------------------ API
    def __getitem__(self, indices: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Leaf values at ``indices``.

        Args:
            indices: int array of any shape ``S`` with values in ``[0, capacity)``.

        Returns:
            float64 array of shape ``S`` (a 0-d array for a scalar index).
        """
        shape = np.shape(indices)
        idx = self._check_indices(indices)
        return self._sum[idx + self._size].reshape(shape)

    def update(self, indices: npt.ArrayLike, values: npt.ArrayLike) -> None:
        """Set leaf values and refresh their ancestors.

        Args:
            indices: int array ``[N]`` with values in ``[0, capacity)``; duplicates are allowed
                and the last occurrence wins.
            values: float array ``[N]`` (or a scalar, broadcast to ``[N]``) of finite values
                ``>= 0``.
        """
        idx = self._check_indices(indices)
        vals = np.asarray(values, dtype=np.float64).reshape(-1)
        if vals.size == 1 and idx.size != 1:
            vals = np.broadcast_to(vals, idx.shape)
        if vals.shape != idx.shape:
            raise ValueError(f"indices and values must have the same length, got {idx.size} and {vals.size}")
        if idx.size == 0:
            return
        if not np.all(np.isfinite(vals)):
            raise ValueError("values must be finite (got NaN or inf)")
        if np.any(vals < 0):
            raise ValueError(f"values must be >= 0, got minimum {vals.min()}")

        # Last write wins: the first occurrence in the reversed array is the last one.
        nodes, first = np.unique(idx[::-1], return_index=True)
        vals = vals[::-1][first]
        nodes = nodes + self._size  # sorted, unique leaf nodes
        self._sum[nodes] = vals
        self._min[nodes] = vals
        self._refresh_ancestors(nodes)

    def clear(self, indices: npt.ArrayLike) -> None:
        """Unsets leaves ``indices`` (int ``[N]``): value 0 in the sum tree and, as for a leaf never set, no part
        in :meth:`min`."""
        idx = self._check_indices(indices)
        if idx.size == 0:
            return
        nodes = np.unique(idx) + self._size
        self._sum[nodes] = 0.0
        self._min[nodes] = np.inf
        self._refresh_ancestors(nodes)

    def _refresh_ancestors(self, nodes: npt.NDArray[np.int64]) -> None:
        """Recomputes the sums and minima above the (sorted, unique) leaf ``nodes`` just written."""
        s, m = self._sum, self._min
        for _ in range(self._depth):
            # Parents may repeat; that is harmless (every copy writes the same value, computed
            # from the already-final children) and measured ~20% faster than deduplicating.
            nodes = nodes >> 1
            left = nodes << 1
            s[nodes] = s[left] + s[left + 1]
            m[nodes] = np.minimum(m[left], m[left + 1])

    def find_prefix_sum(self, targets: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Leaf whose cumulative-sum interval contains each target.

        Equivalent to ``np.searchsorted(np.cumsum(leaves), targets, side="right")`` up to
        float rounding. Targets are clamped to ``[0, total)``; the descent never enters a
        zero-sum subtree, so the returned leaves always have a positive value.

        Args:
            targets: float array of any shape ``S``, nominally in ``[0, total())``.

        Returns:
            int64 array of shape ``S`` with leaf indices in ``[0, capacity)``.

        Raises:
            RuntimeError: if the tree total is 0 (nothing to sample).
            ValueError: if a target is NaN or infinite.
        """
        t = np.array(targets, dtype=np.float64)  # copy: modified in place below
        shape = t.shape
        t = t.reshape(-1)
        total = self._sum[1]
        if not total > 0.0:
            raise RuntimeError("cannot search an empty sum tree (total priority is 0)")
        if not np.all(np.isfinite(t)):
            raise ValueError("targets must be finite (got NaN or inf)")
        np.clip(t, 0.0, np.nextafter(total, 0.0), out=t)

        s = self._sum
        node = np.ones(t.shape, dtype=np.int64)
        for _ in range(self._depth):
            left = node << 1
            left_sum = s[left]
            # Go right when the target is past the left subtree, but never into an empty
            # right subtree (rounding can push a target past the last positive leaf).
            go_right = (t >= left_sum) & (s[left + 1] > 0.0)
            t -= left_sum * go_right
            node = left + go_right
        return (node - self._size).reshape(shape)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, npt.NDArray[np.float64]]:
        """Leaf arrays (internal nodes are rebuilt on load).

        Returns:
            ``{"values": float64 [capacity], "min_values": float64 [capacity]}`` where
            ``min_values`` is ``inf`` for leaves that were never set.
        """
        leaves = slice(self._size, self._size + self._capacity)
        return {"values": self._sum[leaves].copy(), "min_values": self._min[leaves].copy()}

    def load_state_dict(self, state: dict[str, npt.ArrayLike]) -> None:
        """Restore from :meth:`state_dict` output (same capacity) and rebuild all internal nodes."""
        vals = np.asarray(state["values"], dtype=np.float64).reshape(-1)
        mins = np.asarray(state["min_values"], dtype=np.float64).reshape(-1)
        if vals.shape != (self._capacity,) or mins.shape != (self._capacity,):
            raise ValueError(
                f"state has {vals.size} values / {mins.size} min_values, expected capacity {self._capacity}"
            )
        if not np.all(np.isfinite(vals)) or np.any(vals < 0):
            raise ValueError("state values must be finite and >= 0")
        if not np.all((mins == vals) | (np.isposinf(mins) & (vals == 0.0))):
            raise ValueError("state min_values must equal values for set leaves and +inf for unset ones")
        s = np.zeros_like(self._sum)
        m = np.full_like(self._min, np.inf)
        s[self._size : self._size + self._capacity] = vals
        m[self._size : self._size + self._capacity] = mins
        h = self._size >> 1
        while h >= 1:
            s[h : 2 * h] = s[2 * h : 4 * h : 2] + s[2 * h + 1 : 4 * h : 2]
            m[h : 2 * h] = np.minimum(m[2 * h : 4 * h : 2], m[2 * h + 1 : 4 * h : 2])
            h >>= 1
        self._sum, self._min = s, m
        logger.debug("SumTree restored: capacity=%d total=%g", self._capacity, self.total())

    def __repr__(self) -> str:
        return f"SumTree(capacity={self._capacity}, total={self.total():.6g}, min={self.min():.6g})"
