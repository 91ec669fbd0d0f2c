"""LSP's pair distances (csrc/pair_distances.cpp via bingnn.distill.lsp_pairs): every dispatch
level against a float64 computation and against each other (equal bits), forward and
backward, on odd shapes with repeated neighbours and self-pairs; and the LSP loss on them
against the (B, N, N) matrix formulation they replace."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn import _native
from bingnn.distill import lsp_pairs
from bingnn.distill.lsp import lsp_loss_knn
from bingnn.engine import kernels

LEVELS = kernels.cpu_features()["levels"]


def reference(z: torch.Tensor, idx: torch.Tensor, mode: int) -> torch.Tensor:
    zj = torch.gather(z.unsqueeze(1).expand(-1, idx.shape[1], -1, -1), 2,
                      idx.unsqueeze(-1).expand(-1, -1, -1, z.shape[-1]))
    zi = z.unsqueeze(2)
    return ((zi - zj) ** 2).sum(-1) if mode == 0 else (zi * zj).sum(-1)


@settings(max_examples=30, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 30), k=st.integers(1, 12), c=st.integers(1, 70),
       mode=st.sampled_from([0, 1]), seed=st.integers(0, 10**6))
def test_pair_distances_and_backward_match_float64(b, n, k, c, mode, seed) -> None:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(b, n, c, generator=g)
    idx = torch.randint(0, n, (b, n, k), generator=g)  # repeats and self-pairs included
    grad = torch.randn(b, n, k, generator=g)
    grad[..., 0] = 0.0  # skipped pairs (a union's repeats) contribute nothing
    z64 = z.double().requires_grad_()
    want = reference(z64, idx, mode)
    (want * grad.double()).sum().backward()
    results = []
    for level in LEVELS:
        out = np.empty((b, n, k), np.float32)
        gz = np.full((b, n, c), np.nan, np.float32)
        with kernels.dispatch(level):
            _native.pair_distances(z.numpy(), idx.numpy(), mode, out, 1)
            _native.pair_distances_backward(z.numpy(), idx.numpy(), mode, grad.numpy(), gz, 2)
        scale = 1e-5 * (1 + c)
        np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-5, atol=scale)
        np.testing.assert_allclose(gz, z64.grad.numpy(), rtol=1e-4, atol=scale * k)
        results.append((out, gz))
    for out, gz in results[1:]:  # the same order of operations at every level
        assert np.array_equal(out, results[0][0]) and np.array_equal(gz, results[0][1])


def test_pair_distances_refuse_bad_arguments() -> None:
    z = np.zeros((2, 5, 3), np.float32)
    idx = np.zeros((2, 5, 4), np.int64)
    out = np.empty((2, 5, 4), np.float32)
    with pytest.raises(ValueError, match="outside"):
        _native.pair_distances(z, idx + 5, 0, out)
    with pytest.raises(ValueError, match="mode"):
        _native.pair_distances(z, idx, 2, out)
    with pytest.raises(ValueError, match="wrong shape"):
        _native.pair_distances(z, idx, 0, np.empty((2, 5, 3), np.float32))
    with pytest.raises(ValueError, match="wrong shape"):
        _native.pair_distances_backward(z, idx, 0, np.zeros((2, 5, 3), np.float32),
                                        np.empty((2, 5, 3), np.float32))


@pytest.mark.parametrize("kernels_", [("l2", "l2"), ("hamming", "l2"), ("hamming", "hamming")])
def test_lsp_loss_on_pairs_equals_the_matrix_formulation(kernels_, monkeypatch) -> None:
    """The loss and its gradient with the native pairs and with the (B, N, N) matrix path."""
    g = torch.Generator().manual_seed(5)
    b, n, c_s, c_t, k = 3, 41, 24, 16, 7
    s = torch.randn(b, n, c_s, generator=g)
    if kernels_[0] == "hamming":
        s = torch.where(s >= 0, 1.0, -1.0)
    t = torch.randn(b, n, c_t, generator=g)
    si, ti = (torch.randint(0, n, (b, n, k), generator=g) for _ in range(2))
    assert lsp_pairs._native_applies(s, si)  # the native path is what is compared
    runs = []
    for native in (True, False):
        if not native:
            monkeypatch.setattr(lsp_pairs, "_native_applies", lambda z, idx: False)
        x = s.clone().requires_grad_()
        loss = lsp_loss_knn(x, t, si, ti, *kernels_)
        loss.backward()
        runs.append((loss.detach(), x.grad))
    torch.testing.assert_close(runs[0][0], runs[1][0], rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(runs[0][1], runs[1][1], rtol=1e-3, atol=1e-6)
