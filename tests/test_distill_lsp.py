import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.distill.lsp import KERNELS, get_kernel, lsp_loss_edges, lsp_loss_knn
from bingnn.nn.knn import knn, knn_edge_index


def _np_dist(name, a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if "l2" in name:
        d = float(((a - b) ** 2).sum())
    else:
        d = float(0.5 * (1.0 - a * b).sum())
    return d * d if name.endswith("_sq") else d


def _kl_node(logit_t, logit_s):
    lt = np.asarray(logit_t, np.float64)
    ls = np.asarray(logit_s, np.float64)
    log_pt = lt - lt.max() - np.log(np.exp(lt - lt.max()).sum())
    log_ps = ls - ls.max() - np.log(np.exp(ls - ls.max()).sum())
    return float((np.exp(log_pt) * (log_pt - log_ps)).sum())


def reference_knn(s, t, s_idx, t_idx, ks, kt):
    """Plain loops: per node, union of neighbour sets, softmax of -d, KL(teacher || student)."""
    s, t = s.double().numpy(), t.double().numpy()
    total, count = 0.0, 0
    for b in range(s.shape[0]):
        for i in range(s.shape[1]):
            nbrs = sorted(set(s_idx[b, i].tolist()) | set(t_idx[b, i].tolist()))
            ls = [-_np_dist(ks, s[b, i], s[b, j]) for j in nbrs]
            lt = [-_np_dist(kt, t[b, i], t[b, j]) for j in nbrs]
            total += _kl_node(lt, ls)
            count += 1
    return total / count


def test_hand_computed():
    # 3 points with 1-D features; rbf_l2 distances are squared differences.
    s = torch.tensor([[[0.0], [1.0], [3.0]]])
    t = torch.tensor([[[0.0], [2.0], [2.0]]])
    s_idx = torch.tensor([[[0, 1], [1, 0], [2, 1]]])
    t_idx = torch.tensor([[[0, 1], [1, 2], [2, 1]]])
    # unions: node 0 {0, 1}; node 1 {0, 1, 2}; node 2 {1, 2}
    # student d: (0,1)=1 (1,2)=4 (0,2)=9; teacher d: (0,1)=4 (1,2)=0 (0,2)=4
    nodes = [([0, -1], [0, -4]), ([-1, 0, -4], [-4, 0, 0]), ([-4, 0], [0, 0])]

    def kl(ls, lt):
        zs = sum(math.exp(v) for v in ls)
        zt = sum(math.exp(v) for v in lt)
        return sum(
            math.exp(b) / zt * ((b - math.log(zt)) - (a - math.log(zs)))
            for a, b in zip(ls, lt, strict=True)
        )

    expected = sum(kl(ls, lt) for ls, lt in nodes) / 3
    got = lsp_loss_knn(s, t, s_idx, t_idx, "rbf_l2", "rbf_l2")
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # duplicates in the union count once: repeating the teacher's list changes nothing
    got2 = lsp_loss_knn(s, t, s_idx, torch.cat([t_idx, t_idx], -1), "rbf_l2", "rbf_l2")
    assert got2.item() == pytest.approx(expected, rel=1e-5)


def test_hand_computed_hamming():
    # +-1 features of 2 channels: relaxed Hamming = number of differing bits.
    s = torch.tensor([[[1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]]])
    t = torch.tensor([[[1.0, 1.0], [1.0, 1.0], [-1.0, 1.0]]])
    idx = torch.tensor([[[0, 1, 2]] * 3])
    # student Hamming: (0,1)=1 (0,2)=2 (1,2)=1 ; teacher: (0,1)=0 (0,2)=1 (1,2)=1
    ls = [[0, -1, -2], [-1, 0, -1], [-2, -1, 0]]
    lt = [[0, 0, -1], [0, 0, -1], [-1, -1, 0]]
    expected = sum(_kl_node(a, b) for b, a in zip(ls, lt, strict=True)) / 3
    got = lsp_loss_knn(s, t, idx, idx, "rbf_hamming", "rbf_hamming")
    assert got.item() == pytest.approx(expected, rel=1e-5)
    # squared kernel: distances squared
    ls2 = [[-(v * v) for v in r] for r in ls]
    lt2 = [[-(v * v) for v in r] for r in lt]
    expected2 = sum(_kl_node(a, b) for b, a in zip(ls2, lt2, strict=True)) / 3
    got2 = lsp_loss_knn(s, t, idx, idx, "rbf_hamming_sq", "rbf_hamming_sq")
    assert got2.item() == pytest.approx(expected2, rel=1e-5)


@settings(max_examples=25, deadline=None)
@given(
    b=st.integers(1, 2),
    n=st.integers(1, 9),
    cs=st.integers(1, 5),
    ct=st.integers(1, 5),
    ks_frac=st.floats(0.01, 1.0),
    kt_frac=st.floats(0.01, 1.0),
    kernel_s=st.sampled_from(sorted(KERNELS)),
    kernel_t=st.sampled_from(sorted(KERNELS)),
    seed=st.integers(0, 1000),
)
def test_matches_loop_reference(b, n, cs, ct, ks_frac, kt_frac, kernel_s, kernel_t, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(b, n, cs, generator=g, dtype=torch.float64)
    t = torch.randn(b, n, ct, generator=g, dtype=torch.float64)
    k1 = max(1, round(ks_frac * n))
    k2 = max(1, round(kt_frac * n))  # k == N (every point) included
    s_idx, t_idx = knn(s, k1), knn(t, k2, metric="l1")
    got = lsp_loss_knn(s, t, s_idx, t_idx, kernel_s, kernel_t)
    ref = reference_knn(s, t, s_idx, t_idx, kernel_s, kernel_t)
    assert got.item() == pytest.approx(ref, rel=1e-6, abs=1e-9)
    assert got.item() >= -1e-9
    # the edge-list form on the union graph gives the same number
    ei = torch.cat([knn_edge_index(s_idx), knn_edge_index(t_idx)], dim=1)
    got_e = lsp_loss_edges(s.reshape(b * n, cs), t.reshape(b * n, ct), ei, kernel_s, kernel_t)
    assert got_e.item() == pytest.approx(ref, rel=1e-6, abs=1e-9)


def test_zero_when_identical_and_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 10, 4)
    idx = knn(x, 4)
    assert lsp_loss_knn(x, x, idx, idx).item() == pytest.approx(0.0, abs=1e-7)
    s = torch.randn(2, 10, 4, requires_grad=True)
    t = torch.randn(2, 10, 6, requires_grad=True)
    loss = lsp_loss_knn(s, t, knn(s, 3), knn(t, 3), "rbf_l2", "rbf_l2")
    loss.backward()
    assert loss.item() > 0
    assert s.grad is not None and torch.isfinite(s.grad).all() and s.grad.abs().sum() > 0
    assert t.grad is None  # the teacher is fixed


def test_far_apart_is_stable():
    """Huge distances would underflow exp(); the log-space softmax keeps the loss finite."""
    s = torch.tensor([[[0.0], [100.0], [200.0]]], requires_grad=True)
    t = torch.tensor([[[0.0], [1.0], [300.0]]])
    idx = torch.tensor([[[0, 1, 2]] * 3])
    loss = lsp_loss_knn(s, t, idx, idx)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(s.grad).all()


def test_edges_general_graph():
    # PyG orientation (row 0 source j, row 1 centre i): node 2 has no incoming edge, so the
    # mean is over nodes 0 and 1 only; the repeated edge 2 -> 0 counts once
    s = torch.tensor([[0.0], [1.0], [3.0]])
    t = torch.tensor([[0.0], [2.0], [2.0]])
    ei = torch.tensor([[1, 2, 2, 0, 2], [0, 0, 0, 1, 1]])
    node0 = _kl_node([-4, -4], [-1, -9])
    node1 = _kl_node([-4, 0], [-1, -4])
    got = lsp_loss_edges(s, t, ei)
    assert got.item() == pytest.approx((node0 + node1) / 2, rel=1e-5)
    empty = lsp_loss_edges(s, t, torch.zeros(2, 0, dtype=torch.long))
    assert empty.item() == 0.0


def test_bad_inputs():
    x = torch.randn(1, 4, 2)
    idx = knn(x, 2)
    with pytest.raises(ValueError, match="unknown LSP kernel"):
        lsp_loss_knn(x, x, idx, idx, "cosine")
    with pytest.raises(ValueError, match="same point sets"):
        lsp_loss_knn(x, torch.randn(1, 5, 2), idx, idx)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        lsp_loss_knn(x, x, idx + 3, idx)
    with pytest.raises(ValueError, match="NaN"):
        lsp_loss_knn(x.clone().fill_(float("nan")), x, idx, idx)
    with pytest.raises(ValueError, match="3 dimensions"):
        lsp_loss_knn(x[0], x, idx, idx)
    with pytest.raises(ValueError, match="k = 0"):
        lsp_loss_knn(x, x, idx[..., :0], idx)
    with pytest.raises(ValueError, match="empty"):
        lsp_loss_knn(x[:, :0], x[:, :0], idx[:, :0], idx[:, :0])
    with pytest.raises(TypeError):
        lsp_loss_knn(x, x, idx.int(), idx)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        lsp_loss_edges(x[0], x[0], idx[0])
    with pytest.raises(ValueError, match="outside"):
        lsp_loss_edges(x[0], x[0], torch.tensor([[0], [7]]))
    assert get_kernel("hamming") is KERNELS["rbf_hamming"]
    with pytest.raises(TypeError):
        get_kernel(3)  # type: ignore[arg-type]
