r"""Pure-numpy reference of the engine's graph steps (no native code, no PyTorch).

They define what the native graph kernels (``csrc/graph_*.cpp``) compute and run when the
extension is missing or ``native=False``. Every float32 operation happens in the order stated
here, which is the order PyTorch Geometric uses where that order is fixed:

* messages are summed per target node in edge order, from zero (PyG's ``scatter`` with
  ``reduce="sum"``/``"mean"`` on CPU); the mean divides that sum by the in-degree (at least
  1) in float32;
* a weighted message is ``float32(w * h_j)`` before it is added (GCN);
* a per-node sum over channels follows ATen's vectorised inner reduction on CPU
  (:func:`aten_row_sum`, 8 float lanes), which ``Tensor.mean(dim=-1)`` uses.

Real inputs times +-1 weights (``signed_linear``) are summed feature by feature in increasing
feature order; every product is exact, so 0/1 (bag-of-words) inputs give exact integers.
"""

from __future__ import annotations

import numpy as np

from bingnn.engine.reference import pack_bits, unpack_bits

__all__ = [
    "affine_term",
    "aggregate",
    "aten_row_sum",
    "center_sign",
    "csr_by_target",
    "fma32",
    "gather_rows",
    "gcn_csr",
    "majority",
    "node_scale",
    "signed_linear_csr",
    "signed_linear_dense",
    "threshold_pack",
]

#: float32 lanes of ATen's ``Vectorized<float>`` in its sum kernel (x86-64 and AArch64 builds).
ATEN_SUM_LANES = 8


def csr_by_target(src: np.ndarray, dst: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """In-edges grouped by target, edge order kept: ``(indptr (n + 1,) int64, indices (E,)
    int32)`` with the sources (a stable counting sort). Indices must be in ``[0, n)``."""
    order = np.argsort(dst, kind="stable")
    counts = np.bincount(dst, minlength=n) if dst.size else np.zeros(n, np.int64)
    indptr = np.zeros(n + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return indptr, src[order].astype(np.int32)


def _entry_rows(indptr: np.ndarray) -> np.ndarray:
    return np.repeat(np.arange(indptr.size - 1, dtype=np.int64), np.diff(indptr))


def gcn_csr(indptr: np.ndarray, indices: np.ndarray, fill: float
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""PyG's ``gcn_norm`` of an unweighted graph: drop self-loops, append one self-loop of
    weight ``fill`` after each node's in-edges, :math:`d_i = \sum w` over the in-edges of
    :math:`i`, :math:`w'_{ji} = (d_j^{-1/2} w_{ji}) d_i^{-1/2}` in float32, with
    :math:`d^{-1/2}` computed as ``1 / sqrt(d)``."""
    n = indptr.size - 1
    rows = _entry_rows(indptr)
    keep = indices.astype(np.int64) != rows
    kept_counts = np.bincount(rows[keep], minlength=n) if n else np.zeros(0, np.int64)
    new_indptr = np.zeros(n + 1, np.int64)
    np.cumsum(kept_counts + 1, out=new_indptr[1:])
    src = np.concatenate([indices[keep].astype(np.int64), np.arange(n, dtype=np.int64)])
    dst = np.concatenate([rows[keep], np.arange(n, dtype=np.int64)])
    ew = np.concatenate([np.ones(int(keep.sum()), np.float32),
                         np.full(n, fill, np.float32)])
    order = np.argsort(dst, kind="stable")
    src, dst, ew = src[order], dst[order], ew[order]
    deg = np.zeros(n, np.float32)
    for t in range(int((kept_counts + 1).max(initial=0))):  # float32 sums in edge order
        has = (kept_counts + 1) > t
        deg[has] = deg[has] + ew[new_indptr[:-1][has] + t]
    dis = np.float32(1.0) / np.sqrt(deg)
    w = (dis[src] * ew) * dis[dst]
    return new_indptr, src.astype(np.int32), w.astype(np.float32)


def gather_rows(indptr: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The CSR entries of ``rows``: ``(new indptr, positions of their entries)``."""
    starts, ends = indptr[rows], indptr[rows + 1]
    lengths = ends - starts
    new_indptr = np.zeros(rows.size + 1, np.int64)
    np.cumsum(lengths, out=new_indptr[1:])
    total = int(new_indptr[-1])
    offsets = np.arange(total, dtype=np.int64) - np.repeat(new_indptr[:-1], lengths)
    return new_indptr, np.repeat(starts, lengths) + offsets


def aggregate(h: np.ndarray, indptr: np.ndarray, indices: np.ndarray,
              weights: np.ndarray | None, mean: bool, row_scale: np.ndarray | None = None,
              alpha: np.ndarray | None = None, t0_bias: np.ndarray | None = None,
              t0_alpha: np.ndarray | None = None, second: tuple | None = None,
              bias: np.ndarray | None = None, slope: np.ndarray | None = None,
              keep_rows: bool = True, signs: tuple | None = None,
              scale: tuple | None = None, signs2: tuple | None = None) -> np.ndarray | tuple:
    """``out[i] = sum_e (w_e * u[indices[e]])`` over the entries ``e`` of row ``i`` in order,
    starting from zero (``w_e = 1`` when ``weights`` is ``None``), with the messages
    ``u = (float32(h) * row_scale) * alpha`` (each optional); int8/int16 ``h`` without
    ``row_scale`` and ``weights`` is summed exactly in integers instead, then converted to
    float32 once and multiplied by ``alpha``; with ``mean``, divided by
    ``max(1, degree)``. Then the epilogue, each step optional: ``(out + t0_bias) * t0_alpha``,
    plus the row's value of ``second = (x, row_scale, bias, alpha)`` (an affine term, see
    :func:`affine_term`), plus ``bias``, then ``PReLU(slope)``.
    ``h (M, C)`` float32 or integer -> ``(rows, C)`` float32.

    With ``signs`` (``("threshold", lo, hi, negate)``, ``("mean",)`` or ``("none",)``) and/or
    ``scale`` (``(centering, bn_scale, bn_shift)``) the result is ``(rows or None, packed
    signs or None, node scale or None)``, the float rows kept only with ``keep_rows``; a second
    set of signs ``signs2`` (same forms) makes the middle entry ``(signs, signs2)``."""
    rows, c = indptr.size - 1, h.shape[1]
    deg = np.diff(indptr)
    starts = indptr[:-1]
    if h.dtype in (np.int8, np.int16) and row_scale is None and weights is None:
        # exact integer sums, one rounding to float32, then alpha (no order to keep)
        sums = np.zeros((rows, c), np.int64)
        for t in range(int(deg.max(initial=0))):
            has = np.flatnonzero(deg > t)
            sums[has] += h[indices[starts[has] + t]]
        out = sums.astype(np.float32)
        if alpha is not None:
            out = out * alpha
    else:
        u = h.astype(np.float32)
        if row_scale is not None:
            u = u * row_scale[:, None]
        if alpha is not None:
            u = u * alpha
        out = np.zeros((rows, c), np.float32)
        for t in range(int(deg.max(initial=0))):
            has = np.flatnonzero(deg > t)
            e = starts[has] + t
            msg = u[indices[e]]
            if weights is not None:
                msg = weights[e][:, None] * msg
            out[has] = out[has] + msg
    if mean:
        out = out / np.maximum(deg, 1).astype(np.float32)[:, None]
    if t0_bias is not None:
        out = out + t0_bias
    if t0_alpha is not None:
        out = out * t0_alpha
    if second is not None:
        out = out + affine_term(*second)
    if bias is not None:
        out = out + bias
    if slope is not None:
        out = np.where(out >= 0, out, out * slope)
    out = out.astype(np.float32, copy=False)
    if signs is None and scale is None:
        return out
    def pack(spec: tuple) -> np.ndarray:
        return (threshold_pack(out, *spec[1:]) if spec[0] == "threshold"
                else center_sign(out, spec[0]))

    bits = None
    if signs is not None:
        bits = pack(signs) if signs2 is None else (pack(signs), pack(signs2))
    beta = node_scale(out, *scale) if scale is not None else None
    return (out if keep_rows else None), bits, beta


def affine_term(x: np.ndarray, row_scale: np.ndarray | None, bias: np.ndarray | None,
                alpha: np.ndarray | None) -> np.ndarray:
    """``((float32(x) * row_scale) + bias) * alpha`` in float32, each step optional;
    ``x (rows, C)``, ``row_scale (rows,)``, ``bias``/``alpha (C,)``."""
    v = x.astype(np.float32)
    if row_scale is not None:
        v = v * row_scale.reshape(-1, *([1] * (v.ndim - 1)))
    if bias is not None:
        v = v + bias
    if alpha is not None:
        v = v * alpha
    return v


def _signs(weight: np.ndarray, n_in: int) -> np.ndarray:
    """Packed ``(C, W)`` weights -> ``(n_in, C)`` float32 of +-1 (row ``f`` = input ``f``)."""
    return np.where(unpack_bits(weight, n_in), np.float32(1.0), np.float32(-1.0)).T.copy()


def signed_linear_dense(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``z = x @ sign(W)^T`` summed over the features in increasing order (zeros skipped, which
    changes no sum): ``x (N, F)`` float32, ``weight (C, ceil(F / 64))`` packed -> ``(N, C)``."""
    n, f = x.shape
    s = _signs(weight, f)
    z = np.zeros((n, weight.shape[0]), np.float32)
    for j in range(f):
        nz = np.flatnonzero(x[:, j])
        if nz.size:
            z[nz] = z[nz] + x[nz, j][:, None] * s[j]
    return z


def signed_linear_csr(indptr: np.ndarray, indices: np.ndarray, data: np.ndarray | None,
                      weight: np.ndarray, n_in: int) -> np.ndarray:
    """:func:`signed_linear_dense` for CSR rows (column indices sorted within each row;
    ``data=None`` means every stored value is 1)."""
    s = _signs(weight, n_in)
    rows = indptr.size - 1
    z = np.zeros((rows, weight.shape[0]), np.float32)
    nnz = np.diff(indptr)
    for t in range(int(nnz.max(initial=0))):
        has = np.flatnonzero(nnz > t)
        e = indptr[:-1][has] + t
        term = s[indices[e]]
        if data is not None:
            term = data[e][:, None] * term
        z[has] = z[has] + term
    return z


def majority(bits: np.ndarray, channels: int, indptr: np.ndarray,
             indices: np.ndarray) -> np.ndarray:
    r"""Sign of the mean of the :math:`\pm 1` messages of each target (``sign(0) = +1``): bit
    :math:`c` of row :math:`i` is set where :math:`2\,|\{e: \text{bit } c \text{ of }
    bits_{j_e}\}| \ge \deg(i)`; a node without in-edges gets all ones. ``bits (m, W)``
    packed signs of the sources -> ``(rows, W)``."""
    rows = indptr.size - 1
    counts = np.zeros((rows, channels), np.int64)
    if indices.size:
        np.add.at(counts, _entry_rows(indptr), unpack_bits(bits[indices], channels))
    return pack_bits(2 * counts >= np.diff(indptr)[:, None])


def threshold_pack(v: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                   negate: np.ndarray) -> np.ndarray:
    r"""Packed :math:`\mathrm{negate}_c \oplus (v \ge hi_c \lor v \le lo_c)`."""
    return pack_bits(((v >= hi) | (v <= lo)) ^ negate.astype(bool))


def _multi_row_sum(b: np.ndarray) -> np.ndarray:
    """ATen's ``multi_row_sum``: a cascade over axis 1 of ``b (R, size, ...)``, 4 levels."""
    size = b.shape[1]
    levels = 4
    power = max(4, (int(size - 1).bit_length() if size > 1 else 0) // levels)
    step, mask = 1 << power, (1 << power) - 1
    acc = [np.zeros((b.shape[0], *b.shape[2:]), np.float32) for _ in range(levels)]
    i = 0
    while i + step <= size:
        for _ in range(step):
            acc[0] = acc[0] + b[:, i]
            i += 1
        for j in range(1, levels):
            acc[j] = acc[j] + acc[j - 1]
            acc[j - 1] = np.zeros_like(acc[j - 1])
            if i & (mask << (j * power)):
                break
    while i < size:
        acc[0] = acc[0] + b[:, i]
        i += 1
    for j in range(1, levels):
        acc[0] = acc[0] + acc[j]
    return acc[0]


def _row_sum(a: np.ndarray) -> np.ndarray:
    """ATen's ``row_sum`` with 4-way ILP over axis 1 of ``a (R, S, ...)``."""
    r, s = a.shape[:2]
    groups = s // 4
    p = _multi_row_sum(a[:, : groups * 4].reshape(r, groups, 4, *a.shape[2:]))
    out = p[:, 0]
    for i in range(groups * 4, s):
        out = out + a[:, i]
    for k in range(1, 4):
        out = out + p[:, k]
    return out


def aten_row_sum(x: np.ndarray, lanes: int = ATEN_SUM_LANES) -> np.ndarray:
    """Sum of each row of ``x (R, C)`` float32 in the order of ATen's CPU sum over a contiguous
    last dimension (``vectorized_inner_sum``): lane-wise cascade sums of ``lanes``-float
    vectors, then the leftover elements, then the lanes in order. Bit-exact with
    ``torch.sum(x, -1)`` on x86-64."""
    x = np.asarray(x, np.float32)
    r, c = x.shape
    if c < lanes:
        return _row_sum(x)
    nv = c // lanes
    acc = _row_sum(x[:, : nv * lanes].reshape(r, nv, lanes))
    out = np.zeros(r, np.float32)
    for k in range(nv * lanes, c):
        out = out + x[:, k]
    for lane in range(lanes):
        out = out + acc[:, lane]
    return out


def fma32(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``x * scale + shift`` rounded once to float32 (a fused multiply-add, as ATen's
    BatchNorm computes it). The float32 product is exact in float64; the float64 sum is rounded
    once, and the one case where rounding that again to float32 differs from a single rounding
    (the float64 sum exactly halfway between two float32, the exact sum not) is corrected
    with the sum's exact error (TwoSum)."""
    p = np.asarray(x, np.float32).astype(np.float64) * np.asarray(scale, np.float32)
    t = np.broadcast_to(np.asarray(shift, np.float32).astype(np.float64), p.shape)
    r = p + t
    back = r - t
    err = (p - back) + (t - (r - back))
    f = r.astype(np.float32)
    f64 = f.astype(np.float64)
    other = np.nextafter(f, np.where(f64 > r, np.float32(-np.inf), np.float32(np.inf)))
    o64 = other.astype(np.float64)
    tie = (f64 != r) & ((f64 + o64) * 0.5 == r) & (err != 0)
    return np.where(tie & (np.sign(o64 - r) == np.sign(err)), other, f).astype(np.float32)


def _centre(v: np.ndarray, centering: str) -> np.ndarray | None:
    """Per-node centre: ``mean`` (ATen's sum / C), ``median`` (the lower median, as
    ``torch.median``), ``none`` (``None``)."""
    c = v.shape[1]
    if centering == "mean":
        return aten_row_sum(v) / np.float32(c)
    if centering == "median":
        if v.shape[0] == 0:
            return np.zeros(0, np.float32)
        return np.partition(v, (c - 1) // 2, axis=1)[:, (c - 1) // 2]
    return None


def center_sign(v: np.ndarray, centering: str) -> np.ndarray:
    """Packed signs of ``v - centre(v)``: bit set where ``v >= centre`` (``v >= 0`` for
    ``none``)."""
    m = _centre(v, centering)
    return pack_bits(v >= (m[:, None] if m is not None else np.float32(0.0)))


def node_scale(v: np.ndarray, centering: str, bn_scale: np.ndarray | None = None,
               bn_shift: np.ndarray | None = None) -> np.ndarray:
    r"""Bi-GCN's per-node scale :math:`\beta_i = \frac1C \sum_c |\mathrm{centre}(v)_{ic}|`
    (float32, ATen's summation order); BatchNorm centring as ``fma(v, scale, shift)``."""
    if centering == "batchnorm":
        c = fma32(v, bn_scale, bn_shift)
    else:
        m = _centre(v, centering)
        c = v - m[:, None] if m is not None else v
    return (aten_row_sum(np.abs(c)) / np.float32(v.shape[1])).astype(np.float32)
