"""Real-valued shortcuts (``BinDGCNN(shortcut=True)``, BF1 and BF2) in the engine: the exported
program keeps each EdgeConv's real value, adds the running shortcut sum and takes its signs;
every neighbour list and every bit equals PyTorch's, on both backends."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.engine import EngineModel, _ops, load
from bingnn.engine import reference as ref
from bingnn.export import export, fold
from bingnn.models._pointcloud import max_avg_pool
from tests.test_engine_parity import grid_points, make_model, perturb


def torch_trace(model, x: np.ndarray) -> dict[str, np.ndarray]:
    """The engine's trace values from the PyTorch model, shortcut stream included."""
    tr: dict[str, np.ndarray] = {}
    with torch.no_grad():
        h, feats, stream = torch.from_numpy(x), [], None
        for li, conv in enumerate(model.convs):
            pre, idx = conv.pre_activation(h)
            tr[f"r{li}"] = pre.numpy().copy()
            if stream is not None:
                pre = pre + stream.repeat(1, 1, pre.shape[-1] // stream.shape[-1])
                tr[f"s{li}"] = pre.numpy()
            stream = pre
            h = conv.quantize(pre)
            tr[f"idx{li}"], tr[f"x{li}"] = idx.numpy(), h.numpy()
            feats.append(h)
        e = model.embed_norm(model.embed(torch.cat(feats, dim=-1)))
        tr["pooled"] = max_avg_pool(e).numpy()
        tr["logits"] = model(torch.from_numpy(x)).numpy()
    return tr


def check(model, em: EngineModel, x: np.ndarray) -> dict[str, np.ndarray]:
    t, e = torch_trace(model, x), em.trace(x)
    for li in range(len(model.convs)):
        np.testing.assert_array_equal(e[f"idx{li}"], t[f"idx{li}"], err_msg=f"idx{li}")
        np.testing.assert_array_equal(e[f"r{li}"], t[f"r{li}"], err_msg=f"r{li}")
        if li:
            np.testing.assert_array_equal(e[f"s{li}"], t[f"s{li}"], err_msg=f"s{li}")
        np.testing.assert_array_equal(e[f"x{li}"], ref.pack_bits(t[f"x{li}"] >= 0),
                                      err_msg=f"bits of layer {li}")
    np.testing.assert_allclose(e["pooled"], t["pooled"], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(e["logits"], t["logits"], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(e["logits"].argmax(-1), t["logits"].argmax(-1))
    return e


@pytest.mark.parametrize("variant", ["bf1", "bf2"])
@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("seed", [41, 42])
def test_shortcut_parity(variant: str, native: bool, seed: int) -> None:
    """Perturbed statistics with negative scales and slopes (BF1 min channels, BF2 peaked
    channels) and an offset on BF2: values, sums, bits and graphs equal PyTorch's."""
    extra = {"max_offset": 0.37} if variant == "bf2" else {}  # not a float32 number
    model = perturb(make_model(variant, seed=seed, shortcut=True, **extra), seed)
    desc, arrays = fold(model)
    ops = [layer["op"] for layer in desc["layers"]]
    assert ops.count("xor_edge_conv_max") == 3 and ops.count("shortcut_add") == 3
    if variant == "bf1":  # channels whose max over the neighbours is a min after BatchNorm
        assert any((arrays[f"layer{i}.bn_scale"] < 0).any() for i in (1, 2, 3))
    else:  # channels whose value peaks inside the pre-activations' range
        keys = ("bias", "alpha", "slope", "bn_scale", "bn_shift", "offset")
        tables = [ref.chain_table(2 * model.convs[i].in_channels,
                                  *(arrays[f"layer{i}.{key}"] for key in keys))
                  for i in (1, 2, 3)]
        assert any(_ops.not_at_extremes(t, np.zeros(len(t), np.uint8)).size for t in tables)
    em = EngineModel(desc, arrays, native=native)
    check(model, em, grid_points(2, 48, seed=seed + 1))


def test_shortcut_changes_the_bits() -> None:
    """The shortcut sums, not the layers' own values, give the bits: dropping the shortcut
    (same weights) changes them, so the test above could not pass by ignoring it."""
    model = perturb(make_model("bf2", seed=43, shortcut=True), 43)
    x = grid_points(2, 48, seed=44)
    e = check(model, EngineModel(*fold(model)), x)
    plain = perturb(make_model("bf2", seed=43), 43)
    plain.load_state_dict(model.state_dict())
    assert not np.array_equal(e["x2"], EngineModel(*fold(plain)).trace(x)["x2"])


def test_shortcut_prelu_shift_real_first_layer_and_prediction(tmp_path) -> None:
    """With every other BF2 option (learned biases, real xyz weights) and through a written
    file: the predictions on float inputs equal PyTorch's."""
    model = perturb(make_model("bf2", seed=45, shortcut=True, prelu_shift=True,
                               first_layer_binary=False), 45)
    g = torch.Generator().manual_seed(46)
    with torch.no_grad():
        for conv in model.convs[1:]:
            conv.linear.bias.copy_(torch.randn(conv.out_channels, generator=g) * 4.0)
    path = export(model, tmp_path / "shortcut.bgnn")
    em = load(path)
    check(model, em, grid_points(3, 40, seed=47))
    x = np.random.default_rng(48).normal(size=(4, 50, 3)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(em.predict(x), want.argmax(-1))


def test_trained_shortcut_model_parity() -> None:
    """A few Adam steps with batch statistics, then eval: real BatchNorm statistics."""
    from bingnn.data.synthetic import make_synthetic_shapes

    x, y = make_synthetic_shapes(28, 48, seed=0)
    model = make_model("bf2", seed=49, shortcut=True).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y % 7)
    for step in range(4):
        sl = slice(14 * (step % 2), 14 * (step % 2) + 14)
        loss = torch.nn.functional.cross_entropy(model(xt[sl]), yt[sl])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    check(model, EngineModel(*fold(model)), grid_points(3, 48, seed=50))


def test_not_at_extremes_reference() -> None:
    """The channels flagged against a brute force over every pair of pre-activations: a channel
    is safe when, for every set, the max (min) over it is at its smallest or largest element."""
    rng = np.random.default_rng(51)
    table = rng.integers(-3, 4, size=(200, 6)).astype(np.float32)
    use_min = rng.integers(0, 2, size=200).astype(np.uint8)
    got = set(_ops.not_at_extremes(table, use_min).tolist())
    for c in range(200):
        t = -table[c] if use_min[c] else table[c]
        unsafe = any(t[m] > max(t[a], t[b]) for a in range(6) for b in range(a + 2, 6)
                     for m in range(a + 1, b))
        assert (c in got) == unsafe, c


def test_broken_shortcut_files_are_refused() -> None:
    """A shortcut wider than the value it is added to, or a table holding NaN: one clear
    error when the model is read, not garbage."""
    from bingnn.engine import ModelFileError

    desc, arrays = fold(make_model("bf2", seed=52, shortcut=True))
    bad = {**desc, "layers": [dict(layer) for layer in desc["layers"]]}
    add = next(layer for layer in bad["layers"] if layer["name"] == "add1")
    add["inputs"] = ["r0", "r1"]  # 16 channels plus a 16-channel shortcut: fine
    EngineModel(bad, arrays)
    add3 = next(layer for layer in bad["layers"] if layer["name"] == "add3")
    add3["inputs"] = ["r2", "r3"]  # a 64-channel shortcut on a 32-channel value
    with pytest.raises(ModelFileError, match="add3.*64 channels do not divide the 32"):
        EngineModel(bad, arrays)
    broken = dict(arrays)
    broken["layer2.alpha"] = arrays["layer2.alpha"].copy()
    broken["layer2.alpha"][3] = np.nan
    with pytest.raises(ModelFileError, match="layer2.alpha.*NaN"):
        EngineModel(desc, broken)


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(0, 40), c=st.integers(0, 70), half=st.integers(0, 40),
       seed=st.integers(0, 2**31 - 1))
def test_native_table_minmax_matches_the_reference(rows: int, c: int, half: int,
                                                   seed: int) -> None:
    """The native lookup against numpy: any row count (none included), channel count and
    table width, ties and negative values, max and min channels."""
    rng = np.random.default_rng(seed)
    n_bits = 2 * half
    table = rng.integers(-4, 5, size=(c, n_bits + 1)).astype(np.float32) * np.float32(0.75)
    use_min = rng.integers(0, 2, size=c).astype(np.uint8)
    ya = 2 * rng.integers(0, half + 1, size=(rows, c)).astype(np.int32) - n_bits
    yb = 2 * rng.integers(0, half + 1, size=(rows, c)).astype(np.int32) - n_bits
    want = _ops.table_minmax(ya, yb, table, use_min, False, None)
    got = _ops.table_minmax(ya, yb, table, use_min, True, 2)
    assert got.dtype == np.float32 and got.shape == (rows, c)
    np.testing.assert_array_equal(got, want)


def test_native_table_minmax_refuses_values_outside_the_table() -> None:
    from bingnn import _native

    table = np.zeros((3, 9), np.float32)
    use_min = np.zeros(3, np.uint8)
    ok = np.zeros((2, 3), np.int32)
    for bad in (10, -10, 3):  # |y| > n_bits = 8, or odd
        y = ok.copy()
        y[1, 2] = bad
        with pytest.raises(ValueError, match="outside the table"):
            _native.table_minmax(y, ok, table, use_min)
        with pytest.raises(ValueError, match="outside the table"):
            _native.table_minmax(ok, y, table, use_min)
    with pytest.raises(ValueError, match="table must have shape"):
        _native.table_minmax(ok, ok, np.zeros((3, 8), np.float32), use_min)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(1, 40), c_in=st.sampled_from([1, 8, 63, 64, 65, 130]),
       c_out=st.integers(1, 20), k=st.integers(1, 40), seed=st.integers(0, 2**31 - 1))
def test_fused_knn_minmax_matches_the_reference(b: int, n: int, c_in: int, c_out: int, k: int,
                                                seed: int) -> None:
    """One native pass (Hamming k-NN, then the max / min pre-activations) against the numpy
    k-NN and pre-activations: widths that are not a multiple of 64, k up to N."""
    from bingnn.engine import kernels as K

    k = min(k, n)
    rng = np.random.default_rng(seed)
    x = ref.pack_bits(rng.random((b, n, c_in)) < 0.5)
    w_rel = ref.pack_bits(rng.random((c_out, c_in)) < 0.5)
    w_self = ref.pack_bits(rng.random((c_out, c_in)) < 0.5)
    want_idx = ref.hamming_knn(x, k)
    y = ref.xor_edge_preact(x, want_idx, w_rel, w_self, c_in)
    for level in K.cpu_features()["levels"]:  # every compiled level this CPU runs
        with K.dispatch(level):
            ymax, ymin, idx = K.xor_edge_conv_knn_minmax(x, k, w_rel, w_self, c_in=c_in,
                                                         num_threads=2)
        np.testing.assert_array_equal(idx, want_idx, err_msg=level)
        np.testing.assert_array_equal(ymax, y.max(axis=2), err_msg=level)
        np.testing.assert_array_equal(ymin, y.min(axis=2), err_msg=level)


def test_fused_knn_minmax_refuses_k_above_n() -> None:
    from bingnn.engine import kernels as K

    x = ref.pack_bits(np.ones((1, 4, 8), bool))
    w = ref.pack_bits(np.ones((2, 8), bool))
    with pytest.raises(ValueError, match="k"):
        K.xor_edge_conv_knn_minmax(x, 5, w, w, c_in=8)
