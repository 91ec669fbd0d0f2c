"""Stratified subsets and validation splits: sizes, class shares, seeds, edge cases."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.data.splits import class_quotas, stratified_split, stratified_subset


def test_class_sorted_file_keeps_every_class():
    # a class-sorted file: "the first 40" would be classes 0 and 1 only
    y = np.repeat(np.arange(10), [106, 515, 889, 200, 200, 465, 200, 680, 392, 344])
    idx = stratified_subset(y, 40, seed=0)
    assert idx.size == 40 and np.all(np.diff(idx) > 0)
    counts = np.bincount(y[idx], minlength=10)
    assert counts.min() >= 1  # every class present
    want = 40 * np.bincount(y) / y.size
    assert np.all(np.abs(counts - want) < 1)  # each class within rounding of its share


def test_split_is_a_partition_with_the_asked_share():
    y = np.repeat(np.arange(3), [50, 30, 20])
    kept, held = stratified_split(y, 0.1, seed=3)
    assert held.size == 10 and kept.size == 90
    assert np.array_equal(np.sort(np.concatenate([kept, held])), np.arange(100))
    assert np.bincount(y[held]).tolist() == [5, 3, 2]


def test_seeded_and_seed_dependent():
    y = np.arange(200) % 4
    a = stratified_subset(y, 50, seed=1)
    assert np.array_equal(a, stratified_subset(y, 50, seed=1))
    assert not np.array_equal(a, stratified_subset(y, 50, seed=2))


def test_largest_remainder_rounding():
    # shares 3.5, 2.5, 1.0 of 7: the two halves go to the first two (ties: smaller class)
    assert class_quotas(np.array([7, 5, 2]), 7).tolist() == [4, 2, 1]
    assert class_quotas(np.array([0, 3]), 2).tolist() == [0, 2]
    assert class_quotas(np.array([], dtype=np.int64), 0).tolist() == []


@pytest.mark.parametrize(
    "call,exc,match",
    [
        (lambda: stratified_subset(np.arange(3), 4), ValueError, "subset of 4"),
        (lambda: stratified_subset(np.zeros((2, 2), int), 1), ValueError, "1-D"),
        (lambda: stratified_subset(np.array([0.5, 1.0]), 1), TypeError, "integers"),
        (lambda: stratified_subset(np.array([-1, 0]), 1), ValueError, ">= 0"),
        (lambda: stratified_split(np.arange(4), 1.0), ValueError, r"\[0, 1\)"),
        (lambda: stratified_subset(np.arange(4), 1.5), TypeError, "integer"),
    ],
)
def test_bad_input(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(0, 30), min_size=1, max_size=8),
    frac=st.floats(0.0, 0.95),
    seed=st.integers(0, 2**31),
)
def test_properties(counts, frac, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    rng = np.random.default_rng(seed)
    y = y[rng.permutation(y.size)]  # order of the file must not matter
    kept, held = stratified_split(y, frac, seed)
    assert held.size == round(frac * y.size)
    assert np.intersect1d(kept, held).size == 0 and kept.size + held.size == y.size
    per_class = np.bincount(y[held], minlength=len(counts))
    share = held.size * np.asarray(counts) / max(y.size, 1)
    assert np.all(np.abs(per_class - share) < 1 + 1e-9)  # within one of the exact share
    n = int(rng.integers(0, y.size + 1))
    sub = stratified_subset(y, n, seed)
    assert sub.size == n and np.unique(sub).size == n
