"""Index samplers for replay buffers: uniform and proportional prioritized (PER).

A sampler only chooses rows; the storage owns the data (:mod:`rlcore.buffers.storage`). A stateless sampler
(:class:`UniformSampler`) draws numbers in ``[0, num_valid)``, the k-th of the rows that may be drawn, which the
replay maps to flat row ids. A sampler that keeps per-row state (:class:`PrioritizedSampler`) indexes rows by
their flat id: the replay tells it which rows were (over)written via :meth:`Sampler.on_write` and which may no
longer be drawn via :meth:`Sampler.retire` (the rows a concurrent writer overwrites next), asks for a batch via
:meth:`Sampler.sample`, and the algorithm feeds new priorities back through :meth:`Sampler.update_priorities`.
All randomness comes from the ``torch.Generator`` passed to :meth:`Sampler.sample`, so runs are reproducible
from its seed.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.sumtree import SumTree

__all__ = ["PrioritizedSampler", "SampleIndex", "Sampler", "UniformSampler"]

logger = logging.getLogger(__name__)

NEVER_WRITTEN, LIVE, RETIRED = 0, 1, 2
"""A :class:`PrioritizedSampler` row's states."""


class SampleIndex(NamedTuple):
    """A sampled batch of row ids.

    Attributes:
        index: int64 ``[B]`` flat row ids in ``[0, num_valid)`` (CPU).
        weight: float32 ``[B]`` importance-sampling weights (PER only), max-normalised so that
            every weight is ``<= 1``; ``None`` for samplers without weights.
    """

    index: Tensor
    weight: Tensor | None = None


def _check_batch(batch_size: int, num_valid: int) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size <= 0:
        raise ValueError(f"batch_size must be an integer > 0, got {batch_size!r}")
    if num_valid <= 0:
        raise RuntimeError(f"cannot sample from an empty buffer (num_valid={num_valid}); add data first")


class Sampler(ABC):
    """Chooses which buffer rows to train on."""

    def on_write(self, index: Tensor) -> None:  # noqa: B027 - intentional no-op default
        """Rows ``index`` (int64, any shape, flat ids) were written or overwritten.

        A sampler that overrides this indexes rows by flat id (its :meth:`sample` returns flat ids); one that
        does not is stateless and returns the k-th drawable row, ``k`` in ``[0, num_valid)``."""

    def retire(self, index: Tensor) -> None:  # noqa: B027 - intentional no-op default
        """Rows ``index`` (int64 flat ids) may not be drawn until they are written again."""

    @abstractmethod
    def sample(self, batch_size: int, num_valid: int, generator: torch.Generator) -> SampleIndex:
        """Draw ``batch_size`` row ids from ``[0, num_valid)``.

        Args:
            batch_size: ``B > 0``.
            num_valid: number of valid rows; rows ``0 .. num_valid - 1`` hold data.
            generator: CPU torch generator that drives all randomness.

        Returns:
            :class:`SampleIndex` with ``index`` int64 ``[B]`` and optional float32 ``[B]`` weights.
        """

    def update_priorities(self, index: Tensor, priorities: Tensor) -> None:  # noqa: B027
        """New priorities (e.g. ``|TD error|``) ``[N]`` for rows ``index`` int64 ``[N]``; no-op by default."""

    def state_dict(self) -> dict[str, Tensor]:
        """Sampler state as tensors only (saved with safetensors); ``{}`` for stateless samplers."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:  # noqa: B027
        """Restore from :meth:`state_dict` output."""


class UniformSampler(Sampler):
    """Uniform sampling with replacement from ``[0, num_valid)``."""

    def sample(self, batch_size: int, num_valid: int, generator: torch.Generator) -> SampleIndex:
        """Uniform int64 ``[B]`` row ids in ``[0, num_valid)``; ``weight`` is ``None``."""
        if not (type(batch_size) is int and batch_size > 0 and type(num_valid) is int and num_valid > 0):
            _check_batch(batch_size, num_valid)  # raises, or accepts numpy integers
            batch_size, num_valid = int(batch_size), int(num_valid)
        return SampleIndex(torch.randint(num_valid, (batch_size,), generator=generator, dtype=torch.int64))

    def __repr__(self) -> str:
        return "UniformSampler()"


class PrioritizedSampler(Sampler):
    """Proportional prioritized experience replay (Schaul et al., 2016).

    Row ``i`` is sampled with probability ``P(i) = p_i / sum_k p_k`` where the stored
    priority is ``p_i = (|delta_i| + eps) ** alpha``. Newly written rows get the largest raw
    priority seen so far (initially 1.0), raised to ``alpha``, so they are replayed at least
    once with high probability. Sampling is stratified: ``[0, total)`` is cut into ``B``
    equal segments and one uniform target is drawn per segment.

    Importance weights are ``w_i = (N * P(i)) ** (-beta)`` divided by the largest possible
    weight ``(N * p_min / total) ** (-beta)``, i.e. ``w_i = (p_i / p_min) ** (-beta)``, with
    ``N = num_valid``.

    The replay calls :meth:`on_write` for every written row and :meth:`retire` for rows that may no
    longer be drawn (zero priority, and no part in ``p_min``); ``num_valid`` must be the number of rows
    announced and not retired when sampling. Rows retired since they were drawn keep no priority update.

    Args:
        capacity: number of rows (flat ids ``0 .. capacity - 1``), ``> 0``.
        alpha: prioritisation exponent, ``>= 0`` (0 = uniform).
        beta: importance-sampling exponent in ``[0, 1]``; public attribute, annealed by the
            algorithm.
        eps: added to ``|priority|`` so no row gets probability 0, ``> 0``.
    """

    def __init__(self, capacity: int, alpha: float = 0.6, beta: float = 0.4, eps: float = 1e-6) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, (int, np.integer)) or capacity <= 0:
            raise ValueError(f"capacity must be an integer > 0, got {capacity!r}")
        if not (math.isfinite(alpha) and alpha >= 0):
            raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
        if not (math.isfinite(eps) and eps > 0):
            raise ValueError(f"eps must be a finite number > 0, got {eps!r}")
        self.capacity = int(capacity)
        self.alpha = float(alpha)
        self.eps = float(eps)
        self.beta = beta  # validated by the property setter
        self._tree = SumTree(self.capacity)
        self._max_priority = 1.0  # raw (|delta| + eps), before ** alpha
        self._row_state = np.zeros(self.capacity, dtype=np.uint8)
        """Per row: ``NEVER_WRITTEN``, ``LIVE`` (announced by :meth:`on_write`) or ``RETIRED``."""
        self._live = 0  # rows LIVE

    # ------------------------------------------------------------------ beta
    @property
    def beta(self) -> float:
        """Importance-sampling exponent in ``[0, 1]``."""
        return self._beta

    @beta.setter
    def beta(self, value: float) -> None:
        value = float(value)
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"beta must be in [0, 1], got {value!r}")
        self._beta = value

    @property
    def max_priority(self) -> float:
        """Largest raw priority ``|delta| + eps`` seen so far (1.0 initially)."""
        return self._max_priority

    @property
    def tree(self) -> SumTree:
        """The underlying sum tree of ``p_i = (|delta_i| + eps) ** alpha`` (read-only use)."""
        return self._tree

    # ------------------------------------------------------------------ helpers
    def _to_index(self, index: Tensor, name: str = "index") -> np.ndarray:
        if not isinstance(index, Tensor):
            index = torch.as_tensor(index)
        if index.dtype.is_floating_point or index.dtype.is_complex or index.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got dtype {index.dtype}")
        idx = index.detach().to("cpu", torch.int64).reshape(-1).numpy()
        if idx.size and (idx.min() < 0 or idx.max() >= self.capacity):
            raise IndexError(f"{name} must lie in [0, {self.capacity}), got range [{idx.min()}, {idx.max()}]")
        return idx

    # ------------------------------------------------------------------ API
    def on_write(self, index: Tensor) -> None:
        """Give rows ``index`` (int64, any shape) the current max priority ``max_priority ** alpha``."""
        idx = self._to_index(index)
        if idx.size == 0:
            return
        self._tree.update(idx, np.full(idx.shape, self._max_priority**self.alpha))
        self._set_state(idx, LIVE)

    def retire(self, index: Tensor) -> None:
        """Rows ``index`` get priority 0 and leave ``p_min`` until :meth:`on_write` announces them again."""
        idx = self._to_index(index)
        if idx.size == 0:
            return
        self._tree.clear(idx)
        self._set_state(idx, RETIRED)

    def _set_state(self, idx: np.ndarray, state: int) -> None:
        """Sets rows ``idx`` to ``state`` and keeps the count of live rows."""
        rows = np.unique(idx)
        was_live = int(np.count_nonzero(self._row_state[rows] == LIVE))
        self._row_state[rows] = state
        self._live += (rows.size if state == LIVE else 0) - was_live

    def update_priorities(self, index: Tensor, priorities: Tensor) -> None:
        """Store ``(|priorities| + eps) ** alpha`` for rows ``index``.

        Args:
            index: int64 ``[N]`` row ids previously written (``< num_valid``); duplicates: last wins.
            priorities: float ``[N]`` raw priorities, typically ``|TD error|``; any device.

        Raises:
            ValueError: on NaN / inf priorities or mismatched lengths.
            IndexError: on ids outside the rows written so far.
        """
        idx = self._to_index(index)
        if not isinstance(priorities, Tensor):
            priorities = torch.as_tensor(priorities)
        prio = priorities.detach().to("cpu", torch.float64).reshape(-1).numpy()
        if prio.shape != idx.shape:
            raise ValueError(
                f"index and priorities must have the same number of elements, got {idx.size} and {prio.size}"
            )
        if idx.size == 0:
            return
        finite = np.isfinite(prio)
        if not finite.all():
            bad = prio[~finite]
            kind = "NaN" if np.isnan(bad).any() else "inf"
            raise ValueError(
                f"priorities must be finite, got {int((~finite).sum())} non-finite value(s) ({kind}), "
                "e.g. from a diverging TD error"
            )
        state = self._row_state[idx]
        if (state == NEVER_WRITTEN).any():
            raise IndexError(
                f"index {int(idx[state == NEVER_WRITTEN][0])} was never written (rows announced by on_write: "
                f"{self._live})"
            )
        raw = np.abs(prio) + self.eps
        stored = raw**self.alpha
        if not np.all(np.isfinite(stored)):
            raise ValueError(f"priorities ** alpha overflowed float64 (alpha={self.alpha}, max={raw.max()})")
        if not np.all(stored > 0.0):
            raise ValueError(
                f"(priorities + eps) ** alpha underflowed to 0 (alpha={self.alpha}, eps={self.eps}); "
                "increase eps"
            )
        live = state == LIVE  # a row retired since it was drawn keeps priority 0
        self._tree.update(idx[live], stored[live])
        self._max_priority = max(self._max_priority, float(raw.max()))

    def sample(self, batch_size: int, num_valid: int, generator: torch.Generator) -> SampleIndex:
        """Stratified proportional sample.

        Returns:
            :class:`SampleIndex` with ``index`` int64 ``[B]`` in ``[0, num_valid)`` and
            ``weight`` float32 ``[B]`` max-normalised importance weights.

        Raises:
            RuntimeError: if ``num_valid <= 0`` or it disagrees with the rows announced via
                :meth:`on_write`.
        """
        _check_batch(batch_size, num_valid)
        if num_valid != self._live:
            raise RuntimeError(
                f"num_valid={num_valid} but on_write announced {self._live} rows (less those retired); the buffer "
                "must call on_write for every row it fills and retire for every row it takes out"
            )
        total = self._tree.total()
        b = int(batch_size)
        u = torch.rand(b, generator=generator, dtype=torch.float64).numpy()
        segment = total / b
        targets = (np.arange(b, dtype=np.float64) + u) * segment
        leaf = self._tree.find_prefix_sum(targets)  # clamps to [0, total), never a zero leaf

        p = self._tree[leaf]
        # (N * P(i))^-beta / (N * p_min / total)^-beta == (p_i / p_min)^-beta
        weight = (p / self._tree.min()) ** (-self._beta)
        return SampleIndex(torch.from_numpy(leaf), torch.from_numpy(weight.astype(np.float32)))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Tensor]:
        """Tree leaves and scalars as tensors.

        Returns:
            ``{"tree_values": float64 [capacity], "tree_min_values": float64 [capacity],
            "max_priority": float64 [], "row_state": uint8 [capacity], "alpha": float64 []}``.
        """
        tree = self._tree.state_dict()
        return {
            "tree_values": torch.from_numpy(tree["values"]),
            "tree_min_values": torch.from_numpy(tree["min_values"]),
            "max_priority": torch.tensor(self._max_priority, dtype=torch.float64),
            "row_state": torch.from_numpy(self._row_state.copy()),
            "alpha": torch.tensor(self.alpha, dtype=torch.float64),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore from :meth:`state_dict` (or an older one holding ``num_written``: rows ``0 .. num_written - 1``
        written, none retired); capacity and alpha must match this sampler."""
        alpha = float(state["alpha"])
        if alpha != self.alpha:
            raise ValueError(
                f"state was saved with alpha={alpha} but this sampler has alpha={self.alpha}; "
                "stored priorities depend on alpha"
            )
        if "row_state" in state:
            row_state = state["row_state"].detach().cpu().numpy().astype(np.uint8)
            if row_state.shape != (self.capacity,) or row_state.max(initial=0) > RETIRED:
                raise ValueError(f"row_state must hold one state in 0..{RETIRED} per row of the sampler's "
                                 f"capacity {self.capacity}, got shape {row_state.shape}")
        else:  # a state from before retire(): rows 0 .. num_written - 1 were written, none retired
            num_written = int(state["num_written"])
            if not 0 <= num_written <= self.capacity:
                raise ValueError(f"num_written must be in [0, {self.capacity}], got {num_written}")
            row_state = np.zeros(self.capacity, dtype=np.uint8)
            row_state[:num_written] = LIVE
        max_priority = float(state["max_priority"])
        if not (math.isfinite(max_priority) and max_priority > 0):
            raise ValueError(f"max_priority must be finite and > 0, got {max_priority}")
        self._tree.load_state_dict(
            {
                "values": state["tree_values"].detach().cpu().numpy(),
                "min_values": state["tree_min_values"].detach().cpu().numpy(),
            }
        )
        self._row_state = row_state
        self._live = int(np.count_nonzero(row_state == LIVE))
        self._max_priority = max_priority

    def __repr__(self) -> str:
        return (
            f"PrioritizedSampler(capacity={self.capacity}, alpha={self.alpha}, beta={self._beta}, "
            f"eps={self.eps}, live={self._live})"
        )
