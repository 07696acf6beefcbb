"""A replay buffer split into one shard per worker, in shared memory: writers never contend, the learner
samples across all shards while they write.

Each shard is a ring over time of ``[steps_capacity, envs_per_shard]`` transition records (the same
packed records as :class:`rlcore.buffers.replay.ReplayBuffer`, so an n-step return is index arithmetic
along a shard's time axis). Per shard, a header holds ``committed``: the number of vector steps fully
written, counted from the start (it never wraps).

No torn rows: a writer fills the row at ``committed % steps_capacity`` and only then increments
``committed``, so a row is visible only once complete. The learner samples among the committed rows
but leaves out the oldest ``margin`` rows of a full shard (the next ones a writer overwrites), and
after copying a batch it re-reads ``committed``: a sampled step ``s`` of a shard that now holds
``committed = c`` is intact iff ``s > c - steps_capacity`` (the writer, working on step ``c``, has only
overwritten steps ``<= c - steps_capacity``). Rows that fail the check are redrawn.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.replay import record_layout
from rlcore.buffers.sumtree import SumTree
from rlcore.distributed.shared import ArraySpec, BlockLayout, SharedBlock

logger = logging.getLogger(__name__)

Batch = dict[str, Tensor]

HEADER_WIDTH = 8
"""int64 slots per shard header (one cache line, so two writers never share one)."""
COMMITTED = 0
MAX_MARGIN = 256


@dataclass(frozen=True)
class ReplayGeometry:
    """Everything that fixes the shared block's layout (plain data: it crosses a ``spawn``)."""

    fields: tuple[tuple[str, str, tuple[int, ...]], ...]
    """``(key, numpy dtype, per-row shape)``: the ``TRANSITION_KEYS`` of :mod:`rlcore.buffers.replay` (their
    sample gets n-step returns and discounts), or any other rows (AlphaZero's positions), sampled as stored."""
    num_shards: int
    steps_capacity: int
    """Vector steps per shard."""
    envs_per_shard: int
    n_step: int = 1
    gamma: float = 0.99

    @property
    def margin(self) -> int:
        """Oldest rows of a full shard that are never sampled (the writer's next targets)."""
        return max(1, min(MAX_MARGIN, self.steps_capacity // 4))

    def block_layout(self) -> BlockLayout:
        _, record_bytes = self.records()
        return BlockLayout((
            ArraySpec("header", "int64", (self.num_shards, HEADER_WIDTH)),
            ArraySpec("records", "uint8", (self.num_shards, self.steps_capacity, self.envs_per_shard, record_bytes)),
        ))

    def records(self) -> tuple[np.dtype, int]:
        """The structured dtype of one record and its size in bytes."""
        specs = [(key, torch.from_numpy(np.zeros((), dtype)).dtype, shape) for key, dtype, shape in self.fields]
        placed, record_bytes = record_layout(specs)
        record_dtype = np.dtype({
            "names": [field.key for field in placed],
            "formats": [(np.dtype(dtype), shape) if shape else np.dtype(dtype) for _, dtype, shape in self.fields],
            "offsets": [field.offset for field in placed],
            "itemsize": record_bytes,
        })
        return record_dtype, record_bytes


def transition_fields(observation_space: gym.Space, action_space: gym.Space) -> tuple[tuple[str, str, tuple], ...]:
    """The record fields of the transitions a :class:`rlcore.collector.Collector` hands out for these spaces."""
    obs = np.asarray(observation_space.sample())
    obs_dtype = np.float32 if obs.dtype == np.float64 else obs.dtype
    action = np.asarray(action_space.sample())
    action_dtype = np.int64 if action.dtype.kind in "iu" else np.float32
    return (
        ("obs", np.dtype(obs_dtype).name, obs.shape),
        ("action", np.dtype(action_dtype).name, action.shape),
        ("reward", "float32", ()),
        ("next_obs", np.dtype(obs_dtype).name, obs.shape),
        ("terminated", "bool", ()),
        ("truncated", "bool", ()),
    )


def position_geometry(observation_space: gym.Space, action_space: gym.Space, num_shards: int,
                      capacity: int) -> ReplayGeometry:
    """Self-play positions (AlphaZero): ``obs`` board planes, the search's visit ``policy [A]`` and the game's
    ``value`` for the player to move, ``capacity`` rows over ``num_shards`` shards."""
    steps = capacity // num_shards
    if steps < 2:
        raise ValueError(f"buffer_size={capacity} is too small for {num_shards} workers")
    fields = (("obs", "float32", tuple(observation_space.shape)), ("policy", "float32", (int(action_space.n),)),
              ("value", "float32", ()))
    return ReplayGeometry(fields, num_shards, steps, 1)


class ShardPriorities:
    """Proportional priorities over every record of every shard, kept by the learner alone.

    Workers never touch the tree: before each draw the learner gives the rows committed since its last look
    the largest priority seen so far (``max_priority ** alpha``), and a zero to the oldest ``margin`` rows of
    each full shard (the writer's next targets), so they are never drawn. Importance weights
    ``(N * P(i)) ** -beta`` are divided by the batch's largest (a zero leaf rules out the whole-tree minimum
    of the single-process sampler).

    Args:
        leaves: Records in all, ``num_shards * steps_capacity * envs_per_shard``.
        alpha, beta, eps: As :class:`rlcore.buffers.samplers.PrioritizedSampler`; ``beta`` is annealed by DQN.
    """

    def __init__(self, leaves: int, alpha: float, beta: float, eps: float = 1e-6) -> None:
        self.tree = SumTree(leaves)
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self.max_priority = 1.0

    def state_dict(self) -> dict[str, Any]:
        leaves = self.tree[np.arange(self.tree.capacity)]
        return {"leaves": torch.from_numpy(leaves), "max_priority": self.max_priority}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tree.update(np.arange(self.tree.capacity), state["leaves"].numpy())
        self.max_priority = float(state["max_priority"])


class ShardWriter:
    """Appends one shard's vector steps (a worker's side of :class:`ShardedReplay`)."""

    def __init__(self, replay: ShardedReplay, shard: int) -> None:
        self.shard = shard
        self.steps_capacity = replay.geometry.steps_capacity
        self._header = replay.header[shard]
        self._keys = tuple(key for key, _, _ in replay.geometry.fields)
        self._views = tuple(replay.columns[key][shard] for key in self._keys)

    @property
    def committed(self) -> int:
        return int(self._header[COMMITTED])

    def add(self, step: dict[str, Any]) -> None:
        """Writes one vector step (the dict :meth:`Collector.step` returns, leading dim ``envs_per_shard``),
        then makes it visible."""
        committed = int(self._header[COMMITTED])
        row = committed % self.steps_capacity
        for key, view in zip(self._keys, self._views):
            view[row] = step[key]
        self._header[COMMITTED] = committed + 1

    def end_interrupted_episodes(self) -> None:
        """Marks the newest row truncated: a restarted worker's envs start new episodes, so n-step sums must
        not run from the dead worker's last row into them (its ``next_obs`` is still the true next state)."""
        committed = self.committed
        if committed > 0 and "truncated" in self._keys:
            self._views[self._keys.index("truncated")][(committed - 1) % self.steps_capacity] = True


class ShardedReplay:
    """Replay over ``num_shards`` shards of ``envs_per_shard`` env columns each, sampled uniformly over all
    committed transitions, with n-step returns; the interface :class:`rlcore.algos.dqn.DQN` trains from.

    Args:
        geometry: Fields and sizes.
        name: Attach to this existing shared block (a worker); None creates the block (the learner).
        shared: False keeps the storage in this process's memory (a learner that writes it itself).
    """

    def __init__(self, geometry: ReplayGeometry, name: str | None = None, *, shared: bool = True,
                 prioritized: bool = False, alpha: float = 0.6, beta: float = 0.4) -> None:
        self.geometry = geometry
        self.n_step = geometry.n_step
        self.gamma = geometry.gamma
        self.num_envs = geometry.num_shards * geometry.envs_per_shard
        self.steps_capacity = geometry.steps_capacity
        self.block = SharedBlock(geometry.block_layout(), name, shared=shared)
        self.header = self.block["header"]
        record_dtype, record_bytes = geometry.records()
        self.records = self.block["records"]
        records = self.records.view(record_dtype)[..., 0]  # [S, T, E] structured
        self.columns = {key: records[key] for key, _, _ in geometry.fields}
        """Each key's values ``[num_shards, steps_capacity, envs_per_shard, *shape]`` (views of the block)."""
        self._flat_records = records.reshape(-1)
        leaves = geometry.num_shards * geometry.steps_capacity * geometry.envs_per_shard
        self.sampler = ShardPriorities(leaves, alpha, beta) if prioritized else None
        """The priorities (prioritized replay, learner side), else None."""
        self._prioritized_up_to = np.zeros(geometry.num_shards, dtype=np.int64)
        """Per shard, the committed count that the priorities have caught up with."""
        self.torn_rows_redrawn = 0
        """Sampled rows that a writer overwrote while they were copied, and that were drawn again."""

    @classmethod
    def from_spaces(
        cls, observation_space: gym.Space, action_space: gym.Space, *, num_shards: int, envs_per_shard: int,
        capacity: int, n_step: int = 1, gamma: float = 0.99, shared: bool = True, prioritized: bool = False,
        alpha: float = 0.6, beta: float = 0.4,
    ) -> ShardedReplay:
        """A new buffer for these spaces; ``capacity`` transitions in all (like ``buffer_size``)."""
        steps_capacity = capacity // (num_shards * envs_per_shard)
        if steps_capacity < 2:
            raise ValueError(f"buffer_size={capacity} gives {steps_capacity} steps per env column over "
                             f"{num_shards} workers x {envs_per_shard} envs; use a buffer_size of at least "
                             f"{2 * num_shards * envs_per_shard}")
        geometry = ReplayGeometry(transition_fields(observation_space, action_space), num_shards, steps_capacity,
                                  envs_per_shard, n_step, gamma)
        return cls(geometry, shared=shared, prioritized=prioritized, alpha=alpha, beta=beta)

    @property
    def name(self) -> str | None:
        """The shared block's name, for workers to attach (None when not shared)."""
        return self.block.name

    def writer(self, shard: int) -> ShardWriter:
        if not 0 <= shard < self.geometry.num_shards:
            raise IndexError(f"shard must be in [0, {self.geometry.num_shards}), got {shard}")
        return ShardWriter(self, shard)

    def committed(self) -> np.ndarray:
        """Vector steps committed per shard, ``[num_shards]`` (a snapshot)."""
        if self.header is None:
            return self._committed_at_close.copy()
        return self.header[:, COMMITTED].copy()

    def __len__(self) -> int:
        """Transitions stored over all shards."""
        return int(np.minimum(self.committed(), self.steps_capacity).sum()) * self.geometry.envs_per_shard

    # ---------------------------------------------------------------------------------- sampling
    def _window(self, committed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """First sampleable step and number of sampleable steps per shard."""
        full = committed > self.steps_capacity - self.geometry.margin
        first = np.where(full, committed - self.steps_capacity + self.geometry.margin, 0)
        return first, committed - first

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        """``batch_size`` transitions drawn over every committed one (uniformly, or by priority).

        Returns:
            ``obs [B, ...]``, ``action [B, ...]``, ``reward [B]`` (the discounted n-step sum),
            ``next_obs [B, ...]`` (the state to bootstrap from), ``terminated``/``truncated [B]``,
            ``discount [B]`` (``gamma**k``, 0 after a termination), ``index [B]`` (flat record ids) and
            ``weight [B]`` (importance weights; ones for uniform sampling).
        """
        if self.header is None:
            raise RuntimeError("this ShardedReplay was closed (its run ended); its rows are gone")
        committed = self.committed()
        if int(self._window(committed)[1].sum()) == 0:
            raise RuntimeError("cannot sample from an empty ShardedReplay; no worker has committed a step yet")
        shard, step, env, leaf = self._draw(batch_size, generator, committed)
        rows = self._copy_rows(shard, step, env)
        torn = self._overwritten(shard, step)
        while torn.any():  # rare: a writer lapped rows while they were copied
            self.torn_rows_redrawn += int(torn.sum())
            committed = self.committed()
            shard[torn], step[torn], env[torn], leaf[torn] = self._draw(int(torn.sum()), generator, committed)
            rows[torn] = self._copy_rows(shard[torn], step[torn], env[torn])
            torn = self._overwritten(shard, step)
        batch = self._batch(rows, shard, step, env, committed)
        if self.sampler is not None:
            batch["weight"] = self._importance_weights(leaf)
        return batch

    def _draw(self, count: int, generator: torch.Generator, committed: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``count`` rows ``(shard, absolute step, env, tree leaf)``: by priority (stratified, see
        :class:`ShardPriorities`), or uniformly over every shard's sampleable window (leaves then unused)."""
        if self.sampler is not None:
            self._sync_priorities(committed)
            return self._draw_leaves(count, generator, committed)
        first, steps = self._window(committed)
        per_shard = steps * self.geometry.envs_per_shard
        draws = torch.randint(int(per_shard.sum()), (count,), generator=generator, dtype=torch.int64).numpy()
        shard, step, env = self._locate(draws, first, per_shard)
        return shard, step, env, np.zeros(count, dtype=np.int64)

    def _importance_weights(self, leaf: np.ndarray) -> Tensor:
        """``(N * P(i)) ** -beta`` over the batch's largest: ``N`` and the tree's total cancel, leaving
        ``p_i ** -beta / max_j p_j ** -beta``."""
        weight = self.sampler.tree[leaf] ** (-self.sampler.beta)  # type: ignore[union-attr]
        return torch.from_numpy((weight / weight.max()).astype(np.float32))

    def _draw_leaves(self, count: int, generator: torch.Generator, committed: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        tree = self.sampler.tree  # type: ignore[union-attr]
        uniform = torch.rand(count, generator=generator, dtype=torch.float64).numpy()
        leaf = tree.find_prefix_sum((np.arange(count) + uniform) * (tree.total() / count))
        envs, capacity = self.geometry.envs_per_shard, self.steps_capacity
        env, position = leaf % envs, leaf // envs
        shard, position = position // capacity, position % capacity
        newest = committed[shard] - 1
        step = newest - (newest - position) % capacity  # the newest step stored at that position
        return shard, step, env, leaf

    def _sync_priorities(self, committed: np.ndarray) -> None:
        """New rows get the largest priority; the oldest ``margin`` rows of full shards get zero."""
        sampler, capacity, margin = self.sampler, self.steps_capacity, self.geometry.margin
        for shard in np.flatnonzero(committed > self._prioritized_up_to):
            end = int(committed[shard])
            new_steps = np.arange(max(int(self._prioritized_up_to[shard]), end - capacity), end)
            sampler.tree.update(self._rows_of(shard, new_steps),  # type: ignore[union-attr]
                                sampler.max_priority ** sampler.alpha)  # type: ignore[union-attr]
            retired = np.arange(max(end - capacity, 0), max(end - capacity + margin, 0))
            if retired.size:
                sampler.tree.update(self._rows_of(shard, retired), 0.0)  # type: ignore[union-attr]
            self._prioritized_up_to[shard] = end

    def _rows_of(self, shard: int, steps: np.ndarray) -> np.ndarray:
        """Flat record ids of every env of ``steps`` in ``shard``."""
        envs = self.geometry.envs_per_shard
        base = (shard * self.steps_capacity + steps % self.steps_capacity) * envs
        return (base[:, None] + np.arange(envs)).reshape(-1)

    def _locate(self, draws: np.ndarray, first: np.ndarray, per_shard: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Transition numbers in ``[0, sum(per_shard))`` -> ``(shard, absolute step, env)``."""
        ends = np.cumsum(per_shard)
        shard = np.searchsorted(ends, draws, side="right")
        within = draws - (ends - per_shard)[shard]
        envs = self.geometry.envs_per_shard
        return shard, first[shard] + within // envs, within % envs

    def _flat(self, shard: np.ndarray, step: np.ndarray, env: np.ndarray) -> np.ndarray:
        return (shard * self.steps_capacity + step % self.steps_capacity) * self.geometry.envs_per_shard + env

    def _copy_rows(self, shard: np.ndarray, step: np.ndarray, env: np.ndarray) -> np.ndarray:
        return self._flat_records.take(self._flat(shard, step, env))

    def _overwritten(self, shard: np.ndarray, step: np.ndarray) -> np.ndarray:
        return step <= self.committed()[shard] - self.steps_capacity

    def _batch(self, rows: np.ndarray, shard: np.ndarray, step: np.ndarray, env: np.ndarray,
               committed: np.ndarray) -> Batch:
        batch: Batch = {key: torch.from_numpy(np.ascontiguousarray(rows[key])) for key, _, _ in self.geometry.fields}
        batch["index"] = torch.from_numpy(self._flat(shard, step, env))
        batch["weight"] = torch.ones(len(rows), dtype=torch.float32)
        if "terminated" not in batch:  # not transitions: rows as stored
            return batch
        batch["reward"] = batch["reward"].float()
        if self.n_step == 1:
            discount = self.gamma * (1.0 - rows["terminated"].astype(np.float32))
        else:
            reward, discount, last = self._n_step_return(shard, step, env, committed)
            batch["reward"] = torch.from_numpy(reward)
            batch["next_obs"] = torch.from_numpy(self.columns["next_obs"][shard, last % self.steps_capacity, env])
        batch["discount"] = torch.from_numpy(np.asarray(discount, dtype=np.float32))
        return batch

    def _n_step_return(self, shard: np.ndarray, step: np.ndarray, env: np.ndarray, committed: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """n-step sums that stop at an episode end and at the shard's newest committed step (numpy twin of
        :meth:`ReplayBuffer._n_step_return`). Returns ``(reward [B], discount [B], last step [B])``."""
        offsets = np.arange(self.n_step)
        steps = step[:, None] + offsets  # [B, n]
        in_window = steps < committed[shard][:, None]
        positions = steps % self.steps_capacity
        shard_col, env_col = shard[:, None], env[:, None]
        ended = (self.columns["terminated"][shard_col, positions, env_col]
                 | self.columns["truncated"][shard_col, positions, env_col]) & in_window
        ended_before = np.cumsum(ended, axis=1) - ended
        used = in_window & (ended_before == 0)
        steps_used = used.sum(axis=1)
        rewards = self.columns["reward"][shard_col, positions, env_col].astype(np.float32)
        discounts = (self.gamma ** offsets).astype(np.float32)
        reward = np.where(used, rewards * discounts, 0.0).sum(axis=1).astype(np.float32)
        last = step + steps_used - 1
        terminated = self.columns["terminated"][shard, last % self.steps_capacity, env]
        discount = (self.gamma ** steps_used) * (1.0 - terminated)
        return reward, discount.astype(np.float32), last

    def update_priorities(self, index: Tensor, priorities: Tensor) -> None:
        """Stores ``(|priority| + eps) ** alpha`` for the sampled rows ``index`` still in the buffer (prioritized
        replay; uniform sampling keeps none). Rows retired since they were drawn stay at zero."""
        sampler = self.sampler
        if sampler is None:
            return
        leaf = index.detach().cpu().numpy().astype(np.int64)
        raw = np.abs(priorities.detach().cpu().double().numpy()) + sampler.eps
        if not np.isfinite(raw).all():
            raise ValueError("priorities must be finite; got NaN or inf (a diverging TD error?)")
        live = sampler.tree[leaf] > 0.0
        sampler.tree.update(leaf[live], raw[live] ** sampler.alpha)
        sampler.max_priority = max(sampler.max_priority, float(raw.max(initial=0.0)))

    # ------------------------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """The committed counters and the filled part of every shard's records."""
        committed = self.committed()
        filled = int(min(committed.max(initial=0), self.steps_capacity))
        state = {"kind": "sharded", "committed": torch.from_numpy(committed),
                 "records": torch.from_numpy(self.records[:, :filled].copy())}
        if self.sampler is not None:
            self._sync_priorities(committed)
            state["priorities"] = self.sampler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("kind") != "sharded":
            raise ValueError("this checkpoint's replay buffer was saved without workers (num_workers=0); resume "
                             "it with num_workers=0, or start a new run with workers")
        records = state["records"]
        expected = (self.geometry.num_shards, self.geometry.envs_per_shard, self.records.shape[-1])
        got = (records.shape[0], records.shape[2], records.shape[3]) if records.ndim == 4 else tuple(records.shape)
        if got != expected or records.shape[1] > self.steps_capacity:
            raise ValueError(f"the checkpoint's replay has shape {tuple(records.shape)}; this run's is "
                             f"{tuple(self.records.shape)}: resume with the same num_workers, num_envs and buffer_size")
        self.records[:, : records.shape[1]] = records.numpy()
        self.header[:, COMMITTED] = state["committed"].numpy()
        if self.sampler is not None:
            if "priorities" in state:
                self.sampler.load_state_dict(state["priorities"])
                self._prioritized_up_to = state["committed"].numpy().copy()
            else:
                self._prioritized_up_to[:] = 0

    def close(self) -> None:
        """Releases the shared block (the learner also unlinks it); :meth:`committed` and ``len`` still answer."""
        if self.header is None:
            return
        self._committed_at_close = self.committed()
        self.columns = {}
        self._flat_records = None  # type: ignore[assignment]
        self.records = self.header = None  # type: ignore[assignment]
        self.block.close()


def replay_bytes(geometry: ReplayGeometry) -> int:
    """The size of the shared block for ``geometry``."""
    return geometry.block_layout().offsets()[1]


def describe(geometry: ReplayGeometry) -> str:
    return (f"{geometry.num_shards} shards x {geometry.steps_capacity} steps x {geometry.envs_per_shard} envs "
            f"({replay_bytes(geometry) / 2**20:.1f} MiB)")
