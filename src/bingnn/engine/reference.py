r"""Pure-numpy reference implementations of every engine step (no native code, no PyTorch).

They define what the native kernels must compute and serve as the fallback when a kernel is not
available. They favour clarity over speed. Bit layout: as in :mod:`bingnn.engine.kernels`
(element ``c`` -> bit ``c % 64`` of word ``c // 64``, a set bit is ``+1``, padding bits 0).

Threshold predicates. A per-channel predicate on a value ``v`` (an integer pre-activation or a
real number) is stored as three arrays ``lo``, ``hi``, ``negate``:

.. math:: p_c(v) = \mathrm{negate}_c \oplus (v \ge \mathrm{hi}_c \ \lor\ v \le \mathrm{lo}_c)

which expresses every set of the form :math:`(-\infty, lo] \cup [hi, \infty)` and, negated,
every interval: all the sets :math:`\{v : \mathrm{sign}(f(v)) = +1\}` for ``f`` a composition
of rescale, PReLU and BatchNorm.
"""

from __future__ import annotations

import numpy as np

WORD_BITS = 64
_BYTE_POPCOUNT = np.array([bin(v).count("1") for v in range(256)], dtype=np.uint8)


def popcount_words(x: np.ndarray) -> np.ndarray:
    """Set bits of each ``uint64`` word (``np.bitwise_count`` on numpy >= 2, a byte table on the
    numpy 1.x that the package still supports)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    x = np.ascontiguousarray(x, dtype=np.uint64)
    return _BYTE_POPCOUNT[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def n_words(n_bits: int) -> int:
    """``ceil(n_bits / 64)``."""
    return (int(n_bits) + WORD_BITS - 1) // WORD_BITS


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack booleans (``True`` = +1) along the last axis: ``(..., C)`` -> ``(..., W)`` uint64."""
    bits = np.asarray(bits, dtype=bool)
    lead, c = bits.shape[:-1], bits.shape[-1]
    w = n_words(c)
    padded = np.zeros((*lead, w * WORD_BITS), dtype=bool)
    padded[..., :c] = bits
    as_bytes = np.packbits(padded, axis=-1, bitorder="little")
    return np.ascontiguousarray(as_bytes).view("<u8").astype(np.uint64, copy=False)


def unpack_bits(packed: np.ndarray, n_bits: int) -> np.ndarray:
    """Inverse of :func:`pack_bits`: ``(..., W)`` uint64 -> ``(..., n_bits)`` bool."""
    packed = np.ascontiguousarray(packed, dtype=np.uint64)
    as_bytes = packed.astype("<u8", copy=False).view(np.uint8)
    return np.unpackbits(as_bytes, axis=-1, bitorder="little")[..., :n_bits].astype(bool)


def binary_gemm(a: np.ndarray, b: np.ndarray, n_bits: int) -> np.ndarray:
    r""":math:`Y_{ij} = C - 2\,\mathrm{popcount}(a_i \oplus b_j)`; ``a (M, W)``, ``b (N, W)`` ->
    ``(M, N)`` int32."""
    m = a.shape[0]
    out = np.empty((m, b.shape[0]), dtype=np.int32)
    step = max(1, 2**22 // max(1, b.shape[0] * b.shape[1]))
    for s in range(0, m, step):
        x = a[s : s + step, None, :] ^ b[None, :, :]
        pc = popcount_words(x).sum(axis=-1, dtype=np.int32)
        out[s : s + step] = n_bits - 2 * pc
    return out


def _select_k(d: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` smallest entries of each row, ordered by (value, index)."""
    return np.argsort(d, axis=-1, kind="stable")[..., :k].astype(np.int32)


def hamming_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Hamming k-NN within each set (self included, ties to the smaller index).

    ``x (B, N, W)`` uint64 -> ``(B, N, k)`` int32."""
    d = popcount_words(x[:, :, None, :] ^ x[:, None, :, :]).sum(axis=-1, dtype=np.int32)
    return _select_k(d, k)


def xyz_sq_distances(x: np.ndarray) -> np.ndarray:
    r"""Squared L2 distances of 3-D points in the contract's fixed float32 order (each product
    and sum rounded on its own; ``bingnn.nn.knn`` and the native ``l2_knn3`` compute the same):
    :math:`|x|^2 = (x_0 x_0 + x_1 x_1) + x_2 x_2`,
    :math:`\langle x_i, x_j \rangle = (x_{i0} x_{j0} + x_{i1} x_{j1}) + x_{i2} x_{j2}`,
    :math:`d_{ij} = \max(0, (|x_i|^2 + |x_j|^2) - 2 \langle x_i, x_j \rangle)`.

    ``x (B, N, 3)`` -> ``(B, N, N)`` float32."""
    x = np.asarray(x, dtype=np.float32)
    x0, x1, x2 = x[..., 0], x[..., 1], x[..., 2]
    sq = (x0 * x0 + x1 * x1) + x2 * x2
    dot = (x0[:, :, None] * x0[:, None, :] + x1[:, :, None] * x1[:, None, :]) + (
        x2[:, :, None] * x2[:, None, :]
    )
    d = (sq[:, :, None] + sq[:, None, :]) - np.float32(2.0) * dot
    np.maximum(d, np.float32(0.0), out=d)
    return d


def l2_distances(x: np.ndarray) -> np.ndarray:
    r"""Squared L2 distances within each set, as ``bingnn.nn.knn`` computes them in float32:
    3-D points by :func:`xyz_sq_distances` (exact contract); wider features by
    :math:`d_{ij} = \max(0, (|x_i|^2 + |x_j|^2) - 2 \langle x_i, x_j \rangle)` with a matrix
    product (equal to PyTorch's in practice, not guaranteed at exact ties).

    ``x (B, N, C)`` -> ``(B, N, N)`` float32."""
    x = np.asarray(x, dtype=np.float32)
    if x.shape[-1] == 3:
        return xyz_sq_distances(x)
    sq = (x * x).sum(-1)
    d = (sq[:, :, None] + sq[:, None, :]) - np.float32(2.0) * np.matmul(x, x.transpose(0, 2, 1))
    np.maximum(d, np.float32(0.0), out=d)
    return d


def l2_knn(x: np.ndarray, k: int) -> np.ndarray:
    """Squared-L2 k-NN within each set (self included, ties to the smaller index), on
    :func:`l2_distances`: ``x (B, N, C)`` float32 -> ``(B, N, k)`` int32."""
    return _select_k(l2_distances(x), k)


def predicate(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, negate: np.ndarray) -> np.ndarray:
    """Evaluate the per-channel threshold predicate on ``v (..., C)`` -> bool ``(..., C)``."""
    inside = (v >= hi) | (v <= lo)
    return inside ^ negate.astype(bool)


def gather(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``x (B, N, ...)``, ``idx (B, N, k)`` -> ``(B, N, k, ...)``."""
    b = np.arange(x.shape[0])[:, None, None]
    return x[b, idx]


def fma_affine(x: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``x * scale + shift`` with one rounding to float32, like PyTorch's CPU BatchNorm
    (a fused multiply-add on x86-64): the product of two float32 is exact in float64."""
    return (x.astype(np.float64) * scale + shift).astype(np.float32)


def cascade_sum(h: np.ndarray) -> np.ndarray:
    """Sum over axis 1 of ``h (B, N, C)`` float32 in PyTorch's CPU order for a reduction over a
    non-contiguous dimension (ATen's cascade sum): rows are added into level 0; every ``2**p``
    rows (``p = max(4, ceil(log2 N) // 4)``) level 0 is folded into level 1, and so on up to
    four levels, which are added back at the end. Bit-exact for column groups of 32."""
    n = h.shape[1]
    power = max(4, (int(n - 1).bit_length() if n > 1 else 0) // 4)
    step = 1 << power
    acc = [np.zeros((h.shape[0], h.shape[2]), np.float32) for _ in range(4)]
    i = 0
    while i + step <= n:
        for _ in range(step):
            acc[0] = acc[0] + h[:, i]
            i += 1
        for lv in range(1, 4):
            acc[lv] = acc[lv] + acc[lv - 1]
            acc[lv - 1] = np.zeros_like(acc[lv - 1])
            if i & ((step - 1) << (lv * power)):
                break
    for r in range(i, n):
        acc[0] = acc[0] + h[:, r]
    return acc[0] + acc[1] + acc[2] + acc[3]


def embed_pool(y: np.ndarray, alpha: np.ndarray, slope: np.ndarray,
               bn_scale: np.ndarray | None = None,
               bn_shift: np.ndarray | None = None) -> np.ndarray:
    """Max and mean over the points of ``h = bn(prelu(y * alpha))``, as PyTorch computes them:
    ``y (B, N, C)`` int32 -> ``(B, 2C)`` float32 ``[max, mean]``."""
    v = y.astype(np.float32) * alpha
    h = np.where(v >= 0, v, v * slope)
    if bn_scale is not None:
        h = fma_affine(h, bn_scale, bn_shift)
    mean = cascade_sum(h) / np.float32(y.shape[1])
    return np.concatenate([h.max(axis=1), mean], axis=-1).astype(np.float32)


def layer0_parts(
    x: np.ndarray,
    weight: np.ndarray,
    bn_scale: np.ndarray | None = None,
    bn_shift: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Per-node parts ``u, v`` of the real first layer, in the contract's float32 order (each
    product and sum rounded on its own), so that :math:`y_{ijc} = u_{jc} + v_{ic}` is the
    pre-activation of the linear map ``weight (C, 6)`` on
    :math:`e_{ij} = [x_j - x_i, x_i]` (optionally after ``e * bn_scale + bn_shift``):

    .. math::
        a_{cq} = w_{cq} s_q,\quad d_{cq} = w_{c,3+q} s_{3+q} - a_{cq},\quad
        b_c = \big(\cdots(w_{c0} t_0 + w_{c1} t_1) + \cdots\big) + w_{c5} t_5,

        u_{jc} = (x_{j0} a_{c0} + x_{j1} a_{c1}) + x_{j2} a_{c2},\quad
        v_{ic} = \big((x_{i0} d_{c0} + x_{i1} d_{c1}) + x_{i2} d_{c2}\big) + b_c

    (without the affine map ``s = 1`` and there is no ``b``). ``bingnn.nn`` computes the same
    operations in training. ``x (B, N, 3)`` -> ``u, v (B, N, C)`` float32."""
    x = np.asarray(x, dtype=np.float32)
    w = np.asarray(weight, dtype=np.float32)
    if bn_scale is not None:
        a = w[:, :3] * bn_scale[:3]
        d = w[:, 3:] * bn_scale[3:] - a
    else:
        a, d = w[:, :3], w[:, 3:] - w[:, :3]
    u = (x[..., 0:1] * a[:, 0] + x[..., 1:2] * a[:, 1]) + x[..., 2:3] * a[:, 2]
    v = (x[..., 0:1] * d[:, 0] + x[..., 1:2] * d[:, 1]) + x[..., 2:3] * d[:, 2]
    if bn_scale is not None:
        bias = w[:, 0] * bn_shift[0]
        for q in range(1, 6):
            bias = bias + w[:, q] * bn_shift[q]
        v = v + bias
    return u.astype(np.float32), v.astype(np.float32)


def edge_preact0(
    x: np.ndarray,
    idx: np.ndarray,
    weight: np.ndarray,
    bn_scale: np.ndarray | None = None,
    bn_shift: np.ndarray | None = None,
) -> np.ndarray:
    r"""Real first-layer pre-activations :math:`y_{ijc} = u_{jc} + v_{ic}` for every edge
    (:func:`layer0_parts`), the float32 values the training library computes.

    ``x (B, N, 3)``, ``idx (B, N, k)``, ``weight (C, 6)`` -> ``(B, N, k, C)`` float32."""
    u, v = layer0_parts(x, weight, bn_scale, bn_shift)
    return gather(u, idx) + v[:, :, None, :]


def xor_edge_preact(x: np.ndarray, idx: np.ndarray, w_rel: np.ndarray, w_self: np.ndarray,
                    c_in: int, gemm=None) -> np.ndarray:
    r"""All binary XorEdgeConv pre-activations
    :math:`y_{ijc} = \langle [x_j \oplus x_i, x_i], w_c \rangle` (on +-1 values).

    ``x (B, N, W)`` uint64, ``idx (B, N, k)`` -> ``(B, N, k, C_out)`` int32."""
    b, n, w = x.shape
    k = idx.shape[-1]
    gemm = gemm or binary_gemm
    rel = gather(x, idx) ^ x[:, :, None, :]
    y_rel = gemm(rel.reshape(-1, w), np.ascontiguousarray(w_rel), c_in).reshape(b, n, k, -1)
    y_self = gemm(x.reshape(-1, w), np.ascontiguousarray(w_self), c_in).reshape(b, n, 1, -1)
    return y_rel + y_self


def xor_edge_conv(
    x: np.ndarray,
    idx: np.ndarray,
    w_rel: np.ndarray,
    w_self: np.ndarray,
    lo: np.ndarray,
    hi: np.ndarray,
    p_negate: np.ndarray,
    out_negate: np.ndarray,
    c_in: int,
) -> np.ndarray:
    r"""Binary XorEdgeConv step with a general predicate:
    :math:`\mathrm{bit}_c(i) = \mathrm{out\_negate}_c \oplus \bigvee_j p_c(y_{ijc})`.

    Returns packed ``(B, N, ceil(C_out / 64))`` uint64."""
    y = xor_edge_preact(x, idx, w_rel, w_self, c_in)
    bits = predicate(y, lo, hi, p_negate).any(axis=2) ^ out_negate.astype(bool)
    return pack_bits(bits)


def chain_table(n_bits: int, bias: np.ndarray, alpha: np.ndarray, slope: np.ndarray,
                bn_scale: np.ndarray, bn_shift: np.ndarray, offset: np.ndarray) -> np.ndarray:
    r"""The value of every integer pre-activation :math:`y = -n, -n + 2, \dots, n` of a
    real-valued binary layer, per channel, in PyTorch's float32 order:
    :math:`\mathrm{fma}(\mathrm{PReLU}((y + b) lpha), s, t) - \delta`.

    Returns ``(C, n_bits + 1)`` float32 (row ``c``, column ``(y + n_bits) / 2``)."""
    y = np.arange(-n_bits, n_bits + 1, 2, dtype=np.float32)[:, None]
    v = edge_conv0_values(y + bias, alpha, slope, bn_scale, bn_shift, True)
    return np.ascontiguousarray((v - offset).T, dtype=np.float32)


def table_lookup(y: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[c, (y + n) / 2]`` for integer pre-activations ``y (..., C)`` of ``n``-term +-1
    dot products, ``table (C, n + 1)`` float32 -> ``(..., C)`` float32."""
    n = table.shape[1] - 1
    return table[np.arange(table.shape[0]), (y + n) // 2]


def xor_edge_conv_max(x: np.ndarray, idx: np.ndarray, w_rel: np.ndarray, w_self: np.ndarray,
                      table: np.ndarray, use_min: np.ndarray, c_in: int,
                      gemm=None) -> np.ndarray:
    r"""Binary XorEdgeConv with real outputs: :math:`h_{ic} = \max_j T_c(y_{ijc})` (the min for
    channels with ``use_min``), :math:`T_c` the value of an integer pre-activation
    (:func:`chain_table`, :func:`table_lookup`). BF2 (BatchNorm before the max) takes the max;
    BF1 (after it) the max where the BatchNorm scale is >= 0 and the min where it is negative,
    which equals BatchNorm of the max since rounding is monotone. ``x (B, N, W)`` uint64,
    ``idx (B, N, k)`` -> ``(B, N, C)`` float32."""
    v = table_lookup(xor_edge_preact(x, idx, w_rel, w_self, c_in, gemm), table)
    return np.where(use_min.astype(bool), v.min(axis=2), v.max(axis=2)).astype(np.float32)


def edge_conv0_values(z: np.ndarray, alpha: np.ndarray, slope: np.ndarray,
                      bn_scale: np.ndarray, bn_shift: np.ndarray, bn_edge: bool) -> np.ndarray:
    """The first BF layer's per-edge values before the max: rescale and PReLU of the real
    pre-activations ``z``, then (``bn_edge``, BF2) the BatchNorm, in PyTorch's float32 order."""
    za = z * alpha
    v = np.where(za >= 0, za, za * slope).astype(np.float32)
    return fma_affine(v, bn_scale, bn_shift) if bn_edge else v


def edge_conv0_max(x: np.ndarray, idx: np.ndarray, weight: np.ndarray, alpha: np.ndarray,
                   slope: np.ndarray, bn_scale: np.ndarray, bn_shift: np.ndarray,
                   offset: np.ndarray, bn_edge: bool) -> np.ndarray:
    r"""The first BF layer with real outputs: :math:`h_{ic} = \max_j
    \mathrm{BN}(\mathrm{PReLU}(\alpha_c z_{ijc})) - \delta_c` (BF2, ``bn_edge``) or
    :math:`\mathrm{BN}(\max_j \mathrm{PReLU}(\alpha_c z_{ijc})) - \delta_c` (BF1), ``z`` from
    :func:`edge_preact0`. ``x (B, N, 3)``, ``idx (B, N, k)`` -> ``(B, N, C)`` float32."""
    z = edge_preact0(x, idx, weight)
    h = edge_conv0_values(z, alpha, slope, bn_scale, bn_shift, bn_edge).max(axis=2)
    if not bn_edge:
        h = fma_affine(h, bn_scale, bn_shift)
    return (h - offset).astype(np.float32)
