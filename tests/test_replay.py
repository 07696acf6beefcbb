"""ReplayBuffer: wrap-around, n-step returns at episode ends, prioritized sampling, state_dict."""

import numpy as np
import pytest
import torch

from rlcore.buffers.replay import ReplayBuffer
from rlcore.buffers.samplers import PrioritizedSampler, SampleIndex


def make_step(t: int, num_envs: int = 1, terminated=None, truncated=None, reward=None) -> dict:
    """A transition whose obs encodes (t, env) so reads can be checked exactly."""
    envs = np.arange(num_envs)
    obs = np.stack([np.full(num_envs, t, dtype=np.float32), envs.astype(np.float32)], axis=1)
    return {
        "obs": obs,
        "action": envs.astype(np.int64),
        "reward": np.full(num_envs, 1.0, dtype=np.float32) if reward is None else np.asarray(reward, np.float32),
        "next_obs": obs + np.array([1.0, 0.0], dtype=np.float32),
        "terminated": np.zeros(num_envs, bool) if terminated is None else np.asarray(terminated),
        "truncated": np.zeros(num_envs, bool) if truncated is None else np.asarray(truncated),
    }


def read(buffer: ReplayBuffer, time: int, env: int = 0) -> dict:
    flat = torch.tensor([time * buffer.num_envs + env])
    return buffer.gather(SampleIndex(flat))


def test_wraps_around_and_keeps_the_newest_rows() -> None:
    buffer = ReplayBuffer(capacity=10, num_envs=2)  # 5 steps per env column
    for t in range(7):
        buffer.add(make_step(t, num_envs=2))
    assert len(buffer) == 10
    stored_times = sorted(buffer.storage["obs"][:, 0, 0].tolist())
    assert stored_times == [2, 3, 4, 5, 6]
    assert buffer.storage["obs"][buffer.head - 1, 1].tolist() == [6.0, 1.0]


def test_uniform_samples_only_written_rows() -> None:
    buffer = ReplayBuffer(capacity=100, num_envs=2)
    for t in range(3):
        buffer.add(make_step(t, num_envs=2))
    batch = buffer.sample(500, torch.Generator().manual_seed(0))
    assert set(batch["obs"][:, 0].tolist()) == {0.0, 1.0, 2.0}
    assert torch.equal(batch["weight"], torch.ones(500))
    assert torch.allclose(batch["discount"], torch.full((500,), 0.99))


def test_one_step_discount_is_zero_after_termination() -> None:
    buffer = ReplayBuffer(capacity=10, gamma=0.9)
    buffer.add(make_step(0, terminated=[True]))
    row = read(buffer, 0)
    assert row["discount"].item() == 0.0
    assert row["reward"].item() == 1.0


def test_n_step_return_hand_computed() -> None:
    buffer = ReplayBuffer(capacity=20, n_step=3, gamma=0.5)
    for t, reward in enumerate([1.0, 2.0, 4.0, 8.0, 16.0]):
        buffer.add(make_step(t, reward=[reward]))
    row = read(buffer, 1)
    assert row["reward"].item() == pytest.approx(2.0 + 0.5 * 4.0 + 0.25 * 8.0)
    assert row["discount"].item() == pytest.approx(0.125)
    assert row["next_obs"][0, 0].item() == 4.0  # bootstraps from s_4 = next_obs of step 3


def test_n_step_stops_at_termination_without_bootstrap() -> None:
    buffer = ReplayBuffer(capacity=20, n_step=3, gamma=0.5)
    buffer.add(make_step(0, reward=[1.0]))
    buffer.add(make_step(1, reward=[2.0], terminated=[True]))
    buffer.add(make_step(2, reward=[100.0]))  # first step of the next episode: must not leak in
    row = read(buffer, 0)
    assert row["reward"].item() == pytest.approx(1.0 + 0.5 * 2.0)
    assert row["discount"].item() == 0.0


def test_n_step_stops_at_truncation_but_bootstraps_from_final_obs() -> None:
    buffer = ReplayBuffer(capacity=20, n_step=3, gamma=0.5)
    buffer.add(make_step(0, reward=[1.0]))
    buffer.add(make_step(1, reward=[2.0], truncated=[True]))
    buffer.add(make_step(2, reward=[100.0]))
    row = read(buffer, 0)
    assert row["reward"].item() == pytest.approx(1.0 + 0.5 * 2.0)
    assert row["discount"].item() == pytest.approx(0.25)
    assert row["next_obs"][0, 0].item() == 2.0  # the true final observation of step 1


def test_n_step_near_the_newest_row_uses_what_is_written() -> None:
    buffer = ReplayBuffer(capacity=20, n_step=5, gamma=0.5)
    for t in range(3):
        buffer.add(make_step(t, reward=[1.0]))
    row = read(buffer, 1)
    assert row["reward"].item() == pytest.approx(1.0 + 0.5)
    assert row["discount"].item() == pytest.approx(0.25)
    assert row["next_obs"][0, 0].item() == 3.0


def test_n_step_ignores_unwritten_rows_even_if_they_hold_nan() -> None:
    buffer = ReplayBuffer(capacity=20, n_step=4, gamma=0.5)
    buffer.add(make_step(0, reward=[1.0]))
    buffer.storage["reward"][1:] = float("nan")  # what torch.empty may hold
    row = read(buffer, 0)
    assert row["reward"].item() == 1.0
    assert row["discount"].item() == 0.5


def test_n_step_across_the_ring_seam_and_per_env_columns() -> None:
    buffer = ReplayBuffer(capacity=8, num_envs=2, n_step=3, gamma=0.5)  # 4 steps per column
    for t in range(6):
        terminated = [t == 4, False]
        buffer.add(make_step(t, num_envs=2, reward=[t, 10 * t], terminated=terminated))
    # column 0: times 2..5 stored at rows 2,3,0,1; t=3 -> 3 + 0.5 * 4 (terminated at 4)
    time_of_3 = 3 % 4
    row = read(buffer, time_of_3, env=0)
    assert row["reward"].item() == pytest.approx(3 + 0.5 * 4)
    assert row["discount"].item() == 0.0
    row = read(buffer, time_of_3, env=1)
    assert row["reward"].item() == pytest.approx(30 + 0.5 * 40 + 0.25 * 50)
    assert row["obs"][0].tolist() == [3.0, 1.0]


def test_prioritized_sampling_follows_updated_priorities() -> None:
    sampler = PrioritizedSampler(capacity=4, alpha=1.0, beta=1.0)
    buffer = ReplayBuffer(capacity=4, sampler=sampler)
    for t in range(4):
        buffer.add(make_step(t))
    buffer.update_priorities(torch.arange(4), torch.tensor([1.0, 1.0, 1.0, 7.0]))
    batch = buffer.sample(10_000, torch.Generator().manual_seed(0))
    share_of_last = (batch["index"] == 3).float().mean().item()
    assert share_of_last == pytest.approx(0.7, abs=0.02)
    # importance weights (N * P(i))^-1, normalised by the largest: rows 0-2 get 1, row 3 gets 1/7
    assert batch["weight"][batch["index"] == 3].unique().item() == pytest.approx(1 / 7, rel=1e-4)
    assert batch["weight"][batch["index"] == 0].unique().item() == pytest.approx(1.0)


def test_state_dict_round_trip_gives_identical_samples() -> None:
    buffer = ReplayBuffer(capacity=10, num_envs=2, n_step=2, sampler=PrioritizedSampler(10))
    for t in range(8):
        buffer.add(make_step(t, num_envs=2, terminated=[t % 3 == 0, False]))
    buffer.update_priorities(torch.tensor([0, 3, 5]), torch.tensor([2.0, 0.5, 3.0]))
    restored = ReplayBuffer(capacity=10, num_envs=2, n_step=2, sampler=PrioritizedSampler(10))
    restored.load_state_dict(buffer.state_dict())
    first = buffer.sample(64, torch.Generator().manual_seed(3))
    second = restored.sample(64, torch.Generator().manual_seed(3))
    for key in first:
        assert torch.equal(first[key], second[key]), key
    buffer.add(make_step(9, num_envs=2))
    restored.add(make_step(9, num_envs=2))
    assert restored.head == buffer.head


def test_load_state_dict_rejects_another_shape() -> None:
    buffer = ReplayBuffer(capacity=10, num_envs=2)
    buffer.add(make_step(0, num_envs=2))
    other = ReplayBuffer(capacity=10, num_envs=1)
    with pytest.raises(ValueError, match="num_envs"):
        other.load_state_dict(buffer.state_dict())


def test_bad_inputs_are_clear_errors() -> None:
    with pytest.raises(ValueError, match="n_step"):
        ReplayBuffer(10, n_step=0)
    with pytest.raises(ValueError, match="gamma"):
        ReplayBuffer(10, gamma=1.5)
    buffer = ReplayBuffer(10, num_envs=2)
    with pytest.raises(RuntimeError, match="empty"):
        buffer.sample(4, torch.Generator())
    with pytest.raises(ValueError, match="leading dim"):
        buffer.add(make_step(0, num_envs=3))
    with pytest.raises(KeyError, match="missing"):
        buffer.add({"obs": np.zeros((2, 2))})
