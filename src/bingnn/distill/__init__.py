"""Knowledge distillation for binary GNNs: logit KD, local structure preservation (LSP), the
recipes and the cascaded multi-stage runner.

The combined objective (CE + KD + LSP) is :class:`bingnn.train.objective.Objective`;
``bingnn.distill.cascade`` (the runner, which pulls in models and data) and
``bingnn.distill.recipe`` are imported on demand.
"""

from bingnn.distill.kd import kd_loss, kd_loss_multilabel
from bingnn.distill.lsp import KERNELS, LSPKernel, get_kernel, lsp_loss_edges, lsp_loss_knn

__all__ = [
    "KERNELS",
    "LSPKernel",
    "get_kernel",
    "kd_loss",
    "kd_loss_multilabel",
    "lsp_loss_edges",
    "lsp_loss_knn",
]
