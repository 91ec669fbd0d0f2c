"""Fuzzing the engine's Python face (``bingnn.engine.kernels`` and the backend layer ``_ops``).

Whatever it is given (any dtype, rank, shape, memory layout, read-only or misaligned views,
empty arrays, NaN/inf, absurd integer arguments) a call either returns the reference result or
raises ``ValueError``/``TypeError`` with a message of its own, never a crash, a hang, another
exception type, pybind11's raw signature dump, or garbage.

Deterministic by default (derandomized, a fixed number of examples per test). A longer random
run on demand: ``BINGNN_FUZZ_EXAMPLES=5000 python -m pytest tests/test_engine_fuzz.py`` (fresh
seeds each run; hypothesis prints the failing example). Numpy only, so
``scripts/test_arm64.sh`` runs it on ARM64 too.
"""

from __future__ import annotations

import faulthandler
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bingnn.engine import _ops
from bingnn.engine import kernels as K
from bingnn.engine import reference as ref

_LONG = int(os.environ.get("BINGNN_FUZZ_EXAMPLES", "0"))
FUZZ = settings(
    max_examples=_LONG or 40,
    derandomize=not _LONG,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LEVELS = K.cpu_features()["levels"]
HANG_LIMIT_S = 300


@pytest.fixture(autouse=True)
def _no_hang():
    """A call that never returns dumps every thread's stack and ends the run."""
    faulthandler.dump_traceback_later(HANG_LIMIT_S, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


def refused(call) -> BaseException | None:
    """Run `call`; a refusal must be a ValueError/TypeError with a message of our own."""
    try:
        call()
    except (ValueError, TypeError) as e:
        msg = str(e)
        assert msg.strip(), f"{type(e).__name__} without a message"
        assert "incompatible function arguments" not in msg, msg  # pybind11 leaked through
        return e
    return None


# ----------------------------------------------------------------------------- strategies

DTYPES = [
    np.float16, np.float32, np.float64, np.int8, np.int16, np.int32, np.int64, np.uint8,
    np.uint16, np.uint32, np.uint64, np.bool_, np.complex64, np.dtype(">f4"), np.dtype(">u8"),
    np.dtype("U2"), np.dtype(object),
]
LAYOUTS = ["C", "F", "strided", "reversed", "readonly", "misaligned"]


def values(rng: np.random.Generator, shape: tuple[int, ...], dtype: np.dtype,
           poison: bool) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape, dtype=np.int64))
    if dtype.kind == "f" or dtype.kind == "c":
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-3, 4)
        v[rng.random(n) < 0.1] = 0.0
        if poison and n:
            specials = [np.nan, np.inf, -np.inf, -0.0, 1e30, -1e-30]
            v[rng.integers(0, n)] = specials[rng.integers(0, len(specials))]
        with np.errstate(over="ignore"):  # float16: large values become inf, on purpose
            out = v.astype(dtype)
    elif dtype.kind in "iu":
        native = dtype.newbyteorder("=")
        info = np.iinfo(native)
        out = rng.integers(info.min, info.max, size=n, dtype=native, endpoint=True)
        if n and rng.random() < 0.5:  # mostly small values, where the interesting cases live
            out = out % native.type(7)
        out = out.astype(dtype)
    elif dtype.kind == "b":
        out = rng.random(n) < 0.5
    elif dtype.kind == "U":
        out = np.array(["ab", "-1", ""] * n, dtype)[:n]
    else:
        out = np.array([1, "x", None] * n, dtype=object)[:n]
    return out.reshape(shape)


def layout(a: np.ndarray, how: str) -> np.ndarray:
    """The same values in another memory layout."""
    if how == "F":
        return np.asfortranarray(a)
    if how == "strided" and a.ndim:
        big = np.repeat(a, 2, axis=-1)
        return big[..., ::2]
    if how == "reversed" and a.ndim:
        return np.ascontiguousarray(a[..., ::-1])[..., ::-1]
    if how == "readonly":
        b = a.copy()
        b.flags.writeable = False
        return b
    if how == "misaligned" and a.dtype.kind not in "OU" and a.dtype.itemsize > 1:
        buf = np.zeros(a.nbytes + 1, np.uint8)
        b = buf[1:].view(a.dtype).reshape(a.shape)
        b[...] = a
        return b
    return a


@st.composite
def any_array(draw, max_dims: int = 4) -> np.ndarray:
    ndim = draw(st.integers(0, max_dims))
    shape = tuple(draw(st.lists(st.sampled_from([0, 1, 2, 3, 5, 64, 65]), min_size=ndim,
                                max_size=ndim)))
    if int(np.prod(shape, dtype=np.int64)) > 20000:
        shape = tuple(min(s, 3) for s in shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    a = values(rng, shape, draw(st.sampled_from(DTYPES)), draw(st.booleans()))
    return layout(a, draw(st.sampled_from(LAYOUTS)))


ODD_INTS = st.one_of(
    st.integers(-3, 140),
    st.sampled_from([2**31 - 1, 2**31, 2**40, 2**63 - 1, -(2**63)]),
    st.sampled_from([True, 1.0, None, "3", np.int64(5), np.uint8(7)]),
)


def pm1(rng: np.random.Generator, *shape: int) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0).astype(np.float32)


def ref_pack(x: np.ndarray) -> np.ndarray:
    return ref.pack_bits(np.asarray(x) >= 0)


# ----------------------------------------------------------------------------- kernels: garbage


@FUZZ
@given(x=any_array(), threads=st.sampled_from([None, 1, 2, 0, -1, 2000]))
def test_pack_signs_any_input(x, threads):
    got = None

    def call():
        nonlocal got
        got = K.pack_signs(x, num_threads=threads)

    if refused(call) is None:
        assert x.dtype.kind in "fiu" and x.ndim >= 1
        assert got.shape == (*x.shape[:-1], K.n_words(x.shape[-1])) and got.dtype == np.uint64
        np.testing.assert_array_equal(got, ref_pack(x))
    elif x.dtype.kind in "fiu" and x.ndim >= 1 and threads in (None, 1, 2):
        # A well-typed array is refused only for NaN/inf.
        assert x.dtype.kind == "f" and not np.isfinite(x).all()


@FUZZ
@given(p=any_array(), n_bits=ODD_INTS, threads=st.sampled_from([None, 1, 3]))
def test_unpack_signs_any_input(p, n_bits, threads):
    got = None

    def call():
        nonlocal got
        got = K.unpack_signs(p, n_bits, num_threads=threads)

    if refused(call) is None:
        assert p.dtype == np.uint64 and p.ndim >= 1
        np.testing.assert_array_equal(got, np.where(ref.unpack_bits(p, int(n_bits)), 1, -1))


@FUZZ
@given(a=any_array(max_dims=3), b=any_array(max_dims=3), n_bits=ODD_INTS)
def test_binary_gemm_any_input(a, b, n_bits):
    got = None

    def call():
        nonlocal got
        got = K.binary_gemm(a, b, n_bits)

    if refused(call) is None:
        np.testing.assert_array_equal(got, ref.binary_gemm(a, b, int(n_bits)))


@FUZZ
@given(x=any_array(max_dims=4), k=ODD_INTS, n_bits=st.one_of(st.none(), ODD_INTS))
def test_hamming_knn_any_input(x, k, n_bits):
    got = None

    def call():
        nonlocal got
        got = K.hamming_knn(x, k, n_bits=n_bits)

    if refused(call) is None:
        idx, dist = got
        np.testing.assert_array_equal(idx, ref.hamming_knn(x, int(k)))


@FUZZ
@given(x=any_array(), idx=any_array(), w_rel=any_array(max_dims=3), c_in=ODD_INTS,
       t=any_array(max_dims=2), seed=st.integers(0, 99))
def test_xor_edge_conv_any_input(x, idx, w_rel, c_in, t, seed):
    w_self = w_rel[::-1] if w_rel.ndim else w_rel
    refused(lambda: K.xor_edge_conv_minmax(x, idx, w_rel, w_self, c_in=c_in))
    refused(lambda: K.xor_edge_conv(x, idx, w_rel, w_self, t, t, t, c_in=c_in))
    refused(lambda: K.xor_edge_conv_knn(x, 3, w_rel, w_self, t, t, t, c_in=c_in))


# ----------------------------------------------------------------------------- kernels: layouts


@FUZZ
@given(b=st.integers(0, 3), n=st.integers(0, 40), c=st.sampled_from([1, 5, 63, 64, 65, 130]),
       how=st.sampled_from(LAYOUTS), seed=st.integers(0, 2**32 - 1))
def test_every_layout_gives_the_contiguous_result(b, n, c, how, seed):
    """Valid values in any layout: accepted, and equal to the reference at every level."""
    rng = np.random.default_rng(seed)
    x = pm1(rng, b, n, c)
    px = K.pack_signs(x)
    w_full = pm1(rng, 7, 2 * c)
    w_rel, w_self = K.pack_signs(w_full[:, :c]), K.pack_signs(w_full[:, c:])
    k = max(1, min(n, 4))
    idx = rng.integers(0, max(n, 1), size=(b, n, k)).astype(np.int32)
    t_hi = rng.integers(-2 * c, 2 * c, size=7).astype(np.int32)
    t_lo = rng.integers(-2 * c, 2 * c, size=7).astype(np.int32)
    neg = rng.integers(0, 2, size=7).astype(np.uint8)
    lay = lambda a: layout(a, how)  # noqa: E731
    y = ref.xor_edge_preact(px, idx, w_rel, w_self, c) if b and n else None
    for lvl in LEVELS:
        with K.dispatch(lvl):
            np.testing.assert_array_equal(K.pack_signs(lay(x)), px)
            np.testing.assert_array_equal(K.unpack_signs(lay(px), c), x.astype(np.int8))
            flat = px.reshape(-1, px.shape[-1])
            np.testing.assert_array_equal(K.binary_gemm(lay(flat), lay(w_rel), c),
                                          ref.binary_gemm(flat, w_rel, c))
            if b and n:
                got_idx, _ = K.hamming_knn(lay(px), k, n_bits=c)
                np.testing.assert_array_equal(got_idx, ref.hamming_knn(px, k))
                ymax, ymin = K.xor_edge_conv_minmax(lay(px), lay(idx), lay(w_rel), lay(w_self),
                                                    c_in=c)
                np.testing.assert_array_equal(ymax, y.max(axis=2))
                np.testing.assert_array_equal(ymin, y.min(axis=2))
                bits = K.xor_edge_conv(lay(px), lay(idx), lay(w_rel), lay(w_self), lay(t_hi),
                                       lay(t_lo), lay(neg), c_in=c)
                fire = (y.max(axis=2) >= t_hi) | (y.min(axis=2) <= t_lo)
                np.testing.assert_array_equal(bits, ref.pack_bits(fire ^ neg.astype(bool)))


# ----------------------------------------------------------------------------- _ops (backend)


@st.composite
def points(draw):
    """Engine-shaped point sets with adversarial values and layouts."""
    b, n = draw(st.integers(0, 3)), draw(st.integers(0, 30))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["normal", "grid", "duplicates", "poison", "huge"]))
    x = rng.standard_normal((b, n, 3)).astype(np.float32)
    if kind == "grid":
        x = (rng.integers(-2, 3, size=(b, n, 3)) / 4).astype(np.float32)
    elif kind == "duplicates" and n:
        x = x[:, rng.integers(0, n, size=n)]
    elif kind == "poison" and x.size:
        x.reshape(-1)[rng.integers(0, x.size)] = [np.nan, np.inf, -np.inf][rng.integers(0, 3)]
    elif kind == "huge" and x.size:
        x.reshape(-1)[rng.integers(0, x.size)] = 3e19
    return layout(x, draw(st.sampled_from(LAYOUTS)))


@FUZZ
@given(x=points(), k=st.integers(1, 8), threads=st.sampled_from([None, 1, 3]))
def test_ops_l2_knn(x, k, threads):
    b, n, _ = x.shape
    k = min(k, max(n, 1))
    got = None

    def call():
        nonlocal got
        got = _ops.l2_knn(x, k, True, threads)

    err = refused(call)
    if err is None:
        assert np.isfinite(x).all() and np.abs(x).max(initial=0) <= 1e18
        assert got.shape == (b, n, k)
        # Every neighbour list holds distinct points, the point itself among the closest.
        assert all(len(set(row)) == k for row in got.reshape(-1, k).tolist())
        want = ref.l2_knn(np.ascontiguousarray(x), k)
        d = ref.l2_distances(np.ascontiguousarray(x))
        np.testing.assert_array_equal(np.take_along_axis(d, got, -1),
                                      np.take_along_axis(d, want, -1))
    else:
        assert isinstance(err, ValueError)
        assert not (np.isfinite(x).all() and np.abs(x).max(initial=0) <= 1e18) or n < k


@FUZZ
@given(x=points(), k=st.integers(1, 6), c=st.sampled_from([1, 16, 33]), bn=st.booleans(),
       poison=st.sampled_from([None, "weight", "bn"]), seed=st.integers(0, 999))
def test_ops_edge0_minmax(x, k, c, bn, poison, seed):
    rng = np.random.default_rng(seed)
    b, n, _ = x.shape
    if n == 0:
        return
    idx = rng.integers(0, n, size=(b, n, k)).astype(np.int32)
    w = np.where(rng.random((c, 6)) < 0.5, 1.0, -1.0).astype(np.float32)
    s = rng.standard_normal(6).astype(np.float32) if bn else None
    t = rng.standard_normal(6).astype(np.float32) if bn else None
    if poison == "weight":
        w[0, 0] = np.nan
    elif poison == "bn" and bn:
        s[2] = np.inf
    got = None

    def call():
        nonlocal got
        got = _ops.edge0_minmax(x, idx, w, s, t, True, 1)

    if refused(call) is None:
        want = _ops.edge0_minmax(np.ascontiguousarray(x), idx, w, s, t, False, 1)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    else:
        assert not np.isfinite(x).all() or poison == "weight" or (poison == "bn" and bn)


@FUZZ
@given(b=st.integers(0, 2), n=st.integers(0, 12), c=st.integers(0, 40), bn=st.booleans(),
       poison=st.booleans(), how=st.sampled_from(LAYOUTS), seed=st.integers(0, 999))
def test_ops_embed_pool(b, n, c, bn, poison, how, seed):
    rng = np.random.default_rng(seed)
    y = layout(rng.integers(-50, 50, size=(b, n, c)).astype(np.int32), how)
    alpha = rng.standard_normal(c).astype(np.float32)
    slope = rng.standard_normal(c).astype(np.float32)
    s = rng.standard_normal(c).astype(np.float32) if bn else None
    t = rng.standard_normal(c).astype(np.float32) if bn else None
    if poison and c:
        alpha[-1] = np.nan
    got = None

    def call():
        nonlocal got
        got = _ops.embed_pool(y, alpha, slope, s, t, True, 1)

    if refused(call) is None:
        assert n >= 1 and not (poison and c)
        np.testing.assert_array_equal(got, ref.embed_pool(np.ascontiguousarray(y), alpha, slope,
                                                          s, t))
    else:
        assert n == 0 or (poison and c)


@FUZZ
@given(b=st.integers(1, 2), n=st.integers(1, 12), c=st.integers(1, 70), c_out=st.integers(0, 9),
       poison=st.sampled_from([None, "h", "lo"]), how=st.sampled_from(LAYOUTS),
       seed=st.integers(0, 999))
def test_ops_rf_edge_minmax(b, n, c, c_out, poison, how, seed):
    rng = np.random.default_rng(seed)
    k = int(rng.integers(1, n + 1))
    h = rng.standard_normal((b, n, c)).astype(np.float32)
    idx = rng.integers(0, n, size=(b, n, k)).astype(np.int32)
    lo = (rng.standard_normal(c) - 0.5).astype(np.float32)
    hi = (rng.standard_normal(c) + 0.5).astype(np.float32)
    neg = (rng.random(c) < 0.3).astype(np.uint8)
    w_rel = ref.pack_bits(rng.random((c_out, c)) < 0.5)
    w_self = ref.pack_bits(rng.random((c_out, c)) < 0.5)
    if poison == "h":
        h[0, 0, -1] = np.nan
    elif poison == "lo":
        lo[0] = np.nan
    lay = lambda a: layout(a, how)  # noqa: E731
    args = (lay(h), lay(idx), lay(lo), lay(hi), lay(neg), hi, lo, neg, lay(w_rel), lay(w_self))
    got = None

    def call():
        nonlocal got
        got = _ops.rf_edge_minmax(*args, True, 1)

    if refused(call) is None:
        assert poison is None
        want = _ops.rf_edge_minmax(h, idx, lo, hi, neg, hi, lo, neg, w_rel, w_self, False, 1)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])
    else:
        assert poison is not None
