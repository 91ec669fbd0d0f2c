"""Knowledge distillation for binary GNNs: logit KD, local structure preservation (LSP), the
combined training loss, and the cascaded multi-stage recipe runner.

``bingnn.distill.cascade`` (the runner, which pulls in models and data) is imported on demand.
"""

from bingnn.distill.kd import kd_loss, kd_loss_multilabel
from bingnn.distill.losses import DistillationLoss
from bingnn.distill.lsp import KERNELS, LSPKernel, get_kernel, lsp_loss_edges, lsp_loss_knn

__all__ = [
    "KERNELS",
    "DistillationLoss",
    "LSPKernel",
    "get_kernel",
    "kd_loss",
    "kd_loss_multilabel",
    "lsp_loss_edges",
    "lsp_loss_knn",
]
