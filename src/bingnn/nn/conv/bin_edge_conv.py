"""BinEdgeConv: EdgeConv with binary blocks and real-valued node features (variant RF)."""

from __future__ import annotations

from torch import Tensor, nn

from bingnn.nn.binary_block import BinaryBlock
from bingnn.nn.edge_features import edge_features
from bingnn.nn.knn import check_point_sets, knn
from bingnn.nn.quantizers import Quantizer


class BinEdgeConv(nn.Module):
    r"""EdgeConv whose edge MLP is a binary block; node features and the graph stay real.

    .. math::
        x_i' = \max_{j \in \mathcal{N}_k(i)} \mathrm{PReLU}\Big(\alpha \odot
            \big(q_a(\mathrm{BN}([x_j - x_i,\ x_i])) \, q_w(W)^\top\big)\Big)

    This is the "RF" variant of Bahri et al. (2021): activations entering the binary linear map
    are signs of batch-normalised edge features, the k-NN graph is built on the real node
    features (Euclidean by default).

    Args:
        in_channels, out_channels: feature sizes.
        k: neighbours per point.
        knn_metric: metric of the k-NN graph (``"l2"`` default).
        input_quantizer: quantizer of the edge features (``"ste_sign"``; ``"tanh"`` in the
            pseudo-quantized stage; ``"identity"`` on the first layer, whose xyz input stays real).
        kernel_quantizer: weight quantizer.
        centering: centering of the edge features before the quantizer (``"batchnorm"``).
        prelu: PReLU inside the block.
        rescale_points, rescale_neighbors: optional per-point / per-neighbour rescaling
            (they fix N and k).

    Shapes:
        ``x (B, N, C_in)`` -> ``(B, N, C_out)`` (+ ``(B, N, k)`` indices with
        ``return_graph=True``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        k: int = 20,
        knn_metric: str = "l2",
        input_quantizer: str | Quantizer | None = "ste_sign",
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        centering: str | None = "batchnorm",
        prelu: bool = True,
        rescale_points: int | None = None,
        rescale_neighbors: int | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.k = k
        self.knn_metric = knn_metric
        self.block = BinaryBlock(
            2 * in_channels,
            out_channels,
            input_quantizer=input_quantizer,
            kernel_quantizer=kernel_quantizer,
            centering=centering,
            rescale_points=rescale_points,
            rescale_neighbors=rescale_neighbors,
            prelu=prelu,
        )

    def reset_parameters(self) -> None:
        self.block.reset_parameters()

    def forward(self, x: Tensor, return_graph: bool = False):
        check_point_sets(x, self.k)
        idx = knn(x, self.k, self.knn_metric)
        h = self.block(edge_features(x, idx, "sub"))
        out = h.max(dim=2).values
        return (out, idx) if return_graph else out

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, k={self.k}, knn={self.knn_metric}"
