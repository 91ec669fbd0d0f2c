import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.nn import edge_features, gather_neighbors, knn, knn_edge_index, pairwise_distance


def brute_force_knn(x: np.ndarray, k: int, metric: str) -> np.ndarray:
    """Loop reference: sort each row by (distance, index)."""
    b, n, _ = x.shape
    out = np.zeros((b, n, k), dtype=np.int64)
    for bi in range(b):
        for i in range(n):
            if metric == "hamming":
                d = [int(np.sum(x[bi, i] != x[bi, j])) for j in range(n)]
            elif metric == "l1":
                d = [float(np.abs(x[bi, i] - x[bi, j]).sum()) for j in range(n)]
            else:
                d = [float(((x[bi, i] - x[bi, j]) ** 2).sum()) for j in range(n)]
            out[bi, i] = sorted(range(n), key=lambda j: (d[j], j))[:k]
    return out


def test_hamming_distance_is_popcount_of_differing_bits():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(1, 7, 131))
    x = torch.tensor(np.where(bits == 1, 1.0, -1.0), dtype=torch.float32)
    d = pairwise_distance(x, "hamming")
    assert d.dtype == torch.int64
    packed = [int("".join(map(str, row)), 2) for row in bits[0]]
    for i in range(7):
        for j in range(7):
            assert d[0, i, j].item() == bin(packed[i] ^ packed[j]).count("1")


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 3), st.integers(1, 24), st.integers(1, 70), st.data(),
)
def test_hamming_knn_matches_brute_force_with_ties(b, n, c, data):
    k = data.draw(st.integers(1, n))
    seed = data.draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    # few channels and duplicate rows make ties frequent
    x = np.where(rng.integers(0, 2, size=(b, n, c)) == 1, 1.0, -1.0).astype(np.float32)
    if n > 2:
        x[:, 1] = x[:, 0]
    idx = knn(torch.from_numpy(x), k, "hamming")
    assert torch.equal(idx, torch.from_numpy(brute_force_knn(x, k, "hamming")))


@pytest.mark.parametrize("metric", ["l2", "l1"])
def test_float_knn_matches_brute_force(metric):
    x = np.random.default_rng(1).normal(size=(2, 30, 5)).astype(np.float32)
    idx = knn(torch.from_numpy(x), 6, metric)
    ref = brute_force_knn(x, 6, metric)
    # self first; sets equal to the reference (float rounding may swap near-equal pairs)
    assert torch.equal(idx[..., 0], torch.arange(30).expand(2, 30))
    assert (np.sort(idx.numpy(), -1) == np.sort(ref, -1)).mean() > 0.99


def test_knn_k_equals_n_returns_every_point():
    x = torch.randn(2, 9, 4)
    idx = knn(x, 9)
    assert torch.equal(idx.sort(-1).values, torch.arange(9).expand(2, 9, 9))


@pytest.mark.parametrize(
    "x, k, match",
    [
        (torch.randn(1, 5, 3), 6, "only 5 points"),
        (torch.randn(1, 5, 3), 0, "k must be >= 1"),
        (torch.randn(0, 5, 3), 1, "empty"),
        (torch.randn(2, 0, 3), 1, "empty"),
        (torch.randn(5, 3), 2, r"\(B, N, C\)"),
        (torch.tensor([[[0.0, float("nan")], [1.0, 1.0]]]), 1, "NaN"),
        (torch.tensor([[[0.0, float("inf")], [1.0, 1.0]]]), 1, "NaN or infinite"),
    ],
)
def test_knn_bad_inputs(x, k, match):
    with pytest.raises(ValueError, match=match):
        knn(x, k)


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown k-NN metric"):
        knn(torch.randn(1, 4, 2), 2, "cosine")


def test_edge_features_sub_and_xor():
    x = torch.tensor([[[1.0, -1.0], [-1.0, -1.0], [1.0, 1.0]]])
    idx = torch.tensor([[[0, 1], [1, 2], [2, 0]]])
    e = edge_features(x, idx, "xor")
    assert e.shape == (1, 3, 2, 4)
    # XOR of bits: +1 where they differ
    nb = gather_neighbors(x, idx)
    differ = torch.where(nb != x.unsqueeze(2), 1.0, -1.0)
    assert torch.equal(e[..., :2], differ)
    assert torch.equal(e[..., 2:], x.unsqueeze(2).expand(1, 3, 2, 2))
    s = edge_features(x, idx, "sub")
    assert torch.equal(s[..., :2], nb - x.unsqueeze(2))
    with pytest.raises(ValueError, match="unknown edge op"):
        edge_features(x, idx, "mul")


def test_knn_edge_index_offsets_batches():
    idx = torch.tensor([[[0, 1], [1, 0]], [[1, 0], [0, 1]]])
    ei = knn_edge_index(idx)
    # PyG's orientation: row 0 the neighbour (source), row 1 the centre (target)
    assert ei.tolist() == [[0, 1, 1, 0, 3, 2, 2, 3], [0, 0, 1, 1, 2, 2, 3, 3]]
    # so a PyG mean aggregation over it averages each point's k neighbours
    from torch_geometric.utils import scatter

    x = torch.tensor([[1.0], [3.0], [5.0], [7.0]])
    got = scatter(x[ei[0]], ei[1], dim=0, dim_size=4, reduce="mean")
    flat = (idx + torch.tensor([0, 2]).view(2, 1, 1)).reshape(4, 2)
    assert torch.equal(got, x[flat].mean(1))
