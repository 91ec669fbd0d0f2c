r"""The training objective of cascaded distillation.

.. math::
    \mathcal{L} = (1 - \alpha)\, \mathrm{CE}_{\epsilon}(s, y)
        + \alpha\, \mathcal{L}_{KD}(s, t; T)
        + \lambda\, \frac{1}{L - 1} \sum_{l=2}^{L} \mathcal{L}_{LSP}^{(l)}

with :math:`\mathrm{CE}_\epsilon` the cross-entropy with label smoothing :math:`\epsilon`,
:math:`\mathcal{L}_{KD}` the temperature-:math:`T` logit distillation
(:func:`bingnn.distill.kd.kd_loss`) and :math:`\mathcal{L}_{LSP}^{(l)}` the local structure loss
(:func:`bingnn.distill.lsp.lsp_loss_knn`) on the k-NN graph of EdgeConv layer :math:`l`. The
first graph (on the fixed xyz input) is skipped. Defaults follow the reference code:
:math:`\alpha = 0.1`, :math:`\lambda = 100`, :math:`T = 3`, :math:`\epsilon = 0.2`.

Without a teacher the loss is the label-smoothed cross-entropy alone (stage 0).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bingnn.distill.kd import kd_loss
from bingnn.distill.lsp import get_kernel, lsp_loss_knn

__all__ = ["DistillationLoss", "Graphs"]

#: One entry per EdgeConv layer: ``(features (B, N, C_l), idx (B, N, k) int64)``.
Graphs = Sequence[tuple[Tensor, Tensor]]


@dataclass
class DistillationLoss(nn.Module):
    """Cross-entropy + logit KD + LSP, as a callable module.

    Args:
        alpha: weight :math:`\\alpha` of the KD term (CE gets :math:`1 - \\alpha`).
        lsp_weight: :math:`\\lambda`; ``0`` disables LSP.
        temperature: KD temperature :math:`T`.
        label_smoothing: :math:`\\epsilon` of the cross-entropy.
        kernel_s, kernel_t: LSP kernel names for student and teacher
            (see :data:`bingnn.distill.lsp.KERNELS`).
        skip_graphs: number of leading graphs without LSP (1: the xyz graph).

    Call: ``loss(student_logits (B, C), labels (B,), teacher_logits=None, student_graphs=None,
    teacher_graphs=None)`` -> ``(total, parts)`` with ``parts`` a dict of detached floats
    ``{"ce", "kd", "lsp"}`` for logging.
    """

    alpha: float = 0.1
    lsp_weight: float = 100.0
    temperature: float = 3.0
    label_smoothing: float = 0.2
    kernel_s: str = "rbf_l2"
    kernel_t: str = "rbf_l2"
    skip_graphs: int = 1

    def __post_init__(self) -> None:
        super().__init__()
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {self.alpha}")
        if self.lsp_weight < 0:
            raise ValueError(f"lsp_weight must be >= 0, got {self.lsp_weight}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.skip_graphs < 0:
            raise ValueError(f"skip_graphs must be >= 0, got {self.skip_graphs}")
        get_kernel(self.kernel_s)  # fail early on a bad name
        get_kernel(self.kernel_t)

    def __hash__(self) -> int:  # dataclass eq would make the module unhashable
        return id(self)

    @property
    def needs_graphs(self) -> bool:
        return self.lsp_weight > 0

    def forward(
        self,
        student_logits: Tensor,
        labels: Tensor,
        teacher_logits: Tensor | None = None,
        student_graphs: Graphs | None = None,
        teacher_graphs: Graphs | None = None,
    ) -> tuple[Tensor, dict[str, float]]:
        ce = F.cross_entropy(student_logits, labels, label_smoothing=self.label_smoothing)
        parts = {"ce": float(ce.detach())}
        if teacher_logits is None:
            return ce, parts
        kd = kd_loss(student_logits, teacher_logits, self.temperature)
        total = (1.0 - self.alpha) * ce + self.alpha * kd
        parts["kd"] = float(kd.detach())
        if self.lsp_weight > 0:
            if student_graphs is None or teacher_graphs is None:
                raise ValueError(
                    "LSP is enabled (lsp_weight > 0) but student/teacher graphs were not given; "
                    "call the models with return_graphs=True or set lsp_weight = 0"
                )
            if len(student_graphs) != len(teacher_graphs):
                raise ValueError(
                    f"student has {len(student_graphs)} graphs but teacher has "
                    f"{len(teacher_graphs)}; LSP pairs them layer by layer"
                )
            terms = [
                lsp_loss_knn(sf, tf, si, ti, self.kernel_s, self.kernel_t)
                for (sf, si), (tf, ti) in zip(
                    student_graphs[self.skip_graphs :],
                    teacher_graphs[self.skip_graphs :],
                    strict=True,
                )
            ]
            if terms:
                lsp = torch.stack(terms).mean()
                total = total + self.lsp_weight * lsp
                parts["lsp"] = float(lsp.detach())
        return total, parts
