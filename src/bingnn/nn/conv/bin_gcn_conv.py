"""Binary graph convolution (Bi-GCN)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.typing import Adj, OptPairTensor, OptTensor
from torch_geometric.utils import spmm

from bingnn.nn.binary_block import BinaryBlock
from bingnn.nn.conv._graph_checks import check_edge_index, check_features
from bingnn.nn.quantizers import Quantizer


class BinGCNConv(MessagePassing):
    r"""Binary graph convolution in the manner of Bi-GCN (Wang et al., "Bi-GCN: Binary Graph
    Convolutional Network", CVPR 2021), on the GCN of Kipf & Welling (ICLR 2017).

    .. math::
        \mathbf{X}' = \hat{\mathbf{D}}^{-1/2} \hat{\mathbf{A}} \hat{\mathbf{D}}^{-1/2}
            \Big( \boldsymbol{\beta} \odot \big(q_a(\operatorname{centre}(\mathbf{X}))\,
            q_w(\mathbf{W})^\top\big) \odot \boldsymbol{\alpha} \Big) + \mathbf{b}

    with :math:`\hat{\mathbf{A}} = \mathbf{A} + \mathbf{I}` (an edge list's existing
    self-loops are replaced by one self-loop per node, never doubled; a sparse ``adj_t`` should
    come without self-loops, as in PyG) and :math:`\hat{D}_{ii} = \sum_j \hat{A}_{ij}`.

    The transform is the shared :class:`~bingnn.nn.BinaryBlock` (centre -> quantize -> binary
    linear -> learned per-channel rescaling :math:`\boldsymbol{\alpha}`, no PReLU). With
    ``node_scale=True`` each node's binary product is also multiplied by
    :math:`\beta_i = \frac{1}{F}\sum_c |\operatorname{centre}(\mathbf{x}_i)_c|`, the per-node
    feature scale of Bi-GCN (only when the activations are binarized). Transform first,
    propagate second: the propagation then moves :math:`F_{out}` rather than :math:`F_{in}`
    channels.

    Args:
        in_channels: input size (an ``(in_src, in_dst)`` pair is accepted; only ``in_src``
            matters since GCN has no separate root weight).
        out_channels: output size.
        input_quantizer: activation quantizer, ``"ste_sign"`` (default), ``"tanh"``,
            ``"identity"``.
        kernel_quantizer: weight quantizer, ``"ste_sign"`` (default) or ``"identity"``.
        centering: ``"batchnorm"`` (default), ``"mean"``, ``"median"`` or ``"none"``.
        rescale: learned per-channel rescaling :math:`\boldsymbol{\alpha}` (default ``True``).
        node_scale: per-node scale :math:`\boldsymbol{\beta}` (default ``True``).
        improved: use :math:`\mathbf{A} + 2\mathbf{I}` (default ``False``).
        cached: cache the normalised adjacency (transductive full-batch training only).
        add_self_loops: add self-loops before normalising (default ``True``).
        normalize: compute the symmetric normalisation; set ``False`` to pass precomputed
            ``edge_weight`` (layer-wise inference, bipartite mini-batches).
        bias: real output bias :math:`\mathbf{b}` (default ``True``).

    Shapes:
        - input: node features :math:`(|\mathcal{V}|, F_{in})` or bipartite
          :math:`((|\mathcal{V}_s|, F_{in}), (|\mathcal{V}_t|, *))`; ``edge_index``
          :math:`(2, |\mathcal{E}|)` or sparse ``adj_t`` :math:`(|\mathcal{V}_t|,
          |\mathcal{V}_s|)`; optional ``edge_weight`` :math:`(|\mathcal{E}|,)`.
        - output: :math:`(|\mathcal{V}_t|, F_{out})`.
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        input_quantizer: str | Quantizer | None = "ste_sign",
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        centering: str | None = "batchnorm",
        rescale: bool = True,
        node_scale: bool = True,
        improved: bool = False,
        cached: bool = False,
        add_self_loops: bool = True,
        normalize: bool = True,
        bias: bool = True,
    ) -> None:
        super().__init__(aggr="add")
        if not isinstance(in_channels, int):
            in_channels = in_channels[0]
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.node_scale = node_scale
        self.improved = improved
        self.cached = cached
        self.add_self_loops = add_self_loops
        self.normalize = normalize
        self._cached: tuple[Tensor, OptTensor] | None = None
        self.block = BinaryBlock(
            in_channels,
            out_channels,
            input_quantizer=input_quantizer,
            kernel_quantizer=kernel_quantizer,
            centering=centering,
            rescale=rescale,
            prelu=False,
        )
        self.bias = torch.nn.Parameter(torch.empty(out_channels)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.block.reset_parameters()
        if self.bias is not None:
            torch.nn.init.zeros_(self.bias)
        self._cached = None

    def transform(self, x: Tensor) -> Tensor:
        """The node-wise binary transform (everything but the propagation): ``(N, F_in) ->
        (N, F_out)``."""
        b = self.block
        c = b.center(x)
        h = b.linear(b.input_quantizer(c))
        if self.node_scale and b.input_quantizer.is_binary:
            h = h * c.abs().mean(dim=-1, keepdim=True)
        if b.rescale is not None:
            h = b.rescale(h)
        return h

    def forward(
        self,
        x: Tensor | OptPairTensor,
        edge_index: Adj,
        edge_weight: OptTensor = None,
    ) -> Tensor:
        bipartite = not isinstance(x, Tensor)
        x_src = x[0] if bipartite else x
        check_features(x_src, "x", self.in_channels)
        num_dst = x[1].size(0) if bipartite and x[1] is not None else x_src.size(0)
        check_edge_index(edge_index, x_src.size(0), num_dst)
        if edge_weight is not None and not edge_index.is_sparse:
            if edge_weight.shape != (edge_index.size(1),):
                raise ValueError(
                    f"edge_weight must have shape ({edge_index.size(1)},), got "
                    f"{tuple(edge_weight.shape)}"
                )

        if self.normalize:
            if bipartite:
                raise ValueError(
                    "BinGCNConv cannot normalise a bipartite graph (the source degrees are "
                    "unknown); pass edge weights normalised on the full graph with "
                    "normalize=False"
                )
            if self.cached and self._cached is not None:
                edge_index, edge_weight = self._cached
            else:
                edge_index, edge_weight = gcn_norm(
                    edge_index,
                    edge_weight,
                    x_src.size(0),
                    self.improved,
                    self.add_self_loops,
                    self.flow,
                    x_src.dtype,
                )
                if self.cached:
                    self._cached = (edge_index, edge_weight)

        h = self.transform(x_src)
        out = self.propagate(
            edge_index, x=(h, None), edge_weight=edge_weight, size=(x_src.size(0), num_dst)
        )
        if self.bias is not None:
            out = out + self.bias
        return out

    def message(self, x_j: Tensor, edge_weight: OptTensor) -> Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: OptPairTensor) -> Tensor:
        return spmm(adj_t, x[0], reduce=self.aggr)

    def __repr__(self) -> str:
        q = self.block.input_quantizer.name
        w = self.block.linear.kernel_quantizer.name
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"input={q}, weights={w})"
        )
