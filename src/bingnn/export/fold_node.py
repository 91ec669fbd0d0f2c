"""Fold a trained stage-3 ``BinSAGE`` or ``BinGCN`` into the engine's layers and arrays
(imports PyTorch).

What is folded, layer by layer (eval semantics, :func:`bingnn.engine.programs.node_layers`):

* binary weights -> packed sign bits (``w >= 0`` is +1);
* a BatchNorm followed by a sign -> per-channel threshold predicates, found by evaluating the
  model's own BatchNorm on float32 values (:func:`bingnn.export.fold.float_predicate`), so no
  threshold is derived with algebra; the mean / median / no centring stays a per-node step;
* Bi-GCN's per-node scale keeps the BatchNorm as ATen computes it (``fma(x, scale, shift)``
  with ATen's constants);
* the learned rescaling, the last layer's bias and the PReLU slopes are copied as float32.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from bingnn.engine.programs import node_layers
from bingnn.export.fold import (
    ExportError,
    _bn_affine,
    _np,
    _signs,
    check_class_names,
    float_predicate,
)
from bingnn.models.gcn import BinGCN
from bingnn.models.graphsage import BinSAGE
from bingnn.nn.centering import ChannelBatchNorm, MeanCenter, MedianCenter, NoCenter

__all__ = ["fold_node_model"]


def _centering_of(module: nn.Module, where: str) -> str:
    if isinstance(module, ChannelBatchNorm):
        if module.running_mean is None:
            raise ExportError(f"{where}: BatchNorm without running statistics")
        return "batchnorm"
    for cls, name in ((MeanCenter, "mean"), (MedianCenter, "median"), (NoCenter, "none")):
        if isinstance(module, cls):
            return name
    raise ExportError(f"{where}: centering {type(module).__name__} is not supported by the engine")


def _alpha(block: nn.Module, where: str) -> np.ndarray | None:
    r = block.rescale
    if r is None:
        return None
    if r.point_scale is not None or r.neighbor_scale is not None:
        raise ExportError(f"{where}: per-point / per-neighbour rescaling is not supported")
    return _np(r.channel_scale)


def _check_block(block: nn.Module, first: bool, where: str) -> str:
    """Layer 0 takes real inputs uncentred; later layers binarize. Returns the centring."""
    if not block.linear.binary_weights:
        raise ExportError(f"{where}: weights are not binary (binary_last=False or an earlier "
                          "stage); the engine runs fully binary layers")
    centering = _centering_of(block.center, where)
    if first:
        if block.input_quantizer.name != "identity" or centering != "none":
            raise ExportError(f"{where}: the first layer must take its real inputs as they are")
    elif not block.input_quantizer.is_binary:
        raise ExportError(f"{where}: activations are not binarized (stage < 3)")
    return centering


def _sign_arrays(arrays: dict[str, np.ndarray], name: str, center: nn.Module, channels: int,
                 centering: str, where: str) -> None:
    if centering == "batchnorm":
        lo, hi, neg = float_predicate(center, channels, None, where)
        arrays[f"{name}.lo"], arrays[f"{name}.hi"], arrays[f"{name}.negate"] = lo, hi, neg


def _out_arrays(arrays: dict[str, np.ndarray], name: str, alphas: list[np.ndarray | None],
                bias: nn.Parameter | None, slope: nn.Module | None) -> None:
    for i, a in enumerate(alphas):
        if a is not None:
            arrays[f"{name}.t{i}_alpha"] = a
    if bias is not None:
        arrays[f"{name}.t0_bias"] = _np(bias)
    if slope is not None:
        arrays[f"{name}.slope"] = _np(slope.weight)


def _check_stage(model: nn.Module) -> dict[str, Any]:
    cfg = dict(model.config)
    if cfg.get("stage") != 3:
        raise ExportError(f"only fully binary (stage 3) models are supported by the engine, "
                          f"this one is stage {cfg.get('stage')}; finish the cascade first")
    if not cfg.get("binary_last", True):
        raise ExportError("binary_last=False (a real-valued last layer) is not supported by the "
                          "engine; train with binary_last=True")
    return cfg


def _fold_sage(model: BinSAGE) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    cfg = _check_stage(model)
    if cfg["aggr"] not in ("mean", "sum", "add"):
        raise ExportError(f"aggr={cfg['aggr']!r} is not supported by the engine (mean or sum)")
    aggr = "sum" if cfg["aggr"] == "add" else cfg["aggr"]
    arrays: dict[str, np.ndarray] = {}
    centerings = set()
    n = len(model.convs)
    for i, conv in enumerate(model.convs):
        where, p = f"convs[{i}]", f"conv{i}"
        if conv.lin_r is None:
            raise ExportError(f"{where}: root_weight=False is not supported by the engine")
        c_l = _check_block(conv.lin_l, i == 0, where + ".lin_l")
        c_r = _check_block(conv.lin_r, i == 0, where + ".lin_r")
        if i > 0:
            centerings |= {c_l, c_r}
            c_in = conv.in_channels[0]
            _sign_arrays(arrays, f"{p}_sign_l", conv.lin_l.center, c_in, c_l, where + ".lin_l")
            _sign_arrays(arrays, f"{p}_sign_r", conv.lin_r.center, c_in, c_r, where + ".lin_r")
        arrays[f"{p}_lin_l.weight"] = _signs(conv.lin_l.linear.weight)
        arrays[f"{p}_lin_r.weight"] = _signs(conv.lin_r.linear.weight)
        last = i == n - 1
        if (conv.lin_l.linear.bias is not None) != last:
            raise ExportError(f"{where}: a bias is expected on the last layer only")
        _out_arrays(arrays, f"{p}_out", [_alpha(conv.lin_l, where), _alpha(conv.lin_r, where)],
                    conv.lin_l.linear.bias, None if last else model.acts[i])
    kw: dict[str, Any] = {"aggr": aggr}
    if cfg.get("sign_messages"):
        kw["sign_messages"] = True
    return _layers("binsage", model, centerings, **kw), arrays


def _fold_gcn(model: BinGCN) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    _check_stage(model)
    arrays: dict[str, np.ndarray] = {}
    centerings = set()
    n = len(model.convs)
    scales = {bool(conv.node_scale) for conv in model.convs[1:]}
    if len(scales) > 1:
        raise ExportError("node_scale must be the same in every layer")
    for i, conv in enumerate(model.convs):
        where, p = f"convs[{i}]", f"conv{i}"
        if conv.improved or not conv.add_self_loops or not conv.normalize:
            raise ExportError(f"{where}: only the default GCN normalisation (self-loops, "
                              "symmetric, not improved) is supported by the engine")
        block = conv.block
        centering = _check_block(block, i == 0, where)
        if i > 0:
            centerings.add(centering)
            _sign_arrays(arrays, f"{p}_sign", block.center, conv.in_channels, centering, where)
            if conv.node_scale and centering == "batchnorm":
                arrays[f"{p}_beta.bn_scale"], arrays[f"{p}_beta.bn_shift"] = _bn_affine(
                    block.center, where)
        arrays[f"{p}_lin.weight"] = _signs(block.linear.weight)
        alpha = _alpha(block, where)
        if alpha is not None:
            arrays[f"{p}_scale.t0_alpha"] = alpha
        if conv.bias is None:
            raise ExportError(f"{where}: a GCN layer without bias is not supported")
        _out_arrays(arrays, f"{p}_out", [], conv.bias, None if i == n - 1 else model.acts[i])
    node_scale = bool(model.convs[-1].node_scale) if n > 1 else True
    return _layers("bingcn", model, centerings, node_scale=node_scale), arrays


def _layers(arch: str, model: nn.Module, centerings: set[str], **kw: Any
            ) -> list[dict[str, Any]]:
    if len(centerings) > 1:
        raise ExportError(f"mixed centerings {sorted(centerings)} are not supported")
    centering = centerings.pop() if centerings else "batchnorm"
    blocks = [getattr(c, "lin_l", None) or c.block for c in model.convs]
    rescale = all(b.rescale is not None for b in blocks)
    if not rescale and any(b.rescale is not None for b in blocks):
        raise ExportError("rescaling must be on in every layer or in none")
    widths = [model.in_channels] + [model.hidden_channels] * (len(model.convs) - 1) + [
        model.out_channels]
    return node_layers(arch, widths, centering, rescale=rescale, **kw)


def fold_node_model(model: nn.Module, class_names: Sequence[str] | None = None
                    ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fold a stage-3 ``BinSAGE`` or ``BinGCN`` (eval semantics) into ``(description,
    arrays)`` for the model file."""
    was_training = model.training
    model.eval()
    try:
        if isinstance(model, BinSAGE):
            layers, arrays = _fold_sage(model)
        elif isinstance(model, BinGCN):
            layers, arrays = _fold_gcn(model)
        else:
            raise ExportError(f"not a node model: {type(model).__name__}")
    finally:
        model.train(was_training)
    cfg = dict(model.config)
    desc = {
        "task": "node_classification",
        "arch": cfg["arch"],
        "num_classes": int(model.out_channels),
        "class_names": check_class_names(class_names, int(model.out_channels)),
        "input": {"channels": int(model.in_channels)},
        "layers": layers,
        "output": "logits",
        "source_config": cfg,
    }
    return desc, arrays
