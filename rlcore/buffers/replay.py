"""The replay buffer: preallocated per-env columns, a pluggable sampler, n-step returns at sample time.

Storage is a ring over time with one column per env, ``[capacity, num_envs, *shape]``.
Because each env's transitions are contiguous in its column, an n-step return is index
arithmetic: row ``t + k`` of the same column is the ``k``-th next step of that env.

Rows are addressed by a flat id ``t * num_envs + env``; samplers draw flat ids in
``[0, size * num_envs)`` and never see the data.

Layout: every key's values for one transition sit side by side in one fixed-size record (a
``uint8`` tensor ``[capacity // num_envs, num_envs, record_bytes]``), and ``storage[key]`` is a
strided view of its field. Drawing a batch is then one gather of whole records (one numpy
``take`` on the CPU, one ``index_select`` on a GPU) instead of one per key, and each transition
is one run of memory instead of one cache line per key; the batch's tensors are strided views
of the gathered records.

Writing: :meth:`ReplayBuffer.add` copies one vector step (one numpy row assignment per key, which is
where its time goes); :meth:`ReplayBuffer.extend` copies ``K`` consecutive steps with one assignment
per key, for producers of whole chunks.
"""

from __future__ import annotations

import logging
import math
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.samplers import PrioritizedSampler, SampleIndex, Sampler, UniformSampler

try:  # ReplayBuffer.add's per-step copy in C (rlcore/kernels/_step_writer.c); optional, built when a compiler is
    from rlcore.kernels._step_writer import StepWriter
except ImportError:  # pragma: no cover - depends on the install
    StepWriter = None

logger = logging.getLogger(__name__)

Batch = dict[str, Tensor]

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class RecordField(NamedTuple):
    """Where one key's value lies in a transition record."""

    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    """Per-transition shape (without the leading ``[steps, num_envs]``)."""
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


def _numpy_dtype(dtype: torch.dtype) -> np.dtype | None:
    """numpy's equivalent of ``dtype``, or None (bfloat16 and other types numpy lacks)."""
    try:
        return torch.empty((), dtype=dtype).numpy().dtype
    except TypeError:
        return None


class ReplayBuffer:
    """Experience replay with uniform or prioritized sampling and n-step returns.

    Args:
        capacity: Total transitions kept (like SB3's ``buffer_size``); each env column
            holds ``capacity // num_envs`` steps.
        num_envs: Number of env columns ``N``; :meth:`add` takes one row per env.
        device: Where the storage lives; put it on the training device to sample
            without host-to-device copies.
        sampler: How rows are drawn; :class:`UniformSampler` by default.
        n_step: Length of the return in :meth:`sample`; 1 is the ordinary TD target.
        gamma: Discount used for n-step returns.
    """

    def __init__(
        self,
        capacity: int,
        num_envs: int = 1,
        *,
        device: str | torch.device = "cpu",
        sampler: Sampler | None = None,
        n_step: int = 1,
        gamma: float = 0.99,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if capacity < num_envs:
            raise ValueError(f"capacity must be >= num_envs={num_envs}, got {capacity}")
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        self.num_envs = num_envs
        self.steps_capacity = capacity // num_envs
        self.device = torch.device(device)
        self.sampler = sampler or UniformSampler()
        self.n_step = n_step
        self.gamma = gamma
        self.storage: dict[str, Tensor] = {}
        """Each key's values ``[steps_capacity, num_envs, *shape]``: strided views into :attr:`records`."""
        self.records: Tensor | None = None
        """All transitions, ``[steps_capacity, num_envs, record_bytes]`` uint8; None before the first add."""
        self.fields: list[RecordField] = []
        """Where each key lies in a record, in :attr:`storage`'s order."""
        self._host_views: dict[str, np.ndarray] = {}
        """numpy views of CPU storage, for cheap writes."""
        self._host_records: np.ndarray | None = None
        """The records as a flat numpy array ``[steps_capacity * num_envs]`` of opaque ``record_bytes``-byte
        items (CPU storage whose dtypes numpy has), for one-``take`` sampling: taking opaque items is ~2x
        cheaper than taking structured ones, and the result is then viewed as :attr:`_record_dtype`."""
        self._record_dtype: np.dtype | None = None
        """The numpy structured dtype of one record (its fields at :attr:`fields`' offsets)."""
        self.head = 0
        """Next time index to write."""
        self.steps_stored = 0
        """Time rows written so far, at most ``steps_capacity``."""
        self._env_index = torch.arange(num_envs)
        self._sampler_tracks_writes = type(self.sampler).on_write is not Sampler.on_write
        self._columns: list[tuple[str, Tensor, np.ndarray | None]] = []
        """``(key, storage column, its numpy view or None)``, the write plan of :meth:`add`."""
        self._standard_views: tuple[np.ndarray, ...] | None = None
        """The numpy views of the :data:`TRANSITION_KEYS` columns, in that order, when the columns are exactly
        those and every one has a view (:meth:`add`'s numpy path)."""
        self._writer: Any = None
        """A :class:`StepWriter` over the host records (:meth:`add`'s fast path), or None: no extension, device
        storage or a dtype numpy lacks."""
        self._keys: tuple[str, ...] = ()
        self._bool_terminated = False
        self._float32_reward = False
        self._ones: dict[int, np.ndarray] = {}
        """``np.ones(batch_size)`` per batch size, copied as a uniform batch's weights."""
        self._discount_table: np.ndarray | None = None
        self._discount_table_gamma = gamma
        """The ``gamma`` that :attr:`_discount_table` was computed for (see :meth:`_discount_lookup`)."""

    # ------------------------------------------------------------------ writing
    def __len__(self) -> int:
        """Number of transitions stored, over all env columns."""
        return self.steps_stored * self.num_envs

    def _allocate(self, step: dict[str, Any]) -> None:
        specs = []
        for key, value in step.items():
            value = torch.as_tensor(value)
            if value.shape[:1] != (self.num_envs,):
                raise ValueError(
                    f"add() got {key!r} of shape {tuple(value.shape)}; expected a leading dim of "
                    f"num_envs={self.num_envs}"
                )
            dtype = torch.float32 if value.dtype == torch.float64 else value.dtype
            specs.append((key, dtype, tuple(value.shape[1:])))
        self.fields, record_bytes = record_layout(specs)
        self.records = torch.empty(
            (self.steps_capacity, self.num_envs, record_bytes), dtype=torch.uint8, device=self.device
        )
        self.storage = {field.key: field_view(self.records, field) for field in self.fields}
        self._host_views = {}
        self._host_records = self._record_dtype = None
        if self.device.type == "cpu":
            numpy_dtypes = [_numpy_dtype(field.dtype) for field in self.fields]
            for field, numpy_dtype in zip(self.fields, numpy_dtypes):
                if numpy_dtype is not None:
                    self._host_views[field.key] = self.storage[field.key].numpy()
            if all(numpy_dtype is not None for numpy_dtype in numpy_dtypes):
                record_dtype = np.dtype({
                    "names": [field.key for field in self.fields],
                    "formats": [(numpy_dtype, field.shape) if field.shape else numpy_dtype
                                for field, numpy_dtype in zip(self.fields, numpy_dtypes)],
                    "offsets": [field.offset for field in self.fields],
                    "itemsize": record_bytes,
                })
                self._record_dtype = record_dtype
                self._host_records = self.records.numpy().reshape(-1, record_bytes).view(f"V{record_bytes}")[:, 0]
        self._index_columns()

    def _index_columns(self) -> None:
        """Builds the write plan of :meth:`add` from :attr:`storage` and :attr:`_host_views`."""
        self._columns = [(key, column, self._host_views.get(key)) for key, column in self.storage.items()]
        self._keys = tuple(self.storage)
        self._bool_terminated = "terminated" in self.storage and self.storage["terminated"].dtype == torch.bool
        self._float32_reward = "reward" in self.storage and self.storage["reward"].dtype == torch.float32
        standard_only = set(self.storage) == set(TRANSITION_KEYS)
        all_host = standard_only and all(key in self._host_views for key in self.storage)
        self._standard_views = tuple(self._host_views[key] for key in TRANSITION_KEYS) if all_host else None
        self._writer = self._make_writer()

    def _make_writer(self) -> Any:
        """The C step writer over :attr:`records` when every field is on the host with a numpy dtype."""
        if StepWriter is None or self._host_records is None or self.records is None:
            return None
        specs = [(field.key, _numpy_dtype(field.dtype).num, field.offset, field.nbytes, field.shape)  # type: ignore
                 for field in self.fields]
        return StepWriter(self.records.numpy(), specs)

    def _discount_lookup(self) -> np.ndarray:
        """``gamma * (1 - terminated)`` for terminated = False, True, as torch computes it (float32)."""
        if self._discount_table is None or self._discount_table_gamma != self.gamma:
            self._discount_table = (self.gamma * (1.0 - torch.tensor([0.0, 1.0]))).numpy()
            self._discount_table_gamma = self.gamma
        return self._discount_table

    def add(self, step: dict[str, Any]) -> None:
        """Appends one vector step: every value has a leading dim ``N`` (numpy or torch).

        Expected keys are ``obs``, ``action``, ``reward``, ``next_obs``, ``terminated`` and
        ``truncated``; any extra key is stored and sampled alongside. The values are copied, so the
        caller may reuse its arrays afterwards.
        """
        row = self.head
        writer = self._writer
        # The C writer takes a step whose every value is an ndarray of exactly the stored dtype and shape (~0.2 us
        # for a CartPole step, against ~1 us for six numpy row assignments); anything else it leaves unwritten.
        if writer is None or not writer.write(step, row):
            self._write_with_numpy(step, row)
        if self._sampler_tracks_writes:
            self.sampler.on_write(row * self.num_envs + self._env_index)
        row += 1
        self.head = row if row != self.steps_capacity else 0
        if self.steps_stored != self.steps_capacity:
            self.steps_stored += 1

    def _write_with_numpy(self, step: dict[str, Any], row: int) -> None:
        """:meth:`add`'s write of time row ``row`` for what the C writer does not take (or without it)."""
        views = self._standard_views
        if views is None:
            self._write_general(step, row)
        else:
            # The six columns live on the host and there is no other key: six numpy row assignments,
            # written out (~0.15 us each; a loop over the columns costs more than they do). Lists, scalars
            # and CPU tensors go through numpy's conversion; anything numpy cannot convert (a tensor on
            # another device, one that requires grad) is copied by torch.
            obs, action, reward, next_obs, terminated, truncated = views
            try:
                obs[row] = step["obs"]
                action[row] = step["action"]
                reward[row] = step["reward"]
                next_obs[row] = step["next_obs"]
                terminated[row] = step["terminated"]
                truncated[row] = step["truncated"]
            except (TypeError, RuntimeError):
                self._write_with_torch(step, row)

    def extend(self, steps: dict[str, Any]) -> None:
        """Appends ``K`` consecutive vector steps at once: every value has leading dims ``[K, N]``, and
        ``{key: value[k] for key, value in steps.items()}`` is what the ``k``-th :meth:`add` would get.

        The result (storage, :attr:`head`, :attr:`steps_stored`, the sampler's state) is the same as ``K``
        calls of :meth:`add`, but each key is copied once (twice where the ring wraps) instead of once per
        step, which is what a producer of whole chunks (a distributed actor, a data set) wants. With
        ``K > steps_capacity`` only the newest ``steps_capacity`` steps are kept, as ``K`` adds would.
        """
        count = self._chunk_length(steps)
        if count == 0:
            return
        if not self.storage:
            self._check_keys(steps, "extend")
            self._allocate({key: value[0] for key, value in steps.items()})
        capacity, head = self.steps_capacity, self.head
        if head + count <= capacity:
            runs: tuple[tuple[int, int | None, int], ...] = ((head, None, count),)  # (row, offset, length)
        else:
            skipped = max(count - capacity, 0)  # the oldest steps, overwritten within this very call
            start = (head + skipped) % capacity
            first = capacity - start  # rows start .. capacity - 1, then 0 .. rest - 1
            rest = count - skipped - first
            runs = ((start, skipped, first), (0, skipped + first, rest))
        for row, offset, length in runs:
            self._write_rows(steps, row, offset, length)
        if self._sampler_tracks_writes:
            n = self.num_envs
            self.sampler.on_write(torch.cat([torch.arange(row * n, (row + length) * n) for row, _, length in runs]))
        self.head = (head + count) % capacity
        self.steps_stored = min(self.steps_stored + count, capacity)

    def _chunk_length(self, steps: dict[str, Any]) -> int:
        """``K`` of :meth:`extend`'s values, checked to be the same ``[K, N, ...]`` for every key."""
        if not steps:
            raise KeyError(f"extend() got no keys; a transition needs {list(TRANSITION_KEYS)}")
        count = -1
        for value in steps.values():
            shape = value.shape if isinstance(value, (np.ndarray, Tensor)) else np.shape(value)
            if count == -1 and len(shape) >= 1:
                count = int(shape[0])
            if len(shape) < 2 or shape[0] != count or shape[1] != self.num_envs:
                shapes = {key: tuple(np.shape(value)) for key, value in steps.items()}
                raise ValueError(
                    f"extend() takes values of shape [K, num_envs={self.num_envs}, ...] with the same K for "
                    f"every key, got {shapes}"
                )
        return count

    def _write_rows(self, steps: dict[str, Any], row: int, offset: int | None, length: int) -> None:
        """Writes ``steps[key][offset : offset + length]`` (all of it when ``offset`` is None) to time rows
        ``row .. row + length - 1`` of every column."""
        end = row + length
        for key, column, host_view in self._columns:
            value = steps[key] if offset is None else steps[key][offset : offset + length]
            if host_view is not None and isinstance(value, np.ndarray):
                host_view[row:end] = value
            else:
                column[row:end].copy_(torch.as_tensor(value))

    def _check_keys(self, step: dict[str, Any], method: str) -> None:
        missing = [key for key in TRANSITION_KEYS if key not in step]
        if missing:
            raise KeyError(f"{method}() is missing {missing}; a transition needs {list(TRANSITION_KEYS)}")

    def _write_general(self, step: dict[str, Any], row: int) -> None:
        """:meth:`add`'s write for the first step (which allocates), extra keys and device storage."""
        if not self.storage:
            self._check_keys(step, "add")
            self._allocate(step)
        self._write_with_torch(step, row)

    def _write_with_torch(self, step: dict[str, Any], row: int) -> None:
        """Writes row ``row`` of every column; numpy where it can (~3x cheaper than ``copy_`` per small row)."""
        ndarray = np.ndarray
        for key, column, host_view in self._columns:
            value = step[key]
            if host_view is not None and isinstance(value, ndarray):
                host_view[row] = value
            else:
                column[row].copy_(torch.as_tensor(value))

    # ----------------------------------------------------------------- sampling
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Draws ``batch_size`` transitions with their n-step targets' ingredients.

        Returns:
            A batch with ``obs [B, ...]``, ``action [B, ...]``, ``reward [B]`` (the
            discounted n-step sum), ``next_obs [B, ...]`` (the state to bootstrap from),
            ``discount [B]`` (``gamma**k``, zero when the episode terminated within the
            ``k`` steps used), ``index [B]`` (flat row ids, for priority updates) and
            ``weight [B]`` (importance weights; ones for uniform sampling).
        """
        stored = self.steps_stored
        if stored == 0:
            raise RuntimeError("cannot sample from an empty ReplayBuffer; add transitions first")
        records = self._host_records
        if records is not None and self.n_step == 1:
            if type(self.sampler) is UniformSampler and type(batch_size) is int and batch_size > 0:
                # UniformSampler.sample's draw, inlined (its checks and SampleIndex cost ~0.5 us of a ~13 us
                # sample), into a numpy array shared with the index tensor: the same numbers as torch.randint
                # (which is empty().random_()), without the ~0.6 us of a later Tensor.numpy()
                flat = np.empty(batch_size, dtype=np.int64)
                index = torch.from_numpy(flat).random_(0, stored * self.num_envs, generator=generator)
                return self._gather_host(records, index, None, flat)
            chosen = self.sampler.sample(batch_size, stored * self.num_envs, generator)
            return self._gather_host(records, chosen.index, chosen.weight)  # samplers return CPU indices
        return self.gather(self.sampler.sample(batch_size, stored * self.num_envs, generator))

    def gather(self, chosen: SampleIndex) -> Batch:
        """Reads the rows named by ``chosen`` and computes their n-step return."""
        records = self._host_records
        if records is not None and self.n_step == 1 and chosen.index.device.type == "cpu":
            return self._gather_host(records, chosen.index, chosen.weight)
        flat = chosen.index.to(self.device)
        # Records are contiguous [steps_capacity, num_envs, record_bytes], so flat id t * num_envs + env is
        # record `flat id` of them viewed as [steps_capacity * num_envs, record_bytes]: one gather, no
        # (time, env) split.
        if records is not None:
            rows_host = records.take(flat.numpy()).view(self._record_dtype)
            batch: Batch = {key: torch.from_numpy(rows_host[key]) for key in self._keys}
        else:
            rows = self.records.view(-1, self.records.shape[-1]).index_select(0, flat)  # type: ignore[union-attr]
            batch = {field.key: field_view(rows, field) for field in self.fields}
        if self.n_step == 1:
            reward = batch["reward"].float()
            discount = self.gamma * (1.0 - batch["terminated"].float())
        else:
            time, env = flat // self.num_envs, flat % self.num_envs
            reward, discount, last_time = self._n_step_return(time, env)
            batch["next_obs"] = self.storage["next_obs"][last_time, env]
        batch["reward"], batch["discount"], batch["index"] = reward, discount, flat
        if chosen.weight is None:
            batch["weight"] = torch.ones_like(reward)
        else:
            batch["weight"] = chosen.weight.to(self.device)
        return batch

    def _gather_host(
        self, records: np.ndarray, index: Tensor, weight: Tensor | None, flat: np.ndarray | None = None
    ) -> Batch:
        """:meth:`gather` for CPU storage and 1-step returns: one numpy ``take`` of whole records, then a
        ``from_numpy`` of each field (for 256 CartPole transitions: ~2 us of ``take`` from a 100k buffer
        and ~0.6 us per tensor, its release included). ``index`` int64 ``[B]`` (CPU), ``flat`` its numpy
        view if the caller has one, ``weight [B]`` or None."""
        if flat is None:
            flat = index.numpy()
        rows = records.take(flat).view(self._record_dtype)
        from_numpy = torch.from_numpy
        batch: Batch = {key: from_numpy(rows[key]) for key in self._keys}
        if self._bool_terminated:
            # gamma * (1 - terminated), looked up from the two values torch computes for it
            table = self._discount_table
            if table is None or self._discount_table_gamma != self.gamma:
                table = self._discount_lookup()
            batch["discount"] = from_numpy(table.take(rows["terminated"]))
        else:
            batch["discount"] = self.gamma * (1.0 - batch["terminated"].float())
        if not self._float32_reward:
            batch["reward"] = batch["reward"].float()
        batch["index"] = index
        if weight is None:
            ones = self._ones.get(flat.shape[0])
            if ones is None:
                ones = self._ones[flat.shape[0]] = np.ones(flat.shape[0], dtype=np.float32)
            weight = from_numpy(ones.copy())  # a copy: ~2x cheaper than np.ones, which runs Python code
        batch["weight"] = weight
        return batch

    def _n_step_return(self, time: Tensor, env: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """n-step return from each sampled row, stopping at episode ends and at the newest row.

        A termination ends the sum and zeroes the bootstrap; a truncation ends the sum but
        still bootstraps from the true final observation; the newest stored row ends the
        sum too (the rest of the window is not written yet).

        Returns:
            ``(reward [B], discount [B], last_time [B])`` where ``last_time`` is the row
            whose ``next_obs`` is the bootstrap state.
        """
        offsets = torch.arange(self.n_step, device=self.device)
        rows = (time.unsqueeze(1) + offsets) % self.steps_capacity  # [B, n]
        rows_available = (self.head - 1 - time) % self.steps_capacity + 1  # rows from t to newest, inclusive
        in_window = offsets < rows_available.unsqueeze(1)  # [B, n]
        env_col = env.unsqueeze(1)
        ended = (self.storage["terminated"][rows, env_col] | self.storage["truncated"][rows, env_col]) & in_window
        # step k counts if it is in the window and no episode ended strictly before it
        ended_before = torch.cumsum(ended.int(), dim=1) - ended.int()
        used = in_window & (ended_before == 0)  # [B, n]
        steps_used = used.sum(dim=1)  # >= 1
        discounts = self.gamma ** offsets.float()
        rewards = self.storage["reward"][rows, env_col].float()
        # where(), not a product with the mask: rows outside the window may hold unwritten memory (NaN)
        reward = torch.where(used, rewards * discounts, 0.0).sum(dim=1)
        last_offset = steps_used - 1
        last_time = (time + last_offset) % self.steps_capacity
        terminated = self.storage["terminated"][last_time, env].float()
        discount = self.gamma**steps_used.float() * (1.0 - terminated)
        return reward, discount, last_time

    def update_priorities(self, index: Tensor, priorities: Tensor) -> None:
        """Passes new priorities (e.g. ``|TD error|``) for rows ``index`` to the sampler."""
        self.sampler.update_priorities(index.cpu(), priorities.detach().float().cpu())

    # ------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Stored rows (only the filled part), the write head and the sampler state."""
        filled = self.steps_stored
        return {
            "head": self.head,
            "steps_stored": filled,
            "storage": {key: column[:filled].cpu() for key, column in self.storage.items()},
            "sampler": self.sampler.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict`; the buffer's capacity and num_envs must match."""
        stored = state["storage"]
        for key, rows in stored.items():
            if rows.shape[0] > self.steps_capacity or (rows.ndim > 1 and rows.shape[1] != self.num_envs):
                raise ValueError(
                    f"buffer state {key!r} has shape {tuple(rows.shape)}, which does not fit capacity "
                    f"{self.steps_capacity} x num_envs {self.num_envs}; resume with the run's settings"
                )
        self.storage = {}
        self.records = None
        self.fields = []
        self._host_views = {}
        self._host_records = None
        self._index_columns()
        if stored:
            first_rows = {key: rows[:1].squeeze(0) for key, rows in stored.items()}
            self._allocate(first_rows)
            for key, rows in stored.items():
                self.storage[key][: rows.shape[0]].copy_(rows)
        self.head = int(state["head"])
        self.steps_stored = int(state["steps_stored"])
        self.sampler.load_state_dict(state["sampler"])


def make_sampler(prioritized: bool, capacity: int, alpha: float = 0.6, beta: float = 0.4) -> Sampler:
    """A :class:`PrioritizedSampler` over ``capacity`` rows, or a :class:`UniformSampler`."""
    if prioritized:
        return PrioritizedSampler(capacity, alpha=alpha, beta=beta)
    return UniformSampler()
