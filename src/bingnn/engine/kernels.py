r"""Packed-bit kernels of the inference engine: a thin, typed numpy face over ``bingnn._native``.

Every function checks shapes, dtypes and values up front and raises a ``ValueError`` or
``TypeError`` that says what is wrong; it then makes the arrays C-contiguous with the dtype the
native core expects and calls it (the GIL is released). The native core checks again (a direct
call of ``bingnn._native`` is refused the same way). This module imports numpy only, never
PyTorch.

Threads: ``num_threads=None`` uses the default count: ``OMP_NUM_THREADS`` when set, else the
CPUs of the process's affinity mask, capped by its cgroup CPU quota (``cpu_features()`` reports
it as ``default_threads``); an explicit ``num_threads`` (1 .. 1024) is used as given. The worker
threads are created once and reused by every call.

Dispatch: the best SIMD level of the CPU (``"avx512"``, ``"avx2"``, ``"neon"``, else
``"scalar"``) unless the environment sets ``BINGNN_DISPATCH`` (read at import; an unknown name or
a level this CPU lacks makes the import fail with one line saying so) or :func:`set_dispatch`
changes it.

Bit layout (the one convention of the engine; ``docs/bit_layout.md`` says the same)
    A vector of ``C`` signs is packed into ``W = ceil(C / 64)`` ``uint64`` words. Element ``c``
    goes to bit ``c % 64`` of word ``c // 64`` (least significant bit first). A set bit means
    ``+1``, i.e. the real value was ``>= 0`` (``sign(0) = +1``); a clear bit means ``-1``.
    Padding bits (``c >= C`` in the last word) are 0. For packed ``a``, ``b`` of ``C`` elements

    .. math:: \langle a, b \rangle = C - 2\,\mathrm{popcount}(a \oplus b),
              \qquad d_H(a, b) = \mathrm{popcount}(a \oplus b).

Example::

    from bingnn.engine import kernels as K
    bits = K.pack_signs(features)                  # (B, N, C) float32 -> (B, N, W) uint64
    idx, dist = K.hamming_knn(bits, k=20)          # (B, N, 20) int32 each
    dots = K.binary_gemm(a_bits, w_bits, n_bits=C) # (M, N) int32 +-1 dot products
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from bingnn import _native

__all__ = [
    "T_HI_OFF",
    "T_LO_OFF",
    "WORD_BITS",
    "binary_gemm",
    "cpu_features",
    "dispatch",
    "get_dispatch",
    "hamming_knn",
    "n_words",
    "pack_signs",
    "set_dispatch",
    "unpack_signs",
    "xor_edge_conv",
    "xor_edge_conv_knn",
    "xor_edge_conv_knn_minmax",
    "xor_edge_conv_minmax",
]

WORD_BITS = 64
#: ``t_hi`` sentinel that disables the "max >= t_hi" side of a threshold.
T_HI_OFF = int(np.iinfo(np.int32).max)
#: ``t_lo`` sentinel that disables the "min <= t_lo" side of a threshold.
T_LO_OFF = int(np.iinfo(np.int32).min)
_MAX_KNN_WORDS = 1023  # distances are stored as uint16 by the native k-NN


# --------------------------------------------------------------------------- helpers


def n_words(n_bits: int) -> int:
    """Number of ``uint64`` words holding ``n_bits`` packed signs: ``ceil(n_bits / 64)``."""
    n_bits = _check_int(n_bits, "n_bits", minimum=0)
    return (n_bits + WORD_BITS - 1) // WORD_BITS


def _check_int(value: Any, name: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


_MAX_THREADS = 1024


def _threads(num_threads: int | None) -> int:
    """``None`` -> 0, which the native core reads as "the default thread count"."""
    if num_threads is None:
        return 0
    num_threads = _check_int(num_threads, "num_threads", minimum=1)
    if num_threads > _MAX_THREADS:
        raise ValueError(f"num_threads must be <= {_MAX_THREADS}, got {num_threads}")
    return num_threads


def _c(x: np.ndarray, dtype: Any = None) -> np.ndarray:
    """C-contiguous and aligned (a numpy view at an odd byte offset is contiguous but not
    aligned; the native core refuses those, so they are copied here)."""
    return np.require(x, dtype, ("C", "A"))


def _array(x: Any, name: str) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        if type(x).__module__.startswith("torch"):
            raise TypeError(f"{name} is a torch tensor; pass a numpy array (tensor.numpy())")
        x = np.asarray(x)
    return x


def _packed(x: Any, name: str, ndim: int) -> np.ndarray:
    """A C-contiguous ``uint64`` array of ``ndim`` dimensions."""
    x = _array(x, name)
    if x.dtype != np.uint64:
        raise TypeError(
            f"{name} must hold packed bits as uint64 (see pack_signs), got dtype {x.dtype}"
        )
    if x.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {x.shape}")
    return _c(x)


def _check_padding(x: np.ndarray, n_bits: int, name: str) -> None:
    """Padding bits must be 0, or they would change dot products and distances."""
    w = n_words(n_bits)
    if x.shape[-1] != w:
        raise ValueError(
            f"{name}: {n_bits} bits are packed in {w} uint64 words, but the last dimension "
            f"is {x.shape[-1]}"
        )
    tail = n_bits % WORD_BITS
    if tail and x.size:
        if np.any(x[..., -1] >> np.uint64(tail)):
            raise ValueError(
                f"{name} has non-zero padding bits above bit {n_bits}: not packed by "
                "pack_signs with this many bits, or corrupt"
            )


def _int_vector(x: Any, name: str, length: int, dtype: type) -> np.ndarray:
    x = _array(x, name)
    if x.dtype == np.bool_ and dtype is np.uint8:
        x = x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {x.dtype}")
    if x.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got {x.shape}")
    info = np.iinfo(dtype)
    if x.size and (x.min() < info.min or x.max() > info.max):
        raise ValueError(f"{name} has values outside the {np.dtype(dtype).name} range")
    return _c(x, dtype)


def _check_point_sets(x: np.ndarray, name: str) -> None:
    b, n, w = x.shape
    if b == 0 or n == 0:
        raise ValueError(f"{name} is empty (shape {x.shape}): need at least one point per set")
    if w == 0:
        raise ValueError(f"{name} has no channels (shape {x.shape})")


def _check_k(k: Any, n: int) -> int:
    k = _check_int(k, "k")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        raise ValueError(
            f"k = {k} neighbours requested but the point sets have only {n} points; "
            f"use k <= {n} or more points"
        )
    return k


# --------------------------------------------------------------------------- dispatch


def cpu_features() -> dict[str, Any]:
    """CPU features seen by the native core: ``arch``, ISA flags, ``compiled_levels`` (levels
    this build has: all but scalar are left out by ``BINGNN_PORTABLE_ONLY=1``), ``levels``
    (those this CPU also runs), ``best``, the active ``dispatch`` level, ``portable_only``,
    ``hardware_threads``, ``default_threads`` and where that came from (``threads_source``)."""
    return dict(_native.cpu_features())


def get_dispatch() -> str:
    """The active SIMD level: ``"scalar"``, ``"avx2"``, ``"avx512"`` or ``"neon"``."""
    return str(_native.get_dispatch())


def set_dispatch(level: str) -> None:
    """Force a SIMD level for every kernel of this process (for tests and benchmarks).

    Raises ``ValueError`` for an unknown name or a level this CPU does not support.
    """
    if not isinstance(level, str):
        raise TypeError(f"level must be a str, got {type(level).__name__}")
    _native.set_dispatch(level.lower())


@contextlib.contextmanager
def dispatch(level: str) -> Iterator[None]:
    """Context manager: run the block with ``level`` forced, then restore the previous one."""
    previous = get_dispatch()
    set_dispatch(level)
    try:
        yield
    finally:
        set_dispatch(previous)


# --------------------------------------------------------------------------- kernels


def pack_signs(x: Any, *, num_threads: int | None = None) -> np.ndarray:
    """Pack the signs of the last dimension into bits.

    ``bit = 1`` where ``x >= 0`` (+1, ``sign(0) = +1``), else 0 (-1); padding bits are 0.

    Shapes:
        ``x (..., C)`` real -> ``(..., ceil(C / 64))`` uint64.
    """
    x = _array(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension (the channels to pack)")
    if x.dtype == np.bool_ or not (
        np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)
    ):
        raise TypeError(f"x must be a real (float or integer) array, got dtype {x.dtype}")
    if x.dtype != np.float32:
        # (float32 input is checked for NaN/inf by the native core, in the packing pass.)
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise ValueError("x contains NaN or infinite values; their sign is not defined")
        # Casting could flush tiny negatives to -0.0 (which packs as +1): keep only the sign.
        x = np.where(x >= 0, np.float32(1.0), np.float32(-1.0))
    lead, c = x.shape[:-1], x.shape[-1]
    flat = _c(x.reshape(int(np.prod(lead, dtype=np.int64)), c))
    out = _native.pack_signs(flat, _threads(num_threads))
    return out.reshape(*lead, n_words(c))


def unpack_signs(packed: Any, n_bits: int, *, num_threads: int | None = None) -> np.ndarray:
    """Inverse of :func:`pack_signs`: ``(..., W)`` uint64 -> ``(..., n_bits)`` int8 of +-1."""
    packed = _array(packed, "packed")
    if packed.ndim == 0:
        raise ValueError("packed must have at least one dimension (the words)")
    packed = _packed(packed, "packed", packed.ndim)
    n_bits = _check_int(n_bits, "n_bits", minimum=0)
    _check_padding(packed, n_bits, "packed")
    lead = packed.shape[:-1]
    rows = int(np.prod(lead, dtype=np.int64))
    out = _native.unpack_signs(
        packed.reshape(rows, packed.shape[-1]), n_bits, _threads(num_threads)
    )
    return out.reshape(*lead, n_bits)


def binary_gemm(
    a: Any,
    b: Any,
    n_bits: int,
    *,
    out: np.ndarray | None = None,
    num_threads: int | None = None,
) -> np.ndarray:
    r"""+-1 dot products of packed rows: :math:`Y_{ij} = C - 2\,\mathrm{popcount}(a_i \oplus b_j)`.

    Equals ``unpack(a) @ unpack(b).T`` exactly (``C = n_bits``). ``out``, if given, is a
    caller-owned C-contiguous int32 ``(M, N)`` array that receives the result (and is
    returned), so repeated calls allocate nothing.

    Shapes:
        ``a (M, W)``, ``b (N, W)`` uint64 with ``W = ceil(n_bits / 64)`` -> ``(M, N)`` int32.
    """
    a = _packed(a, "a", 2)
    b = _packed(b, "b", 2)
    n_bits = _check_int(n_bits, "n_bits", minimum=0)
    if n_bits >= 2**31:
        raise ValueError(f"n_bits = {n_bits} overflows the int32 result")
    _check_padding(a, n_bits, "a")
    _check_padding(b, n_bits, "b")
    if out is not None:
        want = (a.shape[0], b.shape[0])
        if not isinstance(out, np.ndarray) or out.dtype != np.int32 or out.shape != want:
            raise TypeError(f"out must be an int32 numpy array of shape {want}")
        if not (out.flags.c_contiguous and out.flags.writeable and out.flags.aligned):
            raise ValueError("out must be C-contiguous, aligned and writeable")
    return _native.binary_gemm(a, b, n_bits, _threads(num_threads), out)


def hamming_knn(
    x: Any, k: int, *, n_bits: int | None = None, num_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""k nearest neighbours in Hamming space of every point within its own set.

    :math:`d(i, j) = \mathrm{popcount}(x_i \oplus x_j)`. The point itself is included (distance
    0). Neighbours are ordered by (distance, index): ties go to the smaller index, exactly as
    ``bingnn.nn.knn(x_pm1, k, "hamming")``.

    Args:
        x: ``(B, N, W)`` uint64 packed point features.
        k: neighbours per point, ``1 <= k <= N``.
        n_bits: optional number of channels C; when given, ``W`` and the padding bits are
            checked.

    Returns:
        ``idx (B, N, k)`` int32 and ``dist (B, N, k)`` int32.
    """
    x = _packed(x, "x", 3)
    _check_point_sets(x, "x")
    if n_bits is not None:
        _check_padding(x, _check_int(n_bits, "n_bits", minimum=1), "x")
    if x.shape[2] > _MAX_KNN_WORDS:
        raise ValueError(f"hamming_knn supports at most {_MAX_KNN_WORDS * 64} bits per point")
    k = _check_k(k, x.shape[1])
    idx, dist = _native.hamming_knn(x, k, _threads(num_threads))
    return idx, dist


def _conv_inputs(
    x: Any, w_rel: Any, w_self: Any, c_in: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    x = _packed(x, "x", 3)
    c_in = _check_int(c_in, "c_in", minimum=1)
    w_rel = _packed(w_rel, "w_rel", 2)
    w_self = _packed(w_self, "w_self", 2)
    if w_rel.shape[0] != w_self.shape[0]:
        raise ValueError(
            f"w_rel has {w_rel.shape[0]} output channels but w_self has {w_self.shape[0]}"
        )
    _check_padding(x, c_in, "x")
    _check_padding(w_rel, c_in, "w_rel")
    _check_padding(w_self, c_in, "w_self")
    return x, w_rel, w_self, w_rel.shape[0]


def _conv_idx(idx: Any, x: np.ndarray) -> np.ndarray:
    idx = _array(idx, "idx")
    if not np.issubdtype(idx.dtype, np.integer):
        raise TypeError(f"idx must be an integer array, got dtype {idx.dtype}")
    b, n, _ = x.shape
    if idx.ndim != 3 or idx.shape[:2] != (b, n):
        raise ValueError(f"idx must have shape ({b}, {n}, k) to match x, got {idx.shape}")
    if idx.shape[2] < 1:
        raise ValueError("idx has k = 0 neighbours; the max over neighbours needs k >= 1")
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise ValueError(f"idx holds neighbour indices outside [0, {n})")
    return _c(idx, np.int32)


def _thresholds(
    t_hi: Any, t_lo: Any, negate: Any, c_out: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t_hi = _int_vector(t_hi, "t_hi", c_out, np.int32)
    t_lo = _int_vector(t_lo, "t_lo", c_out, np.int32)
    negate = _int_vector(negate, "negate", c_out, np.uint8)
    if negate.size and negate.max() > 1:
        raise ValueError("negate must hold 0/1 (or booleans)")
    return t_hi, t_lo, negate


def xor_edge_conv_minmax(
    x: Any, idx: Any, w_rel: Any, w_self: Any, *, c_in: int, num_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""Max and min over neighbours of the binary XorEdgeConv pre-activations.

    For point ``i``, neighbour ``j = idx[b, i, :]`` and output channel ``c``, with edge bits
    :math:`e_{ij} = [x_j \oplus x_i,\ x_i]` and the weight row split into ``w_rel`` (edge half)
    and ``w_self`` (centre half):

    .. math:: y_{ijc} = C_{in} - 2\,\mathrm{popcount}(x_j \oplus x_i \oplus w^{rel}_c)
                      + C_{in} - 2\,\mathrm{popcount}(x_i \oplus w^{self}_c),

    the +-1 dot product of the edge feature ``[-x_j x_i, x_i]`` with the weight row.

    Shapes:
        ``x (B, N, W)``, ``idx (B, N, k)``, ``w_rel, w_self (C_out, W)`` with
        ``W = ceil(c_in / 64)`` -> ``ymax, ymin (B, N, C_out)`` int32.
    """
    x, w_rel, w_self, _ = _conv_inputs(x, w_rel, w_self, c_in)
    idx = _conv_idx(idx, x)
    ymax, ymin = _native.xor_edge_conv_minmax(x, idx, w_rel, w_self, c_in, _threads(num_threads))
    return ymax, ymin


def xor_edge_conv(
    x: Any,
    idx: Any,
    w_rel: Any,
    w_self: Any,
    t_hi: Any,
    t_lo: Any,
    negate: Any,
    *,
    c_in: int,
    num_threads: int | None = None,
) -> np.ndarray:
    r"""Fused XorEdgeConv step: packed output bits of the next layer.

    .. math:: \mathrm{bit}_c(i) = \mathrm{negate}_c \oplus
              \big(\max_j y_{ijc} \ge t^{hi}_c \ \lor\ \min_j y_{ijc} \le t^{lo}_c\big)

    with :math:`y_{ijc}` as in :func:`xor_edge_conv_minmax`. This represents exactly
    ``sign(f(y))`` after BatchNorm, learned rescale, PReLU and max over neighbours (the exporter
    derives ``t_hi``/``t_lo``/``negate``); :data:`T_HI_OFF` / :data:`T_LO_OFF` disable a side.

    Shapes:
        ``x (B, N, W)``, ``idx (B, N, k)``, ``w_rel, w_self (C_out, W)``,
        ``t_hi, t_lo (C_out,)`` int32, ``negate (C_out,)`` 0/1 -> ``(B, N, ceil(C_out / 64))``
        uint64.
    """
    x, w_rel, w_self, c_out = _conv_inputs(x, w_rel, w_self, c_in)
    idx = _conv_idx(idx, x)
    t_hi, t_lo, negate = _thresholds(t_hi, t_lo, negate, c_out)
    return _native.xor_edge_conv(
        x, idx, w_rel, w_self, t_hi, t_lo, negate, c_in, _threads(num_threads)
    )


def xor_edge_conv_knn(
    x: Any,
    k: int,
    w_rel: Any,
    w_self: Any,
    t_hi: Any,
    t_lo: Any,
    negate: Any,
    *,
    c_in: int,
    return_idx: bool = False,
    num_threads: int | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """A whole binary XorEdgeConv layer in one pass: Hamming k-NN of every point (as
    :func:`hamming_knn`) then :func:`xor_edge_conv` on those neighbours, without materialising
    the neighbour lists between the two.

    Shapes:
        ``x (B, N, W)`` -> ``(B, N, ceil(C_out / 64))`` uint64, and ``idx (B, N, k)`` int32
        when ``return_idx``.
    """
    x, w_rel, w_self, c_out = _conv_inputs(x, w_rel, w_self, c_in)
    _check_point_sets(x, "x")
    if x.shape[2] > _MAX_KNN_WORDS:
        raise ValueError(f"the Hamming k-NN supports at most {_MAX_KNN_WORDS * 64} bits per point")
    k = _check_k(k, x.shape[1])
    t_hi, t_lo, negate = _thresholds(t_hi, t_lo, negate, c_out)
    out, idx = _native.xor_edge_conv_knn(
        x, k, w_rel, w_self, t_hi, t_lo, negate, c_in, _threads(num_threads)
    )
    return (out, idx) if return_idx else out


def xor_edge_conv_knn_minmax(
    x: Any, k: int, w_rel: Any, w_self: Any, *, c_in: int, num_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hamming k-NN of every point (as :func:`hamming_knn`) and :func:`xor_edge_conv_minmax` on
    those neighbours in one pass: the max and min pre-activations a real-valued layer needs.

    Shapes:
        ``x (B, N, W)`` -> ``ymax, ymin (B, N, C_out)`` int32 and ``idx (B, N, k)`` int32.
    """
    x, w_rel, w_self, _ = _conv_inputs(x, w_rel, w_self, c_in)
    _check_point_sets(x, "x")
    if x.shape[2] > _MAX_KNN_WORDS:
        raise ValueError(f"the Hamming k-NN supports at most {_MAX_KNN_WORDS * 64} bits per point")
    k = _check_k(k, x.shape[1])
    return _native.xor_edge_conv_knn_minmax(x, k, w_rel, w_self, c_in, _threads(num_threads))
