r"""Fold a trained stage-3 ``BinDGCNN`` into the engine's arrays (imports PyTorch).

Exactness. Every sign the engine takes is a per-channel threshold predicate
(:mod:`bingnn.engine.reference`) derived here by *evaluating the model's own modules* in
float32, never by deriving thresholds with algebra:

* on an integer pre-activation :math:`y \in \{-n, -n+2, \dots, n\}` (a +-1 dot product of
  ``n`` terms), :math:`\mathrm{sign}(f(y))` is tabulated on every possible ``y``;
* on a real input ``v`` (xyz layer, BatchNorm before a sign), ``f`` (rescale, PReLU,
  BatchNorm) is monotone on ``v < 0`` and on ``v >= 0``, so the boundary of
  :math:`\{v : f(v) \ge 0\}` on each half-line is found by bisection over the ordered float32
  values, again by evaluating ``f``; the result is exact for :math:`|v| \le 2^{64}`.

The resulting set is a union of runs along the line; it is stored as ``(lo, hi, negate)``
(:math:`p(v) = \mathrm{negate} \oplus (v \ge hi \lor v \le lo)`), which covers every set a
rescale -> PReLU -> BatchNorm chain can produce (at most three runs).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bingnn.engine import reference as ref
from bingnn.models.bin_dgcnn import BinDGCNN
from bingnn.nn.batchnorm_stats import eval_affine
from bingnn.nn.centering import ChannelBatchNorm, NoCenter

__all__ = ["ExportError", "check_class_names", "float_predicate", "fold_bindgcnn",
           "int_predicate"]

T_HI_OFF = int(np.iinfo(np.int32).max)
T_LO_OFF = int(np.iinfo(np.int32).min)
_MAG_MAX = int(np.array(2.0**64, dtype=np.float32).view(np.uint32))  # bits of 2**64

Fn = Callable[[Tensor], Tensor]
Run = tuple[bool, Any, Any]  # (value, first, last) along the ordered domain


class ExportError(ValueError):
    """The model cannot be run by the engine (unsupported variant, stage or option)."""


# ----------------------------------------------------------------------------- predicates


def _classify(runs: list[Run], lo_off: Any, hi_off: Any, where: str) -> tuple[Any, Any, int]:
    """``(lo, hi, negate)`` of the set made of the ``True`` runs."""
    merged: list[list] = []
    for value, first, last in runs:
        if merged and merged[-1][0] == value:
            merged[-1][2] = last
        else:
            merged.append([value, first, last])
    vals = [m[0] for m in merged]
    if vals == [True]:
        return lo_off, hi_off, 1
    if vals == [False]:
        return lo_off, hi_off, 0
    if vals == [True, False]:
        return merged[0][2], hi_off, 0
    if vals == [False, True]:
        return lo_off, merged[1][1], 0
    if vals == [True, False, True]:
        return merged[0][2], merged[2][1], 0
    if vals == [False, True, False]:
        return merged[0][2], merged[2][1], 1
    raise ExportError(f"{where}: the sign pattern has {len(vals)} runs, more than a "
                      "rescale/PReLU/BatchNorm chain can give; the model is not supported")


def int_predicate(fn: Fn, n_bits: int, channels: int, invert: Sequence[bool] | None = None,
                  where: str = "layer") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicate of ``sign(fn(y)) = +1`` (xor ``invert``) for every integer pre-activation
    ``y = n_bits - 2 p``, ``p = 0..n_bits``, per channel: int32 ``lo, hi`` and uint8 ``negate``."""
    ys = np.arange(-n_bits, n_bits + 1, 2, dtype=np.int64)
    t = torch.from_numpy(ys.astype(np.float32))[:, None].expand(-1, channels).contiguous()
    with torch.no_grad():
        s = (fn(t) >= 0).numpy()
    lo = np.empty(channels, np.int32)
    hi = np.empty(channels, np.int32)
    neg = np.empty(channels, np.uint8)
    for c in range(channels):
        col = s[:, c] ^ bool(invert[c]) if invert is not None else s[:, c]
        edges = np.flatnonzero(np.diff(col.astype(np.int8))) + 1
        starts = np.concatenate([[0], edges])
        ends = np.concatenate([edges - 1, [len(ys) - 1]])
        runs = [(bool(col[a]), int(ys[a]), int(ys[b])) for a, b in zip(starts, ends, strict=True)]
        lo[c], hi[c], neg[c] = _classify(runs, T_LO_OFF, T_HI_OFF, f"{where} channel {c}")
    return lo, hi, neg


def _f32(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype=np.uint32).view(np.float32)


def float_predicate(fn: Fn, channels: int, invert: Sequence[bool] | None = None,
                    where: str = "layer") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Predicate of ``sign(fn(v)) = +1`` (xor ``invert``) for real float32 ``v``, per channel,
    assuming ``fn`` is monotone on ``v < 0`` and on ``v >= 0``: float32 ``lo, hi``, uint8
    ``negate`` (``lo = -inf`` / ``hi = +inf`` disable a side)."""

    def sign_at(mag: np.ndarray, negative: bool) -> np.ndarray:
        v = _f32(mag) * (np.float32(-1.0) if negative else np.float32(1.0))
        with torch.no_grad():
            return (fn(torch.from_numpy(v.astype(np.float32))[None, :]) >= 0).numpy()[0]

    pieces = {}
    for negative, m_small in ((True, 1), (False, 0)):
        a = np.full(channels, m_small, np.int64)
        b = np.full(channels, _MAG_MAX, np.int64)
        s_small, s_big = sign_at(a, negative), sign_at(b, negative)
        # Bisection for the smallest magnitude whose sign equals the sign at the far end.
        lo_m, hi_m = a.copy(), b.copy()
        todo = s_small != s_big
        while True:
            active = todo & (hi_m - lo_m > 1)
            if not active.any():
                break
            mid = (lo_m + hi_m) // 2
            s_mid = sign_at(np.where(active, mid, hi_m), negative)
            to_hi = active & (s_mid == s_big)
            hi_m = np.where(to_hi, mid, hi_m)
            lo_m = np.where(active & ~to_hi, mid, lo_m)
        pieces[negative] = (s_small, s_big, todo, hi_m)

    lo = np.empty(channels, np.float32)
    hi = np.empty(channels, np.float32)
    neg = np.empty(channels, np.uint8)
    big = float(_f32(np.array(_MAG_MAX)))
    tiny = float(_f32(np.array(1)))
    for c in range(channels):
        runs: list[Run] = []
        s_small, s_big, todo, m = pieces[True]  # v < 0, in increasing order of v
        if todo[c]:
            edge = float(_f32(np.array(m[c])))
            before = float(_f32(np.array(m[c] - 1)))
            runs += [(bool(s_big[c]), -big, -edge), (bool(s_small[c]), -before, -tiny)]
        else:
            runs.append((bool(s_small[c]), -big, -tiny))
        s_small, s_big, todo, m = pieces[False]  # v >= 0
        if todo[c]:
            edge = float(_f32(np.array(m[c])))
            before = float(_f32(np.array(m[c] - 1)))
            runs += [(bool(s_small[c]), 0.0, before), (bool(s_big[c]), edge, big)]
        else:
            runs.append((bool(s_small[c]), 0.0, big))
        if invert is not None and invert[c]:
            runs = [(not v, a, b) for v, a, b in runs]
        lo[c], hi[c], neg[c] = _classify(runs, -math.inf, math.inf, f"{where} channel {c}")
    return lo, hi, neg


# ----------------------------------------------------------------------------- helpers


def _chain(*mods: nn.Module | None) -> Fn:
    mods = tuple(m for m in mods if m is not None)

    def f(t: Tensor) -> Tensor:
        for m in mods:
            t = m(t)
        return t

    return f


class _Shift(nn.Module):
    """``t + c`` (an identity for ``c = 0``): BF2's offset after the neighbour max, applied per
    edge inside the tabulated function (the max commutes with a constant shift)."""

    def __init__(self, c: float) -> None:
        super().__init__()
        self.c = float(c)

    def forward(self, t: Tensor) -> Tensor:
        return t + self.c if self.c else t


class _Bias(nn.Module):
    """``t + b`` per channel: the real bias of a binary linear map (``prelu_shift``), added to
    the integer pre-activation before the rest of the tabulated chain."""

    def __init__(self, b: Tensor) -> None:
        super().__init__()
        self.b = b.detach().to(torch.float32)

    def forward(self, t: Tensor) -> Tensor:
        return t + self.b


def _xyz_weight(linear: nn.Module) -> np.ndarray:
    """The xyz layer's ``(C, 6)`` weights as the layer uses them: +-1, or real
    (``first_layer_binary=False``; the engine's xyz arithmetic is float32 either way)."""
    w = _np(linear.weight)
    return np.where(w >= 0, 1.0, -1.0).astype(np.float32) if linear.binary_weights else w


def _signs(w: Tensor) -> np.ndarray:
    """Sign bits (``w >= 0`` -> +1) of latent weights, packed along the input dimension."""
    return ref.pack_bits(w.detach().cpu().float().numpy() >= 0)


def _np(t: Tensor) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().float().numpy())


def _bn_affine(bn: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm in eval mode as ``fma(x, scale, shift)`` (float32), with the constants rounded as
    PyTorch's CPU kernel rounds them, in float32: the PyTorch model's own
    (:func:`~bingnn.nn.batchnorm_stats.eval_affine`) on a CPU float32 copy of ``bn``."""
    if not isinstance(bn, nn.BatchNorm1d) or bn.running_mean is None:
        raise ExportError(f"{where}: expected a BatchNorm with running statistics")
    with torch.no_grad():
        scale, shift = eval_affine(copy.deepcopy(bn).to("cpu", torch.float32))
    return _np(scale), _np(shift)


def _rescale_act(block: nn.Module, where: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel rescale factor and PReLU slope (slope 1 = no PReLU)."""
    r = block.rescale
    if r is None:
        alpha = np.ones(block.linear.out_channels if hasattr(block, "linear") else 0, np.float32)
    else:
        if r.point_scale is not None or r.neighbor_scale is not None:
            raise ExportError(f"{where}: per-point / per-neighbour rescaling is not supported "
                              "by the engine; train with rescale_points=None, "
                              "rescale_neighbors=False")
        alpha = _np(r.channel_scale)
    slope = _np(block.act.weight) if block.act is not None else np.ones_like(alpha)
    return alpha, slope


def _check_supported(model: nn.Module) -> dict[str, Any]:
    if not isinstance(model, BinDGCNN):
        raise ExportError(f"the engine runs BinDGCNN models, got {type(model).__name__}")
    cfg = dict(model.config)
    if cfg["stage"] != 3:
        raise ExportError(f"only fully binary (stage 3) models are supported by the engine, "
                          f"this one is stage {cfg['stage']}; finish the cascade first")
    if cfg["variant"] not in ("rf", "bf1", "bf2"):
        raise ExportError(f"variant {cfg['variant']!r} is not supported by the engine "
                          "(supported: rf, bf1, bf2)")
    if cfg.get("rescale_points") or cfg.get("rescale_neighbors"):
        raise ExportError("per-point / per-neighbour rescaling is not supported by the engine")
    if cfg.get("last_layer_binary"):
        raise ExportError("last_layer_binary=True is not supported by the engine")
    if len(cfg["widths"]) < 1:
        raise ExportError("the model needs at least one EdgeConv layer")
    return cfg


# ----------------------------------------------------------------------------- folding


def fold_bindgcnn(model: BinDGCNN, class_names: Sequence[str] | None = None,
                  num_points: int | None = None
                  ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Fold ``model`` (eval semantics) into ``(description, arrays)`` for the model file;
    ``num_points`` is the number of points per cloud the model was trained on."""
    from bingnn.engine.legacy import V1_RENAMES, point_model_description

    cfg = _check_supported(model)
    variant, widths, e = cfg["variant"], list(cfg["widths"]), cfg["emb_dims"]
    m0, m1 = cfg["mlp"]
    ncls = cfg["num_classes"]
    class_names = check_class_names(class_names, ncls)
    if num_points is not None and (isinstance(num_points, bool) or int(num_points) < 1):
        raise ExportError(f"num_points must be a positive integer, got {num_points!r}")
    was_training = model.training
    model.eval()
    try:
        if variant == "rf":
            arrays = _fold_rf(model, widths)
        elif cfg.get("shortcut"):
            arrays = _fold_bf_shortcut(model, widths)
        else:
            arrays = _fold_bf(model, widths)
        arrays.update(_fold_head(model, e, m0))
    finally:
        model.train(was_training)
    desc = point_model_description(
        variant, int(cfg["k"]), widths, int(e), [int(m0), int(m1)], int(ncls), class_names,
        None if num_points is None else int(num_points), cfg, bool(cfg.get("shortcut")),
        bool(cfg.get("residual")))
    return desc, {V1_RENAMES.get(k, k): v for k, v in arrays.items()}


def check_class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str] | None:
    if class_names is None:
        return None
    names = [str(s) for s in class_names]
    if len(names) != num_classes:
        raise ExportError(f"{len(names)} class names given for {num_classes} classes")
    return names


def _fold_bf(model: BinDGCNN, widths: list[int]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    chans = [3, *widths]
    for li, conv in enumerate(model.convs):
        where = f"convs[{li}]"
        if not isinstance(conv.balance, NoCenter):
            raise ExportError(f"{where}: balance functions are not supported by the engine")
        if li > 0 and not conv.linear.binary_weights:
            raise ExportError(f"{where}: weights are not binary")
        bias = conv.linear.bias
        if li == 0 and bias is not None:
            raise ExportError(f"{where}: a bias on the xyz layer is not supported by the engine "
                              "(BinDGCNN's prelu_shift leaves that layer without one)")
        fn = _chain(None if bias is None else _Bias(bias), conv.rescale, conv.act, conv.bn,
                    _Shift(-conv.max_offset))
        c_out = conv.out_channels
        # BF1 takes the max before a BatchNorm: a negative BN scale turns it into a min, so
        # the output bit is "every neighbour passes" = NOT "some neighbour fails".
        invert = (_np(conv.bn.weight) < 0) if conv.version == 1 else np.zeros(c_out, bool)
        w = conv.linear.weight
        if li == 0:
            lo, hi, neg = float_predicate(fn, c_out, invert, where)
            arrays["layer0.weight"] = _xyz_weight(conv.linear)
            prefix = "layer0."
        else:
            lo, hi, neg = int_predicate(fn, 2 * chans[li], c_out, invert, where)
            arrays[f"layer{li}.w_rel"] = _signs(w[:, : chans[li]])
            arrays[f"layer{li}.w_self"] = _signs(w[:, chans[li]:])
            prefix = f"layer{li}."
        arrays[prefix + "p_lo"], arrays[prefix + "p_hi"], arrays[prefix + "p_negate"] = (
            lo, hi, neg)
        arrays[prefix + "out_negate"] = invert.astype(np.uint8)
    arrays.update(_fold_bf_embed(model))
    return arrays


def _fold_bf_embed(model: BinDGCNN) -> dict[str, np.ndarray]:
    """A BF model's binary embedding (both BF layouts share it)."""
    emb = model.embed
    if not isinstance(emb.center, NoCenter) or not isinstance(model.embed_norm, ChannelBatchNorm):
        raise ExportError("embed: unexpected layout for a BF model")
    alpha, slope = _rescale_act(emb, "embed")
    scale, shift = _bn_affine(model.embed_norm, "embed")
    return {"embed.weight": _signs(emb.linear.weight), "embed.alpha": alpha,
            "embed.slope": slope, "embed.bn_scale": scale, "embed.bn_shift": shift}


def _fold_bf_shortcut(model: BinDGCNN, widths: list[int]) -> dict[str, np.ndarray]:
    """BF with real-valued shortcuts: every EdgeConv's real value before the sign. Each layer's
    bias, rescale, PReLU, BatchNorm and offset are stored as they are: the engine repeats
    PyTorch's float32 operations (an XOR layer on each of its few integer pre-activations,
    once per model). The signs of the shortcut sums are thresholds at 0 (``ste_sign``:
    ``v >= 0`` is +1)."""
    arrays: dict[str, np.ndarray] = {}
    chans = [3, *widths]
    for li, conv in enumerate(model.convs):
        where = f"convs[{li}]"
        if not isinstance(conv.balance, NoCenter):
            raise ExportError(f"{where}: balance functions are not supported by the engine")
        c_out = conv.out_channels
        scale, shift = _bn_affine(conv.bn, where)
        if li == 0:
            if conv.linear.bias is not None:
                raise ExportError(f"{where}: a bias on the xyz layer is not supported by the "
                                  "engine")
            alpha, slope = _rescale_act(conv, where)
            arrays.update({"layer0.weight": _xyz_weight(conv.linear), "layer0.alpha": alpha,
                           "layer0.slope": slope, "layer0.bn_scale": scale,
                           "layer0.bn_shift": shift,
                           "layer0.offset": np.full(c_out, conv.max_offset, np.float32)})
        else:
            if not conv.linear.binary_weights:
                raise ExportError(f"{where}: weights are not binary")
            bias = conv.linear.bias
            alpha, slope = _rescale_act(conv, where)
            w = conv.linear.weight
            arrays.update({
                f"layer{li}.w_rel": _signs(w[:, : chans[li]]),
                f"layer{li}.w_self": _signs(w[:, chans[li]:]),
                f"layer{li}.bias": (_np(bias) if bias is not None
                                    else np.zeros(c_out, np.float32)),
                f"layer{li}.alpha": alpha, f"layer{li}.slope": slope,
                f"layer{li}.bn_scale": scale, f"layer{li}.bn_shift": shift,
                f"layer{li}.offset": np.full(c_out, conv.max_offset, np.float32)})
        arrays[f"sign{li}.lo"] = np.full(c_out, -np.inf, np.float32)
        arrays[f"sign{li}.hi"] = np.zeros(c_out, np.float32)
        arrays[f"sign{li}.negate"] = np.zeros(c_out, np.uint8)
    arrays.update(_fold_bf_embed(model))
    return arrays


def _fold_rf(model: BinDGCNN, widths: list[int]) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    chans = [3, *widths]
    for li, conv in enumerate(model.convs):
        where = f"convs[{li}]"
        block = conv.block
        if li > 0 and not block.linear.binary_weights:
            raise ExportError(f"{where}: weights are not binary")
        if not isinstance(block.center, ChannelBatchNorm):
            raise ExportError(f"{where}: RF blocks must centre with BatchNorm")
        c_in = chans[li]
        alpha, slope = _rescale_act(block, where)
        arrays[f"layer{li}.alpha"], arrays[f"layer{li}.slope"] = alpha, slope
        if li == 0:
            # Real xyz inputs: the engine evaluates BN, the +-1 weights and the sum per edge.
            arrays["layer0.bn_scale"], arrays["layer0.bn_shift"] = _bn_affine(block.center,
                                                                               where)
            arrays["layer0.weight"] = _xyz_weight(block.linear)
            continue
        lo, hi, neg = float_predicate(block.center, 2 * c_in, None, where)
        arrays[f"layer{li}.rel_lo"], arrays[f"layer{li}.rel_hi"] = lo[:c_in], hi[:c_in]
        arrays[f"layer{li}.rel_negate"] = neg[:c_in]
        arrays[f"layer{li}.self_lo"], arrays[f"layer{li}.self_hi"] = lo[c_in:], hi[c_in:]
        arrays[f"layer{li}.self_negate"] = neg[c_in:]
        w = block.linear.weight
        arrays[f"layer{li}.w_rel"] = _signs(w[:, :c_in])
        arrays[f"layer{li}.w_self"] = _signs(w[:, c_in:])
    emb = model.embed
    lo, hi, neg = float_predicate(emb.center, sum(widths), None, "embed")
    arrays["embed.p_lo"], arrays["embed.p_hi"], arrays["embed.p_negate"] = lo, hi, neg
    arrays["embed.weight"] = _signs(emb.linear.weight)
    arrays["embed.alpha"], arrays["embed.slope"] = _rescale_act(emb, "embed")
    return arrays


def _fold_head(model: BinDGCNN, e: int, m0: int) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    fc1, fc2, fc3 = model.fc1, model.fc2, model.fc3
    if not isinstance(fc1.center, ChannelBatchNorm) or not isinstance(fc2.center,
                                                                      ChannelBatchNorm):
        raise ExportError("classifier: fc1/fc2 must centre with BatchNorm")
    lo, hi, neg = float_predicate(fc1.center, 2 * e, None, "fc1")
    arrays["fc1.p_lo"], arrays["fc1.p_hi"], arrays["fc1.p_negate"] = lo, hi, neg
    arrays["fc1.weight"] = _signs(fc1.linear.weight)
    # fc1's rescale and PReLU, then fc2's BatchNorm and sign: a function of fc1's integer
    # pre-activation, tabulated exactly.
    fn = _chain(fc1.rescale, fc1.act, fc2.center)
    lo, hi, neg = int_predicate(fn, 2 * e, m0, None, "fc2")
    arrays["fc2.p_lo"], arrays["fc2.p_hi"], arrays["fc2.p_negate"] = lo, hi, neg
    arrays["fc2.weight"] = _signs(fc2.linear.weight)
    arrays["fc2.alpha"], arrays["fc2.slope"] = _rescale_act(fc2, "fc2")
    if not isinstance(fc3.center, ChannelBatchNorm) or fc3.act is not None:
        raise ExportError("classifier: unexpected layout of fc3")
    arrays["fc3.bn_scale"], arrays["fc3.bn_shift"] = _bn_affine(fc3.center, "fc3")
    arrays["fc3.weight"] = _np(fc3.linear.weight)
    bias = fc3.linear.bias
    arrays["fc3.bias"] = _np(bias) if bias is not None else np.zeros(
        fc3.out_channels, np.float32)
    arrays["fc3.alpha"], _ = _rescale_act(fc3, "fc3")
    return arrays
