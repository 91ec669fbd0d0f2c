"""BatchNorm statistics outside ``nn.BatchNorm1d.forward``: whether a layer uses the batch's
statistics, its training-mode affine map from given statistics, and the running-statistics
update ``nn.BatchNorm1d`` makes. Shared by the channel-last BatchNorm
(:mod:`bingnn.nn.centering`), the fast EdgeConvs (:mod:`bingnn.nn.edge_batchnorm`) and the
data-parallel global-batch BatchNorm (:mod:`bingnn.nn.global_batchnorm`)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["bn_affine", "update_running_stats", "uses_batch_stats"]


def uses_batch_stats(bn: nn.BatchNorm1d) -> bool:
    """Whether ``bn`` normalises with the statistics of the current batch (training mode, or
    no running statistics)."""
    return bn.training or (bn.running_mean is None and bn.running_var is None)


def update_running_stats(bn: nn.BatchNorm1d, mean: Tensor, var: Tensor, count: int,
                         cols: slice | None = None, step: bool = True) -> None:
    """Update ``bn``'s running statistics (channels ``cols``, all by default) with a batch's
    ``mean`` and biased ``var`` over ``count`` values, exactly as ``nn.BatchNorm1d`` does in
    training mode; ``step`` also counts the batch (do it once per forward)."""
    if not (bn.training and bn.track_running_stats) or bn.running_mean is None:
        return
    with torch.no_grad():
        if step and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            factor = 1.0 / float(bn.num_batches_tracked)
        else:
            factor = bn.momentum
        cols = cols if cols is not None else slice(None)
        rm, rv = bn.running_mean[cols], bn.running_var[cols]
        unbiased = var.detach().to(rv.dtype) * (count / (count - 1))
        rm.mul_(1.0 - factor).add_(mean.detach().to(rm.dtype), alpha=factor)
        rv.mul_(1.0 - factor).add_(unbiased, alpha=factor)


def bn_affine(bn: nn.BatchNorm1d, mean: Tensor, var: Tensor) -> tuple[Tensor, Tensor]:
    """``(s, t)`` of the training-mode BatchNorm with batch statistics ``mean, var``."""
    s = torch.rsqrt(var + bn.eps)
    if bn.weight is not None:
        s = s * bn.weight
    t = -mean * s
    if bn.bias is not None:
        t = t + bn.bias
    return s, t
