"""Result charts (matplotlib, Agg backend: no display needed), written atomically as PNG."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import Any

from bingnn.utils.atomic import atomic_write_bytes

__all__ = ["plot_cascade_accuracy", "plot_training_curves"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def plot_cascade_accuracy(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "",
    metric: str = "oa",
) -> None:
    """Bar chart of the test score per variant (groups) and stage (bars), with the float
    teacher (``stage == 0``) as a horizontal line, as in the paper's Figure 1.

    Args:
        rows: summary rows with ``"stage"``, ``"variant"`` and ``"test_<metric>"`` (in
            [0, 1]; :func:`bingnn.train.report.summary_row`).
        path: the PNG file to write.
        metric: the score to draw (``"oa"`` for point clouds, ``"acc"`` for nodes).
    """
    plt = _pyplot()
    key = f"test_{metric}"
    rows = [r for r in rows if r.get(key) not in (None, "")]
    base = [r for r in rows if int(r["stage"]) == 0]
    students = [r for r in rows if int(r["stage"]) != 0]
    variants = list(dict.fromkeys(r["variant"] for r in students))
    stages = sorted({r["stage"] for r in students})
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * max(1, len(variants)), 4.0))
    width = 0.8 / max(1, len(stages))
    colors = ["#9ecae1", "#4292c6", "#08519c"]
    for si, stage in enumerate(stages):
        xs, ys = [], []
        for vi, v in enumerate(variants):
            hit = [r for r in students if r["variant"] == v and int(r["stage"]) == stage]
            if hit:
                xs.append(vi + (si - (len(stages) - 1) / 2) * width)
                ys.append(100.0 * float(hit[0][key]))
        bars = ax.bar(xs, ys, width, label=f"stage {stage}", color=colors[si % len(colors)])
        for b, y in zip(bars, ys, strict=True):
            ax.annotate(
                f"{y:.1f}",
                (b.get_x() + b.get_width() / 2, y),
                ha="center",
                va="bottom",
                fontsize=7,
            )
    for i, b in enumerate(base):
        oa = 100.0 * float(b[key])
        ax.axhline(oa, color="#cb181d", linestyle="--" if i == 0 else ":", linewidth=1.2,
                   label=f"{b['variant']} {oa:.1f}")
    ax.set_xticks(range(len(variants)))
    ax.set_xticklabels([v.upper() for v in variants])
    ax.set_ylabel(f"test {'overall accuracy' if metric == 'oa' else metric} (%)")
    ax.set_ylim(0, 100)
    ax.set_title(title or "Cascaded distillation: accuracy per stage")
    # below the axes, so it never hides a bar
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=4, fontsize=8, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def plot_training_curves(
    rows: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = ""
) -> None:
    """Training loss, and training and validation scores per epoch, from a run's
    ``metrics.csv`` rows (:func:`bingnn.train.trainer.fit`)."""
    plt = _pyplot()
    ep = [r["epoch"] for r in rows]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
    a1.plot(ep, [r["loss"] for r in rows], marker=".")
    a1.set_xlabel("epoch")
    a1.set_ylabel("training loss")
    if any(r.get("train_acc") not in (None, "") for r in rows):
        a2.plot(ep, [100 * float(r["train_acc"] or 0) for r in rows], marker=".",
                label="train acc (running)")
    for k in (k for k in (rows[0] if rows else {}) if k.startswith("val_")):
        a2.plot(ep, [100 * float(r[k]) for r in rows], marker=".", label=k.replace("_", " "))
    a2.set_xlabel("epoch")
    a2.set_ylabel("score (%)")
    a2.legend(fontsize=8)
    fig.suptitle(title)
    _save(fig, path)
    plt.close(fig)
