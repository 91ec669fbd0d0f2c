"""Metrics against hand counts and plain-python loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.data.metrics import confusion_matrix, mean_class_accuracy, overall_accuracy


def test_hand_computed():
    target = [0, 0, 0, 1, 1, 2]
    pred = [0, 1, 0, 1, 1, 0]
    assert overall_accuracy(pred, target) == pytest.approx(4 / 6)
    # class 0: 2/3, class 1: 2/2, class 2: 0/1; class 3 absent from target is ignored.
    assert mean_class_accuracy(pred, target, 4) == pytest.approx((2 / 3 + 1 + 0) / 3)
    cm = confusion_matrix(pred, target, 4)
    expected = np.zeros((4, 4), np.int64)
    expected[0, 0], expected[0, 1], expected[1, 1], expected[2, 0] = 2, 1, 2, 1
    np.testing.assert_array_equal(cm, expected)


def test_class_only_in_pred_is_not_averaged():
    assert mean_class_accuracy([3, 3], [0, 0], 4) == 0.0
    assert mean_class_accuracy([0, 3], [0, 0], 4) == 0.5


@settings(max_examples=50, deadline=None)
@given(
    st.integers(1, 7).flatmap(
        lambda c: st.tuples(
            st.just(c),
            st.lists(st.tuples(st.integers(0, c - 1), st.integers(0, c - 1)), min_size=1),
        )
    )
)
def test_against_loops(case):
    c, pairs = case
    pred = np.array([p for p, _ in pairs])
    target = np.array([t for _, t in pairs])
    cm = np.zeros((c, c), int)
    for p, t in pairs:
        cm[t, p] += 1
    np.testing.assert_array_equal(confusion_matrix(pred, target, c), cm)
    hits = sum(p == t for p, t in pairs)
    assert overall_accuracy(pred, target) == pytest.approx(hits / len(pairs))
    recalls = [
        sum(1 for p, t in pairs if t == k and p == k) / sum(1 for _, t in pairs if t == k)
        for k in range(c)
        if any(t == k for _, t in pairs)
    ]
    assert mean_class_accuracy(pred, target, c) == pytest.approx(sum(recalls) / len(recalls))
    assert confusion_matrix(pred, target, c).sum() == len(pairs)


def test_torch_tensors_accepted():
    torch = pytest.importorskip("torch")
    assert overall_accuracy(torch.tensor([1, 2]), torch.tensor([1, 1])) == 0.5


@pytest.mark.parametrize(
    "pred,target,exc,match",
    [
        ([0, 1], [0], ValueError, "lengths differ"),
        ([], [], ValueError, "empty"),
        (np.zeros((2, 3)), [0, 1], ValueError, "argmax"),
        ([0.5, 1.0], [0, 1], TypeError, "integer"),
    ],
)
def test_bad_inputs(pred, target, exc, match):
    with pytest.raises(exc, match=match):
        overall_accuracy(pred, target)
    with pytest.raises(exc, match=match):
        mean_class_accuracy(pred, target, 3)


def test_out_of_range_labels():
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 3], [0, 1], 3)
    with pytest.raises(ValueError, match="outside"):
        confusion_matrix([0, 1], [-1, 1], 3)
    with pytest.raises(ValueError, match=">= 1"):
        confusion_matrix([0], [0], 0)
