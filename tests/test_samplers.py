"""Tests for rlcore.buffers.sumtree.SumTree and rlcore.buffers.samplers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from rlcore.buffers.samplers import PrioritizedSampler, SampleIndex, UniformSampler
from rlcore.buffers.sumtree import SumTree

CAPACITIES = [1, 2, 3, 5, 8, 13, 64, 100, 257, 1000]


def _random_fill(rng: np.random.Generator, capacity: int) -> tuple[SumTree, np.ndarray, np.ndarray]:
    """Fill a tree with several random update batches (duplicates, zeros, unset leaves).

    Returns the tree, the reference leaf values and a mask of leaves that were set.
    """
    tree = SumTree(capacity)
    ref = np.zeros(capacity)
    is_set = np.zeros(capacity, dtype=bool)
    for _ in range(int(rng.integers(1, 8))):
        n = int(rng.integers(1, 2 * capacity + 2))
        idx = rng.integers(0, capacity, size=n)  # duplicates likely
        vals = rng.random(n) * float(rng.choice([1e-3, 1.0, 1e4]))
        vals[rng.random(n) < 0.2] = 0.0
        tree.update(idx, vals)
        for i, v in zip(idx, vals):  # sequential reference: last write wins
            ref[i] = v
            is_set[i] = True
    return tree, ref, is_set


# ---------------------------------------------------------------------------------------- SumTree
@pytest.mark.parametrize("capacity", CAPACITIES)
def test_prefix_sum_matches_searchsorted(capacity: int) -> None:
    rng = np.random.default_rng(capacity)
    for _ in range(20):
        tree, ref, _ = _random_fill(rng, capacity)
        if ref.sum() == 0:
            continue
        cumsum = np.cumsum(ref)
        upper = min(tree.total(), cumsum[-1])
        targets = rng.random(500) * upper
        got = tree.find_prefix_sum(targets)
        want = np.searchsorted(cumsum, targets, side="right")
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.int64
        assert np.all(ref[got] > 0)


@pytest.mark.parametrize("capacity", [3, 7, 16, 33])
def test_prefix_sum_exact_boundaries_integer_leaves(capacity: int) -> None:
    """With integer leaves all sums are exact, so boundary targets must match exactly."""
    rng = np.random.default_rng(100 + capacity)
    leaves = rng.integers(0, 4, size=capacity).astype(np.float64)
    leaves[capacity // 2] = 2.0  # at least one positive leaf
    tree = SumTree(capacity)
    tree.update(np.arange(capacity), leaves)
    cumsum = np.cumsum(leaves)
    targets = np.concatenate([[0.0], cumsum[:-1], cumsum - 0.5, cumsum[-1:] - 1e-9])
    targets = targets[(targets >= 0) & (targets < cumsum[-1])]
    np.testing.assert_array_equal(
        tree.find_prefix_sum(targets), np.searchsorted(cumsum, targets, side="right")
    )
    # Out-of-range targets are clamped to the first / last positive leaf.
    positive = np.flatnonzero(leaves > 0)
    got = tree.find_prefix_sum(np.array([-5.0, cumsum[-1], cumsum[-1] * 10]))
    np.testing.assert_array_equal(got, [positive[0], positive[-1], positive[-1]])


def test_prefix_sum_never_returns_zero_leaf_near_total() -> None:
    # Regression case: a naive descent sends nextafter(total, 0) to the empty leaf 3.
    tree = SumTree(4)
    tree.update(np.arange(3), np.array([0.3, 0.3, 1.1]))
    assert tree.find_prefix_sum(np.array([np.nextafter(tree.total(), 0.0)]))[0] == 2

    rng = np.random.default_rng(7)
    for _ in range(2000):
        capacity = int(rng.integers(2, 40))
        n = int(rng.integers(1, capacity + 1))
        tree = SumTree(capacity)
        tree.update(np.arange(n), rng.random(n) * float(rng.choice([1e-3, 1.0, 1e3])))
        total = tree.total()
        targets = np.array([np.nextafter(total, 0.0), total * (1 - 1e-16), total * (1 - 3e-16), total])
        leaf = tree.find_prefix_sum(targets)
        assert np.all(leaf < n) and np.all(tree[leaf] > 0)


@pytest.mark.parametrize("capacity", CAPACITIES)
def test_total_min_getitem_after_random_updates(capacity: int) -> None:
    rng = np.random.default_rng(1000 + capacity)
    tree, ref, is_set = _random_fill(rng, capacity)
    for _ in range(30):
        idx = rng.integers(0, capacity, size=int(rng.integers(1, 50)))
        vals = rng.random(idx.size) * 10
        vals[rng.random(idx.size) < 0.1] = 0.0
        tree.update(idx, vals)
        for i, v in zip(idx, vals):
            ref[i] = v
            is_set[i] = True
        assert tree.total() == pytest.approx(ref.sum(), rel=1e-12, abs=1e-12)
        assert tree.min() == ref[is_set].min()
        np.testing.assert_array_equal(tree[np.arange(capacity)], ref)
    # Internal nodes are exact sums / mins of their children.
    s, m, size = tree._sum, tree._min, tree._size
    np.testing.assert_array_equal(s[1:size], s[2 : 2 * size : 2] + s[3 : 2 * size : 2])
    np.testing.assert_array_equal(m[1:size], np.minimum(m[2 : 2 * size : 2], m[3 : 2 * size : 2]))


def test_sumtree_min_ignores_unset_leaves_and_duplicates_last_wins() -> None:
    tree = SumTree(10)
    assert tree.total() == 0.0 and tree.min() == math.inf
    tree.update(np.array([3, 3, 7, 3]), np.array([1.0, 2.0, 5.0, 4.0]))
    assert tree[3] == 4.0 and tree[7] == 5.0
    assert tree.total() == 9.0 and tree.min() == 4.0
    tree.update(np.array([0]), np.array([0.0]))
    assert tree.min() == 0.0 and tree.total() == 9.0


def test_sumtree_validation() -> None:
    with pytest.raises(ValueError, match="capacity"):
        SumTree(0)
    tree = SumTree(5)
    with pytest.raises(RuntimeError, match="empty"):
        tree.find_prefix_sum(np.array([0.0]))
    with pytest.raises(IndexError):
        tree.update(np.array([5]), np.array([1.0]))
    with pytest.raises(IndexError):
        tree.update(np.array([-1]), np.array([1.0]))
    with pytest.raises(ValueError, match=">= 0"):
        tree.update(np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError, match="finite"):
        tree.update(np.array([0]), np.array([np.nan]))
    with pytest.raises(ValueError, match="same length"):
        tree.update(np.array([0, 1]), np.array([1.0, 2.0, 3.0]))
    tree.update(np.array([1]), np.array([2.0]))
    with pytest.raises(ValueError, match="finite"):
        tree.find_prefix_sum(np.array([np.nan]))


def test_sumtree_capacity_one() -> None:
    tree = SumTree(1)
    tree.update(np.array([0]), np.array([3.0]))
    np.testing.assert_array_equal(tree.find_prefix_sum(np.array([0.0, 1.0, 2.999, 5.0])), [0, 0, 0, 0])
    assert tree.total() == 3.0 and tree.min() == 3.0


def test_sumtree_state_dict_round_trip() -> None:
    rng = np.random.default_rng(3)
    tree, _, _ = _random_fill(rng, 37)
    tree.update(np.array([36]), np.array([1.5]))
    state = tree.state_dict()
    assert set(state) == {"values", "min_values"} and state["values"].shape == (37,)
    other = SumTree(37)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other._sum, tree._sum)
    np.testing.assert_array_equal(other._min, tree._min)
    targets = rng.random(100) * tree.total()
    np.testing.assert_array_equal(other.find_prefix_sum(targets), tree.find_prefix_sum(targets))
    with pytest.raises(ValueError, match="capacity"):
        SumTree(36).load_state_dict(state)


# ------------------------------------------------------------------------------ PrioritizedSampler
def _per(capacity: int, num_rows: int, alpha: float = 0.6, beta: float = 0.4, seed: int = 0):
    """A sampler with ``num_rows`` rows written and random priorities; returns (sampler, deltas)."""
    sampler = PrioritizedSampler(capacity, alpha=alpha, beta=beta)
    sampler.on_write(torch.arange(num_rows))
    gen = torch.Generator().manual_seed(seed)
    deltas = torch.randn(num_rows, generator=gen, dtype=torch.float64) * 3.0  # |.| taken inside
    sampler.update_priorities(torch.arange(num_rows), deltas)
    return sampler, deltas


def _expected_probs(deltas: torch.Tensor, alpha: float, eps: float = 1e-6) -> np.ndarray:
    p = (np.abs(deltas.numpy()) + eps) ** alpha
    return p / p.sum()


@pytest.mark.parametrize("batch_size", [7, 256])
def test_per_sampling_frequencies_match_priorities(batch_size: int) -> None:
    num_rows = 23
    sampler, deltas = _per(capacity=50, num_rows=num_rows, alpha=0.6)
    probs = _expected_probs(deltas, 0.6)
    gen = torch.Generator().manual_seed(123)
    draws = 0
    counts = np.zeros(num_rows)
    while draws < 200_000:
        out = sampler.sample(batch_size, num_rows, gen)
        counts += np.bincount(out.index.numpy(), minlength=num_rows)
        draws += batch_size
    freq = counts / draws
    assert np.max(np.abs(freq - probs)) < 3e-3
    # Pearson chi-square against the multinomial: stratification only lowers the variance.
    chi2 = float(np.sum((counts - draws * probs) ** 2 / (draws * probs)))
    df = num_rows - 1
    assert chi2 < df + 6 * math.sqrt(2 * df)


def test_per_alpha_zero_is_uniform() -> None:
    sampler, _ = _per(capacity=10, num_rows=10, alpha=0.0)
    out = sampler.sample(10_000, 10, torch.Generator().manual_seed(0))
    counts = np.bincount(out.index.numpy(), minlength=10)
    assert np.abs(counts - 1000).max() <= 1  # stratified + equal mass: (almost) exactly even
    np.testing.assert_array_equal(out.weight.numpy(), np.ones(10_000, dtype=np.float32))


def test_per_importance_weights_brute_force() -> None:
    num_rows, alpha, beta, eps = 40, 0.7, 0.5, 1e-6
    sampler, deltas = _per(capacity=64, num_rows=num_rows, alpha=alpha, beta=beta)
    out = sampler.sample(512, num_rows, torch.Generator().manual_seed(5))
    assert isinstance(out, SampleIndex)
    assert out.index.dtype == torch.int64 and out.index.shape == (512,)
    assert out.weight is not None and out.weight.dtype == torch.float32 and out.weight.shape == (512,)
    probs = _expected_probs(deltas, alpha, eps)
    w_all = (num_rows * probs) ** (-beta)
    expected = w_all[out.index.numpy()] / w_all.max()
    np.testing.assert_allclose(out.weight.numpy(), expected, rtol=1e-5)
    assert float(out.weight.max()) <= 1.0 + 1e-6
    # Normalisation uses the global p_min, not the batch: with a rarely drawn low-priority
    # row, small batches have max weight < 1.
    sampler.update_priorities(torch.tensor([0]), torch.tensor([0.0]))
    probs = _expected_probs(torch.cat([torch.zeros(1, dtype=deltas.dtype), deltas[1:]]), alpha, eps)
    w_all = (num_rows * probs) ** (-beta)
    gen = torch.Generator().manual_seed(6)
    for _ in range(20):
        small = sampler.sample(8, num_rows, gen)
        expected = w_all[small.index.numpy()] / w_all.max()
        np.testing.assert_allclose(small.weight.numpy(), expected, rtol=1e-5)
    # beta is a live public attribute
    sampler, deltas = _per(capacity=64, num_rows=num_rows, alpha=alpha, beta=beta)
    probs = _expected_probs(deltas, alpha, eps)
    sampler.beta = 1.0
    out1 = sampler.sample(512, num_rows, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out1.index, out.index)
    w1 = (num_rows * probs) ** -1.0
    np.testing.assert_allclose(out1.weight.numpy(), w1[out.index.numpy()] / w1.max(), rtol=1e-5)
    sampler.beta = 0.0
    out0 = sampler.sample(512, num_rows, torch.Generator().manual_seed(5))
    np.testing.assert_array_equal(out0.weight.numpy(), np.ones(512, dtype=np.float32))


def test_per_new_rows_get_max_priority() -> None:
    alpha, eps = 0.6, 1e-6
    sampler = PrioritizedSampler(16, alpha=alpha, eps=eps)
    sampler.on_write(torch.arange(4))
    np.testing.assert_array_equal(sampler.tree[np.arange(4)], np.ones(4))  # initial max = 1.0
    assert sampler.tree[np.arange(4, 16)].sum() == 0.0  # never-written rows have priority 0
    sampler.update_priorities(torch.tensor([0, 1, 2]), torch.tensor([0.5, -5.0, 2.0]))
    assert sampler.max_priority == pytest.approx(5.0 + eps)
    sampler.on_write(torch.tensor([4, 5]))
    np.testing.assert_allclose(sampler.tree[np.array([4, 5])], (5.0 + eps) ** alpha)
    np.testing.assert_allclose(sampler.tree[np.array([1])], (5.0 + eps) ** alpha)
    np.testing.assert_allclose(sampler.tree[np.array([0])], (0.5 + eps) ** alpha)
    # Max priority never decreases; overwriting an old row also resets it to the max.
    sampler.update_priorities(torch.tensor([1]), torch.tensor([0.1]))
    sampler.on_write(torch.tensor([0]))
    np.testing.assert_allclose(sampler.tree[np.array([0])], (5.0 + eps) ** alpha)


def test_per_update_duplicates_last_wins() -> None:
    sampler = PrioritizedSampler(8, alpha=1.0, eps=1e-6)
    sampler.on_write(torch.arange(8))
    sampler.update_priorities(torch.tensor([2, 2, 2]), torch.tensor([3.0, 9.0, 0.5]))
    assert sampler.tree[2] == pytest.approx(0.5 + 1e-6)
    assert sampler.max_priority == pytest.approx(9.0 + 1e-6)  # max tracks all given priorities


@pytest.mark.parametrize("capacity,num_rows", [(1000, 10), (37, 37), (1, 1), (100, 99)])
def test_per_never_samples_beyond_num_valid(capacity: int, num_rows: int) -> None:
    sampler = PrioritizedSampler(capacity)
    sampler.on_write(torch.arange(num_rows))
    # Make the last valid rows dominant and the first tiny: mass piles up near the boundary.
    prio = torch.zeros(num_rows)
    prio[-1] = 1e6
    sampler.update_priorities(torch.arange(num_rows), prio)
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        idx = sampler.sample(333, num_rows, gen).index
        assert int(idx.min()) >= 0 and int(idx.max()) < num_rows


def test_per_rejects_non_finite_priorities() -> None:
    sampler = PrioritizedSampler(8)
    sampler.on_write(torch.arange(8))
    before = sampler.tree[np.arange(8)].copy()
    with pytest.raises(ValueError, match="NaN"):
        sampler.update_priorities(torch.tensor([0, 1]), torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match="inf"):
        sampler.update_priorities(torch.tensor([0]), torch.tensor([float("inf")]))
    np.testing.assert_array_equal(sampler.tree[np.arange(8)], before)  # nothing was written
    with pytest.raises(ValueError, match="same number"):
        sampler.update_priorities(torch.tensor([0, 1]), torch.tensor([1.0]))
    with pytest.raises(IndexError):
        sampler.update_priorities(torch.tensor([8]), torch.tensor([1.0]))


def test_per_rejects_unwritten_rows_and_mismatched_num_valid() -> None:
    sampler = PrioritizedSampler(20)
    gen = torch.Generator().manual_seed(0)
    with pytest.raises(RuntimeError, match="empty"):
        sampler.sample(4, 0, gen)
    sampler.on_write(torch.arange(5))
    with pytest.raises(IndexError, match="never written"):
        sampler.update_priorities(torch.tensor([7]), torch.tensor([1.0]))
    with pytest.raises(RuntimeError, match="on_write"):
        sampler.sample(4, 6, gen)
    with pytest.raises(RuntimeError, match="on_write"):
        sampler.sample(4, 4, gen)
    with pytest.raises(ValueError, match="batch_size"):
        sampler.sample(0, 5, gen)


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": 10, "alpha": -0.1}, "alpha"),
        ({"capacity": 10, "beta": 1.5}, "beta"),
        ({"capacity": 10, "beta": -0.1}, "beta"),
        ({"capacity": 10, "eps": 0.0}, "eps"),
    ],
)
def test_per_constructor_validation(kwargs: dict, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        PrioritizedSampler(**kwargs)


def test_per_beta_setter_validates() -> None:
    sampler = PrioritizedSampler(4, beta=0.4)
    sampler.beta = 0.9
    assert sampler.beta == 0.9
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\]"):
        sampler.beta = 1.01


def test_per_reproducible_and_state_dict_round_trip() -> None:
    num_rows = 300
    sampler, _ = _per(capacity=500, num_rows=num_rows, alpha=0.6, beta=0.4, seed=1)
    gen = torch.Generator().manual_seed(9)
    for _ in range(5):  # some history: sample, update
        out = sampler.sample(64, num_rows, gen)
        sampler.update_priorities(out.index, torch.rand(64, generator=gen) * 4)

    state = sampler.state_dict()
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    restored_state = st_load(st_save(state))  # must survive safetensors
    restored = PrioritizedSampler(500, alpha=0.6, beta=0.4)
    restored.load_state_dict(restored_state)
    assert restored.max_priority == sampler.max_priority

    g1, g2 = torch.Generator().manual_seed(42), torch.Generator().manual_seed(42)
    for _ in range(5):
        a = sampler.sample(128, num_rows, g1)
        b = restored.sample(128, num_rows, g2)
        torch.testing.assert_close(a.index, b.index, rtol=0, atol=0)
        torch.testing.assert_close(a.weight, b.weight, rtol=0, atol=0)
        new = torch.rand(128, generator=g1) * 5
        assert torch.equal(new, torch.rand(128, generator=g2) * 5)
        sampler.update_priorities(a.index, new)
        restored.update_priorities(b.index, new)
        sampler.on_write(torch.tensor([7, 8]))
        restored.on_write(torch.tensor([7, 8]))

    with pytest.raises(ValueError, match="alpha"):
        PrioritizedSampler(500, alpha=0.5).load_state_dict(state)
    with pytest.raises(ValueError, match="capacity"):
        PrioritizedSampler(499, alpha=0.6).load_state_dict(state)


# --------------------------------------------------------------------------------- UniformSampler
def test_uniform_covers_all_rows() -> None:
    sampler = UniformSampler()
    out = sampler.sample(5000, 50, torch.Generator().manual_seed(0))
    assert out.weight is None
    assert out.index.dtype == torch.int64 and out.index.shape == (5000,)
    assert set(out.index.tolist()) == set(range(50))
    again = sampler.sample(5000, 50, torch.Generator().manual_seed(0))
    assert torch.equal(out.index, again.index)
    assert sampler.state_dict() == {}
    sampler.on_write(torch.arange(3))  # no-ops
    sampler.update_priorities(torch.arange(3), torch.ones(3))


def test_uniform_empty_raises() -> None:
    with pytest.raises(RuntimeError, match="empty"):
        UniformSampler().sample(8, 0, torch.Generator().manual_seed(0))


def test_per_retired_rows_are_never_drawn_leave_p_min_and_keep_no_update() -> None:
    """What a replay with concurrent writers does to the rows a writer overwrites next."""
    sampler = PrioritizedSampler(8, alpha=1.0, beta=1.0)
    sampler.on_write(torch.arange(8))
    sampler.update_priorities(torch.arange(8), torch.tensor([0.5, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 4.0]))
    sampler.retire(torch.tensor([0, 7]))
    assert sampler.tree[np.array([0, 7])].sum() == 0.0
    out = sampler.sample(4_000, 6, torch.Generator().manual_seed(0))
    assert set(out.index.tolist()) == {1, 2, 3, 4, 5, 6}
    assert torch.allclose(out.weight, torch.ones(4_000))  # p_min is over live rows: 1.0, not the retired 0.5
    with pytest.raises(RuntimeError, match="on_write"):
        sampler.sample(4, 8, torch.Generator())  # 6 rows are live
    sampler.update_priorities(torch.tensor([0, 1]), torch.tensor([9.0, 2.0]))  # row 0 retired since drawn
    assert sampler.tree[0] == 0.0 and sampler.tree[1] == pytest.approx(2.0 + 1e-6)
    assert sampler.max_priority == pytest.approx(9.0 + 1e-6)  # the max still tracks every priority given
    sampler.on_write(torch.tensor([0]))  # written again: live, with the largest priority
    assert sampler.tree[0] == pytest.approx(9.0 + 1e-6)
    assert sampler.sample(4, 7, torch.Generator()).index.shape == (4,)
    restored = PrioritizedSampler(8, alpha=1.0, beta=1.0)
    restored.load_state_dict(sampler.state_dict())
    assert torch.equal(restored.sample(64, 7, torch.Generator().manual_seed(1)).index,
                       sampler.sample(64, 7, torch.Generator().manual_seed(1)).index)


def test_sumtree_clear_unsets_leaves() -> None:
    tree = SumTree(5)
    tree.update(np.arange(5), np.array([3.0, 1.0, 2.0, 0.5, 4.0]))
    tree.clear(np.array([3, 3, 0]))
    assert tree.total() == pytest.approx(7.0) and tree.min() == 1.0
    assert tree.state_dict()["min_values"][[0, 3]].tolist() == [np.inf, np.inf]
    assert set(tree.find_prefix_sum(np.linspace(0, 6.99, 200)).tolist()) == {1, 2, 4}
