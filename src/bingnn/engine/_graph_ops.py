"""Backend selection for the graph steps: the native kernels (``csrc/graph_*.cpp``) when the
extension provides them, the numpy reference (:mod:`bingnn.engine.graph_reference`) otherwise.

Both backends compute the same bits and the same float32 values; ``native=False`` forces the
reference (the parity tests run both).
"""

from __future__ import annotations

import numpy as np

from bingnn.engine import graph_reference as gref
from bingnn.engine._ops import has, threads

try:
    from bingnn import _native
except ImportError:  # pragma: no cover - exercised only without a built extension
    _native = None

__all__ = [
    "affine", "aggregate", "center_sign", "csr_by_target", "feature_stats", "gather_rows",
    "gcn_csr", "majority", "node_scale", "signed_linear", "threshold_pack",
]


_NODE_DTYPES = (np.dtype(np.float32), np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.int32))


def _rows_contiguous(a: np.ndarray) -> np.ndarray:
    """``a`` itself when its rows are contiguous (a column slice of a wider array is fine for
    the native kernels), else a contiguous copy."""
    if a.ndim == 2 and a.strides[1] == a.itemsize and a.strides[0] >= a.shape[1] * a.itemsize:
        return a
    return np.ascontiguousarray(a)


def _t(num_threads: int | None) -> int:
    return int(threads(num_threads) or 0)


def csr_by_target(src: np.ndarray, dst: np.ndarray, n: int, native: bool,
                  num_threads: int | None) -> tuple[np.ndarray, np.ndarray]:
    """``(indptr, indices)`` of the in-edges by target (sources in edge order)."""
    if native and has("graph_csr_by_target"):
        return _native.graph_csr_by_target(src, dst, int(n), _t(num_threads))
    return gref.csr_by_target(src, dst, n)


def gcn_csr(indptr: np.ndarray, indices: np.ndarray, fill: float, native: bool,
            num_threads: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if native and has("graph_gcn_csr"):
        return _native.graph_gcn_csr(indptr, indices, float(fill))
    return gref.gcn_csr(indptr, indices, fill)


def gather_rows(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return gref.gather_rows(indptr, rows)


def aggregate(h: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
              weights: np.ndarray | None, mean: bool, native: bool, num_threads: int | None,
              row_scale: np.ndarray | None = None, alpha: np.ndarray | None = None,
              t0_bias: np.ndarray | None = None, t0_alpha: np.ndarray | None = None,
              second: tuple | None = None, bias: np.ndarray | None = None,
              slope: np.ndarray | None = None, keep_rows: bool = True,
              signs: tuple | None = None, scale: tuple | None = None,
              signs2: tuple | None = None) -> np.ndarray | tuple:
    """Messages ``u = (h * row_scale) * alpha`` summed (weighted) over in-edges, mean, the row
    epilogue, and optionally the rows' signs and node scale instead of (or beside) the rows:
    see :func:`bingnn.engine.graph_reference.aggregate`."""
    if h.dtype not in _NODE_DTYPES:
        h = h.astype(np.float32)
    h = _rows_contiguous(h)
    if second is not None and second[0].dtype not in _NODE_DTYPES:
        second = (second[0].astype(np.float32), *second[1:])
    if second is not None:
        second = (_rows_contiguous(second[0]), *second[1:])
    if native and has("graph_aggregate"):
        return _native.graph_aggregate(h, indptr, indices, weights, bool(mean), _t(num_threads),
                                       row_scale, alpha, t0_bias, t0_alpha, second, bias, slope,
                                       keep_rows, signs, scale, signs2)
    return gref.aggregate(h, indptr, indices, weights, mean, row_scale, alpha, t0_bias,
                          t0_alpha, second, bias, slope, keep_rows, signs, scale, signs2)


def majority(bits: np.ndarray, channels: int, indptr: np.ndarray, indices: np.ndarray,
             native: bool, num_threads: int | None) -> np.ndarray:
    """Packed majority vote of the sources' signs per target
    (:func:`bingnn.engine.graph_reference.majority`)."""
    bits = np.ascontiguousarray(bits, np.uint64)
    if native and has("graph_majority"):
        return _native.graph_majority(bits, int(channels), indptr, indices, _t(num_threads))
    return gref.majority(bits, channels, indptr, indices)


def feature_stats(x: np.ndarray, native: bool = True) -> tuple[bool, bool, float]:
    """``(all finite, all integers, largest row sum of |x|)`` of dense float32 features; the
    sum is exact for integers below 2**23 in magnitude and ``inf`` otherwise (it only picks
    the narrow integer types of the first layer)."""
    if native and has("graph_feature_stats"):
        return _native.graph_feature_stats(x, 0)
    finite = bool(np.isfinite(x).all())
    integral = finite and bool((x == np.rint(x)).all())
    small = finite and bool((np.abs(x) < 2**23).all())
    l1 = (float(np.abs(x.astype(np.float64)).sum(axis=1).max(initial=0.0))
          if integral and small else np.inf)
    return finite, integral, l1


def _narrow_dtype(features) -> str:
    """The narrowest exact type for ``features @ sign(W)^T``: int8 / int16 when every feature
    is an integer and every row's sum of |x| fits (the sums are then exact integers)."""
    integral, max_l1 = features.stats()
    if integral and max_l1 <= 127:
        return "int8"
    if integral and max_l1 <= 32767:
        return "int16"
    return "float32"


def signed_linear(features, weight: np.ndarray | list[np.ndarray], native: bool,
                  num_threads: int | None) -> np.ndarray | list[np.ndarray]:
    """``features @ sign(W)^T`` for :class:`bingnn.engine.graph.Features`: float32, or int8 /
    int16 holding the same (exact integer) values for integer features. A list of weight
    matrices is computed in one pass over the features; the results are column slices of one
    array."""
    if isinstance(weight, list):
        z = signed_linear(features, np.concatenate(weight, axis=0), native, num_threads)
        bounds = np.cumsum([0] + [w.shape[0] for w in weight])
        return [z[:, a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    n_in = features.channels
    if features.dense is not None and features.integral is None and native \
            and has("graph_signed_linear_dense"):
        # Unscanned dense features: try int8 first. Success proves every value an integer
        # (so finite) with row sums of |x| <= 127, the common 0/1 case, and saves the scan.
        z = _native.graph_signed_linear_dense(features.dense, weight, _t(num_threads), "int8",
                                              strict=False)
        if z is not None:
            features.integral, features.max_l1 = True, 127.0
            return z
    out = _narrow_dtype(features)
    if features.dense is not None:
        if native and has("graph_signed_linear_dense"):
            return _native.graph_signed_linear_dense(features.dense, weight, _t(num_threads),
                                                     out)
        z = gref.signed_linear_dense(features.dense, weight)
    elif native and has("graph_signed_linear_csr"):
        return _native.graph_signed_linear_csr(features.indptr, features.indices, features.data,
                                               weight, int(n_in), _t(num_threads), out)
    else:
        z = gref.signed_linear_csr(features.indptr, features.indices, features.data, weight,
                                   n_in)
    return z.astype(out)


def threshold_pack(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, negate: np.ndarray,
                   native: bool, num_threads: int | None) -> np.ndarray:
    """Packed per-channel threshold predicate of ``v (..., C)`` (float32 or int32)."""
    if native and v.dtype == np.float32 and has("graph_threshold_pack"):
        lead, c = v.shape[:-1], v.shape[-1]
        flat = np.ascontiguousarray(v.reshape(-1, c))
        out = _native.graph_threshold_pack(flat, lo, hi, negate, _t(num_threads))
        return out.reshape(*lead, out.shape[-1])
    return gref.threshold_pack(v, lo, hi, negate)


def center_sign(v: np.ndarray, centering: str, native: bool,
                num_threads: int | None) -> np.ndarray:
    if native and centering != "median" and has("graph_center_sign"):
        return _native.graph_center_sign(np.ascontiguousarray(v, np.float32), centering,
                                          _t(num_threads))
    return gref.center_sign(v, centering)


def node_scale(v: np.ndarray, centering: str, bn_scale: np.ndarray | None,
               bn_shift: np.ndarray | None, native: bool, num_threads: int | None) -> np.ndarray:
    if native and centering != "median" and has("graph_node_scale"):
        return _native.graph_node_scale(np.ascontiguousarray(v, np.float32), centering,
                                         bn_scale, bn_shift, _t(num_threads))
    return gref.node_scale(v, centering, bn_scale, bn_shift)


def affine(terms: list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None,
                             np.ndarray | None]],
           bias: np.ndarray | None, slope: np.ndarray | None, native: bool,
           num_threads: int | None) -> np.ndarray:
    r"""``out = PReLU(sum_t (((x_t * row_scale_t) + bias_t) * alpha_t) + bias)`` in float32, each
    operation rounded in that order; ``terms`` are ``(x, row_scale, bias, alpha)`` with ``x``
    float32 or int32 ``(..., C)``, ``row_scale`` ``(rows,)`` or ``None``."""
    if (native and len(terms) <= 2 and has("graph_affine") and terms[0][0].ndim == 2
            and all(t[0].dtype in _NODE_DTYPES for t in terms)):
        return _native.graph_affine([(_rows_contiguous(t[0]), *t[1:]) for t in terms],
                                    bias, slope, _t(num_threads))
    out = None
    for term in terms:
        v = gref.affine_term(*term)
        out = v if out is None else out + v
    if bias is not None:
        out = out + bias
    if slope is not None:
        out = np.where(out >= 0, out, out * slope)
    return np.asarray(out, np.float32)
