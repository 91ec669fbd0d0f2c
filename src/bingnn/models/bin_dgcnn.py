"""Binary DGCNN (Bahri et al., CVPR 2021): one configurable class for every variant and stage."""

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
from bingnn.nn.binary_block import BinaryBlock
from bingnn.nn.centering import ChannelBatchNorm, get_centering
from bingnn.nn.conv import BinPointEdgeConv, XorPointEdgeConv

VARIANTS = ("rf", "bf1", "bf2", "bf1_bal", "bf2_bal")

#: Quantization stage -> (activation quantizer, weight quantizer).
STAGES = {
    1: ("tanh", "identity"),  # binary architecture, float weights, pseudo-quantized activations
    2: ("ste_sign", "identity"),  # binary activations, float weights
    3: ("ste_sign", "ste_sign"),  # fully binary
}


class BinDGCNN(nn.Module):
    r"""Binary dynamic graph CNN for point-cloud classification.

    The backbone of :class:`~bingnn.models.DGCNN` with binary layers. ``variant`` selects the
    edge convolution:

    * ``"rf"``: :class:`~bingnn.nn.conv.BinPointEdgeConv` — binary blocks, real node features,
      Euclidean k-NN.
    * ``"bf1"`` / ``"bf2"``: :class:`~bingnn.nn.conv.XorPointEdgeConv` v1 / v2 — binary node
      features, XOR edge features, k-NN in Hamming space (``knn="hamming"``) or L2.
    * ``"bf1_bal"`` / ``"bf2_bal"``: as BF with a balance function (``balance``, mean by
      default) before every sign of node features and before the first classifier layer.

    ``stage`` selects the quantization, so the three students of the cascaded distillation are
    the same class (and share parameter names, so a student loads its teacher's state dict):
    1 = float weights + ``tanh`` activations, 2 = binary activations + float weights,
    3 = binary activations and weights (default). The first layer always sees real xyz
    coordinates, with binary weights unless ``first_layer_binary=False``; the last classifier
    layer keeps real weights and inputs unless ``last_layer_binary``.

    In stage 1 the node features are ``tanh`` values, not bits: a ``"hamming"`` k-NN then ranks
    by the relaxed Hamming distance :math:`(C - \langle x, y \rangle)/2`.

    Args:
        num_classes, k, widths, emb_dims, mlp, dropout: as in :class:`DGCNN`.
        variant: ``"rf"``, ``"bf1"``, ``"bf2"``, ``"bf1_bal"`` or ``"bf2_bal"``.
        knn: metric of the k-NN graphs after the first layer (``"hamming"`` or ``"l2"``;
            ``"rf"`` needs ``"l2"``).
        stage: 1, 2 or 3.
        balance: ``"mean"`` or ``"median"`` for the ``_bal`` variants.
        prelu: PReLU inside binary blocks.
        last_layer_binary: binarize the last classifier layer too.
        first_layer_binary: binarize the weights of the first EdgeConv (on xyz; default). With
            ``False`` its ``(C_1, 6)`` weights stay real in every stage, as the first layer of
            XNOR-Net, Bi-Real Net and ReActNet does: +-1 weights on 6 inputs can take only 64
            directions, so that layer loses the most when binarized, and its real weights cost
            ``24 C_1`` bytes. The engine runs both (its xyz layer is float arithmetic anyway).
        rescale_points: enable per-point rescaling factors for inputs of this many points.
        rescale_neighbors: enable per-neighbour rescaling factors (one per neighbour rank).
        max_offset: BF2 only: a constant subtracted after every neighbour max, in units of the
            BatchNorm-standardised edge values (default 0: none), so that the node bits are
            closer to balanced and more of them inside the straight-through window
            (BiPointNet's entropy-maximizing aggregation; see
            :class:`~bingnn.nn.conv.XorPointEdgeConv`). For independent edge values the
            balancing offset is :func:`~bingnn.nn.conv.xor_point_edge_conv.max_offset_for`
            ``(k)``; the edges of one point share its centre term, so the right value is smaller.
        prelu_shift: BF variants only: a learned real bias on the linear map of every EdgeConv
            after the first (ReActNet's RPReLU shift before the PReLU; see
            :class:`~bingnn.nn.conv.XorPointEdgeConv`). The engine folds it into the layers'
            integer predicates. The xyz layer has none: the engine's float predicate of that
            layer expects the PReLU's kink at 0.
        shortcut: BF variants only: real-valued shortcuts around the XOR EdgeConvs (Bi-Real
            Net, Liu et al., ECCV 2018): layer :math:`l \ge 1` quantizes
            :math:`h_l + R(h_{l-1})` instead of :math:`h_l`, where :math:`h` is the real value
            before a layer's quantizer (shortcut included, so the real values form a residual
            stream) and :math:`R` repeats the channels where a layer widens by an integer
            factor, as ReActNet does (:func:`~bingnn.models._pointcloud.run_edge_convs`). The
            k-NN graphs and the embedding still read bits. The engine runs it (each layer's
            real values, then the shortcut sums and their signs).
        residual: RF only: real-valued residual connections around the EdgeConvs after the
            first, :math:`x_l = \mathrm{EdgeConv}_l(x_{l-1}) + R(x_{l-1})` with :math:`R` as
            for ``shortcut`` (RF's node features are real, so the residual adds the layer
            outputs themselves; the engine adds them after each layer).

    Shapes:
        ``points (B, N, 3)`` -> logits ``(B, num_classes)``; with ``return_graphs=True`` also the
        per-layer ``(features (B, N, C_l), idx (B, N, k))`` list used by the LSP loss.
    """

    def __init__(
        self,
        num_classes: int = 40,
        variant: str = "bf2",
        knn: str = "hamming",
        stage: int = 3,
        k: int = 20,
        widths: Sequence[int] = (64, 64, 128, 256),
        emb_dims: int = 1024,
        mlp: Sequence[int] = (512, 256),
        dropout: float = 0.5,
        balance: str | None = None,
        prelu: bool = True,
        last_layer_binary: bool = False,
        rescale_points: int | None = None,
        rescale_neighbors: bool = False,
        max_offset: float = 0.0,
        first_layer_binary: bool = True,
        prelu_shift: bool = False,
        shortcut: bool = False,
        residual: bool = False,
    ) -> None:
        super().__init__()
        variant = variant.lower()
        knn = knn.lower()
        if variant not in VARIANTS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        if stage not in STAGES:
            raise ValueError(f"stage must be 1, 2 or 3, got {stage!r}")
        if knn not in ("hamming", "l2"):
            raise ValueError(f"knn must be 'hamming' or 'l2', got {knn!r}")
        if variant == "rf" and knn != "l2":
            raise ValueError("variant 'rf' keeps real node features: use knn='l2'")
        if len(mlp) != 2:
            raise ValueError(f"mlp must give two hidden widths, got {list(mlp)}")
        balanced = variant.endswith("_bal")
        if balanced:
            balance = balance or "mean"
            if balance not in ("mean", "median"):
                raise ValueError(f"balance must be 'mean' or 'median', got {balance!r}")
        elif balance not in (None, "none"):
            raise ValueError(f"balance applies to the '_bal' variants only (got {variant!r})")
        else:
            balance = "none"
        if max_offset and not variant.startswith("bf2"):
            raise ValueError(f"max_offset applies to the BF2 variants (BatchNorm before the "
                             f"neighbour max), not {variant!r}")
        if prelu_shift and variant == "rf":
            raise ValueError("prelu_shift applies to the BF variants (XOR EdgeConv), not 'rf'")
        if shortcut and variant == "rf":
            raise ValueError("shortcut applies to the BF variants (binary node features), "
                             "not 'rf', whose node features are real already")
        if residual and variant != "rf":
            raise ValueError("residual applies to the RF variant (real node features); the BF "
                             "variants have shortcut")
        if shortcut or residual:
            name = "shortcut" if shortcut else "residual"
            for a, b in zip(widths[:-1], widths[1:], strict=False):
                if b % a:
                    raise ValueError(f"{name} needs every width to be a multiple of the one "
                                     f"before it (it repeats channels), got {a} -> {b}")

        self.config = {
            "arch": "bindgcnn",
            "num_classes": int(num_classes),
            "variant": variant,
            "knn": knn,
            "stage": int(stage),
            "k": int(k),
            "widths": [int(w) for w in widths],
            "emb_dims": int(emb_dims),
            "mlp": [int(m) for m in mlp],
            "dropout": float(dropout),
            "balance": balance,
            "prelu": bool(prelu),
            "last_layer_binary": bool(last_layer_binary),
            "rescale_points": rescale_points,
            "rescale_neighbors": bool(rescale_neighbors),
            "max_offset": float(max_offset),
            "first_layer_binary": bool(first_layer_binary),
            "prelu_shift": bool(prelu_shift),
            "shortcut": bool(shortcut),
        }
        if residual:  # only when set: configs of earlier models stay as they were
            self.config["residual"] = True
        self.variant, self.knn_metric, self.stage, self.k = variant, knn, stage, k
        act_q, weight_q = STAGES[stage]
        rk = k if rescale_neighbors else None
        chans = [3, *widths]

        convs = []
        for i in range(len(widths)):
            first = i == 0
            conv_weight_q = "identity" if first and not first_layer_binary else weight_q
            if variant == "rf":
                conv = BinPointEdgeConv(
                    chans[i], chans[i + 1], k=k, knn_metric="l2",
                    input_quantizer="identity" if first else act_q,
                    kernel_quantizer=conv_weight_q, prelu=prelu,
                    rescale_points=rescale_points, rescale_neighbors=rk,
                )  # fmt: skip
            else:
                conv = XorPointEdgeConv(
                    chans[i], chans[i + 1], k=k,
                    version=1 if variant.startswith("bf1") else 2,
                    knn_metric="l2" if first else knn,
                    # XOR is defined on bits; the real first layer and tanh stage subtract.
                    edge_op="xor" if not first and act_q == "ste_sign" else "sub",
                    kernel_quantizer=conv_weight_q, output_quantizer=act_q, balance=balance,
                    prelu=prelu, rescale_points=rescale_points, rescale_neighbors=rk,
                    max_offset=max_offset, prelu_shift=prelu_shift and not first,
                )  # fmt: skip
            convs.append(conv)
        self.convs = nn.ModuleList(convs)

        if variant == "rf":
            # Real node features: centre and quantize them inside the block.
            self.embed = BinaryBlock(
                sum(widths), emb_dims, input_quantizer=act_q, kernel_quantizer=weight_q,
                centering="batchnorm", prelu=prelu, rescale_points=rescale_points,
            )  # fmt: skip
            self.embed_norm: nn.Module = nn.Identity()
        else:
            # Node features are already quantized; normalise the real output instead.
            self.embed = BinaryBlock(
                sum(widths), emb_dims, input_quantizer="identity", kernel_quantizer=weight_q,
                centering="none", prelu=prelu, rescale_points=rescale_points,
            )  # fmt: skip
            self.embed_norm = ChannelBatchNorm(emb_dims)

        self.global_balance = get_centering(balance if balanced else "none", 2 * emb_dims)
        self.fc1 = BinaryBlock(
            2 * emb_dims, mlp[0], input_quantizer=act_q, kernel_quantizer=weight_q,
            centering="none" if balanced else "batchnorm", prelu=prelu,
        )  # fmt: skip
        self.fc2 = BinaryBlock(
            mlp[0], mlp[1], input_quantizer=act_q, kernel_quantizer=weight_q, prelu=prelu
        )
        self.fc3 = BinaryBlock(
            mlp[1], num_classes,
            input_quantizer=act_q if last_layer_binary else "identity",
            kernel_quantizer=weight_q if last_layer_binary else "identity",
            prelu=False, bias=not last_layer_binary,
        )  # fmt: skip
        self.dropout = nn.Dropout(dropout)

    def reset_parameters(self) -> None:
        reset_submodules(self)

    def forward(self, points: Tensor, return_graphs: bool = False):
        points = check_points(points, self.k, model_dtype(self))
        feats, graphs = run_edge_convs(self.convs, points, self.config["shortcut"],
                                       self.config.get("residual", False))
        h = self.embed_norm(self.embed(feats))
        g = self.global_balance(max_avg_pool(h))
        g = self.dropout(self.fc1(g))
        g = self.dropout(self.fc2(g))
        logits = self.fc3(g)
        return (logits, graphs) if return_graphs else logits
