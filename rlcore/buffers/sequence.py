"""Sequence replay: fixed-length windows of consecutive steps of one env that never cross an episode end.

Recurrent and Transformer value learners (R2D2-style DQN) train on windows ``[B, L]`` of a
:class:`~rlcore.buffers.replay.ReplayBuffer`'s storage. A window starting at time row ``t`` of env
column ``e`` holds rows ``t, t+1, ..., t+L-1`` of that column, in chronological order. It is valid when

- all ``L`` rows are stored and in order (it does not wrap past the ring's newest row), and
- no episode ends inside it, except possibly at its last step (a window may end with a terminal step).

:func:`valid_window_starts` finds every valid start with cumulative sums (vectorized over the whole
storage); :func:`sample_windows` draws ``B`` of them uniformly with a ``torch.Generator`` and gathers
their columns. A burn-in prefix for recurrent states is just a longer window whose first steps the
learner uses only to warm up its state.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.replay import ReplayBuffer


def valid_window_starts(episode_end: np.ndarray, head: int, steps_stored: int, length: int) -> np.ndarray:
    """Flat ids ``t * N + env`` of every window start that satisfies the module's two rules.

    Args:
        episode_end: ``[capacity_steps, N]`` bool, terminated or truncated, as stored (ring order).
        head: The ring's next write row; the oldest row is ``head`` once full, else 0.
        steps_stored: Rows written so far, at most the capacity.
        length: Window length ``L >= 1``.

    Returns:
        ``[M]`` int64 flat ids (row index in ring order, times ``N``, plus the env).
    """
    capacity, num_envs = episode_end.shape
    if steps_stored < length:
        return np.empty(0, dtype=np.int64)
    oldest = head if steps_stored == capacity else 0
    chronological = np.roll(episode_end[:steps_stored] if steps_stored < capacity else episode_end,
                            -oldest, axis=0).astype(np.int64)
    # ends strictly inside a window [p, p + L - 2]: cumulative sums with a leading zero row
    cumulative = np.concatenate([np.zeros((1, num_envs), np.int64), np.cumsum(chronological, axis=0)])
    starts = np.arange(steps_stored - length + 1)
    inner_ends = cumulative[starts + length - 1] - cumulative[starts]
    position, env = np.nonzero(inner_ends == 0)
    ring_row = (position + oldest) % capacity
    return ring_row * num_envs + env


def sample_windows(
    replay: ReplayBuffer, batch_size: int, length: int, generator: torch.Generator, keys: tuple[str, ...] | None = None
) -> dict[str, Tensor]:
    """``batch_size`` windows of ``length`` steps, drawn uniformly among the valid ones.

    Returns:
        Each stored column (or those in ``keys``) as ``[B, L, *shape]`` on the buffer's device, plus
        ``start`` ``[B]``, the windows' first flat ids.

    Raises:
        ValueError: When the buffer holds no valid window yet (too few steps, or every stretch is cut).
    """
    episode_end = (replay.storage["terminated"] | replay.storage["truncated"]).cpu().numpy()
    starts = valid_window_starts(episode_end, replay.head, replay.steps_stored, length)
    if starts.size == 0:
        raise ValueError(f"no window of length {length} fits in the replay buffer yet "
                         f"({replay.steps_stored} steps stored per env); collect more or shorten the window")
    chosen = torch.from_numpy(starts)[torch.randint(starts.size, (batch_size,), generator=generator)]
    num_envs, capacity = replay.num_envs, replay.steps_capacity
    rows, envs = chosen // num_envs, chosen % num_envs
    time_rows = (rows.view(-1, 1) + torch.arange(length).view(1, -1)) % capacity  # [B, L]
    time_rows, env_columns = time_rows.to(replay.device), envs.view(-1, 1).expand(-1, length).to(replay.device)
    wanted = keys if keys is not None else tuple(replay.storage)
    batch = {key: replay.storage[key][time_rows, env_columns] for key in wanted}
    batch["start"] = chosen.to(replay.device)
    return batch
