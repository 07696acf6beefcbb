"""Sequence replay: fixed-length windows of consecutive steps of one env, across episode boundaries.

Recurrent and Transformer value learners (R2D2-style DQN) train on windows ``[B, L]`` of a
:class:`~rlcore.buffers.replay.ReplayBuffer`'s storage. A window starting at time row ``t`` of env
column ``e`` holds rows ``t, t+1, ..., t+L-1`` of that column, in chronological order. It is valid when all
``L`` rows are stored and in order (it does not wrap past the ring's newest row). It may hold the end of one
episode and the start of the next: :func:`gather_windows` marks where episodes start inside it
(``episode_start``), where a recurrent learner resets its state, as the behaviour policy did. (Windows that had
to stay inside one episode never trained on episodes shorter than the window, nor on an episode's first
``burn_in`` steps, which always fell in a burn-in: R2D2 did not learn CartPole without velocities that way.)

:func:`draw_windows` draws ``B`` valid starts uniformly with a ``torch.Generator`` (by index, :func:`window_ids`,
without listing them: :func:`valid_window_starts` lists them all) and :func:`sample_windows` gathers their columns
(:func:`gather_windows`). A
burn-in prefix for recurrent states is just a longer window whose first steps the learner uses only to warm up
its state (see :class:`rlcore.algos.r2d2.R2D2`). :class:`EpisodeEndReplay` tells a recurrent actor where its
envs' episodes ended.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from rlcore.buffers.replay import ReplayBuffer


def window_count(steps_stored: int, num_envs: int, length: int) -> int:
    """How many windows of ``length`` rows are stored in order: ``(steps_stored - length + 1) * num_envs``, or 0."""
    return max(0, steps_stored - length + 1) * num_envs


def window_ids(head: int, steps_stored: int, capacity: int, num_envs: int, draws: Tensor) -> Tensor:
    """The flat ids ``t * N + env`` of windows by their index in oldest-first order (``draws [B]`` int64, each
    below :func:`window_count`): index ``k`` is the window at chronological position ``k // N`` of env ``k % N``.

    Args:
        head: The ring's next write row; the oldest row is ``head`` once full, else 0.
        steps_stored: Rows written so far, at most ``capacity``.
        capacity: Rows the ring holds per env.
        num_envs: Env columns ``N``.
        draws: ``[B]`` int64 window indices.

    Returns:
        ``[B]`` int64 flat ids (row index in ring order, times ``N``, plus the env).
    """
    oldest = head if steps_stored == capacity else 0
    rows = (draws // num_envs + oldest) % capacity
    return rows * num_envs + draws % num_envs


def valid_window_starts(head: int, steps_stored: int, capacity: int, num_envs: int, length: int) -> np.ndarray:
    """Flat ids of every window start whose ``length`` rows are stored and in order, oldest first: ``[M]``
    int64 (:func:`window_ids` of every index below :func:`window_count`)."""
    count = window_count(steps_stored, num_envs, length)
    return window_ids(head, steps_stored, capacity, num_envs, torch.arange(count, dtype=torch.int64)).numpy()


def draw_windows(replay: ReplayBuffer, count: int, length: int, generator: torch.Generator) -> Tensor:
    """``count`` window starts (flat ids ``[count]``, CPU int64) drawn uniformly among the stored windows of
    ``length`` rows, without listing them all; empty when none is stored yet."""
    available = window_count(replay.steps_stored, replay.num_envs, length) if replay.storage else 0
    if available == 0:
        return torch.empty(0, dtype=torch.int64)
    draws = torch.randint(available, (count,), generator=generator)
    return window_ids(replay.head, replay.steps_stored, replay.steps_capacity, replay.num_envs, draws)


def gather_windows(
    replay: ReplayBuffer,
    chosen: Tensor,
    length: int,
    keys: tuple[str, ...] | None = None,
    last_step_keys: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """The windows of ``length`` steps starting at the flat ids ``chosen [B]`` (CPU int64).

    Returns:
        Each stored column in ``keys`` (all of them by default, less ``last_step_keys``) as
        ``[B, L, *shape]``, each of ``last_step_keys`` at the windows' last step only, ``[B, *shape]``
        (e.g. ``next_obs``, whose other steps repeat the next step's ``obs``), ``episode_start [B, L]`` (bool:
        the step before ended an episode, so this one starts the next; false at the window's first step, whose
        state is a fresh one anyway) and ``start [B]``; all on the buffer's device.
    """
    num_envs, capacity = replay.num_envs, replay.steps_capacity
    rows, envs = chosen // num_envs, chosen % num_envs
    time_rows = (rows.view(-1, 1) + torch.arange(length).view(1, -1)) % capacity  # [B, L]
    time_rows, env_columns = time_rows.to(replay.device), envs.view(-1, 1).expand(-1, length).to(replay.device)
    wanted = keys if keys is not None else tuple(key for key in replay.storage if key not in last_step_keys)
    batch = {key: replay.storage[key][time_rows, env_columns] for key in wanted}
    for key in last_step_keys:
        batch[key] = replay.storage[key][time_rows[:, -1], env_columns[:, -1]]
    flags = [batch[key] if key in wanted else replay.storage[key][time_rows, env_columns]
             for key in ("terminated", "truncated")]  # gathered once when the caller asked for them too
    ended = flags[0] | flags[1]
    batch["episode_start"] = torch.cat([torch.zeros_like(ended[:, :1]), ended[:, :-1]], dim=1).to(torch.bool)
    batch["start"] = chosen.to(replay.device)
    return batch


def sample_windows(
    replay: ReplayBuffer,
    batch_size: int,
    length: int,
    generator: torch.Generator,
    keys: tuple[str, ...] | None = None,
    last_step_keys: tuple[str, ...] = (),
) -> dict[str, Tensor]:
    """``batch_size`` windows of ``length`` steps, drawn uniformly among the valid ones (:func:`draw_windows`).

    Returns:
        Each stored column (or those in ``keys``) as ``[B, L, *shape]`` on the buffer's device, those in
        ``last_step_keys`` as ``[B, *shape]``, ``episode_start [B, L]`` (see :func:`gather_windows`), plus ``start``
        ``[B]``, the windows' first flat ids.

    Raises:
        ValueError: When the buffer holds no valid window yet (fewer than ``length`` steps stored).
    """
    chosen = draw_windows(replay, batch_size, length, generator)
    if chosen.numel() == 0:
        raise ValueError(f"no window of length {length} fits in the replay buffer yet "
                         f"({replay.steps_stored} steps stored per env); collect more or shorten the window")
    return gather_windows(replay, chosen, length, keys, last_step_keys)


class EpisodeEndReplay(ReplayBuffer):
    """A :class:`ReplayBuffer` that tells a listener which envs' episodes ended after each write.

    The training loop only hands transitions to the replay buffer, so an algorithm whose behaviour policy
    keeps a per-env memory (recurrent DQN) learns here where to reset it: ``on_episode_end`` gets the
    ``[N]`` bool array ``terminated | truncated`` of the newest step written.

    Args:
        on_episode_end: Called after every :meth:`add` (and :meth:`extend`, with its last step).
        args, kwargs: As :class:`ReplayBuffer`.
    """

    def __init__(self, *args: Any, on_episode_end: Callable[[np.ndarray], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_episode_end = on_episode_end

    def add(self, step: dict[str, Any]) -> None:
        super().add(step)
        self.on_episode_end(_as_bool_array(step["terminated"]) | _as_bool_array(step["truncated"]))

    def extend(self, steps: dict[str, Any]) -> None:
        super().extend(steps)
        if len(steps["terminated"]):
            self.on_episode_end(_as_bool_array(steps["terminated"][-1]) | _as_bool_array(steps["truncated"][-1]))


def _as_bool_array(value: Any) -> np.ndarray:
    """A numpy or torch ``[N]`` flag column as a numpy bool array."""
    if isinstance(value, Tensor):
        return value.detach().cpu().numpy().astype(bool)
    return np.asarray(value, dtype=bool)
