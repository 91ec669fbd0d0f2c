"""The layer lists of the architectures bingnn exports (torch-free).

The exporter (:mod:`bingnn.export`) and the reader of format 1 files
(:mod:`bingnn.engine.legacy`) build their descriptions here, so one architecture has one
layered form. Array names are ``"<layer name>.<key>"`` (:mod:`bingnn.engine.layers`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["bindgcnn_layers", "node_layers"]


def _layer(op: str, name: str, inputs: list[str], outputs: list[str], **params: Any
           ) -> dict[str, Any]:
    return {"op": op, "name": name, "inputs": inputs, "outputs": outputs, **params}


def _head(mlp: list[int], num_classes: int) -> list[dict[str, Any]]:
    """fc1 (threshold of the pooled features, binary GEMM), fc2 (integer threshold, binary
    GEMM, rescale, PReLU), fc3 (float head)."""
    m0, m1 = mlp
    return [
        _layer("threshold", "fc1_sign", ["pooled"], ["fc1_bits"]),
        _layer("binary_linear", "fc1", ["fc1_bits"], ["y1"], channels=m0),
        _layer("threshold", "fc2_sign", ["y1"], ["fc2_bits"]),
        _layer("binary_linear", "fc2", ["fc2_bits"], ["y2"], channels=m1),
        _layer("affine", "fc2_act", ["y2"], ["h2"],
               terms=[{"input": "y2", "row_scale": None, "bias": False, "alpha": True}],
               bias=False, prelu=True),
        _layer("float_linear", "fc3", ["h2"], ["logits"], channels=num_classes, bn=True),
    ]


def bindgcnn_layers(variant: str, k: int, widths: list[int], emb_dims: int, mlp: list[int],
                    num_classes: int, shortcut: bool = False, residual: bool = False
                    ) -> list[dict[str, Any]]:
    """Layers of a stage-3 ``BinDGCNN`` (variant ``rf``, ``bf1`` or ``bf2``).

    BF: k-NN on xyz, a real first EdgeConv whose output bits are thresholds of its per-edge
    pre-activations, binary XorEdgeConv layers on packed bits (Hamming k-NN inside), the
    binary embedding with max + mean pooling. RF: real features throughout the EdgeConv
    layers (L2 k-NN on them), thresholds before the embedding. Value names ``idx<l>``, ``x<l>``,
    ``pooled``, ``fc1_bits``, ``fc2_bits``, ``h2`` and ``logits`` are the intermediates
    :meth:`bingnn.engine.EngineModel.trace` returns.

    BF with ``shortcut`` (Bi-Real Net's real-valued shortcuts): the EdgeConvs keep their real
    values ``r<l>``; each layer after the first adds the running sum ``s<l-1>`` (``s0 = r0``;
    channels repeated to its width) and its bits ``x<l>`` are the signs of that sum ``s<l>``.
    RF with ``residual``: each layer after the first writes ``r<l>`` and ``x<l>`` is
    ``r<l>`` plus its input ``x<l-1>`` (channels repeated).
    """
    layers = [_layer("knn", "knn0", ["x"], ["idx0"], k=k, metric="l2")]
    feats = ["x0"]
    if variant == "rf":
        layers.append(_layer("xyz_edge_conv_real", "layer0", ["x", "idx0"], ["x0"],
                             channels=widths[0]))
        for li in range(1, len(widths)):
            layers.append(_layer("knn", f"knn{li}", [f"x{li - 1}"], [f"idx{li}"], k=k,
                                 metric="l2"))
            out = f"r{li}" if residual else f"x{li}"
            layers.append(_layer("real_edge_conv", f"layer{li}", [f"x{li - 1}", f"idx{li}"],
                                 [out], channels=widths[li]))
            if residual:
                layers.append(_layer("shortcut_add", f"add{li}", [out, f"x{li - 1}"],
                                     [f"x{li}"]))
            feats.append(f"x{li}")
        layers += [
            _layer("concat", "concat", feats, ["cat"]),
            _layer("threshold", "embed_sign", ["cat"], ["cat_bits"]),
            _layer("binary_linear", "embed", ["cat_bits"], ["emb"], channels=emb_dims),
            _layer("global_pool", "pool", ["emb"], ["pooled"], bn=False),
        ]
    elif shortcut:
        layers += [
            _layer("xyz_edge_conv_max", "layer0", ["x", "idx0"], ["r0"], channels=widths[0],
                   bn="edge" if variant == "bf2" else "node"),
            _layer("threshold", "sign0", ["r0"], ["x0"]),
        ]
        stream = "r0"
        for li in range(1, len(widths)):
            layers += [
                _layer("xor_edge_conv_max", f"layer{li}", [f"x{li - 1}"],
                       [f"r{li}", f"idx{li}"], k=k, channels=widths[li],
                       bn="edge" if variant == "bf2" else "node"),
                _layer("shortcut_add", f"add{li}", [f"r{li}", stream], [f"s{li}"]),
                _layer("threshold", f"sign{li}", [f"s{li}"], [f"x{li}"]),
            ]
            stream = f"s{li}"
            feats.append(f"x{li}")
        layers += [
            _layer("concat", "concat", feats, ["cat"]),
            _layer("binary_linear", "embed", ["cat"], ["emb"], channels=emb_dims),
            _layer("global_pool", "pool", ["emb"], ["pooled"], bn=True),
        ]
    else:
        layers.append(_layer("xyz_edge_conv_bits", "layer0", ["x", "idx0"], ["x0"],
                             channels=widths[0]))
        for li in range(1, len(widths)):
            layers.append(_layer("xor_edge_conv", f"layer{li}", [f"x{li - 1}"],
                                 [f"x{li}", f"idx{li}"], k=k, channels=widths[li]))
            feats.append(f"x{li}")
        layers += [
            _layer("concat", "concat", feats, ["cat"]),
            _layer("binary_linear", "embed", ["cat"], ["emb"], channels=emb_dims),
            _layer("global_pool", "pool", ["emb"], ["pooled"], bn=True),
        ]
    return layers + _head(mlp, num_classes)


def _sign(name: str, src: str, dst: str, centering: str) -> dict[str, Any]:
    """Signs of the (centred) values: BatchNorm folds into per-channel thresholds, the
    per-node centrings are computed."""
    if centering == "batchnorm":
        return _layer("threshold", name, [src], [dst])
    return _layer("center_sign", name, [src], [dst], centering=centering)


def _term(value: str, *, alpha: bool, bias: bool = False, row_scale: str | None = None
          ) -> dict[str, Any]:
    return {"input": value, "row_scale": row_scale, "bias": bias, "alpha": alpha}


def node_layers(arch: str, widths: list[int], centering: str, *, aggr: str = "mean",
                node_scale: bool = True, rescale: bool = True, gcn_fill: float = 1.0,
                sign_messages: bool = False) -> list[dict[str, Any]]:
    """Layers of a stage-3 ``BinSAGE`` (``arch="binsage"``) or ``BinGCN`` (``"bingcn"``) with
    feature sizes ``widths = [in, hidden, ..., out]``.

    Layer 0 multiplies the real input features by +-1 weights (``signed_linear``). GraphSAGE
    then averages the result over the in-neighbours (the linear map commutes with the mean)
    and adds the root term; GCN rescales and propagates it over the normalised graph. Later
    layers aggregate real features, take signs (thresholds folded from BatchNorm, or a per-node
    centring), run the binary GEMM and rescale; PReLU between layers. With
    ``sign_messages`` a later GraphSAGE layer takes the signs of every node first and its
    aggregation is a majority vote of the neighbours' signs (``majority``).
    """
    n = len(widths) - 1
    layers: list[dict[str, Any]] = []
    graph = "graph"
    if arch == "bingcn":
        layers.append(_layer("gcn_norm", "norm", ["graph"], ["gcn_graph"], fill=gcn_fill))
        graph = "gcn_graph"
    h = "x"
    for i in range(n):
        last = i == n - 1
        out = "logits" if last else f"h{i}"
        c = widths[i + 1]
        p = f"conv{i}"
        if arch == "binsage":
            if i == 0:
                layers += [
                    _layer("signed_linear", f"{p}_lin_l", [h], [f"z{i}_l"], channels=c),
                    _layer("signed_linear", f"{p}_lin_r", [h], [f"z{i}_r"], channels=c),
                    _layer("aggregate", f"{p}_aggr", [f"z{i}_l", graph], [f"a{i}"],
                           reduce=aggr),
                ]
                left, right = f"a{i}", f"z{i}_r"
            else:
                if sign_messages:
                    layers += [
                        _sign(f"{p}_sign_l", h, f"m{i}_l", centering),
                        _layer("majority", f"{p}_aggr", [f"m{i}_l", graph], [f"b{i}_l"]),
                    ]
                else:
                    layers += [
                        _layer("aggregate", f"{p}_aggr", [h, graph], [f"a{i}"], reduce=aggr),
                        _sign(f"{p}_sign_l", f"a{i}", f"b{i}_l", centering),
                    ]
                layers += [
                    _sign(f"{p}_sign_r", h, f"b{i}_r", centering),
                    _layer("binary_linear", f"{p}_lin_l", [f"b{i}_l"], [f"y{i}_l"], channels=c),
                    _layer("binary_linear", f"{p}_lin_r", [f"b{i}_r"], [f"y{i}_r"], channels=c),
                ]
                left, right = f"y{i}_l", f"y{i}_r"
            layers.append(_layer("affine", f"{p}_out", [left, right], [out],
                                 terms=[_term(left, alpha=rescale, bias=last),
                                        _term(right, alpha=rescale)],
                                 bias=False, prelu=not last))
        elif arch == "bingcn":
            scale = None
            if i == 0:
                layers.append(_layer("signed_linear", f"{p}_lin", [h], [f"z{i}"], channels=c))
            else:
                layers.append(_sign(f"{p}_sign", h, f"b{i}", centering))
                if node_scale:
                    scale = f"beta{i}"
                    layers.append(_layer("node_scale", f"{p}_beta", [h], [scale],
                                         centering=centering))
                layers.append(_layer("binary_linear", f"{p}_lin", [f"b{i}"], [f"z{i}"],
                                     channels=c))
            ins = [f"z{i}"] + ([scale] if scale else [])
            layers += [
                _layer("affine", f"{p}_scale", ins, [f"u{i}"],
                       terms=[_term(f"z{i}", alpha=rescale, row_scale=scale)],
                       bias=False, prelu=False),
                _layer("aggregate", f"{p}_prop", [f"u{i}", graph], [f"p{i}"], reduce="sum"),
                _layer("affine", f"{p}_out", [f"p{i}"], [out],
                       terms=[_term(f"p{i}", alpha=False, bias=True)], bias=False,
                       prelu=not last),
            ]
        else:
            raise ValueError(f"unknown node architecture {arch!r}")
        h = out
    return layers
