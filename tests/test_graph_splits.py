"""Seeded stratified node splits: a partition of the labelled nodes, class by class."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.graphs.splits import splitmix64, stratified_split


def test_splitmix64_reference_values():
    # the first outputs of SplitMix64 seeded with 0 (Vigna's reference implementation)
    state = np.arange(1, 4, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    expected = [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    with np.errstate(over="ignore"):
        got = splitmix64(state - np.uint64(0x9E3779B97F4A7C15))
    assert got.tolist() == expected


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(-1, 4), max_size=300), seed=st.integers(0, 2**70),
       f_train=st.floats(0, 1), f_val=st.floats(0, 1))
def test_split_is_a_stratified_partition(labels, seed, f_train, f_val):
    y = np.array(labels, dtype=np.int64)
    f_val = min(f_val, 1 - f_train)
    fractions = (f_train, f_val, 1 - f_train - f_val)
    train, val, test = stratified_split(y, seed, fractions)
    everything = np.concatenate([train, val, test])
    assert np.array_equal(np.sort(everything), np.flatnonzero(y >= 0))  # disjoint, complete
    for part in (train, val, test):
        assert part.dtype == np.int64 and np.array_equal(part, np.sort(part))
    for c in np.unique(y[y >= 0]):
        n = int((y == c).sum())
        n_train = int(np.floor(f_train * n + 0.5 + 1e-9))
        assert int((y[train] == c).sum()) == n_train
        assert int((y[val] == c).sum()) == min(int(np.floor(f_val * n + 0.5 + 1e-9)),
                                               n - n_train)
    again = stratified_split(y, seed, fractions)
    assert all(np.array_equal(a, b) for a, b in zip(again, (train, val, test), strict=True))


def test_seeds_give_different_splits_and_empty_input():
    y = np.repeat(np.arange(4), 50)
    a, b = stratified_split(y, 0), stratified_split(y, 1)
    assert not np.array_equal(a[0], b[0])
    assert [len(p) for p in a] == [120, 40, 40]
    assert [p.size for p in stratified_split(np.zeros(0, np.int64), 3)] == [0, 0, 0]
    assert [p.size for p in stratified_split(np.full(4, -1), 3)] == [0, 0, 0]  # unlabelled


@pytest.mark.parametrize("labels,fractions,match", [
    (np.zeros((2, 2), np.int64), (0.6, 0.2, 0.2), "1-D integer"),
    (np.zeros(3, np.float32), (0.6, 0.2, 0.2), "1-D integer"),
    (np.zeros(3, np.int64), (0.6, 0.2, 0.3), "summing to 1"),
    (np.zeros(3, np.int64), (1.2, -0.2, 0.0), "non-negative"),
])
def test_bad_arguments(labels, fractions, match):
    with pytest.raises(ValueError, match=match):
        stratified_split(labels, 0, fractions)
