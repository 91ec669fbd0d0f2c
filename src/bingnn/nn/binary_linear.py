"""Binary linear layer (also the 1x1 convolution of point-cloud models, applied channel-last)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bingnn import _flags
from bingnn.nn import quantizers
from bingnn.nn.binary_matmul import pm1_linear
from bingnn.nn.quantizers import Quantizer


class BinaryLinear(nn.Module):
    r"""Linear map whose weights are quantized on the fly from latent real weights.

    .. math::
        y = x \, q_w(W)^\top, \qquad W \in [-1, 1]^{C_{out} \times C_{in}}

    With ``kernel_quantizer="ste_sign"`` the effective weights are +-1 and the latent weights are
    clipped to ``[-1, 1]`` before each use (the STE passes no gradient outside that range, so a
    weight left outside could never come back). With ``"identity"`` the layer is an ordinary
    bias-free linear layer, which is how distillation stages 1 and 2 train the same architecture
    with real weights.

    Args:
        in_channels: input features :math:`C_{in}`.
        out_channels: output features :math:`C_{out}`.
        kernel_quantizer: quantizer of the weights (name or :class:`Quantizer`), default
            ``"ste_sign"``.
        bias: add a real bias (off by default; binary layers are followed by rescaling).

    Shapes:
        input ``(*, C_in)`` -> output ``(*, C_out)``: a 1x1 convolution over any number of
        leading (batch, point, neighbour) dimensions.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        bias: bool = False,
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError("BinaryLinear needs positive channel counts")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_quantizer = quantizers.get(kernel_quantizer)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    @property
    def binary_weights(self) -> bool:
        return self.kernel_quantizer.is_binary

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def clip_weights(self) -> None:
        """Clip the latent weights to [-1, 1] (a no-op for real weights)."""
        if self.binary_weights:
            with torch.no_grad():
                self.weight.clamp_(-1.0, 1.0)

    def quantized_weight(self) -> Tensor:
        """The weights the forward pass uses (+-1 for binary layers)."""
        return self.kernel_quantizer(self.weight)

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_channels:
            raise ValueError(
                f"BinaryLinear expected {self.in_channels} input channels, got shape "
                f"{tuple(x.shape)}"
            )
        if self.training:
            self.clip_weights()
        w = self.quantized_weight()
        if self.binary_weights and not _flags.is_reference_mode():
            # +-1 weights: on +-1 inputs the forward runs on packed bits (same values).
            y = pm1_linear(x, w)
            return y if self.bias is None else y + self.bias
        return F.linear(x, w, self.bias)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, "
            f"weights={self.kernel_quantizer.name}, bias={self.bias is not None}"
        )
