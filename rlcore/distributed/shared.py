"""Shared-memory blocks that worker processes and the learner map into their address spaces.

:class:`SharedBlock` is one POSIX shared-memory segment carved into named numpy arrays by a
:class:`BlockLayout` (plain data, so it crosses a ``spawn``). The creating process (the learner) owns
the segment: it is registered with Python's resource tracker, so it is unlinked even if the learner
is killed; workers attach without registering, so a worker's exit never unlinks it.

:class:`WeightStore` publishes versioned weights through such a block with a sequence lock: the writer
makes the sequence odd, copies, makes it even again; a reader copies and retries when the sequence
changed meanwhile, so it never keeps a half-written set of weights.

Ordering: a single writer stores data, then a counter; readers load the counter, then data. On x86
(and in CPython, where each store is an opaque C call) stores are not reordered with other stores
nor loads with other loads, which is what these protocols need.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import time
import weakref
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

import numpy as np
import torch
from torch import Tensor

ALIGNMENT = 64
"""Arrays start on cache-line boundaries, so two writers' arrays never share a line."""


@dataclass(frozen=True)
class ArraySpec:
    name: str
    dtype: str
    """A numpy dtype string (``"float32"``, ``"uint8"``, ...)."""
    shape: tuple[int, ...]


@dataclass(frozen=True)
class BlockLayout:
    """Where each named array lies in a block."""

    arrays: tuple[ArraySpec, ...]

    def offsets(self) -> tuple[dict[str, int], int]:
        """Byte offset of each array and the block's size."""
        offsets, position = {}, 0
        for spec in self.arrays:
            position = -(-position // ALIGNMENT) * ALIGNMENT
            offsets[spec.name] = position
            position += np.dtype(spec.dtype).itemsize * math.prod(spec.shape)
        return offsets, max(position, 1)


def _attach_untracked(name: str) -> tuple[Any, mmap.mmap]:
    """Maps an existing segment without registering it with this process's resource tracker."""
    try:
        import _posixshmem  # POSIX: the segment is unlinked only by its creator
    except ImportError:  # pragma: no cover - Windows: segments live as long as a handle is open
        segment = shared_memory.SharedMemory(name=name)
        return segment, segment._mmap  # type: ignore[attr-defined]
    fd = _posixshmem.shm_open("/" + name, os.O_RDWR, mode=0o600)
    try:
        size = os.fstat(fd).st_size
        mapping = mmap.mmap(fd, size)
    finally:
        os.close(fd)
    return None, mapping


class SharedBlock:
    """A shared-memory segment holding the arrays of ``layout``; ``name=None`` creates it (zero-filled),
    a name attaches to an existing one.

    Args:
        layout: The arrays and their shapes.
        name: The segment to attach to; None to create a new one.
        shared: False keeps the arrays in this process's ordinary memory (same API, no segment): for a
            learner that writes its buffer itself (the Ray backend).
    """

    def __init__(self, layout: BlockLayout, name: str | None = None, *, shared: bool = True) -> None:
        self.layout = layout
        offsets, size = layout.offsets()
        self._segment: shared_memory.SharedMemory | None = None
        self._mapping: Any = None
        self.owner = name is None
        if not shared:
            buffer: Any = bytearray(size)
            self.name = None
        elif name is None:
            self._segment = shared_memory.SharedMemory(create=True, size=size)
            buffer = self._segment.buf
            self.name = self._segment.name
            self._unlink_at_exit = weakref.finalize(self, _unlink, self._segment)
        else:
            self._segment, self._mapping = _attach_untracked(name)
            buffer = self._mapping
            self.name = name
            if len(buffer) < size:
                raise ValueError(f"shared block {name!r} holds {len(buffer)} bytes, its layout needs {size}")
        self.arrays: dict[str, np.ndarray] = {
            spec.name: np.ndarray(spec.shape, dtype=spec.dtype, buffer=buffer, offset=offsets[spec.name])
            for spec in layout.arrays
        }

    def __getitem__(self, name: str) -> np.ndarray:
        return self.arrays[name]

    def close(self) -> None:
        """Drops this process's mapping; the owner also unlinks the segment."""
        self.arrays = {}
        if self._mapping is not None:
            with contextlib.suppress(BufferError):  # a view is still alive; the mapping goes with the process
                self._mapping.close()
            self._mapping = None
        if self._segment is not None:
            with contextlib.suppress(BufferError):
                self._segment.close()
            if self.owner:
                self._unlink_at_exit()
            self._segment = None


def _unlink(segment: shared_memory.SharedMemory) -> None:
    """Removes the segment's name (its creator's last word): at :meth:`SharedBlock.close`, or when the block is
    dropped or the interpreter exits without one (an agent that keeps its shared replay after ``train`` returns),
    so Python's resource tracker has nothing left to warn about."""
    with contextlib.suppress(FileNotFoundError):
        segment.unlink()


# ------------------------------------------------------------------------------------------ weights
def weight_layout(tensors: dict[str, Tensor]) -> BlockLayout:
    """A block for ``tensors`` (their CPU dtypes and shapes) behind an int64 sequence counter."""
    arrays = [ArraySpec("sequence", "int64", (1,))]
    for name, tensor in tensors.items():
        arrays.append(ArraySpec(f"w/{name}", str(tensor.detach().cpu().numpy().dtype), tuple(tensor.shape)))
    return BlockLayout(tuple(arrays))


class WeightStore:
    """Versioned weights in shared memory: one writer (the learner), any number of readers (workers).

    ``version`` is 0 before the first :meth:`publish` and grows by one per publish.
    """

    def __init__(self, block: SharedBlock) -> None:
        self.block = block
        self._sequence = block["sequence"]
        self.names = [spec.name[2:] for spec in block.layout.arrays if spec.name.startswith("w/")]

    @property
    def version(self) -> int:
        return int(self._sequence[0]) // 2

    def publish(self, tensors: dict[str, Tensor]) -> int:
        """Copies ``tensors`` in (each must match the layout's shape); returns the new version."""
        sequence = int(self._sequence[0])
        self._sequence[0] = sequence + 1  # odd: writing
        for name in self.names:
            self.block[f"w/{name}"][...] = tensors[name].detach().cpu().numpy()
        self._sequence[0] = sequence + 2
        return (sequence + 2) // 2

    def read(self, newer_than: int, timeout: float = 5.0) -> tuple[int, dict[str, Tensor]] | None:
        """The published weights if their version is above ``newer_than``, else None.

        Returns ``(version, {name: tensor})`` with tensors that are private copies.
        """
        deadline = time.monotonic() + timeout
        while True:
            before = int(self._sequence[0])
            if before // 2 <= newer_than and before % 2 == 0:
                return None
            if before % 2 == 0:
                copies = {name: torch.from_numpy(self.block[f"w/{name}"].copy()) for name in self.names}
                if int(self._sequence[0]) == before:
                    return before // 2, copies
            if time.monotonic() > deadline:
                raise TimeoutError("the learner has been publishing weights for over 5 s; is it alive?")
            time.sleep(0.0002)
