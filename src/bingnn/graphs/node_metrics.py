"""Scores of node predictions: accuracy, mean ROC-AUC over binary tasks, or an OGB
``Evaluator`` (what the leaderboards report)."""

from __future__ import annotations

from typing import Any

import numpy as np
from torch import Tensor

__all__ = ["node_score"]


def _average_ranks(v: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (the Mann-Whitney convention)."""
    order = np.argsort(v, kind="mergesort")
    sv = v[order]
    starts = np.r_[0, np.flatnonzero(sv[1:] != sv[:-1]) + 1]
    ends = np.r_[starts[1:], sv.size]
    avg = (starts + ends + 1) / 2.0  # mean of ranks start+1 .. end
    ranks = np.empty(v.size)
    ranks[order] = np.repeat(avg, ends - starts)
    return ranks


def _rocauc(scores: np.ndarray, y: np.ndarray) -> float:
    """Mean over tasks (with both classes present) of the ROC-AUC, via the rank statistic."""
    aucs = []
    for t in range(y.shape[1]):
        pos = y[:, t] == 1
        n_pos, n_neg = int(pos.sum()), int((~pos).sum())
        if n_pos == 0 or n_neg == 0:
            continue
        r = _average_ranks(scores[:, t])
        aucs.append((r[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    if not aucs:
        raise ValueError("no task has both positive and negative labels; ROC-AUC undefined")
    return float(np.mean(aucs))


def node_score(logits: Tensor, y: Tensor, idx: Tensor, metric: str = "acc",
               evaluator: Any = None) -> float:
    """Score ``logits[idx]`` against ``y[idx]``: accuracy, mean ROC-AUC, or an OGB
    ``Evaluator`` (its ``eval_metric`` is read from the result)."""
    if idx.numel() == 0:
        return float("nan")
    out, yt = logits[idx], y[idx]
    if metric == "ogb":
        if evaluator is None:
            raise ValueError("metric 'ogb' needs an OGB Evaluator")
        if evaluator.eval_metric == "acc":
            pred = out.argmax(dim=-1, keepdim=True)
            res = evaluator.eval({"y_true": yt.view(-1, 1), "y_pred": pred})
        else:
            res = evaluator.eval({"y_true": yt, "y_pred": out})
        return float(res[evaluator.eval_metric])
    if metric == "rocauc":
        return _rocauc(out.detach().cpu().numpy(), yt.cpu().numpy())
    return float((out.argmax(dim=-1) == yt.view(-1)).float().mean())
