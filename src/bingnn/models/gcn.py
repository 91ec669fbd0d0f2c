"""GCN node classifiers: float GCN and binary GCN (Bi-GCN, Wang et al. 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from bingnn.models._node import NodeModel, batches, check_arch, check_stage, is_sparse
from bingnn.nn.conv.bin_gcn_conv import BinGCNConv


class BinGCN(NodeModel):
    r"""Binary GCN: ``num_layers`` :class:`~bingnn.nn.conv.BinGCNConv` layers
    (:math:`\mathbf{X}' = \hat{\mathbf{A}}_{sym} B(\mathbf{X}) + \mathbf{b}`), PReLU and
    dropout between them. The first layer keeps real inputs (Planetoid bag-of-words features
    are already 0/1) with the stage's weights; later layers centre and quantize.

    The arguments follow PyTorch Geometric's ``GCN``: ``BinGCN(in_channels, hidden_channels,
    num_layers, out_channels)``; everything after ``out_channels`` is keyword-only.

    Args:
        in_channels, hidden_channels: input and hidden feature sizes.
        num_layers: number of convolutions (depth).
        out_channels: output size (number of classes).
        dropout, input_dropout: dropout between layers / on the input features.
        stage: 0 float, 1 float weights + ``tanh``, 2 binary activations, 3 fully binary.
        centering: centering of hidden layers (``"batchnorm"`` default).
        binary_last: binarize the last layer's weights at stage 3 (default ``True``).
        node_scale: Bi-GCN's per-node scale of binarized features (default ``True``).
        cached: cache the normalised adjacency (transductive full-batch training).

    Shapes:
        ``x (N, in_channels)`` (dense, or sparse CSR/COO: the first transform is then a
        sparse-dense product), ``edge_index (2, E)`` (PyG's orientation: row 0 source, row 1
        target) -> logits ``(N, out_channels)``.
    """

    arch = "bingcn"

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        num_layers: int,
        out_channels: int,
        *,
        dropout: float = 0.5,
        input_dropout: float = 0.0,
        stage: int = 3,
        centering: str = "batchnorm",
        binary_last: bool = True,
        node_scale: bool = True,
        cached: bool = False,
    ) -> None:
        super().__init__()
        check_arch(in_channels, hidden_channels, num_layers, out_channels, dropout, input_dropout)
        act_q, w_q = check_stage(stage)
        self.config = {
            "arch": self.arch, "in_channels": in_channels, "hidden_channels": hidden_channels,
            "out_channels": out_channels, "num_layers": num_layers, "dropout": dropout,
            "input_dropout": input_dropout, "stage": stage, "centering": centering,
            "binary_last": binary_last, "node_scale": node_scale, "cached": cached,
        }
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.out_channels, self.stage = out_channels, stage
        self.dropout, self.input_dropout = dropout, input_dropout
        widths = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        convs = []
        for i in range(num_layers):
            first, last = i == 0, i == num_layers - 1
            convs.append(
                BinGCNConv(
                    widths[i], widths[i + 1],
                    input_quantizer="identity" if first else act_q,
                    kernel_quantizer="identity" if last and not binary_last else w_q,
                    centering="none" if first else centering,
                    node_scale=node_scale, cached=cached,
                )
            )
        self.convs = nn.ModuleList(convs)
        self._build_acts(hidden_channels, num_layers)

    def _layerwise_prepare(self, csr) -> dict:
        # Normalise once on the full graph; batches then propagate with fixed weights.
        ei, w = gcn_norm(csr.edge_index(), None, csr.num_nodes, add_self_loops=True)
        from bingnn.graphs.sampler import CSRGraph

        return {"csr": CSRGraph.from_edge_index(ei, csr.num_nodes, edge_weight=w)}

    def _layerwise_layer(self, i: int, x: Tensor, targets: Tensor, csr, state: dict) -> Tensor:
        conv: BinGCNConv = self.convs[i]
        if "h" not in state or state["h_layer"] != i:  # node-wise transform, in batches
            if is_sparse(x):  # one sparse-dense product (sparse rows cannot be sliced)
                state["h"] = conv.transform(x)
            else:
                state["h"] = torch.cat(
                    [conv.transform(x[b]) for b in batches(x.size(0), 65536)], dim=0
                ) if x.size(0) else x.new_zeros(0, conv.out_channels)
            state["h_layer"] = i
        src, dst_local, w = state["csr"].in_edges(targets)
        ei = torch.stack([src, dst_local])
        out = conv.propagate(
            ei, x=(state["h"], None), edge_weight=w, size=(x.size(0), targets.numel())
        )
        return out + conv.bias if conv.bias is not None else out


class GCN(BinGCN):
    """Float GCN: :class:`BinGCN` at ``stage=0`` (same layout as its binary students)."""

    arch = "gcn"

    def __init__(self, *args, stage: int = 0, **kwargs) -> None:
        super().__init__(*args, stage=stage, **kwargs)
