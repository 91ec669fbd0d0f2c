"""Classification metrics for point clouds (numpy): the two numbers the paper reports.

With predictions :math:`\\hat y` and targets :math:`y` over :math:`M` samples and :math:`C`
classes, the confusion matrix is :math:`A_{ij} = |\\{m : y_m = i, \\hat y_m = j\\}|` and

.. math::
    \\mathrm{OA} = \\frac{\\sum_i A_{ii}}{M}, \\qquad
    \\mathrm{mAcc} = \\frac{1}{|P|} \\sum_{i \\in P} \\frac{A_{ii}}{\\sum_j A_{ij}},

where :math:`P` is the set of classes present in the targets (absent classes would divide by 0).
Inputs are 1-D integer label arrays; take ``logits.argmax(-1)`` first.
"""

from __future__ import annotations

import numpy as np

__all__ = ["confusion_matrix", "mean_class_accuracy", "overall_accuracy"]


def _labels(x, name: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D array of class indices, got shape {a.shape}"
            + ("; take logits.argmax(-1) first" if a.ndim == 2 else "")
        )
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integer class indices, got dtype {a.dtype}")
    return a.astype(np.int64)


def _pair(pred, target) -> tuple[np.ndarray, np.ndarray]:
    p, t = _labels(pred, "pred"), _labels(target, "target")
    if p.shape != t.shape:
        raise ValueError(f"pred and target lengths differ: {p.shape[0]} vs {t.shape[0]}")
    if p.size == 0:
        raise ValueError("pred and target are empty: no sample to score")
    return p, t


def overall_accuracy(pred, target) -> float:
    """Fraction of samples with ``pred == target``, in [0, 1]."""
    p, t = _pair(pred, target)
    return float(np.mean(p == t))


def confusion_matrix(pred, target, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts; row = true class, column = predicted class.

    Raises:
        ValueError: a label outside ``[0, num_classes)``, mismatched lengths, empty input.
    """
    p, t = _pair(pred, target)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be an int, got {type(num_classes).__name__}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    for name, a in (("pred", p), ("target", t)):
        if a.min() < 0 or a.max() >= num_classes:
            raise ValueError(
                f"{name} has labels in [{a.min()}, {a.max()}], outside [0, {num_classes})"
            )
    return np.bincount(t * num_classes + p, minlength=num_classes**2).reshape(
        num_classes, num_classes
    )


def mean_class_accuracy(pred, target, num_classes: int) -> float:
    """Mean over the classes present in ``target`` of the per-class recall, in [0, 1]."""
    cm = confusion_matrix(pred, target, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    return float(np.mean(np.diag(cm)[present] / support[present]))
