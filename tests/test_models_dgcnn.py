import pytest
import torch

from bingnn.models import DGCNN, STAGES, VARIANTS, BinDGCNN, build_model

SMALL = dict(num_classes=5, k=6, widths=(8, 8, 16, 16), emb_dims=32, mlp=(16, 8), dropout=0.5)


def _variants():
    for v in VARIANTS:
        for knn in (["l2"] if v == "rf" else ["hamming", "l2"]):
            for stage in STAGES:
                yield v, knn, stage


def test_dgcnn_forward_backward_and_graphs():
    m = DGCNN(**SMALL)
    x = torch.randn(3, 20, 3)
    logits, graphs = m(x, return_graphs=True)
    assert logits.shape == (3, 5)
    assert len(graphs) == 4
    assert torch.equal(graphs[0][0], x)
    for (feat, idx), c in zip(graphs, [3, 8, 8, 16], strict=True):
        assert feat.shape == (3, 20, c) and idx.shape == (3, 20, 6)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


def test_dgcnn_gradients_match_finite_differences():
    """Every parameter's gradient, projected on a random direction, equals the central finite
    difference of the loss (float64, eval mode; the k-NN graph is fixed for such small steps).
    A gradient that is present but zero or wrong fails here."""
    torch.manual_seed(0)
    m = DGCNN(**SMALL).double().eval()
    x = torch.randn(3, 20, 3, dtype=torch.float64)
    w = torch.randn(3, 5, dtype=torch.float64)

    def loss() -> torch.Tensor:
        return (m(x) * w).sum()

    loss().backward()
    eps = 1e-6
    for name, p in m.named_parameters():
        assert p.grad.abs().sum() > 0, name
        d = torch.randn_like(p)
        with torch.no_grad():
            p.add_(eps * d)
            up = loss()
            p.sub_(2 * eps * d)
            down = loss()
            p.add_(eps * d)
        fd = (up - down) / (2 * eps)
        torch.testing.assert_close((p.grad * d).sum(), fd, rtol=1e-5, atol=1e-7, msg=name)


@pytest.mark.parametrize("variant, knn, stage", list(_variants()))
def test_bindgcnn_every_variant_forward_backward(variant, knn, stage):
    m = BinDGCNN(variant=variant, knn=knn, stage=stage, **SMALL)
    x = torch.randn(2, 16, 3)
    logits, graphs = m(x, return_graphs=True)
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
    if variant != "rf":
        feats = graphs[1][0]
        if stage == 1:
            assert feats.abs().max() < 1  # tanh
        else:
            assert set(feats.unique().tolist()) <= {-1.0, 1.0}
    logits.pow(2).sum().backward()
    grads = [p.grad for p in m.convs[1].parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    m.eval()
    with torch.no_grad():
        assert torch.equal(m(x), m(x))  # deterministic in eval mode


def test_stage3_weights_are_binary_and_students_load_teachers():
    s1 = BinDGCNN(stage=1, **SMALL)
    s3 = BinDGCNN(stage=3, **SMALL)
    s3.load_state_dict(s1.state_dict())  # same parameter names at every stage
    w = s3.convs[2].linear.quantized_weight()
    assert set(w.unique().tolist()) <= {-1.0, 1.0}
    assert not s3.fc3.linear.binary_weights  # last layer real by default
    assert BinDGCNN(stage=3, last_layer_binary=True, **SMALL).fc3.linear.binary_weights


def test_hamming_graph_equals_knn_on_bits():
    m = BinDGCNN(variant="bf2", knn="hamming", stage=3, **SMALL).eval()
    _, graphs = m(torch.randn(2, 16, 3), return_graphs=True)
    from bingnn.nn import knn

    feats, idx = graphs[2]
    assert torch.equal(idx, knn(feats, 6, "hamming"))


def test_build_model_round_trip():
    m = BinDGCNN(variant="bf1_bal", balance="median", stage=2, **SMALL)
    m2 = build_model(m.config)
    assert m2.config == m.config
    m2.load_state_dict(m.state_dict())
    assert build_model(DGCNN(**SMALL).config).config["arch"] == "dgcnn"
    with pytest.raises(ValueError, match="unknown model arch"):
        build_model({"arch": "pointnet"})
    with pytest.raises(ValueError, match="invalid bindgcnn"):
        build_model({"arch": "bindgcnn", "depth": 3})


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(variant="bf3"), "unknown variant"),
        (dict(stage=4), "stage must be"),
        (dict(variant="rf", knn="hamming"), "use knn='l2'"),
        (dict(variant="bf2", balance="mean"), "_bal"),
        (dict(knn="cosine"), "knn must be"),
    ],
)
def test_bindgcnn_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BinDGCNN(**{**SMALL, **kwargs})


@pytest.mark.parametrize(
    "points, match",
    [
        (torch.randn(2, 16, 2), r"\(B, N, 3\)"),
        (torch.randn(2, 4, 3), "only 4 points"),
        (torch.full((1, 16, 3), float("nan")), "NaN"),
        (torch.zeros(0, 16, 3), "empty"),
    ],
)
def test_models_reject_bad_points(points, match):
    for m in (DGCNN(**SMALL), BinDGCNN(**SMALL)):
        with pytest.raises(ValueError, match=match):
            m(points)


def test_per_point_and_neighbor_rescaling():
    m = BinDGCNN(rescale_points=16, rescale_neighbors=True, **SMALL)
    assert m(torch.randn(2, 16, 3)).shape == (2, 5)
    with pytest.raises(ValueError, match="per-point"):
        m(torch.randn(2, 12, 3))
