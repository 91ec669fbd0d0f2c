"""XorEdgeConv: EdgeConv with binary node features and XOR edge features (variants BF1, BF2)."""

from __future__ import annotations

from torch import Tensor, nn

from bingnn.nn import quantizers
from bingnn.nn.activations import ChannelPReLU
from bingnn.nn.binary_linear import BinaryLinear
from bingnn.nn.centering import ChannelBatchNorm, get_centering
from bingnn.nn.edge_features import edge_features
from bingnn.nn.knn import check_point_sets, knn
from bingnn.nn.quantizers import Quantizer
from bingnn.nn.rescale import LearnedRescale


class XorEdgeConv(nn.Module):
    r"""EdgeConv whose node features are bits, so the next graph lives in Hamming space.

    Version 1 (BF1) normalises node features after the max:

    .. math::
        x_i' = q\Big(\mathrm{bal}\big(\mathrm{BN}_{1d}(\max_{j} \mathrm{PReLU}(\alpha \odot
            e_{ij} \, q_w(W)^\top))\big)\Big)

    Version 2 (BF2) normalises edge features before the max:

    .. math::
        x_i' = q\Big(\mathrm{bal}\big(\max_{j} \mathrm{BN}_{2d}(\mathrm{PReLU}(\alpha \odot
            e_{ij} \, q_w(W)^\top))\big)\Big)

    with edge features :math:`e_{ij} = [x_j \oplus x_i,\ x_i]` where, on +-1 values,
    :math:`x_j \oplus x_i = -x_j x_i` (``edge_op="xor"``), or :math:`[x_j - x_i, x_i]`
    (``edge_op="sub"``: the first layer on xyz, and the tanh stage), ``bal`` an optional mean or
    median balance and ``q`` the output quantizer (sign; tanh in the pseudo-quantized stage).
    The input is expected to be quantized already (the previous layer's output), so no
    quantizer is applied to the edge features.

    Args:
        in_channels, out_channels: feature sizes.
        k: neighbours per point.
        version: 1 (BF1) or 2 (BF2).
        knn_metric: ``"hamming"`` (exact on bits) or ``"l2"``.
        edge_op: ``"xor"`` or ``"sub"``.
        kernel_quantizer: weight quantizer.
        output_quantizer: quantizer of the node features produced (``"ste_sign"``).
        balance: ``"none"``, ``"mean"`` or ``"median"`` centering before the output quantizer.
        prelu: PReLU after the rescaling.
        rescale_points, rescale_neighbors: optional per-point / per-neighbour rescaling.

    Shapes:
        ``x (B, N, C_in)`` -> ``(B, N, C_out)`` (+ ``(B, N, k)`` indices with
        ``return_graph=True``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 20,
        version: int = 2,
        knn_metric: str = "hamming",
        edge_op: str = "xor",
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        output_quantizer: str | Quantizer | None = "ste_sign",
        balance: str | None = "none",
        prelu: bool = True,
        rescale_points: int | None = None,
        rescale_neighbors: int | None = None,
    ) -> None:
        super().__init__()
        if version not in (1, 2):
            raise ValueError(f"XorEdgeConv version must be 1 or 2, got {version}")
        if balance not in (None, "none", "mean", "median"):
            raise ValueError(f"balance must be 'none', 'mean' or 'median', got {balance!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = k
        self.version = version
        self.knn_metric = knn_metric
        self.edge_op = edge_op
        self.linear = BinaryLinear(2 * in_channels, out_channels, kernel_quantizer=kernel_quantizer)
        self.rescale = LearnedRescale(out_channels, rescale_points, rescale_neighbors)
        self.act = ChannelPReLU(out_channels) if prelu else None
        self.bn = ChannelBatchNorm(out_channels)
        self.balance = get_centering(balance or "none", out_channels)
        self.output_quantizer = quantizers.get(output_quantizer)

    def reset_parameters(self) -> None:
        for m in (self.linear, self.rescale, self.act, self.bn):
            if m is not None:
                m.reset_parameters()

    def forward(self, x: Tensor, return_graph: bool = False):
        check_point_sets(x, self.k)
        idx = knn(x, self.k, self.knn_metric)
        h = self.rescale(self.linear(edge_features(x, idx, self.edge_op)))
        if self.act is not None:
            h = self.act(h)
        if self.version == 2:
            h = self.bn(h).max(dim=2).values
        else:
            h = self.bn(h.max(dim=2).values)
        out = self.output_quantizer(self.balance(h))
        return (out, idx) if return_graph else out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, k={self.k}, version={self.version}, "
            f"knn={self.knn_metric}, edge_op={self.edge_op}"
        )
