"""GraphSAGE node classifiers: float teacher and binary student (Bahri et al. 2021)."""

from __future__ import annotations

from torch import Tensor, nn

from bingnn.models._node import NodeModel, check_arch, check_stage
from bingnn.nn.conv.bin_sage_conv import BinSAGEConv


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

    Shapes:
        ``x (N, in_channels)``, ``edge_index (2, E)`` -> logits ``(N, out_channels)``.
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
                )
            )
        self.convs = nn.ModuleList(convs)
        self._build_acts(hidden_channels, num_layers)

    def _layerwise_layer(self, i: int, x: Tensor, targets: Tensor, csr, state: dict) -> Tensor:
        src, dst_local, _ = csr.in_edges(targets)
        ei = src.new_empty(2, src.numel())
        ei[0], ei[1] = src, dst_local
        return self.convs[i]((x, x[targets]), ei)


class GraphSAGE(BinSAGE):
    """Float GraphSAGE: :class:`BinSAGE` at ``stage=0`` (same layout, so a binary student
    can start from its weights). BatchNorm before each hidden linear map."""

    arch = "graphsage"

    def __init__(self, *args, stage: int = 0, **kwargs) -> None:
        super().__init__(*args, stage=stage, **kwargs)
