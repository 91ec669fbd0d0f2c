"""Centering before a sign: BatchNorm, or the paper's "balance" functions (mean, median).

A sign only carries information if its input is spread around zero; these modules move it there.
All work channel-last.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bingnn import _flags
from bingnn.nn import _kernels
from bingnn.nn._amp import fp32_backward, fp32_forward
from bingnn.nn.batchnorm_stats import update_running_stats


class _BatchNormRows(torch.autograd.Function):
    r"""Training-mode BatchNorm of ``x (M, C)`` over its rows, in a few row-vectorised passes
    (PyTorch's CPU kernel walks each channel of a channel-last tensor with a stride, far slower
    on large ``M``); on CPU float32 by the native kernels (one pass each for the statistics,
    the normalisation and the two backward steps).

    Forward: :math:`\hat x = (x - \mu) / \sqrt{\sigma^2 + \epsilon}` (subtraction first: a
    constant channel normalises to exactly 0), :math:`y = \gamma \hat x + \beta`; returns ``y``,
    :math:`\mu` and the biased :math:`\sigma^2`. Backward:
    :math:`\partial x = \gamma / \sqrt{\sigma^2 + \epsilon}\,(\partial y -
    \overline{\partial y} - \hat x\, \overline{\partial y\, \hat x})`."""

    @staticmethod
    @fp32_forward
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None,  # type: ignore[override]
                eps: float) -> tuple[Tensor, Tensor, Tensor]:
        native = _kernels.use_native(x, weight, bias) and hasattr(_kernels._native, "rows_stats")
        ctx.native = native
        if native:
            xc = x.contiguous()
            th = _kernels.threads()
            m64, v64 = _kernels._native.rows_stats(xc.numpy(), th)
            mean, var = torch.from_numpy(m64).float(), torch.from_numpy(v64).float()
            invstd = torch.rsqrt(var + eps)
            y = torch.empty_like(xc)
            _kernels._native.rows_bn_forward(
                xc.numpy(), mean.numpy(), invstd.numpy(),
                None if weight is None else weight.detach().contiguous().numpy(),
                None if bias is None else bias.detach().contiguous().numpy(), y.numpy(), th)
            ctx.save_for_backward(xc, mean, invstd, weight)
        else:
            var, mean = torch.var_mean(x, dim=0, correction=0)
            invstd = torch.rsqrt(var + eps)
            xhat = (x - mean).mul_(invstd)
            y = xhat if weight is None else xhat * weight
            if bias is not None:
                y = y + bias
            ctx.save_for_backward(xhat, invstd, weight)
        ctx.mark_non_differentiable(mean, var)
        return y, mean, var

    @staticmethod
    @fp32_backward
    def backward(ctx, gy: Tensor, _gm: Tensor | None, _gv: Tensor | None):  # type: ignore[override]
        m = gy.shape[0]
        if ctx.native:
            xc, mean, invstd, weight = ctx.saved_tensors
            gx = torch.empty_like(xc) if ctx.needs_input_grad[0] else None
            sg, sgx = _kernels._native.rows_bn_backward(
                gy.contiguous().numpy(), xc.detach().numpy(), mean.numpy(), invstd.numpy(),
                None if weight is None else weight.detach().contiguous().numpy(),
                None if gx is None else gx.numpy(), _kernels.threads())
            sum_gy, sum_gy_xhat = torch.from_numpy(sg).float(), torch.from_numpy(sgx).float()
        else:
            xhat, invstd, weight = ctx.saved_tensors
            sum_gy = gy.sum(0)
            sum_gy_xhat = (gy * xhat).sum(0)
            scale = invstd if weight is None else invstd * weight
            # d x = scale * (gy - mean(gy) - xhat * mean(gy * xhat))
            gx = torch.addcmul(-sum_gy / m, xhat, -sum_gy_xhat / m).add_(gy).mul_(scale)
        g_weight = sum_gy_xhat if weight is not None and ctx.needs_input_grad[1] else None
        g_bias = sum_gy if ctx.needs_input_grad[2] else None
        return gx, g_weight, g_bias, None


class ChannelBatchNorm(nn.BatchNorm1d):
    """BatchNorm over the last (channel) dimension, statistics over all leading dimensions.

    Equivalent to ``BatchNorm1d`` on ``(B, C, N)`` and ``BatchNorm2d`` on ``(B, C, N, k)`` of the
    channels-first reference code. In training mode (outside ``bingnn.nn.reference_mode``) the
    normalisation runs as row-vectorised passes (:class:`_BatchNormRows`), with the running
    statistics updated as ``nn.BatchNorm1d`` updates them.
    """

    def forward(self, x: Tensor) -> Tensor:  # type: ignore[override]
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        if not self.training or _flags.is_reference_mode() or flat.shape[0] <= 1:
            return super().forward(flat).reshape(shape)

        y, mean, var = _BatchNormRows.apply(flat, self.weight, self.bias, self.eps)
        update_running_stats(self, mean, var, flat.shape[0])
        return y.reshape(shape)


class MeanCenter(nn.Module):
    """Subtract the mean over the channels of each point (the paper's mean balance)."""

    def forward(self, x: Tensor) -> Tensor:
        return x - x.mean(dim=-1, keepdim=True)

    def reset_parameters(self) -> None:
        pass


class MedianCenter(nn.Module):
    """Subtract the median over the channels of each point, so about half the bits are +1.

    For an even channel count the lower median is used (``torch.median``'s convention).
    """

    def forward(self, x: Tensor) -> Tensor:
        return x - x.median(dim=-1, keepdim=True).values

    def reset_parameters(self) -> None:
        pass


class NoCenter(nn.Identity):
    def reset_parameters(self) -> None:
        pass


CENTERINGS = ("batchnorm", "mean", "median", "none")


def get_centering(name: str | None, channels: int) -> nn.Module:
    """Build a centering module: ``"batchnorm"`` (default of binary blocks), ``"mean"``,
    ``"median"`` or ``"none"``."""
    key = "none" if name is None else str(name).lower()
    if key in ("batchnorm", "bn"):
        return ChannelBatchNorm(channels)
    if key == "mean":
        return MeanCenter()
    if key == "median":
        return MedianCenter()
    if key == "none":
        return NoCenter()
    raise ValueError(f"unknown centering {name!r}; choose one of {', '.join(CENTERINGS)}")
