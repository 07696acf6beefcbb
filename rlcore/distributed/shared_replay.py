"""The replay of local worker processes and of the Ray learner: one shard per worker, in shared memory.

It is a :class:`rlcore.buffers.replay.Replay` like the in-process buffer's, with the same storage
(:class:`rlcore.buffers.storage.ReplayStorage`), sampler, n-step returns and write path; what this module adds
is where the storage lives: a :class:`~rlcore.distributed.shared.SharedBlock` holding the shards' headers
(the ``committed`` counters) and records, which the learner creates and each worker attaches to by name. Writers
never contend (each writes its own shard, through :meth:`Replay.writer`); the learner samples across all shards
while they write.

No torn rows: a writer fills the row at ``committed % steps_capacity`` and only then increments ``committed``, so
a row is visible only once complete. The learner samples among the committed rows but leaves out the oldest
``margin`` rows of a full shard (the next ones a writer overwrites), and after copying a batch it re-reads
``committed``: a sampled step ``s`` of a shard that now holds ``committed = c`` is intact iff
``s > c - steps_capacity`` (the writer, working on step ``c``, has only overwritten steps
``<= c - steps_capacity``). Rows that fail the check are redrawn.
"""

from __future__ import annotations

import logging
from functools import partial

from rlcore.buffers.replay import Placement, Replay, make_sampler
from rlcore.buffers.storage import (
    COMMITTED,
    HEADER_WIDTH,
    MAX_MARGIN,
    ReplayStorage,
    ShardWriter,
    StorageGeometry,
    transition_fields,
)
from rlcore.distributed.shared import ArraySpec, BlockLayout, SharedBlock

__all__ = ["COMMITTED", "HEADER_WIDTH", "MAX_MARGIN", "ReplayGeometry", "ShardWriter", "ShardedReplay",
           "SharedReplayMemory", "describe", "replay_bytes", "shard_placement",
           "transition_fields"]

logger = logging.getLogger(__name__)

ReplayGeometry = StorageGeometry
"""The shared block's layout (plain data: it crosses a ``spawn``); see :class:`StorageGeometry`."""


def block_layout(geometry: StorageGeometry) -> BlockLayout:
    """The shared block of ``geometry``: the shards' headers, then their records."""
    return BlockLayout((ArraySpec("header", "int64", geometry.header_shape),
                        ArraySpec("records", "uint8", geometry.records_shape)))


class SharedReplayMemory:
    """A storage's header and records in a :class:`SharedBlock` (a :class:`~rlcore.buffers.storage.StorageMemory`).

    Args:
        geometry: The storage it holds.
        name: Attach to this existing block (a worker); None creates it (the learner, which unlinks it on close).
        shared: False keeps the arrays in this process's ordinary memory (a learner that writes them itself).
    """

    def __init__(self, geometry: StorageGeometry, name: str | None = None, *, shared: bool = True) -> None:
        self.block = SharedBlock(block_layout(geometry), name, shared=shared)
        self.header = self.block["header"]
        self.records = self.block["records"]
        self.name = self.block.name

    def close(self) -> None:
        self.header = self.records = None  # type: ignore[assignment]
        self.block.close()


def shard_placement(num_workers: int, envs_per_worker: int, *, shared: bool = True) -> Placement:
    """A storage with a shard per worker of ``envs_per_worker`` env columns, in a shared-memory block that
    workers attach to (``shared=False``: in the learner's own memory, for a learner that writes it itself)."""
    return Placement(num_shards=num_workers, envs_per_shard=envs_per_worker,
                     memory=partial(SharedReplayMemory, shared=shared), concurrent_writers=True)


class ShardedReplay(Replay):
    """A :class:`Replay` over a shared-memory block of ``geometry`` (one shard per worker, concurrent writers):
    what a worker attaches to by ``name`` to write its shard (:meth:`writer`). The learner's own replay is made
    by :func:`~rlcore.buffers.replay.build_replay` with a :func:`shard_placement`.

    Args:
        geometry: Fields and sizes.
        name: Attach to this existing shared block (a worker); None creates the block (the learner).
        shared: False keeps the storage in this process's memory (a learner that writes it itself).
        prioritized, alpha, beta: Prioritized sampling (the learner's side).
        n_step, gamma: The returns of the learner's samples.
    """

    def __init__(self, geometry: StorageGeometry, name: str | None = None, *, shared: bool = True,
                 prioritized: bool = False, alpha: float = 0.6, beta: float = 0.4, n_step: int = 1,
                 gamma: float = 0.99) -> None:
        storage = ReplayStorage(geometry, memory=SharedReplayMemory(geometry, name, shared=shared))
        super().__init__(storage, sampler=make_sampler(prioritized, geometry.rows, alpha, beta), n_step=n_step,
                         gamma=gamma, concurrent_writers=True)


def replay_bytes(geometry: StorageGeometry) -> int:
    """The size of the shared block for ``geometry``."""
    return block_layout(geometry).offsets()[1]


def describe(geometry: StorageGeometry) -> str:
    return (f"{geometry.num_shards} shards x {geometry.steps_capacity} steps x {geometry.envs_per_shard} envs "
            f"({replay_bytes(geometry) / 2**20:.1f} MiB)")
