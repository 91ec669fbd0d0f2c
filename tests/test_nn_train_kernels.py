"""The training-side native kernels (csrc/train_float.*) against plain PyTorch computations and
their own PyTorch fallbacks (bingnn.nn._kernels), at every dispatch level, on odd shapes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn import _native
from bingnn.engine import kernels
from bingnn.nn import _kernels
from bingnn.nn.edge_batchnorm import edge_moments
from bingnn.nn.knn import gather_neighbors

LEVELS = kernels.cpu_features()["levels"]


def plain_extremes(edges: torch.Tensor):
    hi, r_hi = edges.max(dim=2)
    lo, r_lo = edges.min(dim=2)
    return hi, r_hi, lo, r_lo, edges.sum(dim=2)


def native_extremes(src, idx, level):
    with kernels.dispatch(level):
        return _kernels.neighbor_extremes(src, idx, with_sum=True)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 40), c=st.integers(1, 70), seed=st.integers(0, 999),
       ties=st.booleans())
def test_neighbor_extremes_match_torch(b: int, n: int, c: int, seed: int, ties: bool) -> None:
    g = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, n + 1, (1,), generator=g))
    u = torch.randn(b, n, c, generator=g)
    if ties:  # few distinct values: first-rank tie rule
        u = torch.randint(-2, 3, (b, n, c), generator=g).float()
    idx = torch.randint(0, n, (b, n, k), generator=g)
    want = plain_extremes(gather_neighbors(u, idx))
    for level in LEVELS:
        for src, ix in ((u, idx), (gather_neighbors(u, idx).contiguous(), None)):
            got = native_extremes(src, ix, level)
            for a, w in zip(got[:4], want[:4], strict=True):
                assert torch.equal(a, w), level
            torch.testing.assert_close(got[4], want[4], rtol=1e-5, atol=1e-5)


def test_neighbor_extremes_nan_is_extreme_like_torch() -> None:
    edges = torch.tensor([[[[1.0, 2.0], [float("nan"), 0.0], [3.0, float("nan")]]]])
    want = plain_extremes(edges)
    for level in LEVELS:
        got = native_extremes(edges, None, level)
        for a, w in zip(got[:4], want[:4], strict=True):
            assert torch.equal(a.isnan(), w.isnan()) and torch.equal(
                a.nan_to_num(7.0), w.nan_to_num(7.0)), level


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 40), c=st.integers(1, 70), seed=st.integers(0, 999))
def test_neighbor_scatter_sum_is_the_transposed_gather(b: int, n: int, c: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, n + 1, (1,), generator=g))
    grad = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    idx = torch.randint(0, n, (b, n, k), generator=g)
    u = torch.zeros(b, n, c, dtype=torch.float64, requires_grad=True)
    gather_neighbors(u, idx).sum(2).backward(grad)  # autograd of the neighbour sum
    for level in LEVELS:
        with kernels.dispatch(level):
            got = _kernels.neighbor_scatter_sum(grad.float(), idx)
        torch.testing.assert_close(got.double(), u.grad, rtol=1e-5, atol=1e-5)
    # The PyTorch fallback (float64 is never native) computes the same.
    torch.testing.assert_close(_kernels.neighbor_scatter_sum(grad, idx), u.grad)


def act(rel, v, alpha, slope):
    z = (rel + v.unsqueeze(1)) * alpha
    return z if slope is None else torch.where(z >= 0, z, z * slope)


@settings(max_examples=25, deadline=None)
@given(rows=st.integers(1, 150), k=st.integers(1, 9), c=st.integers(1, 40),
       seed=st.integers(0, 999), prelu=st.booleans(), offset=st.sampled_from([0.0, 50.0]))
def test_edge_act_stats_forward_and_backward(rows, k, c, seed, prelu, offset) -> None:
    g = torch.Generator().manual_seed(seed)
    rel = torch.randn(rows, k, c, generator=g) + offset
    v = torch.randn(rows, c, generator=g)
    alpha = torch.randn(c, generator=g)
    slope = torch.randn(c, generator=g) if prelu else None
    rank = torch.randint(0, k, (rows, c), generator=g)
    g_mean, g_var, g_sel = (torch.randn(c, generator=g), torch.randn(c, generator=g),
                            torch.randn(rows, c, generator=g))
    # Plain float64 reference with autograd.
    r64, v64, a64 = (t.double().requires_grad_() for t in (rel, v, alpha))
    s64 = slope.double().requires_grad_() if prelu else None
    h = act(r64, v64, a64, s64).reshape(-1, c)
    var, mean = torch.var_mean(h, dim=0, correction=0)
    sel = r64.gather(1, rank.unsqueeze(1)).squeeze(1)
    ((mean * g_mean).sum() + (var * g_var).sum() + (sel * g_sel).sum()).backward()
    m = rows * k
    for level in [*LEVELS, "torch"]:
        args = (rel, v, alpha, slope)
        if level == "torch":  # the fallback, forced by a dtype the kernels do not take
            args = tuple(None if t is None else t.double() for t in args)
            mean_g, var_g = _kernels.edge_act_stats(*args)
        else:
            with kernels.dispatch(level):
                mean_g, var_g = _kernels.edge_act_stats(*args)
        tol = dict(rtol=1e-4, atol=1e-4 * (1 + offset))
        torch.testing.assert_close(mean_g.double(), mean.detach(), **tol)
        torch.testing.assert_close(var_g.double(), var.detach(), rtol=1e-4, atol=1e-4)
        grads_in = (mean_g, g_mean / m, g_var * (2.0 / m), rank, g_sel)
        if level == "torch":
            grads_in = tuple(t.double() if t.is_floating_point() else t for t in grads_in)
            out = _kernels.edge_act_stats_backward(*args, *grads_in)
        else:
            with kernels.dispatch(level):
                out = _kernels.edge_act_stats_backward(*args, *grads_in)
        gr, gv, ga, gs = out
        torch.testing.assert_close(gr.double(), r64.grad, rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(gv.double(), v64.grad, rtol=1e-3, atol=1e-3)
        scale = 1e-3 * (1 + float(a64.grad.abs().max()))
        torch.testing.assert_close(ga.double(), a64.grad, rtol=1e-3, atol=scale)
        if prelu:
            torch.testing.assert_close(gs.double(), s64.grad, rtol=1e-3, atol=1e-3 * (1 + offset))


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 30), k=st.integers(1, 9), c=st.integers(1, 40),
       seed=st.integers(0, 999), offset=st.sampled_from([0.0, 50.0]))
def test_edge_moments_match_var_mean(b, n, k, c, seed, offset) -> None:
    g = torch.Generator().manual_seed(seed)
    rel = torch.randn(b, n, k, c, generator=g) + offset
    g_mean, g_var = torch.randn(c, generator=g), torch.randn(c, generator=g)
    r64 = rel.double().requires_grad_()
    var, mean = torch.var_mean(r64.reshape(-1, c), dim=0, correction=0)
    ((mean * g_mean).sum() + (var * g_var).sum()).backward()
    for level in LEVELS:
        r = rel.clone().requires_grad_()
        with kernels.dispatch(level):
            mean_f, var_f = edge_moments(r)
            ((mean_f * g_mean).sum() + (var_f * g_var).sum()).backward()
        torch.testing.assert_close(mean_f.double(), mean.detach(), rtol=1e-5,
                                   atol=1e-5 * (1 + offset))
        torch.testing.assert_close(var_f.double(), var.detach(), rtol=1e-4, atol=1e-5)
        # d var / d r = 2 (r - mean) / M: the float32 mean's rounding (an ulp of the offset)
        # enters every entry
        torch.testing.assert_close(r.grad.double(), r64.grad, rtol=1e-4,
                                   atol=1e-5 * (1 + offset))
    # Only the mean (or only the variance) used: the other gradient is absent, not garbage.
    r = rel.clone().requires_grad_()
    edge_moments(r)[0].sum().backward()
    torch.testing.assert_close(r.grad, torch.full_like(rel, 1.0 / rel[..., 0].numel()))


def test_edge_act_stats_levels_agree_bit_for_bit() -> None:
    """Scalar and AVX-512 paths add in the same order: identical statistics and gradients,
    whatever the thread count."""
    g = torch.Generator().manual_seed(3)
    rel, v = torch.randn(300, 7, 37, generator=g), torch.randn(300, 37, generator=g)
    alpha, slope = torch.randn(37, generator=g), torch.randn(37, generator=g)
    results = []
    for level in LEVELS:
        for threads in (1, 2, 3):
            with kernels.dispatch(level):
                mean, var = _native.edge_act_stats(rel.numpy(), v.numpy(), alpha.numpy(),
                                                   slope.numpy(), threads)
            results.append((mean, var))
    for mean, var in results[1:]:
        np.testing.assert_array_equal(mean, results[0][0])
        np.testing.assert_array_equal(var, results[0][1])


def test_bindings_refuse_bad_arguments() -> None:
    u = np.zeros((1, 5, 3), np.float32)
    out = [np.zeros((1, 5, 3), t) for t in (np.float32, np.int64, np.float32, np.int64)]
    with pytest.raises(ValueError, match="outside"):
        _native.neighbor_extremes(u, np.full((1, 5, 2), 5, np.int64), *out, None, 1)
    with pytest.raises(ValueError, match="wrong shape"):
        _native.neighbor_extremes(u, np.zeros((1, 5, 2), np.int64), out[0][:, :4], *out[1:],
                                  None, 1)
    with pytest.raises(ValueError, match="outside"):
        _native.neighbor_scatter_sum(u, np.full((1, 5, 2), -1, np.int64), out[0], 1)
    rel, v, a = np.zeros((2, 3, 4), np.float32), np.zeros((2, 4), np.float32), np.ones(
        4, np.float32)
    with pytest.raises(ValueError, match="wrong shape"):
        _native.edge_act_stats(rel, v[:1], a, None, 1)
    gr, gv = np.zeros_like(rel), np.zeros_like(v)
    with pytest.raises(ValueError, match="rank outside"):
        _native.edge_act_stats_backward(rel, v, a, None, a, a, a, np.full((2, 4), 3, np.int64),
                                        v, gr, gv, 1)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 30), c=st.integers(1, 70), seed=st.integers(0, 999))
def test_xor_edge_features_and_backward(b: int, n: int, c: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, n + 1, (1,), generator=g))
    x = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    idx = torch.randint(0, n, (b, n, k), generator=g)
    xr = x.clone().requires_grad_()
    want = gather_neighbors(xr, idx) * xr.unsqueeze(2)
    grad = torch.randn(want.shape, generator=g, dtype=torch.float64)
    want.backward(grad)
    got = _kernels.xor_edge_features(x.float(), idx)
    torch.testing.assert_close(got.double(), want.detach(), rtol=1e-6, atol=1e-6)
    gx = _kernels.xor_edge_features_backward(grad.float(), x.float(), idx)
    torch.testing.assert_close(gx.double(), xr.grad, rtol=1e-4, atol=1e-4)
    # The PyTorch fallbacks (float64 is never native) compute the same.
    torch.testing.assert_close(_kernels.xor_edge_features(x, idx), want.detach())
    torch.testing.assert_close(_kernels.xor_edge_features_backward(grad, x, idx), xr.grad)


@settings(max_examples=20, deadline=None)
@given(rows=st.integers(1, 60), k=st.integers(1, 9), c=st.integers(1, 40), seed=st.integers(0, 999))
def test_select_and_scatter_rank(rows: int, k: int, c: int, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    src = torch.randn(rows, k, c, generator=g)
    rank = torch.randint(0, k, (rows, c), generator=g)
    want = src.gather(1, rank.unsqueeze(1)).squeeze(1)
    assert torch.equal(_kernels.select_rank(src, rank), want)
    assert torch.equal(_kernels.select_rank(src.double(), rank), want.double())
    val = torch.randn(rows, c, generator=g)
    full = torch.zeros(rows, k, c).scatter_(1, rank.unsqueeze(1), val.unsqueeze(1))
    assert torch.equal(_kernels.scatter_rank(val, rank, k), full)
    assert torch.equal(_kernels.scatter_rank(val.double(), rank, k), full.double())


@pytest.mark.parametrize("m,n,c", [(1, 1, 1), (65, 9, 64), (130, 33, 200)])
def test_binary_gemm_f32_equals_int_gemm(m: int, n: int, c: int) -> None:
    from bingnn.engine.reference import binary_gemm, pack_bits

    rng = np.random.default_rng(m)
    a, b = pack_bits(rng.random((m, c)) < 0.5), pack_bits(rng.random((n, c)) < 0.5)
    out = np.empty((m, n), np.float32)
    for level in LEVELS:
        with kernels.dispatch(level):
            _native.binary_gemm_f32(a, b, c, out, 2)
        np.testing.assert_array_equal(out, binary_gemm(a, b, c).astype(np.float32))


# ---------------------------------------------------------------- RF edges and per-row kernels


def rf_reference(x, idx, gamma, beta, w, mode, clip, eps=1e-5):
    """Plain float64 autograd: BN over the edges of d = x_j - x_i, quantizer, linear map."""
    d = gather_neighbors(x, idx) - x.unsqueeze(2)
    flat = d.reshape(-1, d.shape[-1])
    var, mean = torch.var_mean(flat, dim=0, correction=0)
    z = (d - mean) * torch.rsqrt(var + eps) * gamma + beta
    if mode == 0:  # sign with the straight-through estimator
        q = torch.where(z >= 0, 1.0, -1.0).to(z.dtype) + (z - z.detach()) * (z.abs() <= clip)
    else:
        q = torch.tanh(z)
    return q, q @ w.t(), mean, var


def _quantized_edge(z: np.ndarray, mode: int, level: str) -> np.ndarray:
    """The fused kernel's quantizer of the edge values ``z`` (one edge per value: x_1 - x_0
    with s = 1, t = 0)."""
    x = np.stack([np.zeros_like(z), z])[None]
    idx = np.array([[[1], [0]]], np.int64)
    out = np.empty((1, 2, 1, z.size), np.float32)
    with kernels.dispatch(level):
        _native.edge_diff_quant(x, idx, np.ones_like(z), np.zeros_like(z), mode, out, None, 1)
    return out[0, 0, 0]


@pytest.mark.skipif("avx512" not in LEVELS, reason="this CPU has no AVX-512 (the only vector tanh)")
def test_vector_tanh_within_three_ulps_of_std_tanh() -> None:
    edge = np.float32([0.0, -0.0, 0.4, -0.4, np.nextafter(np.float32(0.4), np.float32(0)), 1e-30,
                       -1e-30, 1e-8, 9.0, 10.0, 10.5, 88.0, 1e30, np.inf, -np.inf, np.nan])
    z = np.concatenate([np.linspace(-12, 12, 100_001, dtype=np.float32), edge])
    ref, vec = _quantized_edge(z, 1, "scalar"), _quantized_edge(z, 1, "avx512")
    np.testing.assert_allclose(ref, np.tanh(z.astype(np.float64)), rtol=1e-6, atol=1e-7)
    fin = ~np.isnan(z)
    ulps = np.abs(ref[fin].view(np.int32).astype(np.int64) - vec[fin].view(np.int32))
    assert ulps.max() <= 3, float(z[fin][np.argmax(ulps)])
    assert np.array_equal(np.signbit(vec[fin]), np.signbit(ref[fin]))  # -0 stays -0
    assert np.isnan(vec[~fin]).all()
    assert np.array_equal(vec[np.abs(z) >= 10], np.sign(z[np.abs(z) >= 10]))


@pytest.mark.parametrize("mode", [0, 1])
@pytest.mark.parametrize("b,n,k,c,c_out", [(1, 5, 5, 3, 4), (2, 23, 6, 37, 19), (2, 40, 9, 70, 16)])
def test_rf_edge_kernels_match_autograd(mode, b, n, k, c, c_out) -> None:
    from bingnn.nn import edge_diff_quant

    g = torch.Generator().manual_seed(n + c + mode)
    x = torch.randn(b, n, c, generator=g)
    idx = torch.randint(0, n, (b, n, k), generator=g)
    gamma, beta = torch.randn(c, generator=g), torch.randn(c, generator=g)
    w = torch.where(torch.randn(c_out, c, generator=g) >= 0, 1.0, -1.0)
    rank = torch.randint(0, k, (b, n, c_out), generator=g)
    gsel = torch.randn(b, n, c_out, generator=g)
    xr, gr, br, wr = (t.double().requires_grad_() for t in (x, gamma, beta, w))
    q, y, mean, var = rf_reference(xr, idx, gr, br, wr, mode, 1.0)
    sel = y.gather(2, rank.unsqueeze(2)).squeeze(2)
    sel.backward(gsel.double())
    for level in LEVELS:
        with kernels.dispatch(level):
            for packed in ([False, True] if mode == 0 else [False]):
                vals = edge_diff_quant.edge_values(x, idx, gamma, beta, w, 1e-5, mode, packed,
                                                   full=True)  # any rank can be selected
                torch.testing.assert_close(vals["mean"].double(), mean.detach(), rtol=1e-5,
                                           atol=1e-5)
                torch.testing.assert_close(vals["var"].double(), var.detach(), rtol=1e-4,
                                           atol=1e-5)
                # Forward values: signs may differ only where z is within rounding of 0.
                close = (vals["y"].double() - y.detach()).abs() <= 1e-3
                assert close.float().mean() > 0.98, level
                xs, gs, bs, ws = (t.clone().requires_grad_() for t in (x, gamma, beta, w))
                out = edge_diff_quant.EdgeDiffSelect.apply(xs, idx, gs, bs, ws, rank, vals, mode,
                                                           1.0)
                out.backward(gsel)
                for got, want in ((xs.grad, xr.grad), (gs.grad, gr.grad), (bs.grad, br.grad),
                                  (ws.grad, wr.grad)):
                    scale = float(want.abs().max()) + 1e-6
                    assert (got.double() - want).abs().max() <= 0.02 * scale, level


def test_xor_edge_select_matches_autograd() -> None:
    from bingnn.nn import edge_diff_quant
    from bingnn.nn.binary_matmul import XorEdgeLinear

    g = torch.Generator().manual_seed(0)
    b, n, k, c, c_out = 2, 31, 7, 70, 21
    x = torch.where(torch.randn(b, n, c, generator=g) >= 0, 1.0, -1.0)
    idx = torch.randint(0, n, (b, n, k), generator=g)
    w = torch.randn(c_out, c, generator=g)
    rank = torch.randint(0, k, (b, n, c_out), generator=g)
    gsel = torch.randn(b, n, c_out, generator=g)
    xr, wr = x.double().requires_grad_(), w.double().requires_grad_()
    y = (gather_neighbors(xr, idx) * xr.unsqueeze(2)) @ (-wr).t()
    y.gather(2, rank.unsqueeze(2)).squeeze(2).backward(gsel.double())
    for level in LEVELS:
        with kernels.dispatch(level):
            xs, ws = x.clone().requires_grad_(), w.clone().requires_grad_()
            with torch.no_grad():
                yv = XorEdgeLinear.apply(xs, idx, ws, False)
            out = edge_diff_quant.XorEdgeSelect.apply(xs, idx, ws, rank, yv)
            torch.testing.assert_close(out.double(), y.gather(2, rank.unsqueeze(2)).squeeze(2),
                                       rtol=1e-5, atol=1e-4)
            out.backward(gsel)
            torch.testing.assert_close(xs.grad.double(), xr.grad, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(ws.grad.double(), wr.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows,c", [(1, 1), (37, 5), (300, 70), (1000, 16)])
@pytest.mark.parametrize("prelu", [True, False])
def test_rescale_prelu_kernels(rows: int, c: int, prelu: bool) -> None:
    from bingnn.nn.activations import rescale_prelu

    g = torch.Generator().manual_seed(rows + c)
    x = torch.randint(-3, 4, (rows, c), generator=g).float()  # exact zeros: the kink
    alpha, slope = torch.randn(c, generator=g), torch.randn(c, generator=g)
    gy = torch.randn(rows, c, generator=g)
    xr, ar, sr = (t.double().requires_grad_() for t in (x, alpha, slope))
    z = xr * ar
    want = torch.where(z >= 0, z, z * sr) if prelu else z
    want.backward(gy.double())
    for level in LEVELS:
        with kernels.dispatch(level):
            xs, as_, ss = (t.clone().requires_grad_() for t in (x, alpha, slope))
            out = rescale_prelu(xs, as_, ss if prelu else None)
            z32 = x * alpha
            assert torch.equal(out, torch.where(z32 >= 0, z32, z32 * slope) if prelu else z32)
            out.backward(gy)
            torch.testing.assert_close(xs.grad.double(), xr.grad, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(as_.grad.double(), ar.grad, rtol=1e-4, atol=1e-4)
            if prelu:
                torch.testing.assert_close(ss.grad.double(), sr.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("rows,c", [(2, 1), (37, 5), (300, 70)])
def test_batchnorm_rows_kernels(rows: int, c: int) -> None:
    from bingnn.nn.centering import _BatchNormRows

    g = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, c, generator=g) * 3 + 5
    x[:, 0] = 0.1  # a constant channel normalises to exactly 0
    w, bias = torch.randn(c, generator=g), torch.randn(c, generator=g)
    gy = torch.randn(rows, c, generator=g)
    xr, wr, br = (t.double().requires_grad_() for t in (x, w, bias))
    want = torch.nn.functional.batch_norm(xr, None, None, wr, br, True, 0.0, 1e-5)
    want.backward(gy.double())
    for level in LEVELS:
        with kernels.dispatch(level):
            xs, ws, bs = (t.clone().requires_grad_() for t in (x, w, bias))
            y, mean, var = _BatchNormRows.apply(xs, ws, bs, 1e-5)
            assert torch.equal(y[:, 0], bias[0].expand(rows))
            torch.testing.assert_close(y.double(), want, rtol=1e-4, atol=1e-4)
            y.backward(gy)
            for got, ref in ((xs.grad, xr.grad), (ws.grad, wr.grad), (bs.grad, br.grad)):
                torch.testing.assert_close(got.double(), ref, rtol=1e-3, atol=1e-3)


def _edge_diff_select_reference(x, idx, s, t, mean, invstd, mode, clip, gsel, rank, w, c1, c2):
    """numpy: the fused RF backward edge by edge, z in float32 as the kernels round it (so the
    signs and clip masks agree), everything after in float64."""
    b, n, c = x.shape
    k = idx.shape[2]
    d32 = x[np.arange(b)[:, None, None], idx] - x[:, :, None, :]
    z32 = d32 * s + t
    d, z = d32.astype(np.float64), z32.astype(np.float64)
    q = np.where(z32 >= 0, 1.0, -1.0) if mode == 0 else np.tanh(z)
    qg = (np.abs(z32) <= clip).astype(np.float64) if mode == 0 else 1.0 - np.tanh(z) ** 2
    bi, ii, oo = np.meshgrid(np.arange(b), np.arange(n), np.arange(w.shape[0]), indexing="ij")
    gq = np.zeros((b, n, k, c))
    np.add.at(gq, (bi, ii, rank), gsel[..., None].astype(np.float64) * w[oo].astype(np.float64))
    gw = np.einsum("bno,bnoc->oc", gsel.astype(np.float64), q[bi, ii, rank])
    gz = gq * qg
    xhat = (d - mean) * invstd
    sum_gz, sum_gzx = gz.sum((0, 1, 2)), (gz * xhat).sum((0, 1, 2))
    gd = s * (gz - c1 - xhat * c2)
    gx = np.zeros((b, n, c))
    np.add.at(gx, (np.arange(b)[:, None, None], idx), gd)
    gx -= gd.sum(2)
    return sum_gz, sum_gzx, gw, gx


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 20), k=st.integers(1, 25), c=st.integers(1, 40),
       c_out=st.integers(1, 20), mode=st.sampled_from([0, 1]), seed=st.integers(0, 999))
def test_edge_diff_select_backward_matches_numpy(b, n, k, c, c_out, mode, seed) -> None:
    """Odd channel counts, k >= n (repeated neighbours), self-loops, zero gradients."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, n, c)).astype(np.float32)
    idx = rng.integers(0, n, (b, n, k)).astype(np.int64)
    idx[:, :, 0] = np.arange(n)  # every point its own first neighbour, as in a k-NN graph
    s, t, mean = (rng.standard_normal(c).astype(np.float32) for _ in range(3))
    invstd = rng.uniform(0.5, 2.0, c).astype(np.float32)
    w = rng.standard_normal((c_out, c)).astype(np.float32)
    gsel = rng.standard_normal((b, n, c_out)).astype(np.float32)
    gsel[rng.random(gsel.shape) < 0.2] = 0.0
    rank = rng.integers(0, k, (b, n, c_out)).astype(np.int64)
    c1, c2 = (rng.standard_normal(c).astype(np.float32) for _ in range(2))
    want = _edge_diff_select_reference(x, idx, s, t, mean, invstd, mode, 1.0, gsel, rank, w,
                                       c1, c2)
    got = {}
    for level in LEVELS:
        gx, gw = np.empty((b, n, c), np.float32), np.empty((c_out, c), np.float32)
        with kernels.dispatch(level):
            sums = _native.edge_diff_select_backward(x, idx, s, t, mean, invstd, mode, 1.0,
                                                     gsel, rank, w, gx, gw, 1)
            _native.edge_diff_bn_correction(x, idx, s, mean, invstd, c1, c2, gx, 1)
            # without the optional outputs: the same sums
            alone = _native.edge_diff_select_backward(x, idx, s, t, mean, invstd, mode, 1.0,
                                                      gsel, rank, w, None, None, 2)
        got[level] = (*sums, gw, gx)
        for a, z in zip(sums, alone, strict=True):
            assert np.array_equal(a, z), level
        for g, r in zip(got[level], want, strict=True):
            scale = float(np.abs(r).max(initial=0.0)) + 1.0
            assert np.abs(g - r).max(initial=0.0) <= 2e-5 * scale * (k + c_out), level
    if mode == 0:  # the AVX-512 path does the scalar reference's operations in its order
        for level in LEVELS[1:]:
            for a, z in zip(got[LEVELS[0]], got[level], strict=True):
                assert np.array_equal(a, z), level


def test_edge_diff_select_backward_refuses_bad_arguments() -> None:
    x, idx = np.zeros((1, 4, 3), np.float32), np.zeros((1, 4, 2), np.int64)
    v, w = np.zeros(3, np.float32), np.zeros((5, 3), np.float32)
    gsel, rank = np.zeros((1, 4, 5), np.float32), np.zeros((1, 4, 5), np.int64)
    with pytest.raises(ValueError, match="rank outside"):
        _native.edge_diff_select_backward(x, idx, v, v, v, v, 0, 1.0, gsel, rank + 2, w, None,
                                          None, 1)
    with pytest.raises(ValueError, match="mode must be"):
        _native.edge_diff_select_backward(x, idx, v, v, v, v, 2, 1.0, gsel, rank, w, None,
                                          None, 1)
    with pytest.raises(ValueError, match="wrong shape"):
        _native.edge_diff_select_backward(x, idx, v, v, v, v, 0, 1.0, gsel, rank, w,
                                          np.zeros((1, 4, 2), np.float32), None, 1)
    with pytest.raises(ValueError, match="outside"):
        _native.edge_diff_bn_correction(x, idx + 4, v, v, v, v, v, np.zeros_like(x), 1)


def _near_roots(m: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(d, s, t)`` float32 with ``t = -fl(d * s)``: the exact ``d * s + t`` is the product's
    rounding error, whose sign a product rounded before the sum loses (it gives 0)."""
    rng = np.random.default_rng(seed)
    d = (rng.standard_normal(m) * 3).astype(np.float32)
    s = (rng.standard_normal(m) + 0.1).astype(np.float32)
    t = -(d * s)
    return d, s, t


@pytest.mark.parametrize("level", LEVELS)
def test_edge_diff_quant_fma_takes_the_sign_of_the_exact_value(level: str) -> None:
    """With fma the kernel's z is rounded once (PyTorch's eval-mode BatchNorm), so its sign is
    the exact sign of d * s + t; without, the product is rounded first."""
    c = 517  # not a multiple of 16 or 64
    d, s, t = _near_roots(c, 7)
    x = np.stack([np.zeros(c, np.float32), d])[None]  # point 0's only neighbour is point 1
    idx = np.array([[[1], [0]]], np.int64)
    exact = d.astype(np.float64) * s + t >= 0  # the product is exact in float64
    assert 0.2 < exact.mean() < 0.8  # the residuals' signs vary
    for fma in (True, False):
        out = np.empty((1, 2, 1, c), np.float32)
        bits = np.empty((2, (c + 63) // 64), np.uint64)
        with kernels.dispatch(level):
            _native.edge_diff_quant(x, idx, s, t, 0, out, bits, 1, fma)
        got = out[0, 0, 0] > 0
        packed = np.unpackbits(bits[0].view(np.uint8), bitorder="little")[:c].astype(bool)
        assert np.array_equal(packed, got)
        want = exact if fma else (d * s + t >= 0)
        assert np.array_equal(got, want), (level, fma)
    assert not np.array_equal(exact, d * s + t >= 0)  # the two roundings do differ here


def test_eval_affine_is_pytorch_batchnorm_bit_for_bit() -> None:
    """fma(x, scale, shift) with :func:`eval_affine`'s constants equals ``F.batch_norm`` in eval
    mode on the CPU, also at inputs next to the roots, where one rounding more flips signs."""
    from bingnn.nn.batchnorm_stats import eval_affine

    g = torch.Generator().manual_seed(3)
    c = 96
    bn = torch.nn.BatchNorm1d(c).eval()
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) * 3 + 0.05)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
        scale, shift = eval_affine(bn)
        x = torch.randn(4096, c, generator=g) * 3
        x[:512] = (-shift / scale).expand(512, c)  # at the roots ...
        x[512:1024] = torch.nextafter(x[:512], torch.full_like(x[:512], 10.0))  # ... and next
        want = torch.nn.functional.batch_norm(x, bn.running_mean, bn.running_var, bn.weight,
                                              bn.bias, False, 0.0, bn.eps)
    got = (x.double() * scale.double() + shift.double()).float()  # one rounding (fma)
    assert torch.equal(got, want)


@pytest.mark.parametrize("mode,packed", [(0, True), (0, False), (1, False)])
def test_rf_edge_extremes_by_tiles_equal_those_of_all_edges(mode, packed, monkeypatch) -> None:
    """Without the edge tensor (tiles of points, extremes only) the maxima, minima and their
    first ranks equal those of every edge's values; EdgeDiffSelect at those ranks gives the
    same values and gradients; a rank that is no extreme's is refused."""
    from bingnn.nn import edge_diff_quant

    monkeypatch.setattr(edge_diff_quant, "TILE_EDGES", 50)  # tiles of 5 points, one partial
    g = torch.Generator().manual_seed(11 + mode)
    b, n, k, c, c_out = 2, 23, 9, 70, 19
    x = torch.randn(b, n, c, generator=g)
    x[:, 1] = x[:, 0]  # equal edge values: ties, first rank
    idx = torch.randint(0, n, (b, n, k), generator=g)
    gamma, beta = torch.randn(c, generator=g), torch.randn(c, generator=g)
    w = torch.randn(c_out, c, generator=g)
    if packed:
        w = torch.where(w >= 0, 1.0, -1.0)
    full = edge_diff_quant.edge_values(x, idx, gamma, beta, w, 1e-5, mode, packed, full=True)
    tiled = edge_diff_quant.edge_values(x, idx, gamma, beta, w, 1e-5, mode, packed)
    assert tiled["y"] is None
    y = full["y"]
    hi, r_hi = y.max(dim=2)
    lo, r_lo = y.min(dim=2)
    for got, want in zip(tiled["extremes"], (hi, r_hi, lo, r_lo), strict=True):
        assert torch.equal(got, want)
    rank = torch.where(torch.rand(b, n, c_out, generator=g) < 0.5, r_hi, r_lo)
    gsel = torch.randn(b, n, c_out, generator=g)
    outs = []
    for vals in (full, tiled):
        xs, gs, bs, ws = (t.clone().requires_grad_() for t in (x, gamma, beta, w))
        out = edge_diff_quant.EdgeDiffSelect.apply(xs, idx, gs, bs, ws, rank, vals, mode, 1.0)
        out.backward(gsel)
        outs.append([out.detach(), xs.grad, gs.grad, bs.grad, ws.grad])
    for a, b_ in zip(*outs, strict=True):
        assert torch.equal(a, b_)
    other = (r_hi + 1) % k
    bad = (other != r_hi) & (other != r_lo)
    assert bool(bad.any())
    with pytest.raises(ValueError, match="neither the max's nor the min's"):
        edge_diff_quant.EdgeDiffSelect.apply(x, idx, gamma, beta, w, torch.where(bad, other, r_hi),
                                             tiled, mode, 1.0)
