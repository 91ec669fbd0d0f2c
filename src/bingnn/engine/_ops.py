"""Backend selection: the native kernels when the extension provides them, numpy otherwise.

Every function here has the same meaning on both backends (the reference in
:mod:`bingnn.engine.reference` defines it); ``native=False`` forces the reference, which the
parity tests use to check the two against each other.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from bingnn.engine import reference as ref

# The extension may be missing (a source checkout without a build): then the numpy reference
# runs. An extension that is there but fails to import (e.g. a bad BINGNN_DISPATCH) is an error,
# never a silent switch to the slow path.
if importlib.util.find_spec("bingnn._native") is not None:
    from bingnn import _native
    from bingnn.engine import kernels as K
else:  # pragma: no cover - exercised only without a built extension
    _native = None
    K = None

T_HI_OFF = int(np.iinfo(np.int32).max)
T_LO_OFF = int(np.iinfo(np.int32).min)


def _c(a: np.ndarray | None, dtype: type | None = None) -> np.ndarray | None:
    """C-contiguous, aligned (the native core refuses misaligned views) and of ``dtype``."""
    return None if a is None else np.require(a, dtype, ("C", "A"))


def has(name: str) -> bool:
    """Whether the native extension provides kernel ``name``."""
    return _native is not None and hasattr(_native, name)


def threads(num_threads: int | None) -> int | None:
    return None if num_threads is None or num_threads <= 0 else int(num_threads)


def pack(bits: np.ndarray) -> np.ndarray:
    """Booleans (``True`` = +1) -> packed ``uint64`` along the last axis."""
    return ref.pack_bits(bits)


def binary_gemm(
    a: np.ndarray, b: np.ndarray, n_bits: int, native: bool, num_threads: int | None
) -> np.ndarray:
    if native and has("binary_gemm"):
        return K.binary_gemm(a, b, n_bits, num_threads=threads(num_threads))
    return ref.binary_gemm(a, b, n_bits)


def hamming_knn(x: np.ndarray, k: int, native: bool, num_threads: int | None) -> np.ndarray:
    if native and has("hamming_knn"):
        return K.hamming_knn(x, k, num_threads=threads(num_threads))[0]
    return ref.hamming_knn(x, k)


def l2_knn(x: np.ndarray, k: int, native: bool, num_threads: int | None) -> np.ndarray:
    """Squared-L2 k-NN (self included, ties to the smaller index) as ``bingnn.nn.knn``."""
    if native and x.shape[-1] == 3 and has("l2_knn3"):
        return _native.l2_knn3(_c(x, np.float32), int(k),
                               int(threads(num_threads) or 0))
    if native and has("select_k_rows"):
        b, n = x.shape[:2]
        d = ref.l2_distances(x).reshape(b * n, n)
        idx = _native.select_k_rows(_c(d, np.float32), int(k), int(threads(num_threads) or 0))
        return idx.reshape(b, n, k)
    return ref.l2_knn(x, k)


def edge0_minmax(
    x: np.ndarray,
    idx: np.ndarray,
    weight: np.ndarray,
    bn_scale: np.ndarray | None,
    bn_shift: np.ndarray | None,
    native: bool,
    num_threads: int | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Max and min over neighbours of the real first-layer pre-activations
    (:func:`bingnn.engine.reference.edge_preact0`): ``(B, N, C)`` float32 each."""
    if native and has("edge_conv0_minmax"):
        return _native.edge_conv0_minmax(
            _c(x, np.float32),
            _c(idx, np.int32),
            _c(weight, np.float32),
            _c(bn_scale),
            _c(bn_shift),
            int(threads(num_threads) or 0),
        )
    y = ref.edge_preact0(x, idx, weight, bn_scale, bn_shift)
    return y.max(axis=2), y.min(axis=2)


def rf_edge_minmax(h: np.ndarray, idx: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   negate: np.ndarray, self_lo: np.ndarray, self_hi: np.ndarray,
                   self_negate: np.ndarray, w_rel: np.ndarray, w_self: np.ndarray, native: bool,
                   num_threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    r"""RF layer pre-activations, max and min over neighbours: :math:`y_{ijc} =
    \langle p(h_j - h_i), w^{rel}_c \rangle + \langle p'(h_i), w^{self}_c \rangle` with the
    per-channel predicates ``p`` (``lo, hi, negate``) and ``p'`` (``self_*``).

    ``h (B, N, C)`` float32, ``idx (B, N, k)`` -> ``ymax, ymin (B, N, C_out)`` int32."""
    b, n, c = h.shape
    self_bits = pack(ref.predicate(h, self_lo, self_hi, self_negate)).reshape(b * n, -1)
    if native and has("rf_edge_minmax"):
        return _native.rf_edge_minmax(
            _c(h, np.float32), _c(idx, np.int32), _c(lo), _c(hi),
            _c(negate), _c(self_bits), _c(w_rel), _c(w_self), int(threads(num_threads) or 0))
    k = idx.shape[-1]
    rel_bits = pack(ref.predicate(ref.gather(h, idx) - h[:, :, None, :], lo, hi, negate))
    y = ref.binary_gemm(rel_bits.reshape(b * n * k, -1), w_rel, c).reshape(b, n, k, -1)
    y_self = ref.binary_gemm(self_bits, w_self, c).reshape(b, n, 1, -1)
    y = y + y_self
    return y.max(axis=2), y.min(axis=2)


def embed_pool(y: np.ndarray, alpha: np.ndarray, slope: np.ndarray,
               bn_scale: np.ndarray | None, bn_shift: np.ndarray | None, native: bool,
               num_threads: int | None) -> np.ndarray:
    """Global max and mean pooling of ``h = bn(prelu(alpha * y))`` over the points:
    ``y (B, N, C)`` int32 -> ``(B, 2C)`` float32 (see :func:`reference.embed_pool`)."""
    if native and has("embed_pool"):
        return _native.embed_pool(_c(y, np.int32), _c(alpha), _c(slope), _c(bn_scale),
                                  _c(bn_shift), int(threads(num_threads) or 0))
    return ref.embed_pool(y, alpha, slope, bn_scale, bn_shift)


def xor_edge_conv_knn(
    x: np.ndarray,
    k: int,
    w_rel: np.ndarray,
    w_self: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    p_negate: np.ndarray,
    out_negate: np.ndarray,
    c_in: int,
    native: bool,
    num_threads: int | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """A binary XorEdgeConv layer on packed bits: Hamming k-NN, then
    ``bit_c(i) = out_negate_c XOR OR_j p_c(y_ijc)``. Returns ``(bits, idx)``."""
    # With a non-negated predicate, OR_j p(y_j) = (max_j y >= hi) or (min_j y <= lo): the
    # fused max/min kernel applies. A negated (interval) predicate needs every y_ij: those
    # channels (rare: a negative PReLU slope and a negative BatchNorm scale) are recomputed
    # edge by edge and patched in.
    if native and has("xor_edge_conv_knn"):
        out, idx = K.xor_edge_conv_knn(x, k, w_rel, w_self, hi, lo, out_negate, c_in=c_in,
                                       return_idx=True, num_threads=threads(num_threads))
        special = np.flatnonzero(p_negate)
        if special.size:
            y = ref.xor_edge_preact(x, idx, w_rel[special], w_self[special], c_in,
                                    gemm=lambda a, b, n: binary_gemm(a, b, n, True, num_threads))
            fix = ref.predicate(y, lo[special], hi[special], p_negate[special]).any(axis=2)
            bits = ref.unpack_bits(out, w_rel.shape[0])
            bits[..., special] = fix ^ out_negate[special].astype(bool)
            out = ref.pack_bits(bits)
        return out, idx
    idx = hamming_knn(x, k, native, num_threads)
    return ref.xor_edge_conv(x, idx, w_rel, w_self, lo, hi, p_negate, out_negate, c_in), idx


def xor_edge_minmax(x: np.ndarray, idx: np.ndarray, w_rel: np.ndarray, w_self: np.ndarray,
                    c_in: int, native: bool, num_threads: int | None
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Max and min over neighbours of the binary XorEdgeConv pre-activations:
    ``ymax, ymin (B, N, C_out)`` int32."""
    if native and has("xor_edge_conv_minmax"):
        return K.xor_edge_conv_minmax(x, idx, w_rel, w_self, c_in=c_in,
                                      num_threads=threads(num_threads))
    y = ref.xor_edge_preact(x, idx, w_rel, w_self, c_in)
    return y.max(axis=2), y.min(axis=2)


def not_at_extremes(table: np.ndarray, use_min: np.ndarray) -> np.ndarray:
    """Channels whose tabulated value can reach its max (``use_min``: min) over a set of
    pre-activations strictly inside the set's range: a rise followed later by a fall (for the
    min, a fall followed by a rise). Every other channel takes it at the set's smallest or
    largest pre-activation."""
    d = np.diff(table.astype(np.float64), axis=1)
    d = np.where(use_min.astype(bool)[:, None], -d, d)
    n = d.shape[1]
    first_rise = np.where((d > 0).any(axis=1), (d > 0).argmax(axis=1), n)
    last_fall = np.where((d < 0).any(axis=1), n - 1 - (d[:, ::-1] < 0).argmax(axis=1), -1)
    return np.flatnonzero(first_rise < last_fall)


def table_minmax(ymax: np.ndarray, ymin: np.ndarray, table: np.ndarray, use_min: np.ndarray,
                 native: bool, num_threads: int | None) -> np.ndarray:
    """The tabulated values at each row's largest and smallest pre-activation, their max
    (``use_min``: min) per channel: ``(..., C)`` float32."""
    if native and has("table_minmax"):
        return _native.table_minmax(_c(ymax, np.int32), _c(ymin, np.int32),
                                    _c(table, np.float32), _c(use_min, np.uint8),
                                    int(threads(num_threads) or 0))
    vmax, vmin = ref.table_lookup(ymax, table), ref.table_lookup(ymin, table)
    return np.where(use_min.astype(bool), np.minimum(vmax, vmin), np.maximum(vmax, vmin))


def xor_edge_conv_max(x: np.ndarray, k: int, w_rel: np.ndarray, w_self: np.ndarray,
                      table: np.ndarray, use_min: np.ndarray, c_in: int, native: bool,
                      num_threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """A real-valued binary XorEdgeConv layer on packed bits: the Hamming k-NN, then
    :func:`bingnn.engine.reference.xor_edge_conv_max` from the max and min pre-activation of
    each point's neighbours (one fused native pass); channels whose value may peak inside that
    range (a negative PReLU slope and a negative BatchNorm scale) are computed edge by edge.
    Returns ``(h, idx)``."""
    if native and has("xor_edge_conv_knn_minmax"):
        ymax, ymin, idx = K.xor_edge_conv_knn_minmax(x, k, w_rel, w_self, c_in=c_in,
                                                     num_threads=threads(num_threads))
    else:
        idx = hamming_knn(x, k, native, num_threads)
        ymax, ymin = xor_edge_minmax(x, idx, w_rel, w_self, c_in, native, num_threads)
    h = table_minmax(ymax, ymin, table, use_min, native, num_threads)
    special = not_at_extremes(table, use_min)
    if special.size:
        h[..., special] = ref.xor_edge_conv_max(
            x, idx, w_rel[special], w_self[special], table[special], use_min[special], c_in,
            gemm=lambda a, b, n: binary_gemm(a, b, n, native, num_threads))
    return np.ascontiguousarray(h, dtype=np.float32), idx


def edge_conv0_max(x: np.ndarray, idx: np.ndarray, weight: np.ndarray, alpha: np.ndarray,
                   slope: np.ndarray, bn_scale: np.ndarray, bn_shift: np.ndarray,
                   offset: np.ndarray, bn_edge: bool, native: bool,
                   num_threads: int | None) -> np.ndarray:
    """:func:`bingnn.engine.reference.edge_conv0_max` from the max and min pre-activation of
    each point's neighbours. Rescale and PReLU make a monotone or V-shaped function, whose max
    is at an extreme; a negative BatchNorm scale on a V (BF2, BatchNorm before the max) makes a
    peak, and those channels are computed edge by edge."""
    zmax, zmin = edge0_minmax(x, idx, weight, None, None, native, num_threads)
    va = ref.edge_conv0_values(zmax, alpha, slope, bn_scale, bn_shift, False)
    vb = ref.edge_conv0_values(zmin, alpha, slope, bn_scale, bn_shift, False)
    # BatchNorm is monotone (rounding too): increasing for a scale >= 0, so the max of its
    # values is its value at the larger input; decreasing for a negative one (BF2), at the
    # smaller. One BatchNorm pass instead of two.
    v = np.where(bn_scale < 0, np.minimum(va, vb), np.maximum(va, vb)) if bn_edge else (
        np.maximum(va, vb))
    h = ref.fma_affine(v, bn_scale, bn_shift)
    special = np.flatnonzero((slope < 0) & (bn_scale < 0)) if bn_edge else np.empty(0, int)
    if special.size:
        z = ref.edge_preact0(x, idx, weight[special])
        h[..., special] = ref.edge_conv0_values(
            z, alpha[special], slope[special], bn_scale[special], bn_shift[special],
            True).max(axis=2)
    return np.ascontiguousarray(h - offset, dtype=np.float32)
