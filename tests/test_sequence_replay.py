"""Sequence replay: windows of consecutive stored steps of one env, with the episode starts inside them marked."""

import numpy as np
import pytest
import torch

from rlcore.buffers.replay import ReplayBuffer
from rlcore.buffers.sequence import EpisodeEndReplay, sample_windows, valid_window_starts, window_count


def filled_buffer(seed: int, capacity_steps: int, num_envs: int, steps: int, end_rate: float) -> ReplayBuffer:
    """A buffer whose ``obs`` is the global step count, so windows can be checked for order."""
    rng = np.random.default_rng(seed)
    replay = ReplayBuffer(capacity_steps * num_envs, num_envs)
    for step in range(steps):
        ends = rng.random(num_envs) < end_rate
        terminated = ends & (rng.random(num_envs) < 0.5)
        replay.add({"obs": np.full((num_envs, 1), step, np.float32), "action": np.zeros(num_envs, np.int64),
                    "reward": np.zeros(num_envs, np.float32), "next_obs": np.zeros((num_envs, 1), np.float32),
                    "terminated": terminated, "truncated": ends & ~terminated})
    return replay


def brute_force_starts(replay: ReplayBuffer, length: int) -> set[int]:
    stored, capacity, head = replay.steps_stored, replay.steps_capacity, replay.head
    oldest = head if stored == capacity else 0
    return {((oldest + position) % capacity) * replay.num_envs + env
            for position in range(stored - length + 1) for env in range(replay.num_envs)}


@pytest.mark.parametrize("seed", range(12))
def test_windows_are_stored_steps_in_order_with_their_episode_starts_marked(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    capacity, num_envs = int(rng.integers(6, 40)), int(rng.integers(1, 4))
    steps, length = int(rng.integers(1, 3 * capacity)), int(rng.integers(1, 8))
    replay = filled_buffer(seed, capacity, num_envs, steps, end_rate=float(rng.uniform(0.0, 0.4)))
    starts = valid_window_starts(replay.head, replay.steps_stored, replay.steps_capacity, num_envs, length)
    assert set(starts.tolist()) == brute_force_starts(replay, length)
    if starts.size == 0:
        with pytest.raises(ValueError, match="no window of length"):
            sample_windows(replay, 8, length, torch.Generator().manual_seed(seed))
        return
    batch = sample_windows(replay, 64, length, torch.Generator().manual_seed(seed))
    assert batch["obs"].shape == (64, length, 1)
    step_counts = batch["obs"][:, :, 0]
    assert torch.all(step_counts[:, 1:] - step_counts[:, :-1] == 1)  # consecutive, oldest first, no wrap
    window_ends = batch["terminated"] | batch["truncated"]
    assert torch.equal(batch["episode_start"][:, 1:], window_ends[:, :-1])  # a step after an end starts anew
    assert not batch["episode_start"][:, 0].any()


def test_windows_are_drawn_uniformly_among_valid_starts() -> None:
    replay = filled_buffer(0, 20, 2, 20, end_rate=0.0)
    batch = sample_windows(replay, 20_000, 5, torch.Generator().manual_seed(0))
    counts = torch.bincount(batch["start"], minlength=40).float()
    valid = counts[counts > 0]
    assert len(valid) == 16 * 2  # starts 0..15 in each of the 2 env columns
    assert float(valid.std() / valid.mean()) < 0.1


def test_last_step_keys_are_gathered_at_the_windows_last_step_only() -> None:
    replay = filled_buffer(1, 30, 2, 45, end_rate=0.1)
    batch = sample_windows(replay, 32, 4, torch.Generator().manual_seed(0), keys=("obs",),
                           last_step_keys=("truncated",))
    assert set(batch) == {"obs", "truncated", "episode_start", "start"} and batch["truncated"].shape == (32,)
    rows, envs = batch["start"] // 2, batch["start"] % 2
    last = (rows + 3) % replay.steps_capacity
    assert torch.equal(batch["truncated"], replay.storage["truncated"][last, envs])
    assert torch.equal(batch["obs"][:, -1], replay.storage["obs"][last, envs])


def test_episode_end_replay_reports_each_writes_episode_ends() -> None:
    reports: list[list[bool]] = []
    replay = EpisodeEndReplay(40, 2, on_episode_end=lambda done: reports.append(done.tolist()))
    step = {"obs": np.zeros((2, 1), np.float32), "action": np.zeros(2, np.int64), "reward": np.zeros(2, np.float32),
            "next_obs": np.zeros((2, 1), np.float32), "terminated": np.array([True, False]),
            "truncated": torch.tensor([False, True])}
    replay.add(step)
    replay.extend({key: np.stack([np.asarray(value)] * 3) for key, value in step.items()} | {
        "terminated": np.zeros((3, 2), bool), "truncated": np.array([[True, True], [False, False], [False, True]])})
    assert reports == [[True, True], [False, True]]
    assert replay.steps_stored == 4 and window_count(replay.steps_stored, replay.num_envs, 2) > 0
