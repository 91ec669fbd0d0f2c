"""EdgeConv of DGCNN (Wang et al., "Dynamic Graph CNN for Learning on Point Clouds", 2019)."""

from __future__ import annotations

from torch import Tensor, nn

from bingnn.nn.centering import ChannelBatchNorm
from bingnn.nn.edge_features import edge_features
from bingnn.nn.knn import check_point_sets, knn


class EdgeConv(nn.Module):
    r"""Float EdgeConv on a dynamic k-NN graph.

    .. math::
        x_i' = \max_{j \in \mathcal{N}_k(i)} \mathrm{LeakyReLU}_{0.2}\big(
            \mathrm{BN}(W [x_j - x_i,\ x_i])\big)

    where :math:`\mathcal{N}_k(i)` are the ``k`` nearest neighbours of :math:`x_i` (itself
    included) in the given metric.

    Args:
        in_channels: :math:`C_{in}`.
        out_channels: :math:`C_{out}`.
        k: neighbours per point.
        knn_metric: ``"l2"`` (default), ``"l1"`` or ``"hamming"``.
        negative_slope: LeakyReLU slope (0.2).

    Shapes:
        ``x (B, N, C_in)`` -> ``(B, N, C_out)``; with ``return_graph=True`` also the
        neighbour indices ``(B, N, k)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 20,
        knn_metric: str = "l2",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = k
        self.knn_metric = knn_metric
        self.lin = nn.Linear(2 * in_channels, out_channels, bias=False)
        self.bn = ChannelBatchNorm(out_channels)
        self.act = nn.LeakyReLU(negative_slope)

    def reset_parameters(self) -> None:
        self.lin.reset_parameters()
        self.bn.reset_parameters()

    def forward(self, x: Tensor, return_graph: bool = False):
        check_point_sets(x, self.k)
        idx = knn(x, self.k, self.knn_metric)
        h = self.act(self.bn(self.lin(edge_features(x, idx, "sub"))))
        out = h.max(dim=2).values
        return (out, idx) if return_graph else out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.k}, knn={self.knn_metric}"
