"""The binary block: centre -> quantize -> binary linear -> rescale -> PReLU."""

from __future__ import annotations

from torch import Tensor, nn

from bingnn import _flags
from bingnn.nn import quantizers
from bingnn.nn.activations import ChannelPReLU, rescale_prelu
from bingnn.nn.binary_linear import BinaryLinear
from bingnn.nn.centering import get_centering
from bingnn.nn.quantizers import Quantizer
from bingnn.nn.rescale import LearnedRescale


class BinaryBlock(nn.Module):
    r"""Binary building block of Bahri et al. (2021), channel-last.

    .. math::
        y = \mathrm{PReLU}\big(\alpha \odot (q_a(\mathrm{centre}(x)) \, q_w(W)^\top)\big)

    Args:
        in_channels, out_channels: feature sizes.
        input_quantizer: activation quantizer (``"ste_sign"``; ``"tanh"`` in the pseudo-quantized
            stage; ``"identity"`` for real activations).
        kernel_quantizer: weight quantizer (``"ste_sign"`` or ``"identity"``).
        centering: ``"batchnorm"`` (default), ``"mean"``, ``"median"`` or ``"none"``.
        rescale: add the learned per-channel rescaling (default on).
        rescale_points, rescale_neighbors: also learn per-point / per-neighbour factors.
        prelu: end with a per-channel PReLU (init 0.25).
        bias: give the linear map a real bias (used by real-valued classifier layers).

    Shapes:
        ``(*, C_in)`` -> ``(*, C_out)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        input_quantizer: str | Quantizer | None = "ste_sign",
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        centering: str | None = "batchnorm",
        rescale: bool = True,
        rescale_points: int | None = None,
        rescale_neighbors: int | None = None,
        prelu: bool = True,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.center = get_centering(centering, in_channels)
        self.input_quantizer = quantizers.get(input_quantizer)
        self.linear = BinaryLinear(
            in_channels, out_channels, kernel_quantizer=kernel_quantizer, bias=bias
        )
        self.rescale = (
            LearnedRescale(out_channels, rescale_points, rescale_neighbors) if rescale else None
        )
        self.act = ChannelPReLU(out_channels) if prelu else None

    def reset_parameters(self) -> None:
        for m in (self.center, self.linear, self.rescale, self.act):
            if m is not None and hasattr(m, "reset_parameters"):
                m.reset_parameters()

    def forward(self, x: Tensor) -> Tensor:
        return self.project(self.input_quantizer(self.center(x)))

    def project(self, x: Tensor) -> Tensor:
        """The block after its quantizer: binary linear map, rescale, PReLU (for callers that
        quantize the inputs themselves, e.g. signs aggregated over a neighbourhood)."""
        x = self.linear(x)
        r = self.rescale
        if (r is not None and r.point_scale is None and r.neighbor_scale is None
                and not _flags.is_reference_mode()):
            # The same operations, fused (one pass each way on CPU).
            return rescale_prelu(x, r.channel_scale, None if self.act is None else self.act.weight)
        if r is not None:
            x = r(x)
        if self.act is not None:
            x = self.act(x)
        return x
