"""Channel-last activations used by binary blocks."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bingnn.nn import _kernels
from bingnn.nn._amp import fp32_backward, fp32_forward


class _RescalePReLU(torch.autograd.Function):
    """:func:`rescale_prelu` with the native one-pass kernels (CPU float32)."""

    @staticmethod
    @fp32_forward
    def forward(ctx, x: Tensor, alpha: Tensor, slope: Tensor | None) -> Tensor:  # type: ignore[override]
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).contiguous()
        y = torch.empty_like(x2)
        _kernels._native.rows_rescale_prelu(
            x2.numpy(), alpha.detach().contiguous().numpy(),
            None if slope is None else slope.detach().contiguous().numpy(), y.numpy(),
            _kernels.threads())
        ctx.save_for_backward(x2, alpha, slope)
        ctx.shape = shape
        return y.view(shape)

    @staticmethod
    @fp32_backward
    def backward(ctx, g: Tensor):  # type: ignore[override]
        x2, alpha, slope = ctx.saved_tensors
        g2 = g.reshape(x2.shape).contiguous()
        gx = torch.empty_like(x2)
        ga, gs = _kernels._native.rows_rescale_prelu_backward(
            g2.numpy(), x2.detach().numpy(), alpha.detach().contiguous().numpy(),
            None if slope is None else slope.detach().contiguous().numpy(), gx.numpy(),
            _kernels.threads())
        return (gx.view(ctx.shape), torch.from_numpy(ga).float(),
                None if slope is None else torch.from_numpy(gs).float())


def rescale_prelu(x: Tensor, alpha: Tensor, slope: Tensor | None) -> Tensor:
    r""":math:`\mathrm{PReLU}(x \odot \alpha)` per channel (last dimension), as
    ``LearnedRescale`` then ``ChannelPReLU`` compute it (the same float operations:
    ``z = x * alpha``, ``where(z >= 0, z, z * slope)``; ``slope=None``: no PReLU). On CPU float32
    the forward and the backward are one pass each (native kernels), without the mask, product
    and ``where`` temporaries."""
    if _kernels.use_native(x, alpha, slope) and hasattr(_kernels._native, "rows_rescale_prelu"):
        return _RescalePReLU.apply(x, alpha, slope)
    z = x * alpha
    return z if slope is None else torch.where(z >= 0, z, z * slope)


class ChannelPReLU(nn.Module):
    r"""PReLU with one slope per channel on the last dimension (``nn.PReLU`` wants dim 1).

    :math:`y = x` if :math:`x \ge 0` else :math:`a_c x`, slopes initialised to ``init`` (0.25).
    """

    def __init__(self, channels: int, init: float = 0.25) -> None:
        super().__init__()
        self.channels = channels
        self.init = init
        self.weight = nn.Parameter(torch.full((channels,), float(init)))

    def reset_parameters(self) -> None:
        nn.init.constant_(self.weight, self.init)

    def forward(self, x: Tensor) -> Tensor:
        return torch.where(x >= 0, x, x * self.weight)

    def extra_repr(self) -> str:
        return f"{self.channels}, init={self.init}"
