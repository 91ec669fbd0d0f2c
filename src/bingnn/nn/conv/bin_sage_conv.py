"""Binary GraphSAGE convolution."""

from __future__ import annotations

from torch import Tensor
from torch_geometric.nn.conv import MessagePassing
from torch_geometric.typing import Adj, OptPairTensor, Size
from torch_geometric.utils import spmm

from bingnn.nn.binary_block import BinaryBlock
from bingnn.nn.conv._graph_checks import check_edge_index, check_features
from bingnn.nn.quantizers import Quantizer


class BinSAGEConv(MessagePassing):
    r"""Binary GraphSAGE operator of Bahri et al., "Binary Graph Neural Networks" (CVPR 2021),
    on the GraphSAGE operator of Hamilton et al., "Inductive Representation Learning on Large
    Graphs" (NeurIPS 2017).

    .. math::
        \mathbf{x}'_i = B_l\Big(\operatorname{mean}_{j \in \mathcal{N}(i)} \mathbf{x}_j\Big)
                      + B_r(\mathbf{x}_i),
        \qquad
        B(\mathbf{h}) = \boldsymbol{\alpha} \odot
            \big(q_a(\operatorname{centre}(\mathbf{h})) \, q_w(\mathbf{W})^\top\big)

    With ``sign_messages=True`` the neighbours send the signs of their centred features and the
    target takes the sign of their mean (a per-channel majority vote, :math:`\operatorname{sign}
    (0) = +1`), so the aggregation reads one bit per channel and neighbour:

    .. math::
        \mathbf{x}'_i = \boldsymbol{\alpha}_l \odot \Big(q_a\big(\operatorname{mean}_{j}
            q_a(\operatorname{centre}_l(\mathbf{x}_j))\big) \, q_w(\mathbf{W}_l)^\top\Big)
            + B_r(\mathbf{x}_i)

    Each :math:`B` is a :class:`~bingnn.nn.BinaryBlock` without PReLU: centre (BatchNorm by
    default) -> activation quantizer :math:`q_a` (sign with STE) -> binary linear map with
    weights :math:`q_w(\mathbf{W}) \in \{-1, +1\}` -> learned per-channel rescaling
    :math:`\boldsymbol{\alpha}`. The first layer of a model keeps real inputs
    (``input_quantizer="identity"``, ``centering="none"``) and binary weights. Isolated nodes
    aggregate to zero; a self-loop simply counts the node among its neighbours.

    Args:
        in_channels: input size, or ``(in_src, in_dst)`` for bipartite graphs.
        out_channels: output size.
        aggr: neighbourhood aggregation, ``"mean"`` (default), ``"sum"`` or ``"max"``.
        root_weight: add the root term :math:`B_r(\mathbf{x}_i)` (default ``True``).
        input_quantizer: activation quantizer: ``"ste_sign"`` (default), ``"tanh"`` (stage-1
            pseudo-quantization) or ``"identity"``.
        kernel_quantizer: weight quantizer, ``"ste_sign"`` (default) or ``"identity"``.
        centering: ``"batchnorm"`` (default), ``"mean"``, ``"median"`` or ``"none"``.
        rescale: learned per-channel output rescaling (default ``True``).
        bias: real output bias (default ``False``).
        sign_messages: aggregate the quantized neighbour features and quantize their mean
            (above) instead of quantizing the mean of the real features; needs ``aggr``
            ``"mean"`` or ``"sum"`` (the same signs) and an activation quantizer.

    Shapes:
        - input: node features :math:`(|\mathcal{V}|, F_{in})` or bipartite
          :math:`((|\mathcal{V}_s|, F_s), (|\mathcal{V}_t|, F_t))`; ``edge_index``
          :math:`(2, |\mathcal{E}|)` (row 0 = source, row 1 = target) or a sparse
          ``torch.sparse_csr``/``coo`` adjacency ``adj_t`` of shape
          :math:`(|\mathcal{V}_t|, |\mathcal{V}_s|)`.
        - output: :math:`(|\mathcal{V}_t|, F_{out})`.
    """

    def __init__(
        self,
        in_channels: int | tuple[int, int],
        out_channels: int,
        aggr: str = "mean",
        root_weight: bool = True,
        input_quantizer: str | Quantizer | None = "ste_sign",
        kernel_quantizer: str | Quantizer | None = "ste_sign",
        centering: str | None = "batchnorm",
        rescale: bool = True,
        bias: bool = False,
        sign_messages: bool = False,
    ) -> None:
        if aggr not in ("mean", "sum", "add", "max"):
            raise ValueError(f"aggr must be 'mean', 'sum' or 'max', got {aggr!r}")
        if sign_messages and aggr == "max":
            raise ValueError("sign_messages needs aggr='mean' or 'sum' (a majority vote)")
        super().__init__(aggr=aggr)
        if isinstance(in_channels, int):
            in_channels = (in_channels, in_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.root_weight = root_weight
        self.sign_messages = bool(sign_messages)

        def block(c_in: int, with_bias: bool) -> BinaryBlock:
            return BinaryBlock(
                c_in,
                out_channels,
                input_quantizer=input_quantizer,
                kernel_quantizer=kernel_quantizer,
                centering=centering,
                rescale=rescale,
                prelu=False,
                bias=with_bias,
            )

        self.lin_l = block(in_channels[0], bias)
        self.lin_r = block(in_channels[1], False) if root_weight else None
        if self.sign_messages and self.lin_l.input_quantizer.name == "identity":
            raise ValueError("sign_messages needs an activation quantizer (a binarized layer)")
        self.reset_parameters()

    def reset_parameters(self) -> None:
        super().reset_parameters()
        self.lin_l.reset_parameters()
        if self.lin_r is not None:
            self.lin_r.reset_parameters()

    def forward(self, x: Tensor | OptPairTensor, edge_index: Adj, size: Size = None) -> Tensor:
        if isinstance(x, Tensor):
            x = (x, x)
        check_features(x[0], "x_src", self.in_channels[0])
        if x[1] is not None:
            check_features(x[1], "x_dst", self.in_channels[1] if self.lin_r is not None else None)
        num_dst = x[1].size(0) if x[1] is not None else (size[1] if size else x[0].size(0))
        check_edge_index(edge_index, x[0].size(0), num_dst)
        if size is None:
            size = (x[0].size(0), num_dst)

        if self.sign_messages:
            q = self.lin_l.input_quantizer
            signs = q(self.lin_l.center(x[0]))
            out = self.lin_l.project(q(self.propagate(edge_index, x=(signs, None), size=size)))
        else:
            out = self.lin_l(self.propagate(edge_index, x=x, size=size))
        if self.lin_r is not None and x[1] is not None:
            out = out + self.lin_r(x[1])
        return out

    def message(self, x_j: Tensor) -> Tensor:
        return x_j

    def message_and_aggregate(self, adj_t: Adj, x: OptPairTensor) -> Tensor:
        return spmm(adj_t, x[0], reduce=self.aggr)

    def __repr__(self) -> str:
        q = self.lin_l.input_quantizer.name
        w = self.lin_l.linear.kernel_quantizer.name
        return (
            f"{self.__class__.__name__}({self.in_channels}, {self.out_channels}, "
            f"aggr={self.aggr}, input={q}, weights={w}"
            + (", sign_messages=True)" if self.sign_messages else ")")
        )
