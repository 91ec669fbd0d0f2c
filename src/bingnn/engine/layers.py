r"""The typed layers of a model file and their validation: the one place that says what a
``.bgnn`` description may contain.

A model is a short list of layers. Each layer is a JSON object

.. code-block:: json

    {"op": "binary_linear", "name": "fc1", "inputs": ["fc1_bits"], "outputs": ["y1"],
     "channels": 512}

with an ``op`` (one of :data:`OPS`), a unique ``name``, the names of the values it reads and
writes, and the op's parameters. Its arrays are stored as ``"<name>.<key>"``. Values flow by
name; the model reads ``x`` (points ``(B, N, 3)`` or node features ``(N, F)``) and, for node
models, ``graph`` (the edges), and writes ``logits``.

Every value has a kind and a domain. Kinds: ``points`` (xyz input), ``nodes`` (node feature
input), ``graph``, ``real`` (float32), ``int`` (int32 +-1 dot products), ``bits`` (packed
signs, ``docs/bit_layout.md``), ``idx`` (int32 neighbour lists), ``scale`` (one float32 per
node). Domains: ``points`` (``(B, N, C)``: one row per point of each cloud), ``clouds``
(``(B, C)``), ``nodes`` (``(N, C)``: one row per node of the graph), ``graph``.

The ops (shapes for the ``nodes`` domain; the same on ``(B, N, .)`` or ``(B, .)`` where
allowed):

========================  ====================================================================
``knn``                   k nearest neighbours per point (squared L2; self included, ties to
                          the smaller index) -> ``idx``
``xyz_edge_conv_bits``    first DGCNN layer on xyz (+-1 or real weights), per-edge threshold,
                          OR over the neighbours -> ``bits``
``xyz_edge_conv_real``    the same with real outputs (BatchNorm, rescale, PReLU, max) -> ``real``
``xyz_edge_conv_max``     the first BF layer with real outputs: per-edge pre-activations,
                          rescale, PReLU, BatchNorm per edge (BF2, before the max) or per node
                          (BF1, after it), minus an offset -> ``real``
``xor_edge_conv``         binary EdgeConv on packed bits: Hamming k-NN, XOR edge features,
                          binary GEMM, thresholds -> ``bits`` and ``idx``
``xor_edge_conv_max``     the same with real outputs: bias, rescale, PReLU and BatchNorm of the
                          integer pre-activations, per edge (BF2, then the max) or after the max
                          (BF1), minus an offset -> ``real``, ``idx``
``shortcut_add``          a real value plus an earlier one, its channels repeated to the width
                          (real-valued shortcuts) -> ``real``
``real_edge_conv``        EdgeConv on real features: thresholded edge bits, binary GEMM,
                          rescale, PReLU, max -> ``real``
``concat``                concatenation of channels (``bits`` or ``real``)
``global_pool``           rescale, PReLU (and BatchNorm) then max and mean over the points
                          -> ``real (B, 2C)``
``threshold``             per-channel threshold predicate -> ``bits``
                          (:math:`p_c(v) = \mathrm{negate}_c \oplus (v \ge hi_c \lor v \le lo_c)`)
``center_sign``           per-node centring (mean, median or none) then sign -> ``bits``
``node_scale``            Bi-GCN's per-node scale :math:`\frac1C\sum_c |\mathrm{centre}(v)_c|`
``binary_linear``         binary GEMM :math:`C_{in} - 2\,\mathrm{popcount}(a \oplus w)` -> ``int``
``signed_linear``         real node features times +-1 weights (a gather-add of weight
                          columns, in increasing feature order) -> ``real``
``aggregate``             mean or sum over the in-neighbours (weighted sum on a GCN graph)
``gcn_norm``              one self-loop per node and symmetric degree weights
``affine``                element-wise terms ``((v * row_scale) + bias) * alpha`` summed, then
                          a bias and a PReLU, in float32 and that order
``float_linear``          float head: BatchNorm, real weights and bias, rescale
========================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bingnn.engine.format import ModelFileError
from bingnn.engine.reference import n_words

__all__ = ["OPS", "ArraySpec", "Layer", "Program", "Value", "build_program"]

TASKS = ("point_cloud_classification", "node_classification")
KINDS = ("points", "nodes", "graph", "real", "int", "bits", "idx", "scale")
MAX_CHANNELS = 1 << 24
MAX_K = 1 << 16
MAX_LAYERS = 4096
#: the widest packed input of the Hamming k-NN (uint16 distances)
MAX_KNN_BITS = 1023 * 64


@dataclass(frozen=True)
class Value:
    """A value flowing between layers (shape description, no data)."""

    kind: str
    domain: str
    channels: int = 0
    bound: int = 0  # int values: |y| <= bound
    k: int = 0  # idx values: neighbours per point
    weighted: bool = False  # graph values: GCN-normalised


@dataclass(frozen=True)
class ArraySpec:
    """An array a layer needs: dtype, shape and the rule its values follow."""

    dtype: str
    shape: tuple[int, ...]
    rule: str = "finite"  # finite | lo | hi | flag | packed | any
    bits: int = 0  # packed: meaningful bits per row


@dataclass
class Layer:
    """One validated layer: its JSON, its arrays (``key -> array``) and its output values."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[str, Any]
    arrays: dict[str, np.ndarray]
    in_values: list[Value]
    out_values: list[Value]
    fused_into: str | None = None  # set by the runtime's fusion pass


@dataclass
class Program:
    """A validated model: task, input description, layers in execution order."""

    task: str
    description: dict[str, Any]
    layers: list[Layer]
    values: dict[str, Value]
    num_classes: int
    class_names: list[str]
    in_channels: int
    min_points: int = 1
    consumers: dict[str, list[int]] = field(default_factory=dict)


class _Bad(Exception):
    """A description error, turned into a ModelFileError with the file name."""


# ----------------------------------------------------------------------------- param checks


def _int(d: dict[str, Any], key: str, lo: int = 1, hi: int = MAX_CHANNELS) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise _Bad(f"{key} must be an integer in [{lo}, {hi}], got {v!r}")
    return v


def _bool(d: dict[str, Any], key: str, default: bool | None = None) -> bool:
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise _Bad(f"{key} must be true or false, got {v!r}")
    return v


def _enum(d: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    v = d.get(key)
    if v not in choices:
        raise _Bad(f"{key} must be one of {', '.join(choices)}, got {v!r}")
    return v


def _need(cond: bool, msg: str) -> None:
    if not cond:
        raise _Bad(msg)


def _kind(v: Value, kinds: tuple[str, ...], what: str) -> None:
    _need(v.kind in kinds, f"{what} must be {' or '.join(kinds)}, got {v.kind}")


def _pred(prefix: str, c: int, dtype: str) -> dict[str, ArraySpec]:
    if dtype == "float32":
        return {f"{prefix}lo": ArraySpec("float32", (c,), "lo"),
                f"{prefix}hi": ArraySpec("float32", (c,), "hi"),
                f"{prefix}negate": ArraySpec("uint8", (c,), "flag")}
    return {f"{prefix}lo": ArraySpec("int32", (c,), "any"),
            f"{prefix}hi": ArraySpec("int32", (c,), "any"),
            f"{prefix}negate": ArraySpec("uint8", (c,), "flag")}


def _packed(c_out: int, c_in: int) -> ArraySpec:
    return ArraySpec("uint64", (c_out, n_words(c_in)), "packed", c_in)


def _vec(c: int) -> ArraySpec:
    return ArraySpec("float32", (c,))


# ----------------------------------------------------------------------------- the ops

Check = Callable[[dict[str, Any], list[Value]], tuple[list[Value], dict[str, ArraySpec]]]


def _knn(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    (v,) = ins
    k = _int(p, "k", 1, MAX_K)
    metric = _enum(p, "metric", ("l2", "hamming"))
    _need(v.domain == "points", "knn needs per-point features")
    if metric == "l2":
        _kind(v, ("points", "real"), "knn (l2) input")
    else:
        _kind(v, ("bits",), "knn (hamming) input")
        _need(v.channels <= MAX_KNN_BITS, f"hamming knn supports at most {MAX_KNN_BITS} bits")
    return [Value("idx", "points", k=k)], {}


def _xyz_inputs(ins: list[Value]) -> None:
    pts, idx = ins
    _kind(pts, ("points",), "xyz edge conv input")
    _kind(idx, ("idx",), "xyz edge conv neighbours")


def _xyz_bits(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    _xyz_inputs(ins)
    c = _int(p, "channels")
    # +-1, or real for a model trained with a real first layer: float32 arithmetic either way.
    arrays = {"weight": ArraySpec("float32", (c, 6)), **_pred("p_", c, "float32"),
              "out_negate": ArraySpec("uint8", (c,), "flag")}
    return [Value("bits", "points", c)], arrays


def _xyz_real(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    _xyz_inputs(ins)
    c = _int(p, "channels")
    arrays = {"weight": ArraySpec("float32", (c, 6)), "bn_scale": _vec(6),
              "bn_shift": _vec(6), "alpha": _vec(c), "slope": _vec(c)}
    return [Value("real", "points", c)], arrays


def _xor_params(p: dict[str, Any], ins: list[Value], op: str) -> tuple[int, int, int]:
    """``k``, output and input channels of an XOR EdgeConv op on packed per-point bits."""
    (x,) = ins
    _kind(x, ("bits",), f"{op} input")
    _need(x.domain == "points", f"{op} needs per-point features")
    _need(x.channels <= MAX_KNN_BITS, f"{op} supports at most {MAX_KNN_BITS} bits")
    return _int(p, "k", 1, MAX_K), _int(p, "channels"), x.channels


def _xor_conv(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    k, c, c_in = _xor_params(p, ins, "xor_edge_conv")
    arrays = {"w_rel": _packed(c, c_in), "w_self": _packed(c, c_in), **_pred("p_", c, "int32"),
              "out_negate": ArraySpec("uint8", (c,), "flag")}
    return [Value("bits", "points", c), Value("idx", "points", k=k)], arrays


def _xyz_max(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    _xyz_inputs(ins)
    c = _int(p, "channels")
    _enum(p, "bn", ("edge", "node"))
    arrays = {"weight": ArraySpec("float32", (c, 6)), "alpha": _vec(c), "slope": _vec(c),
              "bn_scale": _vec(c), "bn_shift": _vec(c), "offset": _vec(c)}
    return [Value("real", "points", c)], arrays


def _xor_max(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    k, c, c_in = _xor_params(p, ins, "xor_edge_conv_max")
    _enum(p, "bn", ("edge", "node"))
    arrays = {"w_rel": _packed(c, c_in), "w_self": _packed(c, c_in), "bias": _vec(c),
              "alpha": _vec(c), "slope": _vec(c), "bn_scale": _vec(c), "bn_shift": _vec(c),
              "offset": _vec(c)}
    return [Value("real", "points", c), Value("idx", "points", k=k)], arrays


def _shortcut_add(p: dict[str, Any], ins: list[Value]
                  ) -> tuple[list[Value], dict[str, ArraySpec]]:
    h, s = ins
    _kind(h, ("real",), "shortcut_add input")
    _kind(s, ("real",), "shortcut_add shortcut")
    _need(h.domain == s.domain == "points", "shortcut_add works on per-point values")
    _need(h.channels % s.channels == 0,
          f"the shortcut's {s.channels} channels do not divide the {h.channels} of the input")
    return [Value("real", "points", h.channels)], {}


def _real_conv(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    h, idx = ins
    _kind(h, ("real",), "real_edge_conv input")
    _kind(idx, ("idx",), "real_edge_conv neighbours")
    _need(h.domain == "points", "real_edge_conv needs per-point features")
    c, c_in = _int(p, "channels"), h.channels
    arrays = {**_pred("rel_", c_in, "float32"), **_pred("self_", c_in, "float32"),
              "w_rel": _packed(c, c_in), "w_self": _packed(c, c_in), "alpha": _vec(c),
              "slope": _vec(c)}
    return [Value("real", "points", c)], arrays


def _concat(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    _need(len(ins) >= 1, "concat needs at least one input")
    first = ins[0]
    _kind(first, ("bits", "real"), "concat input")
    _need(all(v.kind == first.kind and v.domain == first.domain for v in ins),
          "concat inputs must share kind and domain")
    total = sum(v.channels for v in ins)
    _need(total <= MAX_CHANNELS, "concat is too wide")
    return [Value(first.kind, first.domain, total)], {}


def _global_pool(p: dict[str, Any], ins: list[Value]
                 ) -> tuple[list[Value], dict[str, ArraySpec]]:
    (y,) = ins
    _kind(y, ("int",), "global_pool input")
    _need(y.domain == "points", "global_pool pools per-point values")
    c = y.channels
    arrays = {"alpha": _vec(c), "slope": _vec(c)}
    if _bool(p, "bn"):
        arrays.update(bn_scale=_vec(c), bn_shift=_vec(c))
    return [Value("real", "clouds", 2 * c)], arrays


def _threshold(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    (v,) = ins
    _kind(v, ("real", "int"), "threshold input")
    dtype = "float32" if v.kind == "real" else "int32"
    return [Value("bits", v.domain, v.channels)], _pred("", v.channels, dtype)


def _center_sign(p: dict[str, Any], ins: list[Value]
                 ) -> tuple[list[Value], dict[str, ArraySpec]]:
    (v,) = ins
    _kind(v, ("real",), "center_sign input")
    _need(v.domain == "nodes", "center_sign works on node features")
    _enum(p, "centering", ("mean", "median", "none"))
    return [Value("bits", v.domain, v.channels)], {}


def _node_scale(p: dict[str, Any], ins: list[Value]
                ) -> tuple[list[Value], dict[str, ArraySpec]]:
    (v,) = ins
    _kind(v, ("real",), "node_scale input")
    _need(v.domain == "nodes", "node_scale works on node features")
    centering = _enum(p, "centering", ("batchnorm", "mean", "median", "none"))
    arrays = {}
    if centering == "batchnorm":
        arrays = {"bn_scale": _vec(v.channels), "bn_shift": _vec(v.channels)}
    return [Value("scale", v.domain, 1)], arrays


def _binary_linear(p: dict[str, Any], ins: list[Value]
                   ) -> tuple[list[Value], dict[str, ArraySpec]]:
    (b,) = ins
    _kind(b, ("bits",), "binary_linear input")
    c = _int(p, "channels")
    return [Value("int", b.domain, c, bound=b.channels)], {"weight": _packed(c, b.channels)}


def _signed_linear(p: dict[str, Any], ins: list[Value]
                   ) -> tuple[list[Value], dict[str, ArraySpec]]:
    (x,) = ins
    _kind(x, ("nodes",), "signed_linear input")
    c = _int(p, "channels")
    return [Value("real", "nodes", c)], {"weight": _packed(c, x.channels)}


def _aggregate(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    h, g = ins
    _kind(h, ("real",), "aggregate input")
    _need(h.domain == "nodes", "aggregate works on node features")
    _kind(g, ("graph",), "aggregate graph")
    reduce = _enum(p, "reduce", ("mean", "sum"))
    _need(not g.weighted or reduce == "sum", "a GCN-normalised graph aggregates by weighted sum")
    return [Value("real", "nodes", h.channels)], {}


def _majority(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    b, g = ins
    _kind(b, ("bits",), "majority input")
    _need(b.domain == "nodes", "majority works on node signs")
    _kind(g, ("graph",), "majority graph")
    _need(not g.weighted, "majority votes over an unweighted graph")
    return [Value("bits", "nodes", b.channels)], {}


def _gcn_norm(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    (g,) = ins
    _kind(g, ("graph",), "gcn_norm input")
    _need(not g.weighted, "gcn_norm of an already normalised graph")
    fill = p.get("fill")
    _need(fill in (1.0, 2.0) and not isinstance(fill, bool),
          f"fill must be 1.0 or 2.0 (improved), got {fill!r}")
    return [Value("graph", "graph", weighted=True)], {}


def _affine_inputs(p: dict[str, Any]) -> list[str]:
    terms = p.get("terms")
    _need(isinstance(terms, list) and 1 <= len(terms) <= 8, "affine needs 1 to 8 terms")
    names: list[str] = []
    for t in terms:
        _need(isinstance(t, dict) and isinstance(t.get("input"), str),
              "each affine term needs an input name")
        names.append(t["input"])
    for t in terms:
        rs = t.get("row_scale")
        _need(rs is None or isinstance(rs, str), "an affine row_scale must be a name or null")
        if rs is not None:
            names.append(rs)
    return names


def _affine(p: dict[str, Any], ins: list[Value]) -> tuple[list[Value], dict[str, ArraySpec]]:
    terms = p["terms"]
    head = ins[: len(terms)]
    scales = ins[len(terms) :]
    c = head[0].channels
    for v in head:
        _kind(v, ("real", "int"), "affine term")
        _need(v.domain == head[0].domain and v.channels == c,
              "affine terms must share domain and channels")
    for v in scales:
        _kind(v, ("scale",), "affine row_scale")
        _need(v.domain == head[0].domain, "affine row_scale must match the terms' domain")
    arrays: dict[str, ArraySpec] = {}
    for i, t in enumerate(terms):
        if _bool(t, "bias", False):
            arrays[f"t{i}_bias"] = _vec(c)
        if _bool(t, "alpha", False):
            arrays[f"t{i}_alpha"] = _vec(c)
    if _bool(p, "bias"):
        arrays["bias"] = _vec(c)
    if _bool(p, "prelu"):
        arrays["slope"] = _vec(c)
    return [Value("real", head[0].domain, c)], arrays


def _float_linear(p: dict[str, Any], ins: list[Value]
                  ) -> tuple[list[Value], dict[str, ArraySpec]]:
    (h,) = ins
    _kind(h, ("real",), "float_linear input")
    c, c_in = _int(p, "channels"), h.channels
    arrays = {"weight": ArraySpec("float32", (c, c_in)), "bias": _vec(c), "alpha": _vec(c)}
    if _bool(p, "bn"):
        arrays.update(bn_scale=_vec(c_in), bn_shift=_vec(c_in))
    return [Value("real", h.domain, c)], arrays


@dataclass(frozen=True)
class OpDef:
    check: Check
    n_inputs: int | None  # None: variadic
    n_outputs: int
    tasks: tuple[str, ...] = TASKS


_P, _N = ("point_cloud_classification",), ("node_classification",)
OPS: dict[str, OpDef] = {
    "knn": OpDef(_knn, 1, 1, _P),
    "xyz_edge_conv_bits": OpDef(_xyz_bits, 2, 1, _P),
    "xyz_edge_conv_real": OpDef(_xyz_real, 2, 1, _P),
    "xyz_edge_conv_max": OpDef(_xyz_max, 2, 1, _P),
    "xor_edge_conv": OpDef(_xor_conv, 1, 2, _P),
    "xor_edge_conv_max": OpDef(_xor_max, 1, 2, _P),
    "shortcut_add": OpDef(_shortcut_add, 2, 1, _P),
    "real_edge_conv": OpDef(_real_conv, 2, 1, _P),
    "concat": OpDef(_concat, None, 1),
    "global_pool": OpDef(_global_pool, 1, 1, _P),
    "threshold": OpDef(_threshold, 1, 1),
    "center_sign": OpDef(_center_sign, 1, 1, _N),
    "node_scale": OpDef(_node_scale, 1, 1, _N),
    "binary_linear": OpDef(_binary_linear, 1, 1),
    "signed_linear": OpDef(_signed_linear, 1, 1, _N),
    "aggregate": OpDef(_aggregate, 2, 1, _N),
    "majority": OpDef(_majority, 2, 1, _N),
    "gcn_norm": OpDef(_gcn_norm, 1, 1, _N),
    "affine": OpDef(_affine, None, 1),
    "float_linear": OpDef(_float_linear, 1, 1),
}


# ----------------------------------------------------------------------------- arrays


def _check_array(key: str, a: np.ndarray, spec: ArraySpec) -> None:
    if a.dtype != np.dtype(spec.dtype) or a.shape != spec.shape:
        raise _Bad(f"array {key!r} should be {spec.dtype} {spec.shape}, got {a.dtype} "
                   f"{a.shape}")
    if spec.rule == "finite" and not np.isfinite(a).all():
        raise _Bad(f"array {key!r} holds NaN or infinite values")
    if spec.rule == "lo" and (np.isnan(a).any() or (a == np.inf).any()):
        raise _Bad(f"array {key!r} (lower thresholds) holds NaN or +inf")
    if spec.rule == "hi" and (np.isnan(a).any() or (a == -np.inf).any()):
        raise _Bad(f"array {key!r} (upper thresholds) holds NaN or -inf")
    if spec.rule == "flag" and a.size and a.max() > 1:
        raise _Bad(f"array {key!r} must hold 0/1 flags")
    if spec.rule == "packed":
        tail = spec.bits % 64
        if tail and a.size and np.any(a[..., -1] >> np.uint64(tail)):
            raise _Bad(f"array {key!r} has non-zero padding bits above bit {spec.bits}")


# ----------------------------------------------------------------------------- program


def _names(layer: dict[str, Any], key: str) -> list[str]:
    v = layer.get(key)
    if not isinstance(v, list) or not all(isinstance(s, str) and s for s in v):
        raise _Bad(f"{key} must be a list of value names")
    return v


def _input_values(desc: dict[str, Any], task: str) -> tuple[dict[str, Value], int]:
    spec = desc.get("input")
    if not isinstance(spec, dict):
        raise _Bad("input must be an object")
    if task == "point_cloud_classification":
        _need(spec.get("channels") == 3, "point-cloud models read xyz (input channels 3)")
        n = spec.get("num_points")
        _need(n is None or (isinstance(n, int) and not isinstance(n, bool) and n >= 1),
              f"input num_points must be a positive integer or null, got {n!r}")
        return {"x": Value("points", "points", 3)}, 3
    c = _int(spec, "channels")
    return {"x": Value("nodes", "nodes", c), "graph": Value("graph", "graph")}, c


def build_program(desc: dict[str, Any], arrays: dict[str, np.ndarray],
                  where: str = "model") -> Program:
    """Validate a model description and its arrays; return the runnable :class:`Program`.

    Raises:
        ModelFileError: anything that does not follow the rules above (one line naming the
            layer and what is wrong).
    """
    try:
        return _build(desc, arrays)
    except _Bad as e:
        raise ModelFileError(f"{where}: invalid model description: {e}") from None


def _build(desc: dict[str, Any], arrays: dict[str, np.ndarray]) -> Program:
    if not isinstance(desc, dict):
        raise _Bad("the description must be a JSON object")
    task = desc.get("task")
    if task not in TASKS:
        raise _Bad(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    ncls = _int(desc, "num_classes")
    names = desc.get("class_names")
    if names is not None and (not isinstance(names, list) or len(names) != ncls
                              or not all(isinstance(s, str) for s in names)):
        raise _Bad(f"class_names must list {ncls} strings")
    values, in_channels = _input_values(desc, task)
    raw_layers = desc.get("layers")
    if not isinstance(raw_layers, list) or not 1 <= len(raw_layers) <= MAX_LAYERS:
        raise _Bad(f"layers must be a list of 1 to {MAX_LAYERS} layers")
    layers: list[Layer] = []
    used: set[str] = set()
    seen_names: set[str] = set()
    for i, raw in enumerate(raw_layers):
        if not isinstance(raw, dict):
            raise _Bad(f"layer {i} must be an object")
        op, name = raw.get("op"), raw.get("name")
        if not isinstance(name, str) or not name or "." in name or name in seen_names:
            raise _Bad(f"layer {i}: name must be a unique non-empty string without '.', "
                       f"got {name!r}")
        seen_names.add(name)
        if not isinstance(op, str) or op not in OPS:
            raise _Bad(f"layer {name!r}: unknown op {op!r} (this bingnn reads "
                       f"{', '.join(OPS)}); upgrade bingnn")
        d = OPS[op]
        if task not in d.tasks:
            raise _Bad(f"layer {name!r}: op {op!r} is not available for {task}")
        try:
            ins, outs = _names(raw, "inputs"), _names(raw, "outputs")
            if op == "affine" and ins != _affine_inputs(raw):
                raise _Bad("inputs must list the terms' inputs, then their row scales")
            if d.n_inputs is not None and len(ins) != d.n_inputs:
                raise _Bad(f"takes {d.n_inputs} inputs, got {len(ins)}")
            if len(outs) != d.n_outputs:
                raise _Bad(f"gives {d.n_outputs} outputs, got {len(outs)}")
            for v in ins:
                if v not in values:
                    raise _Bad(f"reads {v!r}, which no earlier layer writes")
            for v in outs:
                if v in values:
                    raise _Bad(f"writes {v!r}, which already exists")
            out_values, specs = d.check(raw, [values[v] for v in ins])
            mine: dict[str, np.ndarray] = {}
            for key, spec in specs.items():
                full = f"{name}.{key}"
                if full not in arrays:
                    raise _Bad(f"missing array {full!r}")
                _check_array(full, arrays[full], spec)
                mine[key] = np.ascontiguousarray(arrays[full])
                used.add(full)
        except _Bad as e:
            raise _Bad(f"layer {name!r} ({op}): {e}") from None
        for v, val in zip(outs, out_values, strict=True):
            values[v] = val
        params = {k: v for k, v in raw.items() if k not in ("op", "name", "inputs", "outputs")}
        layers.append(Layer(op, name, ins, outs, params, mine,
                            [values[v] for v in ins], out_values))
    extra = sorted(set(arrays) - used)
    if extra:
        raise _Bad(f"arrays {extra[:3]} belong to no layer")
    out = desc.get("output", "logits")
    if out != "logits" or "logits" not in values:
        raise _Bad("the model must write a value named 'logits'")
    lv = values["logits"]
    want_domain = "clouds" if task == "point_cloud_classification" else "nodes"
    if lv.kind != "real" or lv.domain != want_domain or lv.channels != ncls:
        raise _Bad(f"logits must be real ({want_domain}, {ncls} channels), got {lv.kind} "
                   f"({lv.domain}, {lv.channels} channels)")
    ks = [v.k for v in values.values() if v.kind == "idx"]
    consumers: dict[str, list[int]] = {}
    for i, layer in enumerate(layers):
        for v in layer.inputs:
            consumers.setdefault(v, []).append(i)
    return Program(
        task=task, description=desc, layers=layers, values=values, num_classes=ncls,
        class_names=list(names) if names else [str(i) for i in range(ncls)],
        in_channels=in_channels, min_points=max(ks, default=1), consumers=consumers,
    )
