"""BatchNorm statistics outside ``nn.BatchNorm1d.forward``: whether a layer uses the batch's
statistics, its training-mode affine map from given statistics, and the running-statistics
update ``nn.BatchNorm1d`` makes. Shared by the channel-last BatchNorm
(:mod:`bingnn.nn.centering`), the fast EdgeConvs (:mod:`bingnn.nn.edge_batchnorm`) and the
data-parallel global-batch BatchNorm (:mod:`bingnn.nn.global_batchnorm`)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["bn_affine", "eval_affine", "update_running_stats", "uses_batch_stats"]


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


def eval_affine(bn: nn.BatchNorm1d) -> tuple[Tensor, Tensor]:
    """BatchNorm in eval mode as ``fma(x, scale, shift)``, with the constants rounded as
    PyTorch's CPU kernel rounds them in float32: ``scale = weight * (1 / sqrt(running_var +
    eps))``, ``shift = bias - running_mean * scale`` with one rounding (the product is exact in
    float64). Its outputs then equal ``F.batch_norm``'s bit for bit on the CPU, and the
    exporter's constants (:mod:`bingnn.export.fold`) equal these. Differentiable in ``weight``
    and ``bias``."""
    var = bn.running_var.detach()
    if var.device.type == "cpu" and var.dtype == torch.float32:
        # The kernel takes 1 / std::sqrt(var + eps) per channel, correctly rounded; torch.sqrt
        # on a float32 CPU tensor is not always (it differed in 6 of 64 channels here).
        v = var.numpy()
        inv = torch.from_numpy(np.float32(1.0) / np.sqrt(v + np.float32(bn.eps)))
    else:
        inv = 1.0 / torch.sqrt(var + bn.eps)
    scale = inv * bn.weight if bn.weight is not None else inv
    bias = bn.bias if bn.bias is not None else torch.zeros_like(inv)
    wide = torch.float64 if scale.dtype != torch.float64 else scale.dtype
    shift = (bias.to(wide) - bn.running_mean.to(wide) * scale.to(wide)).to(scale.dtype)
    return scale, shift
