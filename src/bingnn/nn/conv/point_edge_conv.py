"""PointEdgeConv: the EdgeConv of DGCNN on point sets (Wang et al., "Dynamic Graph CNN for
Learning on Point Clouds", ACM TOG 2019)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from bingnn import _flags
from bingnn.nn.batchnorm_stats import bn_affine, update_running_stats, uses_batch_stats
from bingnn.nn.centering import ChannelBatchNorm
from bingnn.nn.edge_batchnorm import check_count, forward_replaced, linear_edge_stats
from bingnn.nn.edge_features import edge_features
from bingnn.nn.edge_linear import linear_parts
from bingnn.nn.global_batchnorm import batch_moments
from bingnn.nn.knn import layer_graph
from bingnn.nn.neighbor_max import NeighborValues, neighbor_max


class PointEdgeConv(nn.Module):
    r"""Float EdgeConv on a dynamic k-NN graph of a point set.

    .. math::
        x_i' = \max_{j \in \mathcal{N}_k(i)} \mathrm{LeakyReLU}_{0.2}\big(
            \mathrm{BN}(W [x_j - x_i,\ x_i])\big)

    where :math:`\mathcal{N}_k(i)` are the ``k`` nearest neighbours of :math:`x_i` (itself
    included) in the given metric. The layer takes dense point sets and builds the graph itself
    (PyTorch Geometric's counterpart is ``DynamicEdgeConv``; its ``EdgeConv`` takes a graph).

    Computation. The map is linear in the edge feature, so the layer computes
    :math:`u = W_a x` and :math:`v = (W_b - W_a) x` per node
    (:mod:`bingnn.nn.edge_linear`), takes the BatchNorm statistics of
    :math:`y_{ij} = u_j + v_i` over the edges from per-node sums
    (:mod:`bingnn.nn.edge_batchnorm`), and, BatchNorm and LeakyReLU being monotone per channel,
    the max over neighbours at the extremes of :math:`u_j` (:mod:`bingnn.nn.neighbor_max`).
    Under the data-parallel trainer the statistics are those of the global batch
    (:mod:`bingnn.nn.global_batchnorm`).
    Inside :func:`bingnn.nn.reference_mode` it runs the plain edge-by-edge formulation instead.

    Args:
        in_channels: :math:`C_{in}`.
        out_channels: :math:`C_{out}`.
        k: neighbours per point.
        knn_metric: ``"l2"`` (default), ``"l1"`` or ``"hamming"``.
        negative_slope: LeakyReLU slope (0.2; must be >= 0).

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
        if negative_slope < 0:
            raise ValueError(f"negative_slope must be >= 0, got {negative_slope}")
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
        idx = layer_graph(x, self.k, self.knn_metric, self.in_channels, type(self).__name__)
        if _flags.is_reference_mode() or forward_replaced(self.bn):
            out = self.forward_reference(x, idx)
        else:
            out = self.forward_fast(x, idx)
        return (out, idx) if return_graph else out

    def forward_reference(self, x: Tensor, idx: Tensor) -> Tensor:
        """The plain formulation: every edge feature, the linear map, BatchNorm and LeakyReLU
        on ``(B, N, k, C)`` tensors, then the max."""
        h = self.act(self.bn(self.lin(edge_features(x, idx, "sub"))))
        return h.max(dim=2).values

    def forward_fast(self, x: Tensor, idx: Tensor) -> Tensor:
        """Per-node linear parts, edge statistics from per-node sums, max at the extremes."""
        u, v = linear_parts(x, self.lin.weight)
        values = NeighborValues(v, u=u, idx=idx)
        bn = self.bn
        if uses_batch_stats(bn):
            ext = values.extremes(with_sum=True)
            check_count(idx.numel(), self.out_channels)
            mean, var, count = batch_moments(bn, *linear_edge_stats(values), idx.numel())
            update_running_stats(bn, mean, var, count)
            s, t = bn_affine(bn, mean, var)
            slope = self.act.negative_slope

            def f(y: Tensor, cols: Tensor | None) -> Tensor:
                return F.leaky_relu(y * s + t, slope)
        else:
            ext = values.extremes()

            def f(y: Tensor, cols: Tensor | None) -> Tensor:
                return self.act(bn(y))

        return neighbor_max(values, f, extremes=ext)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.k}, knn={self.knn_metric}"
