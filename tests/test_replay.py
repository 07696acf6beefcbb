"""ReplayBuffer: wrap-around, n-step returns at episode ends, prioritized sampling, state_dict."""

import numpy as np
import pytest
import torch

import rlcore
from rlcore.buffers import replay as replay_module
from rlcore.buffers.replay import ReplayBuffer
from rlcore.buffers.samplers import PrioritizedSampler, SampleIndex, UniformSampler


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
    assert_same_samples(buffer, restored, 64, seed=3)
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


def random_steps(count: int, num_envs: int, seed: int, end_rate: float = 0.1) -> list[dict]:
    """Independent random vector steps (obs and next_obs unrelated, episode ends at ``end_rate``)."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(count):
        terminated = rng.random(num_envs) < end_rate / 2
        steps.append({
            "obs": rng.standard_normal((num_envs, 3)).astype(np.float32),
            "action": rng.integers(4, size=num_envs).astype(np.int64),
            "reward": rng.standard_normal(num_envs).astype(np.float32),
            "next_obs": rng.standard_normal((num_envs, 3)).astype(np.float32),
            "terminated": terminated,
            "truncated": (rng.random(num_envs) < end_rate / 2) & ~terminated,
        })
    return steps


def stack(steps: list[dict]) -> dict:
    return {key: np.stack([step[key] for step in steps]) for key in steps[0]}


def assert_same_buffers(a: ReplayBuffer, b: ReplayBuffer) -> None:
    assert (a.head, a.steps_stored, len(a)) == (b.head, b.steps_stored, len(b))
    filled = a.steps_stored
    for key in a.storage:
        assert torch.equal(a.storage[key][:filled], b.storage[key][:filled]), key
    for key, value in a.sampler.state_dict().items():
        assert torch.equal(value, b.sampler.state_dict()[key]), key


def assert_same_samples(a: ReplayBuffer, b: ReplayBuffer, batch_size: int, seed: int) -> None:
    """Both buffers give the same batch from the same generator seed."""
    first = a.sample(batch_size, torch.Generator().manual_seed(seed))
    second = b.sample(batch_size, torch.Generator().manual_seed(seed))
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.parametrize("prioritized", [False, True])
@pytest.mark.parametrize("chunks", [[3, 1, 2], [4, 4], [5, 7], [13], [0, 2, 9, 1]])
def test_extend_is_the_same_as_adding_each_step(chunks: list[int], prioritized: bool) -> None:
    """Wrapping chunks, a chunk that fills the ring exactly, chunks longer than the ring, empty ones."""
    num_envs, capacity = 2, 10  # 5 steps per env column
    make = lambda: ReplayBuffer(  # noqa: E731
        capacity, num_envs, n_step=2, gamma=0.5, sampler=PrioritizedSampler(capacity) if prioritized else None
    )
    added, extended = make(), make()
    steps = random_steps(sum(chunks), num_envs, seed=len(chunks))
    start = 0
    for count in chunks:
        chunk = steps[start : start + count]
        for step in chunk:
            added.add(step)
        if count:
            extended.extend(stack(chunk))
        else:
            extended.extend({key: np.zeros((0, num_envs, *value.shape[1:]), value.dtype)
                             for key, value in steps[0].items()})
        start += count
        if added.steps_stored:
            assert_same_buffers(added, extended)
    assert_same_samples(added, extended, 64, seed=1)


def test_extend_with_tensors_and_an_extra_key() -> None:
    steps = random_steps(6, num_envs=3, seed=2)
    for t, step in enumerate(steps):
        step["logp"] = np.full(3, float(t), np.float32)
    added, extended = ReplayBuffer(12, 3), ReplayBuffer(12, 3)  # 4 steps per column: wraps
    for step in steps:
        added.add(step)
    extended.extend({key: torch.from_numpy(value) for key, value in stack(steps[:4]).items()})
    extended.extend(stack(steps[4:]))
    assert_same_buffers(added, extended)
    assert sorted(extended.storage["logp"][:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]


def test_extend_rejects_mismatched_chunks() -> None:
    buffer = ReplayBuffer(10, num_envs=2)
    chunk = stack(random_steps(3, num_envs=2, seed=0))
    with pytest.raises(ValueError, match="same K"):
        buffer.extend({**chunk, "reward": chunk["reward"][:2]})
    with pytest.raises(ValueError, match="num_envs=2"):
        buffer.extend({key: value[:, :1] for key, value in chunk.items()})
    with pytest.raises(ValueError, match="shape"):
        buffer.extend(random_steps(1, num_envs=2, seed=0)[0])  # one step, not a chunk: [2] rewards
    with pytest.raises(KeyError, match="missing"):
        buffer.extend({"obs": chunk["obs"]})
    assert len(buffer) == 0 and buffer.head == 0


def test_fast_uniform_sample_matches_the_generic_gather() -> None:
    """sample()'s inlined uniform draw and one-take gather give what UniformSampler + gather give."""
    buffer = ReplayBuffer(64, num_envs=4, gamma=0.9)
    for step in random_steps(20, num_envs=4, seed=3, end_rate=0.3):
        buffer.add(step)
    fast = buffer.sample(100, torch.Generator().manual_seed(7))
    generic_index = UniformSampler().sample(100, len(buffer), torch.Generator().manual_seed(7))
    time, env = generic_index.index // 4, generic_index.index % 4
    assert torch.equal(fast["index"], generic_index.index)
    for key in ("obs", "action", "reward", "next_obs", "terminated", "truncated"):
        assert torch.equal(fast[key], buffer.storage[key][time, env]), key
    expected_discount = 0.9 * (1.0 - buffer.storage["terminated"][time, env].float())
    assert torch.equal(fast["discount"], expected_discount)
    assert torch.equal(fast["weight"], torch.ones(100))
    fast["obs"] += 1.0  # a fresh copy: the buffer is untouched
    assert torch.equal(buffer.sample(100, torch.Generator().manual_seed(7))["obs"], buffer.storage["obs"][time, env])


# ------------------------------------------------------------------ the C step writer (add's fast path)
StepWriterMissing = replay_module.StepWriter is None


def numpy_path_buffer(capacity: int, num_envs: int) -> ReplayBuffer:
    """A buffer whose add() never uses the C writer (the path of an install without a compiler)."""
    buffer = ReplayBuffer(capacity, num_envs)
    buffer._make_writer = lambda: None  # type: ignore[method-assign]
    return buffer


def test_the_step_writer_is_built_where_a_compiler_is() -> None:
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: rlcore installs without its step writer and add() takes the numpy path")
    assert replay_module.StepWriter is not None, "rlcore/buffers/_step_writer.c was not built: pip install -e ."
    buffer = ReplayBuffer(10, 2)
    buffer.add(make_step(0, 2))
    assert buffer._writer is not None


def pixel_steps(count: int, num_envs: int, seed: int) -> list[dict]:
    """Steps with a uint8 image, a float action vector and an extra int32 key (every field shape and dtype)."""
    rng = np.random.default_rng(seed)
    return [{
        "obs": rng.integers(0, 256, (num_envs, 3, 5, 4), dtype=np.uint8),
        "action": rng.standard_normal((num_envs, 2)).astype(np.float32),
        "reward": rng.standard_normal(num_envs).astype(np.float32),
        "next_obs": rng.integers(0, 256, (num_envs, 3, 5, 4), dtype=np.uint8),
        "terminated": rng.random(num_envs) < 0.1,
        "truncated": rng.random(num_envs) < 0.1,
        "mask": rng.integers(-5, 5, (num_envs, 3), dtype=np.int32),
    } for _ in range(count)]


@pytest.mark.parametrize("make_steps", [random_steps, pixel_steps])
def test_step_writer_stores_what_the_numpy_path_stores(make_steps) -> None:
    steps = make_steps(23, 3, seed=4)
    fast, slow = ReplayBuffer(30, 3), numpy_path_buffer(30, 3)  # 10 rows: wraps around twice
    for step in steps:
        fast.add(step)
        slow.add(step)
    assert slow._writer is None and (fast._writer is not None or StepWriterMissing)
    assert_same_buffers(fast, slow)
    newest = fast.storage["obs"][fast.head - 1]
    assert np.array_equal(newest.numpy(), steps[-1]["obs"])


def odd_values(step: dict) -> list[dict]:
    """Variants of ``step`` that the writer must hand to the numpy path: each is converted there, as before."""
    wide = np.zeros((step["obs"].shape[0], 2 * step["obs"].shape[1]), np.float32)
    wide[:, ::2] = step["obs"]
    return [
        {**step, "obs": step["obs"].astype(np.float64)},  # another dtype (cast to the stored float32)
        {**step, "action": step["action"].astype(np.int32)},
        {**step, "action": step["action"].tolist()},  # a list
        {**step, "reward": torch.from_numpy(step["reward"])},  # a tensor
        {**step, "obs": wide[:, ::2]},  # a strided view
        {**step, "obs": step["obs"].astype(step["obs"].dtype.newbyteorder())},  # byte-swapped
        {**step, "terminated": step["terminated"].astype(np.uint8)},  # same size, another dtype
    ]


def test_step_writer_leaves_what_it_cannot_copy_to_the_numpy_path() -> None:
    steps = random_steps(12, 2, seed=5)
    fast, slow = ReplayBuffer(200, 2), numpy_path_buffer(200, 2)
    for index, step in enumerate(steps):
        for variant in [step, *odd_values(step)] if index else [step]:
            fast.add(variant)
            slow.add(variant)
    assert_same_buffers(fast, slow)
    assert fast.steps_stored == 1 + 11 * 8


@pytest.mark.skipif(StepWriterMissing, reason="the C step writer is not built")
def test_step_writer_writes_all_or_nothing_and_checks_its_row() -> None:
    buffer = ReplayBuffer(10, 2)
    first = make_step(0, 2)
    buffer.add(first)
    writer, before = buffer._writer, buffer.records.clone()
    assert writer.write(make_step(1, 2), 1) is True
    assert buffer.storage["obs"][1, 1].tolist() == [1.0, 1.0]
    restored = buffer.records.clone()
    late_mismatch = {**make_step(7, 2), "truncated": np.zeros(2, np.int8)}  # the last key is the bad one
    assert writer.write(late_mismatch, 2) is False
    same_bytes_other_shape = {**make_step(7, 2), "obs": np.zeros((2, 1, 2), np.float32)}
    assert writer.write(same_bytes_other_shape, 2) is False
    assert writer.write({**make_step(7, 2), "extra": np.zeros(2)}, 2) is False  # another key set
    assert writer.write({k: v for k, v in make_step(7, 2).items() if k != "reward"}, 2) is False
    assert torch.equal(buffer.records, restored) and not torch.equal(restored, before)
    with pytest.raises(IndexError, match="row 5"):
        writer.write(first, 5)
    with pytest.raises(IndexError, match="row -1"):
        writer.write(first, -1)


@pytest.mark.skipif(StepWriterMissing, reason="the C step writer is not built")
def test_step_writer_add_commits_only_what_it_writes() -> None:
    buffer = ReplayBuffer(6, 2)  # 3 time rows
    buffer.add(make_step(0, 2))
    writer = buffer._writer
    for value in range(1, 5):  # wraps: rows 1, 2, 0, 1
        assert writer.add(make_step(value, 2)) is True
    assert buffer.store.committed().tolist() == [5] and buffer.head == 2
    assert np.array_equal(buffer.storage["obs"][0].numpy(), make_step(3, 2)["obs"])
    assert np.array_equal(buffer.storage["obs"][1].numpy(), make_step(4, 2)["obs"])
    before = buffer.records.clone()
    assert writer.add({**make_step(9, 2), "reward": np.zeros(2, np.float64)}) is False
    assert buffer.store.committed().tolist() == [5] and torch.equal(buffer.records, before)
    bare = replay_module.StepWriter(buffer.records.numpy(), [])
    with pytest.raises(RuntimeError, match="needs the counters"):
        bare.add({})
    with pytest.raises(ValueError, match="slot=8"):
        replay_module.StepWriter(buffer.records.numpy(), [], np.zeros(8, np.int64), 8)


def test_add_rejects_a_wrong_shape_on_both_paths() -> None:
    for buffer in (ReplayBuffer(10, 2), numpy_path_buffer(10, 2)):
        buffer.add(make_step(0, 2))
        with pytest.raises(ValueError, match="broadcast"):
            buffer.add({**make_step(1, 2), "obs": np.zeros((2, 3), np.float32)})


# ------------------------------------------------------------------ one storage, one sampler, shared by all replays
from rlcore.buffers.replay import Placement, ReplaySettings, build_replay  # noqa: E402
from rlcore.buffers.storage import FieldSpec, ReplayStorage, StorageGeometry  # noqa: E402


def transition_spec(num_envs: int = 3) -> dict:
    """The fields of :func:`random_steps`."""
    step = random_steps(1, num_envs, seed=0)[0]
    return {key: FieldSpec(value.shape[1:], torch.from_numpy(value).dtype) for key, value in step.items()}


def concurrent_replay(capacity: int, num_shards: int, envs: int, **settings) -> replay_module.Replay:
    """A replay whose shards are written by other writers (the shared-memory replay's kind, in this process)."""
    fields = tuple(transition_spec(envs).items())
    return build_replay(ReplaySettings(capacity, fields, **settings),
                        Placement(num_shards=num_shards, envs_per_shard=envs, concurrent_writers=True))


def test_fields_given_up_front_store_what_the_first_write_would_allocate() -> None:
    steps = random_steps(9, num_envs=3, seed=8)
    lazy, ahead = ReplayBuffer(15, 3, n_step=2), ReplayBuffer(15, 3, n_step=2, fields=transition_spec(3))
    assert ahead.records is not None and lazy.records is None
    for step in steps:
        lazy.add(step)
        ahead.add(step)
    assert_same_buffers(lazy, ahead)
    assert_same_samples(lazy, ahead, 50, seed=2)


def test_build_replay_places_the_storage() -> None:
    settings = ReplaySettings(40, tuple(transition_spec(2).items()), n_step=3, gamma=0.5, prioritized=True)
    local = build_replay(settings, Placement(envs_per_shard=2))
    assert isinstance(local, ReplayBuffer) and isinstance(local.sampler, PrioritizedSampler)
    assert (local.steps_capacity, local.num_envs, local.n_step, local.margin) == (20, 2, 3, 0)
    shards = build_replay(settings, Placement(num_shards=2, envs_per_shard=2, concurrent_writers=True))
    assert not isinstance(shards, ReplayBuffer) and shards.margin == shards.geometry.margin > 0
    assert (shards.steps_capacity, shards.num_envs, shards.sampler.capacity) == (10, 4, 40)
    with pytest.raises(ValueError, match="buffer_size of at least 8"):
        build_replay(ReplaySettings(6, settings.fields), Placement(num_shards=2, envs_per_shard=2,
                                                                    concurrent_writers=True))
    with pytest.raises(ValueError, match="fields"):
        build_replay(ReplaySettings(40), Placement(num_shards=2, envs_per_shard=2, concurrent_writers=True))
    with pytest.raises(ValueError, match="one shard"):
        build_replay(settings, Placement(num_shards=2, envs_per_shard=2))


def test_shards_get_the_same_n_step_targets_as_the_in_process_buffer() -> None:
    """One implementation of the targets: a shard written like the in-process buffer gives the same batches."""
    steps = random_steps(17, num_envs=3, seed=6, end_rate=0.3)
    local = ReplayBuffer(30, 3, n_step=4, gamma=0.7)  # 10 rows per env: wraps
    shards = concurrent_replay(60, 2, 3, n_step=4, gamma=0.7)  # shard 0 is the same ring
    for step in steps:
        local.add(step)
        shards.writer(0).add(step)
    rows = torch.arange(30)
    expected, got = local.gather(SampleIndex(rows)), shards.gather(SampleIndex(rows))
    for key in expected:
        assert torch.equal(expected[key], got[key]), key


@pytest.mark.parametrize("committed", [[0, 3], [7, 12], [9, 16], [20, 31], [40, 17]])
def test_a_stateless_draw_numbers_exactly_the_drawable_rows(committed: list[int]) -> None:
    """Uniform draws over shards: the k-th drawable row, k in [0, num_valid), runs over every stored row once,
    less the oldest `margin` of a full shard (its writer's next targets)."""
    replay = concurrent_replay(2 * 12 * 2, 2, 2)  # 12 steps per shard, margin 3
    capacity, margin = replay.steps_capacity, replay.margin
    counts = np.array(committed)
    replay.store.set_committed(counts)
    drawable = replay._drawable_steps(counts)
    rows = replay._kth_drawable_rows(np.arange(int(drawable.sum()) * 2), counts, drawable)
    expected = set()
    for shard, count in enumerate(committed):
        oldest = max(count - capacity + margin, 0) if count > capacity - margin else 0
        for step in range(oldest, count):
            expected.update((shard * capacity + step % capacity) * 2 + env for env in range(2))
    assert sorted(rows.tolist()) == sorted(expected) and len(set(rows.tolist())) == len(rows)


def test_a_shard_writer_uses_the_kernel_and_stores_what_the_reference_stores() -> None:
    steps = random_steps(30, num_envs=2, seed=9)
    geometry = StorageGeometry(tuple(transition_spec(2).items()), num_shards=3, steps_capacity=7, envs_per_shard=2)
    fast, slow = ReplayStorage(geometry), ReplayStorage(geometry)
    fast_writer, slow_writer = fast.writer(1), slow.writer(1)
    slow_writer._writer = None
    assert fast_writer._writer is not None or StepWriterMissing
    for step in steps:
        fast_writer.add(step)
        slow_writer.add(step)
    assert fast.committed().tolist() == slow.committed().tolist() == [0, 30, 0]
    for key, column in fast.columns.items():  # every field's bytes (the records' padding is never written)
        assert column[1].numpy().tobytes() == slow.columns[key][1].numpy().tobytes(), key


def legacy_buffer_state(buffer: ReplayBuffer) -> dict:
    """``buffer``'s state as rlcore's ReplayBuffer wrote it before the shared storage (head, steps_stored, per-key
    rows; a prioritized sampler's rows 0..num_written-1)."""
    state = {"head": buffer.head, "steps_stored": buffer.steps_stored,
             "storage": {key: column[: buffer.steps_stored].clone() for key, column in buffer.storage.items()},
             "sampler": dict(buffer.state_dict()["sampler"])}
    if state["sampler"]:
        state["sampler"]["num_written"] = torch.tensor(len(buffer))
        del state["sampler"]["row_state"]
    return state


@pytest.mark.parametrize("prioritized", [False, True])
def test_a_checkpoint_of_the_former_buffer_loads_and_samples_the_same(prioritized: bool) -> None:
    make = lambda: ReplayBuffer(20, 2, n_step=3, gamma=0.8,  # noqa: E731
                                sampler=PrioritizedSampler(20) if prioritized else None)
    buffer = make()
    for step in random_steps(14, num_envs=2, seed=3):  # wraps
        buffer.add(step)
    if prioritized:
        buffer.update_priorities(torch.tensor([1, 4, 7]), torch.tensor([5.0, 0.1, 2.0]))
    restored = make()
    restored.load_state_dict(legacy_buffer_state(buffer))
    assert_same_buffers(buffer, restored)
    assert_same_samples(buffer, restored, 64, seed=4)


def test_a_checkpoint_of_the_former_sharded_replay_loads_rows_and_priorities() -> None:
    replay = concurrent_replay(48, 2, 2, prioritized=True)  # 12 steps per shard, margin 3
    steps = random_steps(20, num_envs=2, seed=4)
    for t, step in enumerate(steps):
        replay.writer(0).add(step)
        if t < 5:
            replay.writer(1).add(step)
    batch = replay.sample(16, torch.Generator().manual_seed(0))
    replay.update_priorities(batch["index"], torch.arange(16, dtype=torch.float32))
    leaves = torch.from_numpy(replay.sampler.tree[np.arange(48)])
    committed = torch.from_numpy(replay.committed())
    legacy = {"kind": "sharded", "committed": committed, "records": replay.store.records[:, :12].clone(),
              "priorities": {"leaves": leaves, "max_priority": replay.sampler.max_priority}}
    restored = concurrent_replay(48, 2, 2, prioritized=True)
    restored.load_state_dict(legacy)
    assert restored.committed().tolist() == [20, 5]
    for key, column in replay.columns.items():  # unwritten rows hold whatever memory held (NaN bit patterns too)
        torch.testing.assert_close(restored.columns[key], column, rtol=0, atol=0, equal_nan=True, msg=key)
    assert np.array_equal(restored.sampler.tree[np.arange(48)], leaves.numpy())
    again = restored.sample(500, torch.Generator().manual_seed(1))
    assert (leaves[again["index"]] > 0).all()  # retired (margin) rows stay out
    wrong = concurrent_replay(48, 3, 2)
    with pytest.raises(ValueError, match="num_workers"):
        wrong.load_state_dict(legacy)


def test_a_replay_too_large_for_memory_names_buffer_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's allocator error named only a byte count."""
    import math

    import torch

    empty = torch.empty

    def refusing_huge(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202  (as torch refuses, whatever the overcommit)
        shape = args[0] if args and isinstance(args[0], tuple | list | torch.Size) else args
        if math.prod(int(size) for size in shape) > 10**11:
            raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate a lot of bytes")
        return empty(*args, **kwargs)

    monkeypatch.setattr(torch, "empty", refusing_huge)
    with pytest.raises(MemoryError, match=r"the replay cannot hold 10,000,000,000 transitions of \d+ bytes each "
                                          r"\([\d.]+ GiB\) on cpu: lower buffer_size"):
        rlcore.train("dqn", "CartPole-v1", total_env_steps=64, buffer_size=10**10, num_envs=1, log_dir=None,
                     progress_bar=False)
