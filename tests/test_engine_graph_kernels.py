"""The native graph kernels (csrc/graph_*.cpp) against the numpy reference
(bingnn.engine.graph_reference), bit for bit, at every dispatch level this CPU has; the
reference against PyTorch where PyTorch defines the arithmetic; and the native second line
of defence against malformed direct calls."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn import _native
from bingnn.engine import graph_reference as gref
from bingnn.engine import kernels as K
from bingnn.engine.reference import pack_bits

LEVELS = K.cpu_features()["levels"]
SETTINGS = settings(max_examples=25, deadline=None, derandomize=True)


def at_every_level(fn):
    """``fn()`` at each dispatch level; all results must be identical."""
    outs = []
    for level in LEVELS:
        with K.dispatch(level):
            outs.append(fn())
    for level, out in zip(LEVELS[1:], outs[1:], strict=True):
        for a, b in zip(outs[0] if isinstance(outs[0], tuple) else (outs[0],),
                        out if isinstance(out, tuple) else (out,), strict=True):
            if a is None or b is None:
                assert a is None and b is None
            else:
                np.testing.assert_array_equal(a, b, err_msg=f"{level} differs from scalar")
    return outs[0]


def mixed(rng: np.random.Generator, shape) -> np.ndarray:
    """Floats of very different magnitudes, signs and exact zeros: any change in the order of
    float32 additions shows."""
    x = rng.normal(size=shape) * 10.0 ** rng.integers(-4, 5, size=shape)
    x[rng.random(shape) < 0.1] = 0.0
    return x.astype(np.float32)


def random_csr(rng: np.random.Generator, rows: int, m: int, max_deg: int):
    deg = rng.integers(0, max_deg + 1, rows)
    deg[rng.random(rows) < 0.2] = 0  # empty rows (isolated nodes)
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(deg, out=indptr[1:])
    indices = (rng.integers(0, m, int(indptr[-1])).astype(np.int32) if m
               else np.zeros(0, np.int32))
    return indptr, indices


@SETTINGS
@given(n=st.integers(0, 40), e=st.integers(0, 300), seed=st.integers(0, 2**16))
def test_csr_by_target(n: int, e: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if n == 0:
        e = 0
    src, dst = rng.integers(0, max(n, 1), e), rng.integers(0, max(n, 1), e)
    want = gref.csr_by_target(src, dst, n)
    got = _native.graph_csr_by_target(src, dst, n, 1)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    # Stable: the sources of each target in edge order.
    for i in range(n):
        np.testing.assert_array_equal(got[1][got[0][i]:got[0][i + 1]], src[dst == i])


@SETTINGS
@given(n=st.integers(0, 40), e=st.integers(0, 300), fill=st.sampled_from([1.0, 2.0]),
       seed=st.integers(0, 2**16))
def test_gcn_csr(n: int, e: int, fill: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    if n == 0:
        e = 0
    src, dst = rng.integers(0, max(n, 1), e), rng.integers(0, max(n, 1), e)
    indptr, indices = gref.csr_by_target(src, dst, n)
    want = gref.gcn_csr(indptr, indices, fill)
    got = _native.graph_gcn_csr(indptr, indices, fill)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_array_equal(a, b)


@SETTINGS
@given(rows=st.integers(0, 30), m=st.integers(0, 30), c=st.integers(1, 150),
       max_deg=st.integers(0, 40), weighted=st.booleans(), mean=st.booleans(),
       dtype=st.sampled_from(["float32", "int8", "int16", "int32"]),
       flags=st.lists(st.booleans(), min_size=9, max_size=9),
       out=st.sampled_from(["rows", "threshold", "mean", "none"]),
       scale=st.sampled_from([None, "batchnorm", "mean", "none"]), seed=st.integers(0, 2**16))
def test_aggregate(rows, m, c, max_deg, weighted, mean, dtype, flags, out, scale, seed) -> None:
    """Messages of any element type, rescaled on the fly; the row epilogue (bias, rescale, a
    second term, bias, PReLU); the rows, or their signs and node scale instead."""
    rng = np.random.default_rng(seed)
    h = (mixed(rng, (m, c)) if dtype == "float32"
         else rng.integers(-100, 100, (m, c)).astype(dtype))
    indptr, indices = random_csr(rng, rows, m, max_deg if m else 0)
    vec = lambda: rng.normal(size=c).astype(np.float32)  # noqa: E731
    w = rng.random(indices.size).astype(np.float32) if weighted else None
    kw = {
        "row_scale": rng.normal(size=m).astype(np.float32) if flags[0] else None,
        "alpha": vec() if flags[1] else None,
        "t0_bias": vec() if flags[2] else None,
        "t0_alpha": vec() if flags[3] else None,
        "second": ((rng.integers(-9, 9, (rows, c)).astype(np.int8) if flags[5]
                    else mixed(rng, (rows, c))), None, vec() if flags[6] else None, vec())
        if flags[4] else None,
        "bias": vec() if flags[7] else None,
        "slope": vec() if flags[8] else None,
    }
    if out != "rows" or scale is not None:
        lo = rng.normal(size=c).astype(np.float32)
        signs = (None if out == "rows" else ("threshold", lo, lo + 1, (rng.random(c) < 0.3)
                                              .astype(np.uint8)) if out == "threshold"
                 else (out,))
        sc = None if scale is None else (scale, vec(), vec()) if scale == "batchnorm" else (
            scale, None, None)
        kw.update(keep_rows=bool(flags[0]), signs=signs, scale=sc)
        if signs is not None and flags[1]:  # a second set of signs (its own thresholds)
            kw["signs2"] = ("threshold", lo - 0.5, lo, (rng.random(c) < 0.5).astype(np.uint8))
    want = gref.aggregate(h, indptr, indices, w, mean, **kw)
    got = at_every_level(lambda: _flat(_native.graph_aggregate(h, indptr, indices, w, mean, 0,
                                                               **kw)))
    want = _flat(want)
    if kw.get("signs2") is not None:  # the second set: the float rows' own predicate
        plain = {k: v for k, v in kw.items() if k not in ("keep_rows", "signs", "signs2",
                                                          "scale")}
        rows_f = gref.aggregate(h, indptr, indices, w, mean, **plain)
        np.testing.assert_array_equal(want[2], gref.threshold_pack(rows_f, *kw["signs2"][1:]))
    for a, b in zip(got, want, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            np.testing.assert_array_equal(a, b)


def _flat(x):
    """A result as a flat tuple (the two sets of signs of ``signs2`` side by side)."""
    out = []
    for v in (x if isinstance(x, tuple) else (x,)):
        out.extend(v if isinstance(v, tuple) else (v,))
    return tuple(out)


def _tuple(x):
    return x if isinstance(x, tuple) else (x,)


def test_aggregate_is_pyg_scatter_order() -> None:
    """The reference's order is PyG's: scatter sum/mean of messages in edge order."""
    torch = pytest.importorskip("torch")
    scatter = pytest.importorskip("torch_geometric.utils").scatter

    rng = np.random.default_rng(0)
    n, e, c = 60, 4000, 37
    src, dst = rng.integers(0, n, e), rng.integers(0, n - 5, e)  # 5 isolated targets
    h = mixed(rng, (n, c))
    indptr, indices = gref.csr_by_target(src, dst, n)
    for reduce in ("sum", "mean"):
        want = scatter(torch.from_numpy(h)[src], torch.from_numpy(dst), 0, n, reduce).numpy()
        np.testing.assert_array_equal(gref.aggregate(h, indptr, indices, None,
                                                     reduce == "mean"), want)
    w = rng.random(e).astype(np.float32)
    msg = torch.from_numpy(w).view(-1, 1) * torch.from_numpy(h)[src]
    want = scatter(msg, torch.from_numpy(dst), 0, n, "sum").numpy()
    order = np.argsort(dst, kind="stable")
    np.testing.assert_array_equal(gref.aggregate(h, indptr, indices, w[order], False), want)


@SETTINGS
@given(rows=st.integers(0, 20), f=st.integers(1, 200), c=st.integers(1, 150),
       density=st.floats(0.0, 1.0), binary=st.booleans(), seed=st.integers(0, 2**16))
def test_signed_linear(rows, f, c, density, binary, seed) -> None:
    rng = np.random.default_rng(seed)
    x = (rng.random((rows, f)) < density).astype(np.float32)
    if not binary:
        x *= mixed(rng, (rows, f))
    w = pack_bits(rng.random((c, f)) < 0.5)
    want = gref.signed_linear_dense(x, w)
    got = at_every_level(lambda: _native.graph_signed_linear_dense(x, w, 0))
    np.testing.assert_array_equal(got, want)
    nz = x != 0
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(nz.sum(1), out=indptr[1:])
    indices = np.nonzero(nz)[1].astype(np.int32)
    data = x[nz].astype(np.float32)
    np.testing.assert_array_equal(gref.signed_linear_csr(indptr, indices, data, w, f), want)
    got = at_every_level(lambda: _native.graph_signed_linear_csr(indptr, indices, data, w, f, 0))
    np.testing.assert_array_equal(got, want)
    if binary:  # 0/1 inputs: exact integers, equal to the +-1 matmul in any order
        s = np.where(np.unpackbits(w.view(np.uint8), axis=1, bitorder="little")[:, :f], 1, -1)
        np.testing.assert_array_equal(want, (x.astype(np.int64) @ s.T).astype(np.float32))
    finite, integral, l1 = _native.graph_feature_stats(x, 0)
    assert finite and integral == bool((x == np.rint(x)).all())
    if integral:  # exact for integer features, the only case that uses it
        assert l1 == (np.abs(x.astype(np.float64)).sum(1).max() if rows else 0.0)
    else:
        assert l1 == np.inf
    for kind, limit in (("int8", 127), ("int16", 32767)):
        if integral and l1 <= limit:
            got = at_every_level(lambda k=kind: _native.graph_signed_linear_dense(x, w, 0, k))
            assert got.dtype == np.dtype(kind)
            np.testing.assert_array_equal(got, want.astype(kind))
            got = at_every_level(lambda k=kind: _native.graph_signed_linear_csr(
                indptr, indices, data, w, f, 0, k))
            np.testing.assert_array_equal(got, want.astype(kind))
        else:
            with pytest.raises(ValueError, match="not integers small enough"):
                _native.graph_signed_linear_dense(x, w, 0, kind)


@SETTINGS
@given(rows=st.integers(0, 20), c=st.integers(1, 200), seed=st.integers(0, 2**16))
def test_threshold_pack(rows, c, seed) -> None:
    rng = np.random.default_rng(seed)
    v = mixed(rng, (rows, c))
    lo = rng.normal(size=c).astype(np.float32)
    hi = lo + np.abs(rng.normal(size=c)).astype(np.float32)
    lo[rng.random(c) < 0.2] = -np.inf
    hi[rng.random(c) < 0.2] = np.inf
    v[:, ::7] = hi[::7] if rows else v[:, ::7]  # values exactly on a threshold
    neg = (rng.random(c) < 0.3).astype(np.uint8)
    want = gref.threshold_pack(v, lo, hi, neg)
    got = at_every_level(lambda: _native.graph_threshold_pack(v, lo, hi, neg, 0))
    np.testing.assert_array_equal(got, want)


@SETTINGS
@given(rows=st.integers(0, 30), m=st.integers(1, 40), c=st.integers(1, 700),
       max_deg=st.sampled_from([1, 4, 9, 300]), threads=st.sampled_from([1, 2]),
       seed=st.integers(0, 2**16))
def test_majority(rows, m, c, max_deg, threads, seed) -> None:
    """Sizes not a multiple of 64, more than 512 channels (two register blocks), empty rows
    (all ones), even degrees (ties give +1) and rows of more than 255 entries (wide
    counters)."""
    rng = np.random.default_rng(seed)
    bits = pack_bits(rng.random((m, c)) < rng.random())
    indptr, indices = random_csr(rng, rows, m, max_deg)
    want = gref.majority(bits, c, indptr, indices)
    got = at_every_level(lambda: _native.graph_majority(bits, c, indptr, indices, threads))
    np.testing.assert_array_equal(got, want)
    # The reference is the sign of the mean of the +-1 messages, sign(0) = +1.
    pm = np.where(np.unpackbits(bits.view(np.uint8), axis=1, bitorder="little")[:, :c], 1, -1)
    for r in range(rows):
        mean = pm[indices[indptr[r]:indptr[r + 1]]].sum(0) if indptr[r + 1] > indptr[r] else 0
        np.testing.assert_array_equal(
            np.unpackbits(want[r].view(np.uint8), bitorder="little")[:c], (mean >= 0) * 1)


@SETTINGS
@given(rows=st.integers(1, 30), c=st.integers(1, 600), seed=st.integers(0, 2**16))
def test_aten_row_sum_is_torch_sum(rows, c, seed) -> None:
    torch = pytest.importorskip("torch")
    x = mixed(np.random.default_rng(seed), (rows, c))
    want = torch.from_numpy(x).sum(dim=-1).numpy()
    np.testing.assert_array_equal(gref.aten_row_sum(x), want)
    np.testing.assert_array_equal(gref.aten_row_sum(x) / np.float32(c),
                                  torch.from_numpy(x).mean(dim=-1).numpy())


@SETTINGS
@given(rows=st.integers(0, 30), c=st.integers(1, 300),
       centering=st.sampled_from(["mean", "none", "batchnorm"]), seed=st.integers(0, 2**16))
def test_center_sign_and_node_scale(rows, c, centering, seed) -> None:
    rng = np.random.default_rng(seed)
    v = mixed(rng, (rows, c))
    if rows:
        v[0] = 0.5  # a constant row: every value equals the mean
    if centering != "batchnorm":
        want = gref.center_sign(v, centering)
        got = at_every_level(lambda: _native.graph_center_sign(v, centering, 0))
        np.testing.assert_array_equal(got, want)
    scale = rng.normal(size=c).astype(np.float32)
    shift = rng.normal(size=c).astype(np.float32)
    s, t = (scale, shift) if centering == "batchnorm" else (None, None)
    want = gref.node_scale(v, centering, s, t)
    got = at_every_level(lambda: _native.graph_node_scale(v, centering, s, t, 0))
    np.testing.assert_array_equal(got, want)


def test_node_scale_and_centring_match_torch() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    v = mixed(rng, (200, 70))
    t = torch.from_numpy(v)
    np.testing.assert_array_equal(gref.node_scale(v, "mean"),
                                  (t - t.mean(dim=-1, keepdim=True)).abs().mean(dim=-1).numpy())
    np.testing.assert_array_equal(gref.center_sign(v, "mean"),
                                  pack_bits((t - t.mean(dim=-1, keepdim=True) >= 0).numpy()))
    med = t.median(dim=-1, keepdim=True).values
    np.testing.assert_array_equal(gref.center_sign(v, "median"), pack_bits((t - med >= 0).numpy()))
    np.testing.assert_array_equal(gref.node_scale(v, "median"),
                                  (t - med).abs().mean(dim=-1).numpy())


@SETTINGS
@given(rows=st.integers(0, 20), c=st.integers(1, 100), two=st.booleans(),
       flags=st.lists(st.booleans(), min_size=8, max_size=8), seed=st.integers(0, 2**16))
def test_affine(rows, c, two, flags, seed) -> None:
    from bingnn.engine import _graph_ops as G

    rng = np.random.default_rng(seed)

    def term(i: int):
        x = (rng.integers(-300, 300, (rows, c)).astype(np.int32) if flags[4 * i]
             else mixed(rng, (rows, c)))
        rs = rng.normal(size=rows).astype(np.float32) if flags[4 * i + 1] else None
        b = rng.normal(size=c).astype(np.float32) if flags[4 * i + 2] else None
        a = rng.normal(size=c).astype(np.float32) if flags[4 * i + 3] else None
        return x, rs, b, a

    terms = [term(0), term(1)] if two else [term(0)]
    bias = rng.normal(size=c).astype(np.float32) if flags[1] else None
    slope = rng.normal(size=c).astype(np.float32) if flags[2] else None
    want = G.affine(terms, bias, slope, native=False, num_threads=None)
    got = at_every_level(lambda: _native.graph_affine(terms, bias, slope, 0))
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("call,match", [
    (lambda: _native.graph_csr_by_target(np.array([0, 5]), np.array([1, 1]), 3, 1),
     "outside"),
    (lambda: _native.graph_aggregate(np.zeros((3, 2), np.float32), np.array([0, 2]),
                                     np.array([0, 3], np.int32), None, True, 1), "out of range"),
    (lambda: _native.graph_aggregate(np.zeros((3, 2), np.float32), np.array([0, 3]),
                                     np.array([0, 1], np.int32), None, True, 1), "end at"),
    (lambda: _native.graph_aggregate(np.zeros((3, 2), np.float32), np.array([0, 2, 1, 2]),
                                     np.array([0, 1], np.int32), None, True, 1),
     "non-decreasing"),
    (lambda: _native.graph_aggregate(np.zeros((3, 2), np.float32), np.array([0, 2]),
                                     np.array([0, 1], np.int32), np.zeros(3, np.float32), True,
                                     1), "weights"),
    (lambda: _native.graph_signed_linear_csr(np.array([0, 1]), np.array([70], np.int32), None,
                                             np.zeros((4, 2), np.uint64), 64, 1),
     "out of range"),
    (lambda: _native.graph_signed_linear_dense(np.zeros((2, 65), np.float32),
                                               np.zeros((4, 1), np.uint64), 1), "ceil"),
    (lambda: _native.graph_threshold_pack(np.zeros((2, 5), np.float32), np.zeros(4, np.float32),
                                          np.zeros(5, np.float32), np.zeros(5, np.uint8), 1),
     "shape"),
    (lambda: _native.graph_node_scale(np.zeros((2, 5), np.float32), "batchnorm", None, None, 1),
     "batchnorm"),
    (lambda: _native.graph_majority(np.zeros((2, 1), np.uint64), 65, np.array([0, 1]),
                                    np.array([0], np.int32), 1), "ceil"),
    (lambda: _native.graph_majority(np.zeros((2, 1), np.uint64), 5, np.array([0, 1]),
                                    np.array([2], np.int32), 1), "out of range"),
    (lambda: _native.graph_affine([(np.zeros((2, 3), np.float32), np.zeros(3, np.float32),
                                    None, None)], None, None, 1), "row_scale"),
])
def test_native_refuses_malformed_calls(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_fma32_rounds_once() -> None:
    """A fused multiply-add rounds once; float64 then float32 rounds twice, which differs when
    the float64 result is a float32 midpoint. Crafted case: 1 + 3 * 2**-24 - 2**-70."""
    from fractions import Fraction

    x = np.array([1 + 2**-23], np.float32)
    s = np.array([(1 - 2**-23) * 2**-24], np.float32)
    t = np.array([1 + 2**-23], np.float32)
    naive = (x.astype(np.float64) * s + t).astype(np.float32)
    assert naive[0] == np.float32(1 + 2**-22)  # double rounding goes up
    assert gref.fma32(x, s, t)[0] == np.float32(1 + 2**-23)  # the exact value is below

    def exact(a, b, c):
        v = Fraction(float(a)) * Fraction(float(b)) + Fraction(float(c))
        lo = np.float32(float(v))
        cands = [lo, np.nextafter(lo, np.float32(np.inf)), np.nextafter(lo, np.float32(-np.inf))]
        dist = [abs(Fraction(float(q)) - v) for q in cands]
        best = min(dist)
        ties = [q for q, d in zip(cands, dist, strict=True) if d == best]
        return min(ties, key=lambda q: int(np.array(q).view(np.uint32)) & 1)

    rng = np.random.default_rng(0)
    a, b, c = (mixed(rng, 500) for _ in range(3))
    got = gref.fma32(a, b, c)
    assert all(got[i] == exact(a[i], b[i], c[i]) for i in range(500))
    for level in LEVELS:  # the native node scale uses a true FMA at every level
        with K.dispatch(level):
            beta = _native.graph_node_scale(x[None], "batchnorm", s, t, 1)
        assert beta[0] == np.float32(1 + 2**-23)


@pytest.mark.parametrize("dtype", ["float32", "int8", "int16", "int32"])
def test_column_slices_are_read_in_place(dtype) -> None:
    """Two first-layer results computed in one pass are column slices of one array: the
    kernels read them through their row stride, with the results of contiguous copies."""
    rng = np.random.default_rng(5)
    wide = rng.integers(-50, 50, (40, 70)).astype(dtype)
    left, right = wide[:, :33], wide[:, 33:66]
    indptr, indices = random_csr(rng, 25, 40, 9)
    alpha = rng.normal(size=33).astype(np.float32)
    second = (right[:25], None, None, alpha)
    for level in LEVELS:
        with K.dispatch(level):
            got = _native.graph_aggregate(left, indptr, indices, None, True, 0, second=second)
            want = _native.graph_aggregate(np.ascontiguousarray(left), indptr, indices, None,
                                           True, 0,
                                           second=(np.ascontiguousarray(right[:25]), None, None,
                                                   alpha))
            np.testing.assert_array_equal(got, want)
            np.testing.assert_array_equal(
                _native.graph_affine([(left, None, None, alpha)], None, None, 0),
                _native.graph_affine([(np.ascontiguousarray(left), None, None, alpha)], None,
                                     None, 0))
    with pytest.raises(ValueError, match="contiguous"):
        _native.graph_aggregate(wide[:, ::2], indptr, indices, None, True, 0)


@pytest.mark.parametrize("dtype,deg", [("int8", 255), ("int8", 256), ("int8", 700),
                                       ("int16", 3), ("int16", 65_535), ("int16", 65_536)])
def test_aggregate_exact_integer_sums(dtype, deg) -> None:
    """int8/int16 messages without row scales or weights are summed exactly (int16 lanes up to
    255 int8 entries, int32 lanes, int64 for hubs whose sums pass int32) and rounded to float32
    once: extreme values, a row at each lane width's limit, sums beyond 2**24 and 2**31."""
    rng = np.random.default_rng(deg)
    info = np.iinfo(dtype)
    c = 37  # not a multiple of 16 or 32
    h = rng.choice([info.min, info.max, info.max - 1, 0, 1], size=(50, c)).astype(dtype)
    h[:5] = info.min  # rows of the most negative value
    h[5:10] = info.max
    indptr = np.array([0, deg, 2 * deg, 2 * deg, 2 * deg + 7], np.int64)
    indices = np.concatenate([np.zeros(deg, np.int32) + 1, np.full(deg, 7, np.int32),
                              rng.integers(0, 50, 7).astype(np.int32)])
    alpha = rng.normal(size=c).astype(np.float32)
    exact = np.add.reduceat(h[indices].astype(np.int64), indptr[:-1], axis=0)
    exact[np.diff(indptr) == 0] = 0
    for a in (None, alpha):
        want = exact.astype(np.float32) * (1 if a is None else a)
        np.testing.assert_array_equal(gref.aggregate(h, indptr, indices, None, False, alpha=a),
                                      want)
        got = at_every_level(lambda a=a: _native.graph_aggregate(h, indptr, indices, None,
                                                                 False, 0, alpha=a))
        np.testing.assert_array_equal(got, want)
