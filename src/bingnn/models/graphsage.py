"""GraphSAGE node classifiers: float teacher and binary student (Bahri et al. 2021)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from bingnn.models._node import NodeModel, check_arch, check_stage, is_sparse, sparse_csr
from bingnn.nn.conv.bin_sage_conv import BinSAGEConv


def _append_empty_row(x: Tensor) -> Tensor:
    """``(N, F)`` sparse -> ``(N + 1, F)`` sparse whose last row is empty."""
    n, f = x.shape
    if x.layout == torch.sparse_csr:
        crow = x.crow_indices()
        return sparse_csr(torch.cat([crow, crow[-1:]]), x.col_indices(), x.values(), (n + 1, f))
    x = x.coalesce()
    return torch.sparse_coo_tensor(x.indices(), x.values(), (n + 1, f), is_coalesced=True,
                                   check_invariants=False)


class BinSAGE(NodeModel):
    r"""Binary GraphSAGE for node property prediction.

    ``num_layers`` :class:`~bingnn.nn.conv.BinSAGEConv` layers
    (:math:`\mathbf{x}'_i = B_l(\operatorname{mean}_{j\in\mathcal{N}(i)}\mathbf{x}_j) +
    B_r(\mathbf{x}_i)`), PReLU and dropout between them. The first layer keeps real inputs
    (no centering, no activation quantizer) with the stage's weights; the later layers centre
    (``centering``) and quantize their inputs.

    The arguments follow PyTorch Geometric's ``GraphSAGE``: ``BinSAGE(in_channels,
    hidden_channels, num_layers, out_channels)``; everything after ``out_channels`` is
    keyword-only.

    Args:
        in_channels, hidden_channels: input and hidden feature sizes.
        num_layers: number of convolutions (depth).
        out_channels: output size (number of classes).
        dropout: dropout between layers; ``input_dropout``: on the input features.
        stage: quantization stage: 0 float, 1 float weights + ``tanh``, 2 binary activations
            and float weights, 3 fully binary (default).
        centering: centering of hidden layers (``"batchnorm"`` default, ``"mean"``,
            ``"median"``, ``"none"``).
        binary_last: binarize the last layer's weights at stage 3 (default ``True``); with
            ``False`` the classifier layer keeps real weights.
        aggr: neighbourhood aggregation (``"mean"``).
        sign_messages: hidden layers aggregate the signs of their neighbours' features and
            take a majority vote (:class:`~bingnn.nn.conv.BinSAGEConv`), so the engine reads
            one bit per channel and edge there instead of a float (stages 1-3; the float
            teacher ignores it).

    Sparse input features (``torch.sparse_csr``/``coo``) are projected before they are
    averaged: the first layer is affine in its input, so with :math:`f = B_l`

    .. math::
        f\Big(\operatorname{mean}_{j\in\mathcal{N}(i)}\mathbf{x}_j\Big)
            = \operatorname{mean}_{j\in\mathcal{N}(i)} f(\mathbf{x}_j)

    for every node with a neighbour, and :math:`f(\mathbf{0})` for an isolated one. The
    product :math:`X W^\top` is then a sparse-dense one and the messages carry
    ``hidden_channels`` instead of ``in_channels`` values (same result up to float rounding).

    Shapes:
        ``x (N, in_channels)`` (dense or sparse), ``edge_index (2, E)`` (PyG's orientation:
        row 0 source, row 1 target) -> logits ``(N, out_channels)``.
    """

    arch = "binsage"

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
        aggr: str = "mean",
        sign_messages: bool = False,
    ) -> None:
        super().__init__()
        check_arch(in_channels, hidden_channels, num_layers, out_channels, dropout, input_dropout)
        act_q, w_q = check_stage(stage)
        self.config = {
            "arch": self.arch, "in_channels": in_channels, "hidden_channels": hidden_channels,
            "out_channels": out_channels, "num_layers": num_layers, "dropout": dropout,
            "input_dropout": input_dropout, "stage": stage, "centering": centering,
            "binary_last": binary_last, "aggr": aggr,
        }
        if sign_messages:  # only when set: configs of earlier models stay as they were
            self.config["sign_messages"] = True
        self.in_channels, self.hidden_channels = in_channels, hidden_channels
        self.out_channels, self.stage = out_channels, stage
        self.dropout, self.input_dropout = dropout, input_dropout
        widths = [in_channels] + [hidden_channels] * (num_layers - 1) + [out_channels]
        convs = []
        for i in range(num_layers):
            first, last = i == 0, i == num_layers - 1
            convs.append(
                BinSAGEConv(
                    widths[i], widths[i + 1], aggr=aggr,
                    input_quantizer="identity" if first else act_q,
                    kernel_quantizer="identity" if last and not binary_last else w_q,
                    centering="none" if first else centering,
                    bias=last,
                    sign_messages=sign_messages and not first and stage > 0,
                )
            )
        self.convs = nn.ModuleList(convs)
        self._build_acts(hidden_channels, num_layers)

    def _first_layer(self, x: Tensor, edge_index: Tensor) -> Tensor:
        if not is_sparse(x):
            return self.convs[0](x, edge_index)
        from bingnn.nn.conv._graph_checks import check_edge_index

        n = x.size(0)
        check_edge_index(edge_index, n, n)
        return self._aggregate_projected(self._project(x), edge_index, n)

    def _project(self, x: Tensor) -> tuple[Tensor, Tensor | None, Tensor]:
        """Sparse features through the first layer's two affine maps: ``B_l(x)``,
        ``B_r(x)`` (or ``None``) and ``B_l(0)`` (what an isolated node aggregates to)."""
        conv = self.convs[0]
        if conv.aggr != "mean":
            raise ValueError(f"sparse features need aggr='mean', got {conv.aggr!r}; "
                             "pass dense features (x.to_dense())")
        # One call of B_l on x with an empty row appended: its last output row is B_l(0).
        # (Calling B_l twice would clip its latent weights in place between the two uses.)
        h = conv.lin_l(_append_empty_row(x))
        root = conv.lin_r(x) if conv.lin_r is not None else None
        return h[:-1], root, h[-1:]

    def _aggregate_projected(self, proj: tuple[Tensor, Tensor | None, Tensor],
                             edge_index: Tensor, num_dst: int,
                             targets: Tensor | None = None) -> Tensor:
        """Mean of the projected neighbours, plus the root term, for ``num_dst`` targets
        (``targets``: their global ids; default all nodes)."""
        h, root, at_zero = proj
        conv = self.convs[0]
        out = conv.propagate(edge_index, x=(h, None), size=(h.size(0), num_dst))
        isolated = torch.bincount(edge_index[1], minlength=num_dst) == 0
        out = torch.where(isolated.unsqueeze(1), at_zero, out)
        if root is not None:
            out = out + (root if targets is None else root[targets])
        return out

    def _layerwise_layer(self, i: int, x: Tensor, targets: Tensor, csr, state: dict) -> Tensor:
        src, dst_local, _ = csr.in_edges(targets)
        ei = src.new_empty(2, src.numel())
        ei[0], ei[1] = src, dst_local
        if i == 0 and is_sparse(x):
            if "projected" not in state:  # once for all batches: O(N * hidden) memory
                state["projected"] = self._project(x)
            return self._aggregate_projected(state["projected"], ei, targets.numel(), targets)
        return self.convs[i]((x, x[targets]), ei)


class GraphSAGE(BinSAGE):
    """Float GraphSAGE: :class:`BinSAGE` at ``stage=0`` (same layout, so a binary student
    can start from its weights). BatchNorm before each hidden linear map."""

    arch = "graphsage"

    def __init__(self, *args, stage: int = 0, **kwargs) -> None:
        super().__init__(*args, stage=stage, **kwargs)
