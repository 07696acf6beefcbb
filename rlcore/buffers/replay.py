"""Experience replay = a storage, a sampler and n-step targets (as TorchRL's storage + sampler + writer).

- :class:`~rlcore.buffers.storage.ReplayStorage` holds the records: ``num_shards`` rings of
  ``[steps_capacity, envs_per_shard]`` transitions over named fields, each shard with its committed counter,
  in this process (on any device) or in shared memory. :class:`~rlcore.buffers.storage.ShardWriter` is its
  only write path (a C kernel, and the numpy reference it reproduces).
- A :class:`~rlcore.buffers.samplers.Sampler` chooses rows (uniform, or prioritized by a sum tree).
- :class:`Replay` draws rows from the storage through the sampler and turns them into training batches: one
  gather of whole records, then 1-step or n-step targets (one implementation of each, used by the in-process
  buffer and by the shared-memory shards alike).

:class:`ReplayBuffer` is the in-process buffer: a :class:`Replay` over a one-shard storage that it writes itself
(``add``/``extend``). The shared-memory replay of local workers and of the Ray learner is a :class:`Replay` over a
storage with one shard per worker, written by the workers (:mod:`rlcore.distributed.shared_replay`); since those
writers run concurrently with the draws, that replay leaves the oldest ``margin`` rows of a full shard out of
sampling and redraws any row a writer overwrote while it was copied. :func:`build_replay` makes either from an
algorithm's :class:`ReplaySettings` and a :class:`Placement` (where the storage lives).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.samplers import (
    LIVE,
    NEVER_WRITTEN,
    RETIRED,
    PrioritizedSampler,
    SampleIndex,
    Sampler,
    UniformSampler,
)
from rlcore.buffers.storage import (
    COMMITTED,
    Fields,
    FieldSpec,
    ReplayStorage,
    ShardWriter,
    StepWriter,
    StorageGeometry,
    StorageMemory,
    field_view,
    record_layout,
)
from rlcore.observations import nest_fields, tree_field_names

__all__ = ["Placement", "Replay", "ReplayBuffer", "ReplaySettings", "StepWriter", "TRANSITION_KEYS", "build_replay",
           "field_view", "make_sampler", "record_layout"]

logger = logging.getLogger(__name__)

Batch = dict[str, Tensor]

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


@dataclass(frozen=True)
class ReplaySettings:
    """What an algorithm asks of its replay (the storage's placement is the caller's: :class:`Placement`).

    Attributes:
        capacity: Rows kept over all env columns (SB3's ``buffer_size``).
        fields: ``(name, FieldSpec)`` pairs; empty: learnt from the first write (in-process buffers only).
            With :data:`TRANSITION_KEYS` among them, samples get 1-step or n-step targets; any other fields
            (AlphaZero's positions) are sampled as stored.
        n_step: Length of the return; 1 is the ordinary TD target.
        gamma: Discount of n-step returns.
        prioritized: Proportional prioritized replay (:class:`PrioritizedSampler`), else uniform.
        alpha, beta: PER's exponents (``beta`` is annealed by the algorithm).
        eps: PER's floor, added to the ``|TD error|`` priorities the algorithm reports (``> 0``).
        env_columns: One column per env stepped (transitions: n-step sums run along each env's time); False
            keeps a single column per writer (rows arriving one at a time, e.g. self-play positions).
    """

    capacity: int
    fields: tuple[tuple[str, FieldSpec], ...] = ()
    n_step: int = 1
    gamma: float = 0.99
    prioritized: bool = False
    alpha: float = 0.6
    beta: float = 0.4
    eps: float = 1e-6
    env_columns: bool = True


@dataclass(frozen=True)
class Placement:
    """Where a replay's storage lives and who writes it.

    Attributes:
        num_shards: One shard per writer.
        envs_per_shard: Env columns of each shard (the envs one writer steps).
        device: Where storage allocated in this process lives (``"cpu"``, or a training device).
        memory: Makes the memory (header and records) for a geometry, e.g. a shared-memory block that worker
            processes attach to; None allocates it in this process.
        concurrent_writers: The shards are written by other processes or threads while the replay samples:
            the oldest ``margin`` rows of a full shard are left out and torn rows redrawn. False: the replay
            is a :class:`ReplayBuffer` that writes its one shard itself.
    """

    num_shards: int = 1
    envs_per_shard: int = 1
    device: str | torch.device = "cpu"
    memory: Callable[[StorageGeometry], StorageMemory] | None = None
    concurrent_writers: bool = False


def make_sampler(prioritized: bool, capacity: int, alpha: float = 0.6, beta: float = 0.4,
                 eps: float = 1e-6) -> Sampler:
    """A :class:`PrioritizedSampler` over ``capacity`` rows, or a :class:`UniformSampler`."""
    if prioritized:
        return PrioritizedSampler(capacity, alpha=alpha, beta=beta, eps=eps)
    return UniformSampler()


def build_replay(settings: ReplaySettings, placement: Placement) -> Replay:
    """The replay an algorithm's ``settings`` ask for, with its storage where ``placement`` says.

    Returns:
        A :class:`ReplayBuffer` (one shard written in this process) or, with ``placement.concurrent_writers``, a
        :class:`Replay` whose shards other processes write through :meth:`Replay.writer`.
    """
    envs = placement.envs_per_shard if settings.env_columns else 1
    if not placement.concurrent_writers:
        if placement.num_shards != 1 or placement.memory is not None:
            raise ValueError("an in-process ReplayBuffer has one shard in this process's memory; use "
                             "concurrent_writers=True for shards that other processes write")
        return ReplayBuffer(settings.capacity, envs, device=placement.device, n_step=settings.n_step,
                            gamma=settings.gamma, fields=dict(settings.fields) or None,
                            sampler=make_sampler(settings.prioritized, (settings.capacity // envs) * envs,
                                                 settings.alpha, settings.beta, settings.eps))
    if not settings.fields:
        raise ValueError("a replay written by other processes needs its fields up front (ReplaySettings.fields)")
    steps_capacity = settings.capacity // (placement.num_shards * envs)
    if steps_capacity < 2:
        raise ValueError(f"buffer_size={settings.capacity} gives {steps_capacity} steps per env column over "
                         f"{placement.num_shards} workers x {envs} envs; use a buffer_size of at least "
                         f"{2 * placement.num_shards * envs}")
    geometry = StorageGeometry(settings.fields, placement.num_shards, steps_capacity, envs)
    memory = placement.memory(geometry) if placement.memory is not None else None
    storage = ReplayStorage(geometry, device=placement.device, memory=memory)
    sampler = make_sampler(settings.prioritized, geometry.rows, settings.alpha, settings.beta, settings.eps)
    return Replay(storage, sampler=sampler, n_step=settings.n_step, gamma=settings.gamma, concurrent_writers=True)


class Replay:
    """Draws training batches from a :class:`ReplayStorage`: uniform or prioritized rows, n-step targets.

    Args:
        storage: The records (one shard or several).
        sampler: How rows are drawn; :class:`UniformSampler` by default.
        n_step: Length of the return in :meth:`sample`; 1 is the ordinary TD target.
        gamma: Discount used for n-step returns.
        concurrent_writers: Writers run while this replay samples (other processes): the oldest
            ``storage.geometry.margin`` rows of a full shard (a writer's next targets) are never drawn, and after
            a batch is copied, rows a writer overwrote meanwhile are drawn again (:attr:`torn_rows_redrawn`).
    """

    def __init__(self, storage: ReplayStorage, *, sampler: Sampler | None = None, n_step: int = 1,
                 gamma: float = 0.99, concurrent_writers: bool = False) -> None:
        if n_step < 1:
            raise ValueError(f"n_step must be >= 1, got {n_step}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {gamma}")
        geometry = storage.geometry
        self.store = storage
        """The :class:`ReplayStorage`."""
        self.num_shards = geometry.num_shards
        self.envs_per_shard = geometry.envs_per_shard
        self.num_envs = geometry.num_shards * geometry.envs_per_shard
        """Env columns over all shards."""
        self.steps_capacity = geometry.steps_capacity
        self.device = storage.device
        self.sampler = sampler or UniformSampler()
        self.n_step = n_step
        self.gamma = gamma
        self.margin = geometry.margin if concurrent_writers else 0
        """Oldest rows of a full shard that are never drawn (0 without concurrent writers)."""
        self.torn_rows_redrawn = 0
        """Sampled rows that a writer overwrote while they were copied, and that were drawn again."""
        self._sampler_tracks_writes = type(self.sampler).on_write is not Sampler.on_write
        self._announced = np.zeros(self.num_shards, dtype=np.int64)
        """Per shard, the committed count that a write-tracking sampler has been told about."""
        self._direct_draws = self.num_shards == 1 and not concurrent_writers
        """The drawable rows are the flat ids ``[0, len)``: a stateless sampler's numbers are row ids (and
        :class:`UniformSampler`'s draw is inlined in :meth:`sample`)."""
        self._committed_at_close: np.ndarray | None = None
        self._targets: tuple[Tensor | None, str, bool, bool] = (None, "as stored", False, True)
        """What :meth:`_batch` computes (see :meth:`_plan_targets`) and the records it was planned for."""
        self._tree_fields: tuple[str, ...] = ()
        """The fields stored one column per leaf (``obs/<path>``: Dict observations), handed back as dicts."""
        self._bootstrap_keys: tuple[str, ...] = ("next_obs",)
        """The fields an n-step return reads from its last used row (``next_obs`` and its leaves, the next mask)."""
        self._ones: dict[int, np.ndarray] = {}
        """``np.ones(batch_size)`` per batch size, copied as a uniform batch's weights."""
        self._discount_table: tuple[float, np.ndarray] | None = None
        """``(gamma, gamma * (1 - [False, True]))``, see :meth:`_discount_lookup`."""

    # ------------------------------------------------------------------------------------- the storage
    @property
    def concurrent_writers(self) -> bool:
        """Whether writers run while this replay samples (see the class doc)."""
        return self.margin > 0

    @property
    def geometry(self) -> StorageGeometry:
        return self.store.geometry

    @property
    def name(self) -> str | None:
        """The shared memory's name, for writers in other processes to attach (None when not shared)."""
        memory = self.store.memory
        return None if memory is None else memory.name

    @property
    def columns(self) -> dict[str, Tensor]:
        """Each field's values ``[num_shards, steps_capacity, envs_per_shard, *shape]`` (views of the storage)."""
        return self.store.columns

    def writer(self, shard: int) -> ShardWriter:
        """A writer of shard ``shard`` (a worker's side)."""
        return self.store.writer(shard)

    def committed(self) -> np.ndarray:
        """Vector steps committed per shard, ``[num_shards]`` (a snapshot)."""
        if self._committed_at_close is not None:
            return self._committed_at_close.copy()
        return self.store.committed()

    def __len__(self) -> int:
        """Transitions stored over all shards."""
        return int(np.minimum(self.committed(), self.steps_capacity).sum()) * self.envs_per_shard

    def close(self) -> None:
        """Releases the storage's memory (a shared block: the learner also unlinks it); :meth:`committed` and
        ``len`` still answer."""
        if self._committed_at_close is None:
            self._committed_at_close = self.store.committed()
            self.store.close()

    # ---------------------------------------------------------------------------------------- drawing
    def _drawable_steps(self, committed: np.ndarray) -> np.ndarray:
        """Steps each shard may be drawn from: those stored, less the oldest ``margin`` of a shard whose writer
        overwrites them next."""
        return np.minimum(committed, self.steps_capacity - self.margin)

    def _announce(self, committed: np.ndarray) -> None:
        """Tells a write-tracking sampler about the rows committed since its last look (each gets the largest
        priority so far) and retires the oldest ``margin`` rows of each full shard."""
        capacity, margin, sampler = self.steps_capacity, self.margin, self.sampler
        for shard in np.flatnonzero(committed > self._announced):
            end = int(committed[shard])
            written = np.arange(max(int(self._announced[shard]), end - capacity), end)
            sampler.on_write(torch.from_numpy(self._flat_ids(shard, written)))
            retired = np.arange(max(end - capacity, 0), max(end - capacity + margin, 0))
            if retired.size:
                sampler.retire(torch.from_numpy(self._flat_ids(shard, retired)))
            self._announced[shard] = end

    def _flat_ids(self, shard: int, steps: np.ndarray) -> np.ndarray:
        """Flat ids of every env of ``steps`` (absolute step numbers) in ``shard``."""
        envs = self.envs_per_shard
        base = (shard * self.steps_capacity + steps % self.steps_capacity) * envs
        return (base[:, None] + np.arange(envs)).reshape(-1)

    def _draw(self, count: int, generator: torch.Generator, committed: np.ndarray) -> tuple[np.ndarray, Tensor | None]:
        """``count`` flat ids ``[count]`` (int64) and their importance weights (None for uniform draws)."""
        drawable = self._drawable_steps(committed)
        num_valid = int(drawable.sum()) * self.envs_per_shard
        if num_valid == 0:
            raise RuntimeError(f"cannot sample from an empty {type(self).__name__}; no transition is committed yet")
        if self._sampler_tracks_writes:
            self._announce(committed)
        chosen = self.sampler.sample(count, num_valid, generator)
        draws = chosen.index.numpy()
        if self._sampler_tracks_writes or self._direct_draws:
            return draws, chosen.weight
        return self._kth_drawable_rows(draws, committed, drawable), chosen.weight

    def _kth_drawable_rows(self, draws: np.ndarray, committed: np.ndarray, drawable: np.ndarray) -> np.ndarray:
        """Flat ids of the ``draws``-th drawable rows (numbered shard by shard, then by position and env, skipping
        each full shard's ``margin`` oldest positions, which follow its write position ``committed % capacity``)."""
        envs, capacity, margin = self.envs_per_shard, self.steps_capacity, self.margin
        per_shard = drawable * envs
        ends = np.cumsum(per_shard)
        shard = np.searchsorted(ends, draws, side="right")
        within = draws - (ends - per_shard)[shard]
        k, env = within // envs, within % envs
        head = committed[shard] % capacity
        wrapped = np.maximum(head + margin - capacity, 0)  # held-back positions past the ring's end
        position = k + wrapped + margin * (k >= head - wrapped)
        return (shard * capacity + position) * envs + env

    def _steps_of(self, flat: np.ndarray, committed: np.ndarray) -> np.ndarray:
        """The absolute step stored at each flat id's position when the shards held ``committed`` steps."""
        positions_per_shard = self.steps_capacity * self.envs_per_shard
        shard, position = flat // positions_per_shard, (flat % positions_per_shard) // self.envs_per_shard
        newest = committed[shard] - 1
        return newest - (newest - position) % self.steps_capacity

    def _sample_rows(self, batch_size: int, generator: torch.Generator) -> tuple[Any, Tensor, Tensor | None]:
        """Draws and gathers ``batch_size`` rows: ``(records, flat ids [B], weights [B] or None)``. With concurrent
        writers, a row that a writer lapped while it was copied (its step is no longer stored) is drawn again."""
        committed = self.store.committed()
        flat, weight = self._draw(batch_size, generator, committed)
        rows = self.store.gather(flat)
        if self.margin:
            flat = flat.copy()
            steps = self._steps_of(flat, committed)
            torn = steps <= self._committed_of(flat) - self.steps_capacity
            while torn.any():  # rare: a writer lapped rows while they were copied
                self.torn_rows_redrawn += int(torn.sum())
                committed = self.store.committed()
                again, again_weight = self._draw(int(torn.sum()), generator, committed)
                flat[torn], steps[torn] = again, self._steps_of(again, committed)
                if weight is not None and again_weight is not None:
                    weight[torn] = again_weight
                rows[torn] = self.store.gather(again)
                torn = steps <= self._committed_of(flat) - self.steps_capacity
        return rows, torch.from_numpy(flat), weight

    def _committed_of(self, flat: np.ndarray) -> np.ndarray:
        """The committed count now of each flat id's shard."""
        return self.store.committed()[flat // (self.steps_capacity * self.envs_per_shard)]

    # --------------------------------------------------------------------------------------- sampling
    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """Draws ``batch_size`` rows with their n-step targets' ingredients.

        Returns:
            Each stored field ``[B, ...]`` as stored, and for transitions ``reward [B]`` (the discounted
            n-step sum), ``next_obs [B, ...]`` (the state to bootstrap from) and ``discount [B]`` (``gamma**k``,
            zero when the episode terminated within the ``k`` steps used); ``index [B]`` (flat row ids, for
            priority updates) and ``weight [B]`` (importance weights; ones for uniform sampling).
        """
        if self._direct_draws and type(batch_size) is int and batch_size > 0 and type(self.sampler) is UniformSampler:
            num_valid = min(self.store.counters[COMMITTED], self.steps_capacity) * self.envs_per_shard
            if num_valid:
                # UniformSampler.sample's draw, inlined (its checks and SampleIndex cost ~0.5 us of a ~13 us
                # sample), into a numpy array shared with the index tensor: the same numbers as torch.randint
                # (which is empty().random_()), without the ~0.6 us of a later Tensor.numpy()
                flat = np.empty(batch_size, dtype=np.int64)
                index = torch.from_numpy(flat).random_(0, num_valid, generator=generator)
                return self._batch(self.store.gather(flat), index, None, batch_size)
        rows, index, weight = self._sample_rows(batch_size, generator)
        return self._batch(rows, index, weight, int(index.shape[0]))

    def gather(self, chosen: SampleIndex) -> Batch:
        """The batch of the rows named by ``chosen`` (flat ids), as :meth:`sample` returns it."""
        return self._batch(self.store.gather(chosen.index), chosen.index, chosen.weight, int(chosen.index.shape[0]))

    def _batch(self, rows: Any, index: Tensor, weight: Tensor | None, size: int) -> Batch:
        """Gathered ``rows`` (see :meth:`ReplayStorage.gather`) as a training batch (:meth:`sample`'s):
        ``size`` rows, their flat ids ``index`` and importance weights (None: ones)."""
        storage = self.store
        planned_for, targets, float_reward, on_host = self._targets
        if planned_for is not storage.records:
            planned_for, targets, float_reward, on_host = self._plan_targets()
        batch = storage.as_tensors(rows)
        if targets == "one-step lookup":  # gamma * (1 - terminated), looked up from the two values torch computes
            table = self._discount_table
            if table is None or table[0] != self.gamma:
                table = self._discount_lookup()
            batch["discount"] = torch.from_numpy(table[1].take(rows["terminated"]))
        elif targets == "one-step":
            batch["discount"] = self.gamma * (1.0 - batch["terminated"].float())
        elif targets == "n-step":
            batch["reward"], batch["discount"], bootstrap = self._n_step_return(index)
            batch.update(bootstrap)
        if self._tree_fields:
            batch = nest_fields(batch, self._tree_fields)
        if float_reward:
            batch["reward"] = batch["reward"].float()
        if weight is None:
            ones = self._ones.get(size)
            if ones is None:
                ones = self._ones[size] = np.ones(size, dtype=np.float32)
            weight = torch.from_numpy(ones.copy())  # a copy: ~2x cheaper than np.ones, which runs Python code
        if on_host:
            batch["index"], batch["weight"] = index, weight
        else:
            batch["index"], batch["weight"] = index.to(self.device), weight.to(self.device)
        return batch

    def _plan_targets(self) -> tuple[Tensor | None, str, bool, bool]:
        """What :meth:`_batch` computes for the storage's fields (planned again after it allocated them):
        ``(records planned for, targets, whether reward needs a cast to float32, whether on the host)``."""
        storage = self.store
        dtypes = {field.key: field.dtype for field in storage.fields}
        if "terminated" not in dtypes:
            targets = "as stored"
        elif self.n_step > 1:
            targets = "n-step"
        elif storage.host_records is not None and dtypes["terminated"] == torch.bool:
            targets = "one-step lookup"
        else:
            targets = "one-step"
        float_reward = "terminated" in dtypes and self.n_step == 1 and dtypes["reward"] != torch.float32
        self._tree_fields = tree_field_names(dtypes, ("obs", "next_obs"))
        self._bootstrap_keys = tuple(key for key in dtypes if key.startswith("next_"))
        self._targets = (storage.records, targets, float_reward, self.device.type == "cpu")
        return self._targets

    def _discount_lookup(self) -> tuple[float, np.ndarray]:
        """``gamma * (1 - terminated)`` for terminated = False, True, as torch computes it (float32)."""
        self._discount_table = (self.gamma, (self.gamma * (1.0 - torch.tensor([0.0, 1.0]))).numpy())
        return self._discount_table

    def _n_step_return(self, index: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """n-step return from each sampled row, stopping at episode ends and at its shard's newest row.

        A termination ends the sum and zeroes the bootstrap; a truncation ends the sum but still bootstraps
        from the true final observation; the newest committed row ends the sum too (the rest of the window is
        not written yet).

        Returns:
            ``(reward [B], discount [B], bootstrap)``: ``bootstrap`` holds the ``next_*`` fields of the last row used
            (``next_obs [B, ...]`` or its leaves, the bootstrap state, and ``next_action_mask`` when stored).
        """
        capacity, envs = self.steps_capacity, self.envs_per_shard
        flat = index.to(self.device)
        shard, position, env = flat // (capacity * envs), (flat // envs) % capacity, flat % envs
        committed = torch.from_numpy(self.store.committed()).to(self.device)[shard]
        rows_available = (committed - 1 - position) % capacity + 1  # rows from this one to the newest, inclusive
        offsets = torch.arange(self.n_step, device=self.device)
        positions = (position.unsqueeze(1) + offsets) % capacity  # [B, n]
        in_window = offsets < rows_available.unsqueeze(1)
        shard_col, env_col = shard.unsqueeze(1), env.unsqueeze(1)
        columns = self.store.columns
        ended = (columns["terminated"][shard_col, positions, env_col]
                 | columns["truncated"][shard_col, positions, env_col]) & in_window
        # step k counts if it is in the window and no episode ended strictly before it
        ended_before = torch.cumsum(ended.int(), dim=1) - ended.int()
        used = in_window & (ended_before == 0)  # [B, n]
        steps_used = used.sum(dim=1)  # >= 1
        discounts = self.gamma ** offsets.float()
        rewards = columns["reward"][shard_col, positions, env_col].float()
        # where(), not a product with the mask: rows outside the window may hold unwritten memory (NaN)
        reward = torch.where(used, rewards * discounts, 0.0).sum(dim=1)
        last = (position + steps_used - 1) % capacity
        terminated = columns["terminated"][shard, last, env].float()
        discount = self.gamma**steps_used.float() * (1.0 - terminated)
        return reward, discount, {key: columns[key][shard, last, env] for key in self._bootstrap_keys}

    def update_priorities(self, index: Tensor, priorities: Tensor) -> None:
        """Passes new priorities (e.g. ``|TD error|``) for rows ``index`` to the sampler (a uniform one keeps
        none)."""
        if self._sampler_tracks_writes:
            self._announce(self.store.committed())  # rows written since the last draw are the sampler's too
        self.sampler.update_priorities(index.cpu(), priorities.detach().float().cpu())

    # ----------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The committed counters, the filled rows of every field and the sampler's state."""
        if self._sampler_tracks_writes:
            self._announce(self.store.committed())
        return {**self.store.state_dict(), "sampler": self.sampler.state_dict(),
                "announced": torch.from_numpy(self._announced.copy())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restores :meth:`state_dict` (or the format of the replays before the shared storage, see
        :func:`upgrade_state`); the shards, their capacity and env columns must match."""
        state = upgrade_state(state, self.store, getattr(self.sampler, "alpha", 0.0))
        self.store.load_state_dict(state)
        if state["sampler"]:
            self.sampler.load_state_dict(state["sampler"])
            self._announced = torch.as_tensor(state["announced"]).numpy().astype(np.int64).copy()
        else:  # saved without priorities: a prioritized sampler learns every stored row anew at its first draw
            self._announced = np.zeros(self.num_shards, dtype=np.int64)


def upgrade_state(state: dict[str, Any], storage: ReplayStorage, alpha: float) -> dict[str, Any]:
    """A replay state in the current format (:meth:`Replay.state_dict`), from it or from an older one:

    - the in-process buffer's ``{"head", "steps_stored", "storage": {key: [filled, N, ...]}, "sampler"}``
      (committed is ``steps_stored``, or ``steps_capacity + head`` once full: the same ring position and
      fill);
    - the shared-memory replay's ``{"kind": "sharded", "committed", "records": [S, filled, E, record_bytes],
      "priorities": {"leaves", "max_priority"}}`` (records in the same packed layout as now; the priorities
      were computed with the run's ``alpha``, which the sampler's state now records).
    """
    if "head" in state:
        stored, head = int(state["steps_stored"]), int(state["head"])
        committed = stored if stored < storage.geometry.steps_capacity else stored + head
        return {"committed": torch.tensor([committed]),
                "storage": {key: rows.unsqueeze(0) for key, rows in state["storage"].items()},
                "sampler": state["sampler"], "announced": torch.tensor([committed])}
    if state.get("kind") == "sharded":
        records, committed = state["records"], torch.as_tensor(state["committed"])
        geometry = storage.geometry
        fields, record_bytes = geometry.layout()
        if records.ndim != 4 or records.shape[0] != geometry.num_shards or records.shape[2:] != (
                geometry.envs_per_shard, record_bytes):
            raise ValueError(f"the checkpoint's replay has shape {tuple(records.shape)}; this run's is "
                             f"{geometry.records_shape}: resume with the same num_workers, num_envs and buffer_size")
        upgraded = {"committed": committed, "storage": {field.key: field_view(records, field).clone()
                                                        for field in fields}}
        sampler: dict[str, Any] = {}
        if "priorities" in state:
            leaves = state["priorities"]["leaves"].double()
            stored = torch.arange(geometry.steps_capacity) < committed.clamp(max=geometry.steps_capacity)[:, None]
            row_state = torch.where(leaves.view(stored.shape[0], stored.shape[1], -1) > 0, LIVE,
                                    torch.where(stored[..., None], RETIRED, NEVER_WRITTEN)).reshape(-1)
            sampler = {"tree_values": leaves, "tree_min_values": torch.where(leaves > 0, leaves, math.inf),
                       "max_priority": torch.tensor(float(state["priorities"]["max_priority"]), dtype=torch.float64),
                       "row_state": row_state.to(torch.uint8), "alpha": torch.tensor(alpha, dtype=torch.float64)}
        return {**upgraded, "sampler": sampler, "announced": committed}
    return state


class ReplayBuffer(ShardWriter, Replay):
    """Experience replay with uniform or prioritized sampling and n-step returns, written in this process.

    A :class:`Replay` over a one-shard storage of ``num_envs`` env columns that is also that shard's
    :class:`ShardWriter` (so ``add`` is one Python call around the C kernel): :meth:`add` takes one vector step,
    :meth:`extend` ``K`` of them, and ``steps_written`` is the writer's count of vector steps written (an int). The
    records are allocated at the first write, from its keys, dtypes and shapes (or up front from ``fields``).

    Args:
        capacity: Total transitions kept (like SB3's ``buffer_size``); each env column
            holds ``capacity // num_envs`` steps.
        num_envs: Number of env columns ``N``; :meth:`add` takes one row per env.
        device: Where the storage lives; put it on the training device to sample
            without host-to-device copies.
        sampler: How rows are drawn; :class:`UniformSampler` by default.
        n_step: Length of the return in :meth:`sample`; 1 is the ordinary TD target.
        gamma: Discount used for n-step returns.
        fields: ``name -> FieldSpec(shape, dtype)`` to allocate now; None learns them from the first write.
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
        fields: Fields | None = None,
    ) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if capacity < num_envs:
            raise ValueError(f"the replay's capacity {capacity} (an algorithm's buffer_size) holds fewer rows than the "
                             f"{num_envs} envs write at each step; use a buffer_size of at least {num_envs}")
        geometry = StorageGeometry(tuple((fields or {}).items()), 1, capacity // num_envs, num_envs)
        storage = ReplayStorage(geometry, device=device)
        Replay.__init__(self, storage, sampler=sampler, n_step=n_step, gamma=gamma)
        self._bind_shard(storage, 0)

    def _allocate(self, step: dict[str, Any], method: str) -> None:
        missing = [key for key in TRANSITION_KEYS if key not in step and not tree_field_names(step, (key,))]
        if missing:
            raise KeyError(f"{method}() is missing {missing}; a transition needs {list(TRANSITION_KEYS)}")
        super()._allocate(step, method)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._bind_columns()  # the records may be new

    def __len__(self) -> int:
        """Number of transitions stored, over all env columns."""
        return min(self._counters[COMMITTED], self.steps_capacity) * self.num_envs

    @property
    def head(self) -> int:
        """Next time row to write."""
        return self._counters[COMMITTED] % self.steps_capacity

    @property
    def steps_stored(self) -> int:
        """Time rows written so far, at most ``steps_capacity``."""
        return min(self._counters[COMMITTED], self.steps_capacity)

    @property
    def storage(self) -> dict[str, Tensor]:
        """Each field's values ``[steps_capacity, num_envs, *shape]`` (views of the records; empty before the
        first write)."""
        return {key: column[0] for key, column in self.store.columns.items()}

    @property
    def records(self) -> Tensor | None:
        """All transitions, uint8 ``[steps_capacity, num_envs, record_bytes]``; None before the first write."""
        return None if self.store.records is None else self.store.records[0]

    @property
    def fields(self) -> list:
        """Where each field lies in a record (:class:`~rlcore.buffers.storage.RecordField`), in storage order."""
        return self.store.fields
