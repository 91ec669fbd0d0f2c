"""Float DGCNN classifier (Wang et al. 2019): the teacher of the cascaded distillation."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from bingnn.models._pointcloud import (
    check_points,
    max_avg_pool,
    model_dtype,
    reset_submodules,
    run_edge_convs,
)
from bingnn.nn.centering import ChannelBatchNorm
from bingnn.nn.conv import PointEdgeConv


class DGCNN(nn.Module):
    r"""Dynamic Graph CNN for point-cloud classification.

    Four EdgeConv layers (:class:`~bingnn.nn.PointEdgeConv`, widths 64, 64, 128, 256), each on
    the k-NN graph of the previous layer's output; their concatenation is mapped to
    ``emb_dims`` features, pooled with global max and average pooling, and classified by an MLP
    (512 -> 256 -> classes, dropout 0.5).
    BatchNorm and LeakyReLU(0.2) throughout.

    Args:
        num_classes: output classes (40 for ModelNet40).
        k: neighbours per point (20).
        widths: EdgeConv output widths.
        emb_dims: width of the point embedding before pooling (1024).
        mlp: hidden widths of the classifier.
        dropout: dropout of the classifier.

    Shapes:
        ``points (B, N, 3)`` -> logits ``(B, num_classes)``; with ``return_graphs=True`` also a
        list, one per EdgeConv, of ``(features (B, N, C_l), idx (B, N, k))``: the features the
        layer built its k-NN graph on and that graph (``graphs[0]`` is on xyz).
    """

    def __init__(
        self,
        num_classes: int = 40,
        k: int = 20,
        widths: Sequence[int] = (64, 64, 128, 256),
        emb_dims: int = 1024,
        mlp: Sequence[int] = (512, 256),
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        if len(mlp) != 2:
            raise ValueError(f"mlp must give two hidden widths, got {list(mlp)}")
        self.config = {
            "arch": "dgcnn",
            "num_classes": int(num_classes),
            "k": int(k),
            "widths": [int(w) for w in widths],
            "emb_dims": int(emb_dims),
            "mlp": [int(m) for m in mlp],
            "dropout": float(dropout),
        }
        self.k = k
        chans = [3, *widths]
        self.convs = nn.ModuleList(
            PointEdgeConv(chans[i], chans[i + 1], k=k, knn_metric="l2") for i in range(len(widths))
        )
        self.embed = nn.Sequential(
            nn.Linear(sum(widths), emb_dims, bias=False),
            ChannelBatchNorm(emb_dims),
            nn.LeakyReLU(0.2),
        )
        self.head = nn.Sequential(
            nn.Linear(2 * emb_dims, mlp[0], bias=False),
            nn.BatchNorm1d(mlp[0]),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Linear(mlp[0], mlp[1]),
            nn.BatchNorm1d(mlp[1]),
            nn.LeakyReLU(0.2),
            nn.Dropout(dropout),
            nn.Linear(mlp[1], num_classes),
        )

    def reset_parameters(self) -> None:
        reset_submodules(self)

    def forward(self, points: Tensor, return_graphs: bool = False):
        points = check_points(points, self.k, model_dtype(self))
        feats, graphs = run_edge_convs(self.convs, points)
        h = self.embed(feats)
        logits = self.head(max_avg_pool(h))
        return (logits, graphs) if return_graphs else logits
