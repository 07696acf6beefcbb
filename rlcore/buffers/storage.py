"""Replay storage: rings of packed records over named fields, one ring (shard) per writer.

What is stored is a dict of named fields, ``name -> FieldSpec(shape, dtype)`` (``obs``, ``action``, ``reward``,
``next_obs``, ``terminated``, ``truncated`` for transitions; any other set, e.g. AlphaZero's ``obs``, ``policy``
and ``value``). A :class:`ReplayStorage` holds ``num_shards`` rings of ``[steps_capacity, envs_per_shard]``
records: one shard per writer (the in-process buffer has one; the shared-memory replay one per worker), one
env column per env that writer steps, one time row per vector step. Because each env's steps are contiguous
in its column, an n-step return is index arithmetic along a shard's time axis.

Record layout: every field of one transition sits side by side in one fixed-size record (``uint8``
``[..., record_bytes]``, see :func:`record_layout`), and each field's column is a strided view of it. A draw
of ``B`` rows is then one gather of whole records (one numpy ``take`` on the host, one ``index_select`` on a
device) instead of one per field.

Rows are addressed by a flat id ``(shard * steps_capacity + position) * envs_per_shard + env``.

Committed counters: each shard has a header of ``HEADER_WIDTH`` int64 slots (one cache line, so two writers
never share one); slot ``COMMITTED`` counts the vector steps fully written to the shard, from the start (it
never wraps). A writer fills the row at ``committed % steps_capacity`` and only then increments ``committed``,
so a row is visible only once complete, also to a reader in another process when the header and records live
in shared memory.

Where the memory lives is the caller's choice (a :class:`StorageMemory`): in this process (the default, on
any torch device) or in a shared-memory block that worker processes attach to
(:mod:`rlcore.distributed.shared_replay`). The storage does not sample: a
:class:`~rlcore.buffers.replay.Replay` draws rows from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, NamedTuple, Protocol

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import Tensor

from rlcore.observations import flatten_fields
from rlcore.spaces import PATH_SEPARATOR, is_composite, leaf_spaces

try:  # a shard write in one C call (rlcore/kernels/_step_writer.c); optional, built where a compiler is
    from rlcore.kernels._step_writer import StepWriter
except ImportError:  # pragma: no cover - depends on the install
    StepWriter = None

HEADER_WIDTH = 8
"""int64 slots per shard header (one cache line, so two writers never share one)."""
COMMITTED = 0
"""The header slot that counts a shard's committed vector steps."""
MAX_MARGIN = 256


class FieldSpec(NamedTuple):
    """One stored field: its per-row ``shape`` (without the leading ``[steps, envs]``) and torch ``dtype``."""

    shape: tuple[int, ...]
    dtype: torch.dtype


Fields = dict[str, FieldSpec]
"""``name -> FieldSpec``, in storage order."""


def torch_dtype(dtype: Any) -> torch.dtype:
    """``dtype`` (a torch dtype, a numpy dtype or its name) as a torch dtype."""
    if isinstance(dtype, torch.dtype):
        return dtype
    return torch.from_numpy(np.zeros((), np.dtype(dtype))).dtype


def numpy_dtype(dtype: torch.dtype) -> np.dtype | None:
    """numpy's equivalent of ``dtype``, or None (bfloat16 and other types numpy lacks)."""
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:
        return None


def fields_of_step(step: dict[str, Any], num_envs: int, method: str = "add") -> Fields:
    """The fields of a vector step ``{key: value [num_envs, *shape]}``; float64 values are stored as float32."""
    fields = {}
    for key, value in step.items():
        value = torch.as_tensor(value)
        if value.shape[:1] != (num_envs,):
            raise ValueError(f"{method}() got {key!r} of shape {tuple(value.shape)}; expected a leading dim of "
                             f"num_envs={num_envs}")
        dtype = torch.float32 if value.dtype == torch.float64 else value.dtype
        fields[key] = FieldSpec(tuple(value.shape[1:]), dtype)
    return fields


def transition_fields(observation_space: gym.Space, action_space: gym.Space, *, action_masks: bool = False) -> Fields:
    """The fields of the transitions a :class:`rlcore.collector.Collector` hands out for these spaces.

    A Box or Discrete observation is one field per side (``obs``, ``next_obs``) of its own dtype (float64 is
    stored as float32; images stay uint8); a Dict or Tuple observation is one field per leaf and side
    (``obs/<path>``, ``next_obs/<path>``, see :func:`rlcore.spaces.leaf_spaces`), each of its own dtype. Integer
    actions are int64, others float32 (a Box action of any shape is one ``action`` field). With ``action_masks``,
    ``next_action_mask`` (bool ``[A]``) holds which actions were legal in ``next_obs`` (the targets' max).
    """
    observation = {path: _stored_spec(leaf.sample()) for path, leaf in leaf_spaces(observation_space).items()} \
        if is_composite(observation_space) else {"": _stored_spec(observation_space.sample())}
    action = np.asarray(action_space.sample())
    action_dtype = torch.int64 if action.dtype.kind in "iu" else torch.float32
    fields = {
        **{_field("obs", path): spec for path, spec in observation.items()},
        "action": FieldSpec(action.shape, action_dtype),
        "reward": FieldSpec((), torch.float32),
        **{_field("next_obs", path): spec for path, spec in observation.items()},
        "terminated": FieldSpec((), torch.bool),
        "truncated": FieldSpec((), torch.bool),
    }
    if action_masks:
        fields["next_action_mask"] = FieldSpec((action_mask_size(action_space),), torch.bool)
    return fields


def action_mask_size(action_space: gym.Space) -> int:
    """Entries of an action mask: ``n`` for Discrete, ``sum(nvec)`` for MultiDiscrete (sb3-contrib's layout)."""
    if isinstance(action_space, spaces.Discrete):
        return int(action_space.n)
    if isinstance(action_space, spaces.MultiDiscrete):
        return int(np.sum(action_space.nvec))
    raise TypeError(f"action masks need a Discrete or MultiDiscrete action space, got {action_space!r}")


def _stored_spec(sample: Any) -> FieldSpec:
    """How one observation like ``sample`` is stored: its shape, float64 as float32."""
    value = np.asarray(sample)
    return FieldSpec(value.shape, torch_dtype(np.float32 if value.dtype == np.float64 else value.dtype))


def _field(name: str, path: str) -> str:
    return f"{name}{PATH_SEPARATOR}{path}" if path else name


class RecordField(NamedTuple):
    """Where one key's value lies in a record."""

    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    """Per-row shape (without the leading ``[steps, num_envs]``)."""
    offset: int
    """Byte offset in the record (a multiple of the element size)."""
    nbytes: int


def record_layout(specs: list[tuple[str, torch.dtype, tuple[int, ...]]]) -> tuple[list[RecordField], int]:
    """Packs ``(key, dtype, shape)`` fields into one record: widest elements first, each field aligned to its
    element size and the record padded to the widest, so every field can be viewed as its dtype in place.

    Returns:
        The fields (in the order of ``specs``) and the record size in bytes.
    """
    placed: dict[str, RecordField] = {}
    offset = 0
    widest = 1
    for key, dtype, shape in sorted(specs, key=lambda spec: -spec[1].itemsize):
        size = dtype.itemsize
        widest = max(widest, size)
        offset = -(-offset // size) * size
        nbytes = size * math.prod(shape)
        placed[key] = RecordField(key, dtype, tuple(shape), offset, nbytes)
        offset += nbytes
    record_bytes = max(-(-offset // widest) * widest, widest)
    return [placed[key] for key, _, _ in specs], record_bytes


def field_view(records: Tensor, field: RecordField) -> Tensor:
    """The view of ``field`` in ``records [..., record_bytes]`` (uint8): ``[..., *field.shape]`` of its dtype."""
    view = records[..., field.offset : field.offset + field.nbytes].view(field.dtype)
    return view.squeeze(-1) if field.shape == () else view.unflatten(-1, field.shape)


@dataclass(frozen=True)
class StorageGeometry:
    """Everything that fixes a storage's memory layout (plain data: it crosses a ``spawn``)."""

    fields: tuple[tuple[str, FieldSpec], ...]
    """The stored fields, in order; empty until a lazily allocated storage sees its first write."""
    num_shards: int
    steps_capacity: int
    """Vector steps per shard (time rows of each ring)."""
    envs_per_shard: int

    @property
    def margin(self) -> int:
        """Oldest rows of a full shard never sampled while a writer runs concurrently (its next targets)."""
        return max(1, min(MAX_MARGIN, self.steps_capacity // 4))

    @property
    def rows(self) -> int:
        """Records in all (the flat id space)."""
        return self.num_shards * self.steps_capacity * self.envs_per_shard

    def layout(self) -> tuple[list[RecordField], int]:
        """:func:`record_layout` of :attr:`fields`."""
        return record_layout([(key, spec.dtype, tuple(spec.shape)) for key, spec in self.fields])

    @property
    def header_shape(self) -> tuple[int, int]:
        return (self.num_shards, HEADER_WIDTH)

    @property
    def records_shape(self) -> tuple[int, int, int, int]:
        return (self.num_shards, self.steps_capacity, self.envs_per_shard, self.layout()[1])


class StorageMemory(Protocol):
    """Memory a storage lives in when the caller provides it (e.g. a shared-memory block)."""

    header: np.ndarray
    """int64 ``[num_shards, HEADER_WIDTH]``."""
    records: np.ndarray
    """uint8 ``[num_shards, steps_capacity, envs_per_shard, record_bytes]``, C-contiguous."""
    name: str | None

    def close(self) -> None: ...


class ReplayStorage:
    """``num_shards`` rings of ``[steps_capacity, envs_per_shard]`` packed records plus their committed counters.

    Args:
        geometry: Fields and sizes; with no fields the records are allocated at the first write
            (:meth:`allocate`).
        device: Where records allocated here live (ignored with ``memory``, which is host memory).
        memory: Header and records provided by the caller (shared memory); None allocates them here.
    """

    def __init__(self, geometry: StorageGeometry, *, device: str | torch.device = "cpu",
                 memory: StorageMemory | None = None) -> None:
        self.geometry = geometry
        self.device = torch.device("cpu") if memory is not None else torch.device(device)
        self.memory = memory
        self.header: np.ndarray | None = (memory.header if memory is not None
                                          else np.zeros(geometry.header_shape, dtype=np.int64))
        """int64 ``[num_shards, HEADER_WIDTH]``, in the caller's memory or allocated here: each shard's committed
        count at ``[:, COMMITTED]`` (what the C step writer's ``add`` advances); None once closed."""
        self.counters: Any = memoryview(self.header).cast("B").cast("q")
        """The counters, indexed flat: shard ``s`` committed at ``s * HEADER_WIDTH``. A memoryview of
        :attr:`header` (an int read or write ~40 ns, against ~90 ns through numpy)."""
        self.records: Tensor | None = None
        """All records, uint8 ``[num_shards, steps_capacity, envs_per_shard, record_bytes]``; None before the
        fields are known."""
        self.fields: list[RecordField] = []
        self.keys: tuple[str, ...] = ()
        self.columns: dict[str, Tensor] = {}
        """Each field's values ``[num_shards, steps_capacity, envs_per_shard, *shape]``: views of :attr:`records`."""
        self.host_columns: dict[str, np.ndarray] = {}
        """numpy views of :attr:`columns` in host memory (fields whose dtype numpy has), for cheap writes."""
        self.host_records: np.ndarray | None = None
        """The records as a flat numpy array ``[rows]`` of opaque ``record_bytes``-byte items (host storage whose
        dtypes numpy all has), for one-``take`` gathers: taking opaque items is ~2x cheaper than taking
        structured ones, and the result is then viewed as :attr:`record_dtype`."""
        self.record_dtype: np.dtype | None = None
        """The numpy structured dtype of one record (its fields at their offsets)."""
        if memory is not None and not geometry.fields:
            raise ValueError("a storage in the caller's memory needs its fields up front (StorageGeometry.fields)")
        if geometry.fields:
            self._place(memory.records if memory is not None else None)

    def allocate(self, fields: Fields) -> None:
        """Allocates the records for ``fields`` (a lazily allocated storage, at its first write)."""
        if self.records is not None:
            raise RuntimeError("this storage's records are already allocated")
        self.geometry = replace(self.geometry, fields=tuple(fields.items()))
        self._place(None)

    def _place(self, host_records: np.ndarray | None) -> None:
        geometry = self.geometry
        self.fields, record_bytes = geometry.layout()
        if host_records is None:
            try:
                self.records = torch.empty(geometry.records_shape, dtype=torch.uint8, device=self.device)
            except (RuntimeError, MemoryError) as error:  # torch's allocator names bytes, not the setting
                rows = math.prod(geometry.records_shape[:-1])
                raise MemoryError(
                    f"the replay cannot hold {rows:,} transitions of {record_bytes:,} bytes each "
                    f"({rows * record_bytes / 2**30:.1f} GiB) on {self.device}: lower buffer_size "
                    f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from error
        else:
            if host_records.shape != geometry.records_shape or host_records.dtype != np.uint8:
                raise ValueError(f"the memory's records are {host_records.dtype} {host_records.shape}; this geometry "
                                 f"needs uint8 {geometry.records_shape}")
            self.records = torch.from_numpy(host_records)
        self.columns = {field.key: field_view(self.records, field) for field in self.fields}
        self.keys = tuple(self.columns)
        self.host_columns, self.host_records, self.record_dtype = {}, None, None
        if self.device.type != "cpu":
            return
        numpy_dtypes = [numpy_dtype(field.dtype) for field in self.fields]
        for field, dtype in zip(self.fields, numpy_dtypes):
            if dtype is not None:
                self.host_columns[field.key] = self.columns[field.key].numpy()
        if all(dtype is not None for dtype in numpy_dtypes):
            self.record_dtype = np.dtype({
                "names": [field.key for field in self.fields],
                "formats": [(dtype, field.shape) if field.shape else dtype
                            for field, dtype in zip(self.fields, numpy_dtypes)],
                "offsets": [field.offset for field in self.fields],
                "itemsize": record_bytes,
            })
            self.host_records = self.records.numpy().reshape(-1, record_bytes).view(f"V{record_bytes}")[:, 0]

    # ------------------------------------------------------------------------------------ counters
    def committed(self) -> np.ndarray:
        """Vector steps committed per shard, int64 ``[num_shards]`` (a snapshot)."""
        return self.header[:, COMMITTED].copy()  # type: ignore[index]

    def set_committed(self, committed: np.ndarray) -> None:
        """Sets every shard's committed count (``[num_shards]``; a checkpoint's)."""
        for shard, count in enumerate(np.asarray(committed).tolist()):
            self.counters[shard * HEADER_WIDTH + COMMITTED] = int(count)

    def writer(self, shard: int) -> ShardWriter:
        """The writer of shard ``shard``."""
        if not 0 <= shard < self.geometry.num_shards:
            raise IndexError(f"shard must be in [0, {self.geometry.num_shards}), got {shard}")
        return ShardWriter(self, shard)

    # ------------------------------------------------------------------------------------- reading
    def gather(self, flat: np.ndarray | Tensor) -> np.ndarray | Tensor:
        """The records of the flat ids ``flat [B]``: a numpy structured array ``[B]`` (host storage) or a uint8
        tensor ``[B, record_bytes]`` (any other); :meth:`as_tensors` splits it into fields."""
        records = self.host_records
        if records is not None:
            return records.take(flat if type(flat) is np.ndarray else flat.cpu().numpy()).view(self.record_dtype)
        index = torch.as_tensor(flat).to(self.device)
        return self.records.view(-1, self.records.shape[-1]).index_select(0, index)  # type: ignore[union-attr]

    def as_tensors(self, rows: np.ndarray | Tensor) -> dict[str, Tensor]:
        """Each field of gathered ``rows`` as a tensor ``[B, *shape]`` (views of ``rows``, not of the storage)."""
        if type(rows) is np.ndarray:
            from_numpy = torch.from_numpy
            return {key: from_numpy(rows[key]) for key in self.keys}
        return {field.key: field_view(rows, field) for field in self.fields}

    # ---------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The committed counters and the filled rows of each field, ``[num_shards, filled, envs, *shape]``."""
        committed = self.committed()
        filled = int(min(committed.max(initial=0), self.geometry.steps_capacity))
        return {"committed": torch.from_numpy(committed),
                "storage": {key: column[:, :filled].cpu().clone() for key, column in self.columns.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` (allocating the records if needed); the geometry must match."""
        geometry = self.geometry
        committed, stored = state["committed"], state["storage"]
        expected = (geometry.num_shards, geometry.steps_capacity, geometry.envs_per_shard)
        for key, rows in stored.items():
            if rows.ndim < 3 or rows.shape[0] != expected[0] or rows.shape[2] != expected[2] or (
                    rows.shape[1] > expected[1]):
                raise ValueError(
                    f"the checkpoint's replay field {key!r} has shape {tuple(rows.shape)}, which does not fit "
                    f"{expected[0]} shard(s) x {expected[1]} steps x {expected[2]} envs (num_envs {expected[2]}); "
                    "resume with the run's num_workers, num_envs and buffer_size")
        if stored and self.records is None:
            self.allocate({key: FieldSpec(tuple(rows.shape[3:]), rows.dtype) for key, rows in stored.items()})
        for key, rows in stored.items():
            self.columns[key][:, : rows.shape[1]].copy_(rows)
        self.set_committed(torch.as_tensor(committed).numpy())

    def close(self) -> None:
        """Drops the views of the records and releases the memory (a shared block is unlinked by its owner)."""
        self.columns, self.host_columns = {}, {}
        self.records = self.host_records = None
        if self.memory is not None:
            self.counters.release()
            self.header = None
            self.memory.close()


def chunk_length(steps: dict[str, Any], num_envs: int) -> int:
    """``K`` of :meth:`ShardWriter.extend`'s values, checked to be the same ``[K, num_envs, ...]`` for every key."""
    if not steps:
        raise KeyError("extend() got no keys")
    count = -1
    for value in steps.values():
        shape = value.shape if isinstance(value, (np.ndarray, Tensor)) else np.shape(value)
        if count == -1 and len(shape) >= 1:
            count = int(shape[0])
        if len(shape) < 2 or shape[0] != count or shape[1] != num_envs:
            shapes = {key: tuple(np.shape(value)) for key, value in steps.items()}
            raise ValueError(f"extend() takes values of shape [K, num_envs={num_envs}, ...] with the same K for "
                             f"every key, got {shapes}")
    return count


class ShardWriter:
    """Appends vector steps to one shard of a :class:`ReplayStorage` and commits them: the only write path.

    :meth:`add` writes one vector step (every value ``[envs_per_shard, *shape]``): the C kernel
    (:mod:`rlcore.kernels._step_writer`) when it is built and the step is exactly what is stored, otherwise the
    numpy reference :meth:`_write`, which converts (lists, scalars, tensors, other dtypes) or raises numpy's
    error. :meth:`extend` writes ``K`` consecutive steps with one :meth:`_write` per field (two where the ring
    wraps). A storage without fields learns them from the first write.

    Args:
        storage: The storage written.
        shard: Which of its shards.
    """

    def __init__(self, storage: ReplayStorage, shard: int) -> None:
        self._bind_shard(storage, shard)

    def _bind_shard(self, storage: ReplayStorage, shard: int) -> None:
        self.store = storage
        self.shard = shard
        self.steps_capacity = storage.geometry.steps_capacity
        self.envs_per_shard = storage.geometry.envs_per_shard
        self._counters = storage.counters
        self._slot = shard * HEADER_WIDTH + COMMITTED
        self._bind_columns()

    def _bind_columns(self) -> None:
        """Reads the shard's write plan from the storage (again after it allocated its records)."""
        storage, shard = self.store, self.shard
        self._plan = tuple((key, column[shard]) for key, column in storage.columns.items())
        """``(key, column [T, E, *shape])`` per field: :meth:`_write`'s plan."""
        host = storage.host_columns
        self._host_plan = (tuple((key, host[key][shard]) for key in storage.columns)
                           if storage.columns and len(host) == len(storage.columns) else None)
        """``(key, numpy view of the column)`` per field when every field has one (host storage), else None."""
        self._writer = self._make_writer() if storage.records is not None else None
        """The C kernel over this shard's records (:meth:`add`'s fast path), or None: no extension, device
        storage or a dtype numpy lacks."""

    def _make_writer(self) -> Any:
        """A :class:`StepWriter` over the shard's host records when every field has a numpy dtype."""
        storage = self.store
        if StepWriter is None or storage.host_records is None:
            return None
        specs = [(field.key, numpy_dtype(field.dtype).num, field.offset, field.nbytes, field.shape)  # type: ignore
                 for field in storage.fields]
        return StepWriter(storage.records[self.shard].numpy(), specs,  # type: ignore[index]
                          storage.header.reshape(-1), self._slot)  # type: ignore[union-attr]

    @property
    def steps_written(self) -> int:
        """Vector steps this writer's shard has committed so far (:meth:`Replay.committed` counts every shard's)."""
        return self._counters[self._slot]

    def add(self, step: dict[str, Any]) -> None:
        """Writes one vector step (every value has a leading dim ``envs_per_shard``; numpy or torch), then makes
        it visible. The values are copied, so the caller may reuse its arrays afterwards."""
        writer = self._writer
        # The C writer writes and commits a step whose every value is an ndarray of exactly the stored dtype and
        # shape (~0.25 us for a CartPole step, against ~1.2 us for six numpy row assignments and the counter);
        # anything else it leaves unwritten and uncommitted, and the numpy path below takes it.
        if writer is not None and writer.add(step):
            return
        slot, counters = self._slot, self._counters
        committed = counters[slot]
        self._write(committed % self.steps_capacity, flatten_fields(step))  # a dict observation: a field per leaf
        counters[slot] = committed + 1

    def extend(self, steps: dict[str, Any]) -> None:
        """Writes ``K`` consecutive vector steps at once: every value has leading dims ``[K, envs_per_shard]``,
        and ``{key: value[k] for key, value in steps.items()}`` is what the ``k``-th :meth:`add` would get.

        The result is the same as ``K`` calls of :meth:`add`, but each field is copied once (twice where the
        ring wraps) instead of once per step. With ``K > steps_capacity`` only the newest ``steps_capacity``
        steps are kept, as ``K`` adds would.
        """
        steps = flatten_fields(steps)
        count = chunk_length(steps, self.envs_per_shard)
        if count == 0:
            return
        if not self._plan:
            self._allocate({key: value[0] for key, value in steps.items()}, "extend")
        slot, capacity = self._slot, self.steps_capacity
        committed = self._counters[slot]
        head = committed % capacity
        if head + count <= capacity:
            self._write(slice(head, head + count), steps)
        else:
            skipped = max(count - capacity, 0)  # the oldest steps, overwritten within this very call
            start = (head + skipped) % capacity
            first = capacity - start  # rows start .. capacity - 1, then 0 .. rest - 1
            rest = count - skipped - first
            self._write(slice(start, capacity), {key: value[skipped : skipped + first] for key, value in steps.items()})
            self._write(slice(0, rest), {key: value[skipped + first :] for key, value in steps.items()})
        self._counters[slot] = committed + count

    def _write(self, rows: int | slice, values: dict[str, Any]) -> None:
        """The reference write: ``values[key]`` into time ``rows`` of every field of the shard (a row and
        ``[envs, *shape]`` values, or a slice of rows and ``[K, envs, *shape]`` values). Host storage takes numpy
        assignments (~3x cheaper than ``copy_`` per small row, with numpy's conversions and errors); device
        storage, and what numpy cannot take (a tensor on another device, one that requires grad), torch copies."""
        host_plan = self._host_plan
        if host_plan is not None:
            try:
                for key, view in host_plan:
                    view[rows] = values[key]
                return
            except (TypeError, RuntimeError):
                pass
        elif not self._plan:  # the storage learns its fields from this first step
            self._allocate(values, "add")
            return self._write(rows, values)
        for key, column in self._plan:
            column[rows].copy_(torch.as_tensor(values[key]))

    def _allocate(self, step: dict[str, Any], method: str) -> None:
        """Allocates a lazily allocated storage for the fields of ``step`` (one vector step)."""
        self.store.allocate(fields_of_step(step, self.envs_per_shard, method))
        self._bind_columns()

    def end_interrupted_episodes(self) -> None:
        """Marks the newest row truncated: a restarted writer's envs start new episodes, so n-step sums must not
        run from the dead writer's last row into them (its ``next_obs`` is still the true next state)."""
        committed = self.steps_written
        if committed > 0 and "truncated" in self.store.columns:
            self.store.columns["truncated"][self.shard, (committed - 1) % self.steps_capacity] = True
