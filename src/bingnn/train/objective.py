r"""The training objective of every bingnn run: cross-entropy, logit KD and local structure
preservation (LSP), each optional.

.. math::
    \mathcal{L} = (1 - \alpha)\, \mathrm{CE}_{\epsilon}(s, y)
        + \alpha\, \mathcal{L}_{KD}(s, t; T)
        + \lambda\, \frac{1}{L} \sum_{l=1}^{L} \mathcal{L}_{LSP}(h^S_l, h^T_l)

with :math:`\mathrm{CE}_\epsilon` the cross-entropy with label smoothing :math:`\epsilon`
(binary cross-entropy per output for multi-label tasks), :math:`\mathcal{L}_{KD}` the
temperature-:math:`T` logit distillation (:func:`bingnn.distill.kd.kd_loss`, or
:func:`~bingnn.distill.kd.kd_loss_multilabel`) and :math:`\mathcal{L}_{LSP}` the local
structure loss (:mod:`bingnn.distill.lsp`) on the :math:`L` layer pairs the task hands over:
k-NN graphs of a DGCNN (:class:`KnnGraph`) or hidden node features on the graph's edges
(:class:`EdgeGraph`). Without a teacher the loss is :math:`\mathrm{CE}_\epsilon` alone.

Each term is a sum over the rows of this process divided by the number of rows of the global
batch (:class:`bingnn.train.task.Batch`): with one process, a plain mean; with ``W`` processes
the ``W`` local values add up to it. A term without rows (a sampled batch without a labelled
node) is zero, with a gradient path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from bingnn.distill.kd import kd_loss, kd_loss_multilabel
from bingnn.distill.lsp import get_kernel, lsp_loss_edges, lsp_loss_knn
from bingnn.train.task import Batch

__all__ = ["EdgeGraph", "KnnGraph", "Objective"]


@dataclass
class KnnGraph:
    """A dynamic k-NN graph: ``features (B, N, C)`` and the neighbour lists ``idx (B, N, k)``
    built on them."""

    features: Tensor
    idx: Tensor


@dataclass
class EdgeGraph:
    """Node features ``(M, C)`` on a fixed graph ``edge_index (2, E)`` (PyG's orientation)."""

    features: Tensor
    edge_index: Tensor


def _lsp_pair(s, t, kernel_s: str, kernel_t: str) -> Tensor:
    if isinstance(s, KnnGraph) and isinstance(t, KnnGraph):
        return lsp_loss_knn(s.features, t.features, s.idx, t.idx, kernel_s, kernel_t)
    if isinstance(s, EdgeGraph) and isinstance(t, EdgeGraph):
        ei = s.edge_index
        if t.edge_index is not s.edge_index and not torch.equal(t.edge_index, ei):
            ei = torch.cat([ei, t.edge_index], dim=1)  # the union; repeats count once
        return lsp_loss_edges(s.features, t.features, ei, kernel_s, kernel_t)
    raise TypeError(f"cannot pair local structures {type(s).__name__} and {type(t).__name__}")


@dataclass
class Objective:
    """Cross-entropy + logit KD + LSP (module docstring).

    Args:
        alpha: weight :math:`\\alpha` of KD when a teacher is given (CE gets
            :math:`1 - \\alpha`); in [0, 1].
        temperature: KD temperature :math:`T > 0`.
        label_smoothing: :math:`\\epsilon` in [0, 1) (single-label tasks).
        lsp_weight: :math:`\\lambda \\ge 0`; 0 switches LSP off.
        kernel_s, kernel_t: LSP kernels of student and teacher
            (:data:`bingnn.distill.lsp.KERNELS`).
        multilabel: outputs are independent binary tasks.

    Call: ``objective(logits, batch, teacher_logits=None, student_structure=None,
    teacher_structure=None)`` -> ``(loss, parts)`` with ``parts`` the detached float values of
    ``"ce"``, ``"kd"`` and ``"lsp"`` (the terms present).
    """

    alpha: float = 0.1
    temperature: float = 3.0
    label_smoothing: float = 0.0
    lsp_weight: float = 0.0
    kernel_s: str = "rbf_l2"
    kernel_t: str = "rbf_l2"
    multilabel: bool = False

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha (the KD weight) must be in [0, 1], got {self.alpha}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not self.lsp_weight >= 0:
            raise ValueError(f"lsp_weight must be >= 0, got {self.lsp_weight}")
        get_kernel(self.kernel_s)  # a bad name fails here, not in the first step
        get_kernel(self.kernel_t)

    @property
    def uses_lsp(self) -> bool:
        return self.lsp_weight > 0

    def cross_entropy(self, logits: Tensor, batch: Batch) -> Tensor:
        rows = batch.ce_rows
        out = logits if rows is None else logits[rows]
        n = out.shape[0]
        total = batch.ce_total if batch.ce_total is not None else n
        if n == 0 or total == 0:
            return logits.sum() * 0.0
        if batch.y is None:
            raise ValueError("the batch has labelled rows but no labels")
        y = batch.y if rows is None else batch.y[rows]
        if self.multilabel:
            per_row = F.binary_cross_entropy_with_logits(out, y.float(), reduction="none")
            return per_row.mean(dim=1).sum() / total
        ce = F.cross_entropy(
            out, y.view(-1).long(), label_smoothing=self.label_smoothing, reduction="sum"
        )
        return ce / total

    def distillation(self, logits: Tensor, teacher_logits: Tensor, batch: Batch) -> Tensor:
        rows = batch.kd_rows if batch.kd_rows is not None else batch.ce_rows
        total = batch.kd_total if batch.kd_rows is not None else batch.ce_total
        s = logits if rows is None else logits[rows]
        t = teacher_logits if rows is None else teacher_logits[rows]
        n = s.shape[0]
        total = total if total is not None else n
        if n == 0 or total == 0:
            return logits.sum() * 0.0
        fn = kd_loss_multilabel if self.multilabel else kd_loss
        return fn(s, t, self.temperature) * (n / total)

    def local_structure(self, student: Sequence, teacher: Sequence, batch: Batch) -> Tensor:
        if len(student) != len(teacher):
            raise ValueError(
                f"student has {len(student)} distilled layers but teacher has {len(teacher)}; "
                "LSP pairs them layer by layer"
            )
        if not student:
            raise ValueError("LSP is on (lsp_weight > 0) but the model has no distilled layer")
        terms = [_lsp_pair(s, t, self.kernel_s, self.kernel_t)
                 for s, t in zip(student, teacher, strict=True)]
        return torch.stack(terms).mean() * batch.lsp_share

    def __call__(
        self,
        logits: Tensor,
        batch: Batch,
        teacher_logits: Tensor | None = None,
        student_structure: Sequence | None = None,
        teacher_structure: Sequence | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        ce = self.cross_entropy(logits, batch)
        parts = {"ce": float(ce.detach())}
        if teacher_logits is None:
            return ce, parts
        kd = self.distillation(logits, teacher_logits, batch)
        parts["kd"] = float(kd.detach())
        total = (1.0 - self.alpha) * ce + self.alpha * kd
        if self.uses_lsp:
            if student_structure is None or teacher_structure is None:
                raise ValueError(
                    "LSP is on (lsp_weight > 0) but the local structures were not computed"
                )
            lsp = self.local_structure(student_structure, teacher_structure, batch)
            parts["lsp"] = float(lsp.detach())
            total = total + self.lsp_weight * lsp
        return total, parts
