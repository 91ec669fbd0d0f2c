"""Float times +-1 products by table lookup (csrc/pm1_matmul.*): every dispatch level against a
float64 product and against each other (same order of additions: equal bits), on odd shapes;
and the training backward passes that use them against the float products they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn import _native
from bingnn.engine import kernels
from bingnn.nn import binary_matmul as bm

LEVELS = kernels.cpu_features()["levels"]
AVX512 = "avx512" in LEVELS


def pm1_rows(k: int, c: int, seed: int) -> np.ndarray:
    return np.where(np.random.default_rng(seed).random((k, c)) < 0.5, -1.0, 1.0).astype(
        np.float32)


def codes_of(b: np.ndarray, negate: bool = False) -> np.ndarray:
    bits = kernels.pack_signs(b)
    codes = np.empty(((b.shape[0] + 4) // 5, b.shape[1]), np.uint8)
    _native.pm1_codes(bits, b.shape[1], negate, codes)
    return codes


def run(a: np.ndarray, codes: np.ndarray, transpose: bool, level: str) -> np.ndarray:
    rows = a.shape[1] if transpose else a.shape[0]
    out = np.full((rows, codes.shape[1]), np.nan, np.float32)
    with kernels.dispatch(level):
        _native.pm1_matmul(a, transpose, codes, out)
    return out


@settings(max_examples=40, deadline=None)
@given(r=st.integers(0, 37), k=st.integers(0, 23), c=st.integers(0, 150),
       transpose=st.booleans(), negate=st.booleans(), seed=st.integers(0, 999))
def test_every_level_equals_the_scalar_reference_and_a_float64_product(
        r: int, k: int, c: int, transpose: bool, negate: bool, seed: int) -> None:
    b = pm1_rows(k, c, seed)
    rng = np.random.default_rng(seed + 1)
    a = (rng.standard_normal((k, r) if transpose else (r, k)) * 3).astype(np.float32)
    codes = {lvl: None for lvl in LEVELS}
    for lvl in LEVELS:
        with kernels.dispatch(lvl):
            codes[lvl] = codes_of(b, negate)
    for lvl in LEVELS:
        np.testing.assert_array_equal(codes[lvl], codes["scalar"])
    want = (a.T if transpose else a).astype(np.float64) @ (-b if negate else b).astype(np.float64)
    ref = run(a, codes["scalar"], transpose, "scalar")
    np.testing.assert_allclose(ref, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(a).sum()))
    for lvl in LEVELS:
        got = run(a, codes["scalar"], transpose, lvl)
        np.testing.assert_array_equal(got.view(np.uint32), ref.view(np.uint32), err_msg=lvl)


def test_codes_hold_the_signs_of_five_rows() -> None:
    b = pm1_rows(12, 70, 3)
    codes = codes_of(b)
    assert codes.shape == (3, 70)
    for grp in range(3):
        for q in range(5):
            row = 5 * grp + q
            bit = (codes[grp] >> q) & 1
            if row < 12:
                np.testing.assert_array_equal(bit, (b[row] > 0).astype(np.uint8))
            else:
                assert not bit.any()  # rows past K give no bit
    np.testing.assert_array_equal(codes_of(b, negate=True) & 0b11111,
                                  codes_of(-b) & 0b11111)


def test_large_sums_and_chunks_of_the_inner_dimension() -> None:
    # K of 40,000 (8,000 groups: several chunks of codes), 130 channels, rows in both layouts
    b = pm1_rows(40_000, 130, 5)
    a = np.random.default_rng(6).standard_normal((40_000, 7)).astype(np.float32)
    codes = codes_of(b)
    want = a.T.astype(np.float64) @ b.astype(np.float64)
    for lvl in LEVELS:
        got = run(a, codes, True, lvl)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=5e-3)
        np.testing.assert_array_equal(got, run(a, codes, True, "scalar"))


def test_thread_count_does_not_change_the_result() -> None:
    b = pm1_rows(33, 40, 8)
    a = np.random.default_rng(9).standard_normal((301, 33)).astype(np.float32)
    codes = codes_of(b)
    outs = []
    for threads in (1, 2, 3):
        out = np.empty((301, 40), np.float32)
        _native.pm1_matmul(a, False, codes, out, threads)
        outs.append(out)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_bad_shapes_are_refused() -> None:
    codes = codes_of(pm1_rows(10, 8, 0))
    with pytest.raises(ValueError, match="ceil"):
        _native.pm1_matmul(np.zeros((4, 11), np.float32), False, codes,
                           np.zeros((4, 8), np.float32))
    with pytest.raises(ValueError, match="out has the wrong shape"):
        _native.pm1_matmul(np.zeros((4, 10), np.float32), False, codes,
                           np.zeros((4, 9), np.float32))
    with pytest.raises(ValueError, match="at most 64 W"):
        _native.pm1_codes(np.zeros((10, 1), np.uint64), 65, False,
                          np.zeros((2, 65), np.uint8))


# ------------------------------------------------------------------ the backward passes


def _grads(fn, *inputs, level: str):
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    with kernels.dispatch(level):
        out = fn(*leaves)
        g = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
        out.backward(g)
    return [t.grad for t in leaves if t.is_floating_point()]


@pytest.mark.skipif(not AVX512, reason="the lookup backward runs at the AVX-512 level")
@pytest.mark.parametrize("c, o", [(64, 64), (70, 33), (5, 17)])
def test_packed_linear_backward_by_lookup_equals_the_float_backward(c: int, o: int) -> None:
    gen = torch.Generator().manual_seed(c + o)
    x = torch.randint(0, 2, (3, 11, c), generator=gen).float() * 2 - 1
    w = torch.randint(0, 2, (o, c), generator=gen).float() * 2 - 1
    fn = bm._PackedLinear.apply
    fast = _grads(fn, x, w, level="avx512")
    plain = _grads(fn, x, w, level="scalar")  # not AVX-512: PyTorch's matmul
    for f, p in zip(fast, plain, strict=True):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not AVX512, reason="the lookup backward runs at the AVX-512 level")
@pytest.mark.parametrize("packed", [True, False])
def test_xor_edge_linear_backward_by_lookup_equals_the_float_backward(packed: bool) -> None:
    gen = torch.Generator().manual_seed(7)
    b, n, k, c, o = 2, 19, 6, 70, 37
    x = torch.randint(0, 2, (b, n, c), generator=gen).float() * 2 - 1
    idx = torch.randint(0, n, (b, n, k), generator=gen)
    w = torch.randint(0, 2, (o, c), generator=gen).float() * 2 - 1
    if not packed:  # stage 2: binary activations, real weights (the weight gradient only)
        w = torch.randn(o, c, generator=gen)

    def fn(x_, w_):
        return bm.XorEdgeLinear.apply(x_, idx, w_, packed)

    calls = _native.dispatch_calls()["avx512"]
    fast = _grads(fn, x, w, level="avx512")
    assert _native.dispatch_calls()["avx512"] > calls
    plain = _grads(fn, x, w, level="scalar")
    for f, p in zip(fast, plain, strict=True):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not AVX512, reason="the lookup backward runs at the AVX-512 level")
def test_xor_edge_linear_with_real_features_keeps_the_float_backward() -> None:
    # stage 1: tanh features are not +-1, so x_j * x_i is no sign pattern: no lookup
    gen = torch.Generator().manual_seed(2)
    x = torch.tanh(torch.randn(2, 9, 20, generator=gen))
    idx = torch.randint(0, 9, (2, 9, 4), generator=gen)
    w = torch.randn(8, 20, generator=gen)

    def fn(x_, w_):
        return bm.XorEdgeLinear.apply(x_, idx, w_, False)

    def ref(x_, w_):
        prod = x_[torch.arange(2).view(2, 1, 1), idx] * x_.unsqueeze(2)
        return torch.nn.functional.linear(prod, -w_)

    fast = _grads(fn, x, w, level="avx512")
    want = _grads(ref, x, w, level="avx512")
    for f, p in zip(fast, want, strict=True):
        torch.testing.assert_close(f, p, rtol=1e-5, atol=1e-5)


def rows_linear(q: np.ndarray, w: np.ndarray, level: str, threads: int = 1) -> np.ndarray:
    out = np.full((q.shape[0], w.shape[0]), np.nan, np.float32)
    with kernels.dispatch(level):
        _native.pm1_rows_linear(kernels.pack_signs(q), q.shape[1], w, out, threads)
    return out


@settings(max_examples=30, deadline=None)
@given(m=st.integers(0, 300), c=st.integers(0, 150), o=st.integers(1, 70),
       seed=st.integers(0, 10**6))
def test_rows_linear_levels_equal_the_scalar_reference_and_a_float64_product(m, c, o, seed
                                                                             ) -> None:
    """Signs (M, c) times real weights (o, c)^T by nibble tables: every level gives the scalar
    reference's bits (same order of additions), all a float64 product to float32 rounding;
    c and o not multiples of 4, 16 or 64, no rows, no channels (a zero product)."""
    q = pm1_rows(m, c, seed)
    w = np.random.default_rng(seed + 1).standard_normal((o, c)).astype(np.float32)
    want = q.astype(np.float64) @ w.T.astype(np.float64)
    ref = rows_linear(q, w, "scalar")
    np.testing.assert_allclose(ref, want, rtol=1e-5, atol=1e-5 * max(1, c))
    for level in LEVELS:
        assert np.array_equal(rows_linear(q, w, level), ref), level
    assert np.array_equal(rows_linear(q, w, LEVELS[-1], threads=2), ref)


def test_rows_linear_ignores_bits_past_c_and_refuses_bad_shapes() -> None:
    q = pm1_rows(9, 70, 3)
    w = np.random.default_rng(4).standard_normal((5, 70)).astype(np.float32)
    bits = kernels.pack_signs(q)
    bits[:, 1] |= np.uint64(0xFFFF_FFFF_FFFF_FFC0)  # set every bit past channel 70
    out = np.empty((9, 5), np.float32)
    _native.pm1_rows_linear(bits, 70, w, out)
    np.testing.assert_allclose(out, q @ w.T, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="at most 64 W"):
        _native.pm1_rows_linear(bits, 129, np.zeros((5, 129), np.float32), out)
    with pytest.raises(ValueError, match="c columns"):
        _native.pm1_rows_linear(bits, 70, np.zeros((5, 69), np.float32), out)
    with pytest.raises(ValueError, match="wrong shape"):
        _native.pm1_rows_linear(bits, 70, w, np.empty((9, 4), np.float32))


@pytest.mark.skipif(not AVX512, reason="the training library takes the tables at AVX-512 only")
def test_stage2_edge_forwards_take_the_tables_and_equal_float_products() -> None:
    """RF's and BF's stage-2 edge maps (signs times real weights) run on the tables and equal
    the float product of the same signs to float32 rounding."""
    from bingnn.nn import edge_diff_quant

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 30, 37, generator=g)
    idx = torch.randint(0, 30, (2, 30, 7), generator=g)
    w = torch.randn(19, 37, generator=g)
    gamma, beta = torch.rand(37, generator=g) + 0.5, torch.randn(37, generator=g)
    mean, var = torch.randn(37, generator=g), torch.rand(37, generator=g) + 0.5
    vals = edge_diff_quant.edge_values(x, idx, gamma, beta, w, 1e-5, 0, packed=False,
                                       stats=(mean, var, 420, False), full=True)
    y, s, t = vals["y"], vals["s"], vals["t"]
    d = x.gather(1, idx.reshape(2, -1, 1).expand(-1, -1, 37)).view(2, 30, 7, 37) - x.unsqueeze(2)
    q = torch.where(d * s + t >= 0, 1.0, -1.0)  # the training kernel's roundings
    torch.testing.assert_close(y, q @ w.T, rtol=1e-5, atol=1e-4)
    xs = torch.where(x >= 0, 1.0, -1.0)
    y = bm.XorEdgeLinear.apply(xs, idx, w, False)
    nbr = xs.gather(1, idx.reshape(2, -1, 1).expand(-1, -1, 37)).view(2, 30, 7, 37)
    prod = nbr * xs.unsqueeze(2)
    torch.testing.assert_close(y, prod @ (-w).T, rtol=1e-5, atol=1e-4)
