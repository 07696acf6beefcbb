"""Unrolls: ``K`` consecutive steps of one env from a replay, with the targets a learned model is trained on.

MuZero-style learners (:class:`rlcore.algos.muzero.MuZero`) draw a start row ``t`` and unroll their model ``K`` steps
along the actions taken from there. From a :class:`~rlcore.buffers.replay.Replay` whose transitions also hold the
search's ``policy [A]``, :func:`sample_unrolls` gathers, for every unroll position ``k = 0 .. K``:

- the action ``a_{t+k}`` (``k < K``), the reward ``u_{t+k+1}`` that followed it, and the search policy ``pi_{t+k}``;
- the ingredients of the ``n``-step value target ``z_{t+k} = sum_{j < m} gamma^j u_{t+k+j+1} + gamma^m v(s')``:
  the discounted sum, the discount ``gamma^m`` (0 after a termination) and the observation ``s'`` to bootstrap
  from (the true next observation of the last row used, as in :meth:`Replay._n_step_return`);
- masks saying which targets exist.

One rule decides what is known along a window of rows ``t, t+1, ...`` of one env column: a row is **alive** when it
is written (at or before the shard's newest row) and no episode ended at an earlier row of the window. An ``n``-step
sum runs over alive rows only (so it stops at an episode end and at the newest row, bootstrapping from there). Past
a *termination* the episode is in its absorbing state: value and reward targets are 0 and count (the model learns
that nothing follows), the policy target is left out. Past a *truncation* or the newest row nothing is known, and
every target is left out. Actions of rows that are not alive are still fed to the model (those of the next
episode, or 0 for unwritten rows): their targets are absorbing or masked, so they only need to be valid actions.

Draws go through the replay's sampler (uniform, or prioritized with importance weights), over one shard or one per
worker; with concurrent writers a start row that a writer overwrote during the copy is drawn again (the window's
later rows are newer than its start, so an intact start means an intact window).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.replay import Replay


def sample_unrolls(replay: Replay, batch_size: int, unroll_steps: int, td_steps: int, gamma: float,
                   generator: torch.Generator, *, future_obs: bool = False) -> dict[str, Tensor]:
    """``batch_size`` unrolls of ``K = unroll_steps`` steps with ``n = td_steps``-step value targets.

    The replay's fields must include the transitions' (``obs``, ``action``, ``reward``, ``next_obs``,
    ``terminated``, ``truncated``) and ``policy``.

    Returns (``B = batch_size``):
        ``obs [B, *obs_shape]`` at the start rows; ``action [B, K]`` (as stored); ``reward [B, K]`` and
        ``reward_mask [B, K]``; ``policy [B, K + 1, A]`` and ``policy_mask [B, K + 1]``; ``value_reward [B, K + 1]``
        (the discounted sums), ``value_discount [B, K + 1]`` (``gamma^m``, 0 where nothing is bootstrapped),
        ``bootstrap_obs [B, K + 1, *obs_shape]`` and ``value_mask [B, K + 1]``; ``index [B]`` (flat row ids, for
        priority updates) and ``weight [B]`` (importance weights; ones for uniform draws). Masks are float32.
        With ``future_obs``, also ``future_obs [B, K, *obs_shape]``, the observations the unroll's steps reach
        (``next_obs`` of rows ``t .. t+K-1``), and ``future_mask [B, K]``, where that step happened in the start
        row's episode (EfficientZero's consistency targets).
    """
    if unroll_steps < 0 or td_steps < 1:
        raise ValueError(f"need unroll_steps >= 0 and td_steps >= 1, got {unroll_steps} and {td_steps}")
    committed = replay.store.committed()
    flat, weight = replay._draw(batch_size, generator, committed)
    batch = _unrolls(replay, np.asarray(flat, np.int64), committed, unroll_steps, td_steps, gamma, future_obs)
    if replay.margin:
        flat = flat.copy()
        torn = _torn(replay, flat, committed)
        while torn.any():  # rare: a writer lapped a start row while the window was copied
            replay.torn_rows_redrawn += int(torn.sum())
            committed = replay.store.committed()
            again, again_weight = replay._draw(int(torn.sum()), generator, committed)
            flat[torn] = again
            if weight is not None and again_weight is not None:
                weight[torn] = again_weight
            redrawn = _unrolls(replay, np.asarray(again, np.int64), committed, unroll_steps, td_steps, gamma,
                               future_obs)
            rows = torch.from_numpy(np.flatnonzero(torn))
            for key, value in redrawn.items():
                batch[key][rows] = value
            torn[torn] = _torn(replay, np.asarray(again, np.int64), committed)
    batch["index"] = torch.from_numpy(np.asarray(flat, np.int64))
    batch["weight"] = weight if weight is not None else torch.ones(batch_size)
    return batch


def _torn(replay: Replay, flat: np.ndarray, committed: np.ndarray) -> np.ndarray:
    """Whether each start row was overwritten since ``committed`` was read (its step is no longer stored)."""
    return replay._steps_of(flat, committed) <= replay._committed_of(flat) - replay.steps_capacity


def _unrolls(replay: Replay, flat: np.ndarray, committed: np.ndarray, unroll_steps: int, td_steps: int,
             gamma: float, future_obs: bool = False) -> dict[str, Tensor]:
    """:func:`sample_unrolls`' fields for the start rows ``flat [B]``, with the shards holding ``committed`` steps."""
    capacity, envs = replay.steps_capacity, replay.envs_per_shard
    shard, position, env = flat // (capacity * envs), (flat // envs) % capacity, flat % envs
    rows_available = (committed[shard] - 1 - position) % capacity + 1  # this row to the newest, inclusive
    length = unroll_steps + td_steps  # rows t .. t+K+n-1
    offsets = np.arange(length)
    shard_t, env_t = torch.from_numpy(shard)[:, None], torch.from_numpy(env)[:, None]
    rows = torch.from_numpy((position[:, None] + offsets) % capacity)  # [B, L]
    written = torch.from_numpy(offsets < rows_available[:, None])
    columns = replay.store.columns

    def window(key: str, steps: int = length) -> Tensor:
        return columns[key][shard_t, rows[:, :steps], env_t]

    terminated = window("terminated") & written
    ended = (terminated | window("truncated")) & written
    ended_before = torch.cumsum(ended.int(), dim=1) - ended.int()
    alive = written & (ended_before == 0)  # [B, L], a prefix of each row
    terminal_alive = (terminated & alive).int()
    after_terminal = (torch.cumsum(terminal_alive, dim=1) - terminal_alive) > 0

    # n-step sums from each unroll position k = 0..K over rows k..k+n-1
    positions = torch.arange(unroll_steps + 1)[:, None] + torch.arange(td_steps)[None, :]  # [K+1, n]
    used = alive[:, positions]  # [B, K+1, n]
    rewards = torch.where(alive, window("reward").float(), 0.0)  # unwritten rows may hold any bytes
    discounts = gamma ** torch.arange(td_steps, dtype=torch.float32)
    value_reward = (torch.where(used, rewards[:, positions], 0.0) * discounts).sum(dim=2)
    steps_used = used.sum(dim=2)  # [B, K+1]
    last = (torch.arange(unroll_steps + 1) + steps_used - 1).clamp(min=0)
    last_terminated = terminated.gather(1, last).float()
    value_discount = torch.where(steps_used > 0, gamma ** steps_used.float() * (1.0 - last_terminated), 0.0)
    bootstrap_obs = columns["next_obs"][shard_t, rows.gather(1, last), env_t]

    head = slice(0, unroll_steps + 1)
    known = (alive | after_terminal).float()
    action = window("action", unroll_steps)
    policy = window("policy", unroll_steps + 1)
    future = {}
    if future_obs:  # rows past the newest or another episode's: zeros (unwritten rows may hold any bytes, NaN too)
        reached = window("next_obs", unroll_steps)
        reached_alive = alive[:, :unroll_steps].reshape(*alive.shape[:1], unroll_steps, *[1] * (reached.dim() - 2))
        future = {"future_obs": torch.where(reached_alive, reached, torch.zeros((), dtype=reached.dtype)),
                  "future_mask": alive[:, :unroll_steps].float()}
    return {
        **future,
        "obs": columns["obs"][torch.from_numpy(shard), rows[:, 0], torch.from_numpy(env)],
        "action": torch.where(written[:, :unroll_steps], action, torch.zeros((), dtype=action.dtype)),
        "reward": rewards[:, :unroll_steps],
        "reward_mask": known[:, :unroll_steps],
        "policy": torch.where(alive[:, head, None], policy.float(), 0.0),
        "policy_mask": alive[:, head].float(),
        "value_reward": value_reward,
        "value_discount": value_discount,
        "bootstrap_obs": bootstrap_obs,
        "value_mask": known[:, head],
    }
