"""The replay buffer: preallocated per-env columns, a pluggable sampler, n-step returns at sample time.

Storage is a ring over time with one column per env, ``[capacity, num_envs, *shape]``.
Because each env's transitions are contiguous in its column, an n-step return is index
arithmetic: row ``t + k`` of the same column is the ``k``-th next step of that env.

Rows are addressed by a flat id ``t * num_envs + env``; samplers draw flat ids in
``[0, size * num_envs)`` and never see the data.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.samplers import PrioritizedSampler, SampleIndex, Sampler, UniformSampler

logger = logging.getLogger(__name__)

Batch = dict[str, Tensor]

TRANSITION_KEYS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


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
        self._host_views: dict[str, np.ndarray] = {}
        """numpy views of CPU storage, for cheap writes."""
        self.head = 0
        """Next time index to write."""
        self.steps_stored = 0
        """Time rows written so far, at most ``steps_capacity``."""
        self._env_index = torch.arange(num_envs)
        self._sampler_tracks_writes = type(self.sampler).on_write is not Sampler.on_write
        self._columns: list[tuple[str, Tensor, np.ndarray | None]] = []
        """``(key, storage column, its numpy view or None)``, the write plan of :meth:`add`."""
        self._flat_columns: list[tuple[str, Tensor, np.ndarray | None]] = []
        """``(key, column viewed as [steps_capacity * num_envs, *shape], its numpy view or None)``:
        row ``i`` of a flat column is the transition with flat id ``i``; the read plan of :meth:`gather`."""
        self._discount_table: np.ndarray | None = None
        self._discount_table_gamma = gamma
        """The ``gamma`` that :attr:`_discount_table` was computed for (see :meth:`_discount_lookup`)."""

    # ------------------------------------------------------------------ writing
    def __len__(self) -> int:
        """Number of transitions stored, over all env columns."""
        return self.steps_stored * self.num_envs

    def _allocate(self, step: dict[str, Any]) -> None:
        for key, value in step.items():
            value = torch.as_tensor(value)
            if value.shape[:1] != (self.num_envs,):
                raise ValueError(
                    f"add() got {key!r} of shape {tuple(value.shape)}; expected a leading dim of "
                    f"num_envs={self.num_envs}"
                )
            dtype = torch.float32 if value.dtype == torch.float64 else value.dtype
            self.storage[key] = torch.empty(
                (self.steps_capacity, *value.shape), dtype=dtype, device=self.device
            )
            if self.device.type == "cpu" and dtype != torch.bfloat16:
                self._host_views[key] = self.storage[key].numpy()
        self._index_columns()

    def _index_columns(self) -> None:
        """Builds the write plan and the flat views from :attr:`storage` and :attr:`_host_views`."""
        self._columns = [(key, column, self._host_views.get(key)) for key, column in self.storage.items()]
        self._flat_columns = []
        for key, column in self.storage.items():
            flat_column = column.view(-1, *column.shape[2:])
            self._flat_columns.append((key, flat_column, flat_column.numpy() if key in self._host_views else None))

    def _discount_lookup(self) -> np.ndarray:
        """``gamma * (1 - terminated)`` for terminated = False, True, as torch computes it (float32)."""
        if self._discount_table is None or self._discount_table_gamma != self.gamma:
            self._discount_table = (self.gamma * (1.0 - torch.tensor([0.0, 1.0]))).numpy()
            self._discount_table_gamma = self.gamma
        return self._discount_table

    def add(self, step: dict[str, Any]) -> None:
        """Appends one vector step: every value has a leading dim ``N`` (numpy or torch).

        Expected keys are ``obs``, ``action``, ``reward``, ``next_obs``, ``terminated`` and
        ``truncated``; any extra key is stored and sampled alongside.
        """
        if not self.storage:
            missing = [key for key in TRANSITION_KEYS if key not in step]
            if missing:
                raise KeyError(f"add() is missing {missing}; a transition needs {list(TRANSITION_KEYS)}")
            self._allocate(step)
        row = self.head
        ndarray = np.ndarray
        for key, column, host_view in self._columns:
            value = step[key]
            if host_view is not None and isinstance(value, ndarray):
                host_view[row] = value  # numpy assignment: ~3x cheaper than torch's copy_ per small row
            else:
                column[row].copy_(torch.as_tensor(value))
        if self._sampler_tracks_writes:
            self.sampler.on_write(row * self.num_envs + self._env_index)
        capacity = self.steps_capacity
        self.head = (row + 1) % capacity
        if self.steps_stored != capacity:
            self.steps_stored = min(self.steps_stored + 1, capacity)

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
        if self.steps_stored == 0:
            raise RuntimeError("cannot sample from an empty ReplayBuffer; add transitions first")
        chosen = self.sampler.sample(batch_size, len(self), generator)
        return self.gather(chosen)

    def gather(self, chosen: SampleIndex) -> Batch:
        """Reads the rows named by ``chosen`` and computes their n-step return."""
        flat = chosen.index.to(self.device)
        # Storage is contiguous [steps_capacity, num_envs, ...], so flat id t * num_envs + env is row
        # `flat id` of a column viewed as [steps_capacity * num_envs, ...]: one gather per column and
        # no (time, env) split. On the CPU, numpy's take costs a fraction of torch's indexing.
        flat_host = flat.numpy() if self.device.type == "cpu" else None
        from_numpy = torch.from_numpy
        batch: Batch = {}
        terminated_host = None
        for key, flat_column, host_view in self._flat_columns:
            if host_view is None:
                batch[key] = flat_column[flat]
            else:
                rows = host_view.take(flat_host, axis=0)
                batch[key] = from_numpy(rows)
                if key == "terminated":
                    terminated_host = rows
        if self.n_step == 1:
            reward = batch["reward"].float()
            if terminated_host is not None and terminated_host.dtype == np.bool_:
                # gamma * (1 - terminated), looked up from the two values torch computes for it
                discount = torch.from_numpy(self._discount_lookup().take(terminated_host.view(np.uint8)))
            else:
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
        self._host_views = {}
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
