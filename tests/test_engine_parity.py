"""Parity of the torch-free engine with ``BinDGCNN.eval()``: predictions, logits and every binary
intermediate (neighbour lists, packed node bits, classifier bits), for randomly initialised,
adversarially perturbed and briefly trained RF, BF1 and BF2 models, on both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bingnn.data.synthetic import make_synthetic_shapes
from bingnn.engine import EngineModel
from bingnn.engine import reference as ref
from bingnn.export import fold
from bingnn.models import BinDGCNN
from bingnn.models._pointcloud import max_avg_pool

VARIANTS = ("bf1", "bf2", "rf")
# emb_dims a multiple of 32: PyTorch sums such column groups in the order the engine copies.
SMALL = dict(k=5, widths=(16, 16, 32, 64), emb_dims=64, mlp=(40, 24))


def make_model(variant: str, seed: int = 0, **kw) -> BinDGCNN:
    torch.manual_seed(seed)
    opts = {**SMALL, **kw}
    return BinDGCNN(num_classes=7, variant=variant, knn="l2" if variant == "rf" else "hamming",
                    **opts).eval()


def perturb(model: BinDGCNN, seed: int, negative: bool = True) -> BinDGCNN:
    """Non-trivial BN statistics, rescale factors and PReLU slopes; with ``negative``, about a
    third of BN scales, rescales and slopes are negative (the cases that turn max into min
    or make the sign set an interval)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.randn(n, generator=g) + (0 if negative else 2.0))
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
            for name, p in m.named_parameters(recurse=False):
                if name == "channel_scale":
                    lo = -0.5 if negative else 0.2
                    p.copy_(torch.rand(p.shape, generator=g) * (1.5 - lo) + lo)
                elif name == "weight" and type(m).__name__ == "ChannelPReLU":
                    lo = -0.6 if negative else 0.0
                    p.copy_(torch.rand(p.shape, generator=g) * (0.8 - lo) + lo)
    return model.eval()


def grid_points(b: int, n: int, seed: int) -> np.ndarray:
    """Coordinates on a 2**-6 grid: every float32 sum in layer 0 is exact (and distance ties
    are frequent), so even the real first layer must match bit for bit."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-64, 65, size=(b, n, 3)) / 64.0).astype(np.float32)


def points_for(variant: str, b: int, n: int, seed: int) -> np.ndarray:
    """Grid points for BF (exact end to end); generic float points for RF, whose real layers
    agree with PyTorch to rounding only, so exact value ties on a grid would be sign hazards."""
    if variant == "rf":
        return np.random.default_rng(seed).normal(size=(b, n, 3)).astype(np.float32)
    return grid_points(b, n, seed)


def torch_trace(model: BinDGCNN, x: np.ndarray) -> dict[str, np.ndarray]:
    """The same intermediates as ``EngineModel.trace``, from the PyTorch model."""
    tr: dict[str, np.ndarray] = {}
    with torch.no_grad():
        h = torch.from_numpy(x)
        feats = []
        for li, conv in enumerate(model.convs):
            h, idx = conv(h, return_graph=True)
            tr[f"idx{li}"] = idx.numpy()
            tr[f"x{li}"] = h.numpy()
            feats.append(h)
        e = model.embed_norm(model.embed(torch.cat(feats, dim=-1)))
        g = max_avg_pool(e)
        tr["pooled"] = g.numpy()
        tr["fc1_bits"] = ref.pack_bits((model.fc1.center(g) >= 0).numpy())
        h1 = model.fc1(g)
        tr["fc2_bits"] = ref.pack_bits((model.fc2.center(h1) >= 0).numpy())
        tr["h2"] = model.fc2(h1).numpy()
        tr["logits"] = model.fc3(model.fc2(h1)).numpy()
    return tr


def check_trace(model: BinDGCNN, em: EngineModel, x: np.ndarray) -> None:
    t, e = torch_trace(model, x), em.trace(x)
    if model.variant != "rf":
        # Binary node features: every neighbour list and every bit equals PyTorch's.
        for li in range(len(model.convs)):
            np.testing.assert_array_equal(e[f"idx{li}"], t[f"idx{li}"], err_msg=f"idx{li}")
            np.testing.assert_array_equal(e[f"x{li}"], ref.pack_bits(t[f"x{li}"] >= 0),
                                          err_msg=f"bits of layer {li}")
        np.testing.assert_allclose(e["pooled"], t["pooled"], rtol=1e-5, atol=1e-5)
    else:
        # RF: layer 0 is real arithmetic (equal to rounding); every later layer, fed
        # PyTorch's real inputs and graph, is exact: edge bits, popcounts, rescale, PReLU, max.
        np.testing.assert_array_equal(e["idx0"], t["idx0"])
        np.testing.assert_allclose(e["x0"], t["x0"], rtol=1e-5, atol=1e-5)
        for li in range(1, len(model.convs)):
            prev = t[f"x{li - 1}"]
            (idx,) = em.run_layer(f"knn{li}", prev)
            np.testing.assert_array_equal(idx, t[f"idx{li}"], err_msg=f"idx{li}")
            (got,) = em.run_layer(f"layer{li}", prev, t[f"idx{li}"].astype(np.int32))
            np.testing.assert_array_equal(got, t[f"x{li}"], err_msg=f"x{li}")
        feats = {f"x{li}": t[f"x{li}"] for li in range(len(model.convs))}
        pooled = em.run_from(feats)["pooled"]
        np.testing.assert_allclose(pooled, t["pooled"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(e["logits"], t["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(e["logits"].argmax(-1), t["logits"].argmax(-1))
    # The classifier's bits, fed PyTorch's own pooled features: exact.
    head = em.run_from({"pooled": t["pooled"]})
    np.testing.assert_array_equal(head["fc1_bits"], t["fc1_bits"])
    np.testing.assert_array_equal(head["fc2_bits"], t["fc2_bits"])
    np.testing.assert_array_equal(head["h2"], t["h2"])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("native", [True, False])
def test_random_init_parity(variant: str, native: bool) -> None:
    model = make_model(variant, seed=1)
    desc, arrays = fold(model)
    em = EngineModel(desc, arrays, native=native)
    check_trace(model, em, points_for(variant, 3, 40, seed=2))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("seed", [3, 4])
def test_perturbed_parity_negative_scales(variant: str, seed: int) -> None:
    model = perturb(make_model(variant, seed=seed), seed)
    desc, arrays = fold(model)
    # The perturbation must reach the hard cases: BF1 min-instead-of-max channels, and
    # interval sign sets (negated predicates) somewhere.
    if variant == "bf1":
        assert any(arrays[f"layer{i}.out_negate"].any() for i in range(4))
    if variant == "bf2":
        assert any(arrays[f"layer{i}.p_negate"].any() for i in range(4))
    for native in (True, False):
        em = EngineModel(desc, arrays, native=native)
        check_trace(model, em, points_for(variant, 2, 48, seed=seed))


@pytest.mark.parametrize("variant", VARIANTS)
def test_float_inputs_parity(variant: str) -> None:
    """Unquantized float inputs: the real first layer follows PyTorch's float32 order of
    operations (left-to-right sums, fused BatchNorm), so the bits are still exact."""
    model = perturb(make_model(variant, seed=5), 5, negative=False)
    desc, arrays = fold(model)
    em = EngineModel(desc, arrays)
    x = np.random.default_rng(6).normal(size=(4, 50, 3)).astype(np.float32)
    check_trace(model, em, x)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    got = em.logits(x)
    np.testing.assert_array_equal(got.argmax(-1), want.argmax(-1))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(em.predict(x), want.argmax(-1))


@pytest.fixture(scope="module")
def trained() -> dict[str, BinDGCNN]:
    """Tiny models trained for a few Adam steps on synthetic shapes (real BN statistics)."""
    x, y = make_synthetic_shapes(42, 48, seed=0)
    out = {}
    for variant in VARIANTS:
        model = make_model(variant, seed=7)
        model.train()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y % 7)
        for step in range(6):
            sl = slice(14 * (step % 3), 14 * (step % 3) + 14)
            loss = torch.nn.functional.cross_entropy(model(xt[sl]), yt[sl])
            opt.zero_grad()
            loss.backward()
            opt.step()
        out[variant] = model.eval()
    return out


@pytest.mark.parametrize("variant", VARIANTS)
def test_trained_parity(trained: dict[str, BinDGCNN], variant: str) -> None:
    model = trained[variant]
    # Training moved the parameters off their initial values.
    assert not torch.allclose(model.fc1.center.running_mean, torch.zeros(1))
    desc, arrays = fold(model)
    em = EngineModel(desc, arrays)
    check_trace(model, em, points_for(variant, 3, 48, seed=8))
    x, _ = make_synthetic_shapes(6, 48, seed=9, split="test")
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(em.predict(x), want.argmax(-1))
    np.testing.assert_allclose(em.logits(x), want, rtol=1e-5, atol=1e-5)


def test_default_architecture_bf2_parity() -> None:
    """Full-size widths (64, 64, 128, 256) and emb 1024: the word-aligned concat path."""
    torch.manual_seed(11)
    model = perturb(BinDGCNN(num_classes=40, variant="bf2", k=20), 11)
    desc, arrays = fold(model)
    em = EngineModel(desc, arrays)
    check_trace(model, em, grid_points(2, 64, seed=12))


def test_single_cloud_and_proba() -> None:
    model = make_model("bf2", seed=13)
    em = EngineModel(*fold(model))
    x = grid_points(2, 30, seed=14)
    batch = em.logits(x)
    np.testing.assert_allclose(em.logits(x[1]), batch[1], rtol=1e-5, atol=1e-6)
    assert em.predict(x[0]).shape == ()
    p = em.predict_proba(x)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(p.argmax(-1), batch.argmax(-1))
    np.testing.assert_array_equal(em.predict(x.astype(np.float64)), batch.argmax(-1))


@pytest.mark.parametrize("variant", ["bf1", "bf2"])
def test_bf_with_l2_graphs(variant: str) -> None:
    """BF with knn="l2": squared L2 between +-1 vectors is 4x the Hamming distance, so the
    engine's Hamming graphs are the same graphs (ties included)."""
    torch.manual_seed(17)
    model = perturb(BinDGCNN(num_classes=5, variant=variant, knn="l2", **SMALL), 17)
    em = EngineModel(*fold(model))
    check_trace(model, em, grid_points(2, 40, seed=18))


@pytest.mark.parametrize("seed", [19, 20])
@pytest.mark.parametrize("native", [True, False])
def test_bf2_max_offset_parity(seed: int, native: bool) -> None:
    """BF2 with an offset after the neighbour max: folded into every layer's per-edge
    predicate, so the engine's bits and graphs still equal PyTorch's; the offset changes them."""
    model = perturb(make_model("bf2", seed=seed, max_offset=0.6), seed)
    desc, arrays = fold(model)
    em = EngineModel(desc, arrays, native=native)
    x = grid_points(2, 48, seed=seed + 1)
    check_trace(model, em, x)
    plain = perturb(make_model("bf2", seed=seed), seed)
    plain.load_state_dict(model.state_dict())
    bits = em.trace(x)["x1"]
    assert not np.array_equal(bits, EngineModel(*fold(plain), native=native).trace(x)["x1"])


@pytest.mark.parametrize("variant", ["bf1", "bf2"])
@pytest.mark.parametrize("native", [True, False])
def test_prelu_shift_parity(variant: str, native: bool) -> None:
    """prelu_shift (a real bias on every XOR layer's linear map): folded into the layers'
    integer predicates, so the engine's bits and graphs still equal PyTorch's; the biases
    change them."""
    model = perturb(make_model(variant, seed=29, prelu_shift=True), 29)
    g = torch.Generator().manual_seed(30)
    with torch.no_grad():
        for conv in model.convs[1:]:
            conv.linear.bias.copy_(torch.randn(conv.out_channels, generator=g) * 4.0)
    desc, arrays = fold(model)
    em = EngineModel(desc, arrays, native=native)
    x = grid_points(2, 48, seed=31)
    check_trace(model, em, x)
    with torch.no_grad():
        for conv in model.convs[1:]:
            conv.linear.bias.zero_()
    assert not np.array_equal(em.trace(x)["x1"], EngineModel(*fold(model), native=native)
                              .trace(x)["x1"])


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("native", [True, False])
def test_real_first_layer_parity(variant: str, native: bool) -> None:
    """first_layer_binary=False: the xyz layer keeps real weights in PyTorch and in the file;
    the engine's float32 xyz arithmetic reproduces it (BF: every bit and graph)."""
    model = perturb(make_model(variant, seed=23, first_layer_binary=False), 23)
    lin0, lin1 = ((c.block.linear if variant == "rf" else c.linear) for c in model.convs[:2])
    assert not lin0.binary_weights and lin1.binary_weights
    desc, arrays = fold(model)
    w = arrays["layer0.weight"]
    assert not np.isin(w, (-1.0, 1.0)).all()
    np.testing.assert_array_equal(w, lin0.weight.detach().numpy())
    em = EngineModel(desc, arrays, native=native)
    check_trace(model, em, points_for(variant, 2, 40, seed=24))
