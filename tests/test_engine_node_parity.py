"""Parity of the torch-free engine with ``BinSAGE.eval()`` / ``BinGCN.eval()``: predictions,
logits and every binary intermediate, on random graphs (isolated nodes, self-loops, duplicate
edges, a node with thousands of neighbours) and on Cora and CiteSeer, on both backends; node
subsets, sparse features, a reused graph, and one-line errors for bad inputs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm

import bingnn.engine
from bingnn.engine import EngineModel, Graph
from bingnn.engine import reference as ref
from bingnn.export import ExportError, export, fold
from bingnn.models import GCN, BinGCN, BinSAGE, GraphSAGE


def _planetoid_raw() -> Path | None:
    env = os.environ.get("BINGNN_SHARED_DATA")
    roots = [Path(env)] if env else []
    here = Path(__file__).resolve().parents[1]
    roots += [p / "shared" / "data" for p in here.parents]
    for r in roots:
        if (r / "planetoid" / "ind.cora.x").is_file():
            return r / "planetoid"
    return None


PLANETOID_RAW = _planetoid_raw()
needs_planetoid = pytest.mark.skipif(PLANETOID_RAW is None,
                                     reason="Planetoid raw files not available")


def perturb(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Non-trivial BatchNorm statistics, rescales, PReLU slopes and biases, about a third of
    them negative (negative scales flip thresholds; negative slopes make sign sets
    intervals)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.3)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.05)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.3)
            for name, p in m.named_parameters(recurse=False):
                if name == "channel_scale":
                    p.copy_(torch.rand(p.shape, generator=g) * 1.8 - 0.5)
                elif name == "weight" and type(m).__name__ == "ChannelPReLU":
                    p.copy_(torch.rand(p.shape, generator=g) * 1.4 - 0.6)
                elif name == "bias" and m is not None and p.dim() == 1:
                    p.copy_(torch.randn(p.shape, generator=g) * 0.5)
    return model.eval()


def random_graph(n: int, e: int, seed: int, hub: int = 0) -> np.ndarray:
    """Random directed edges plus self-loops, duplicates, isolated nodes (the last tenth of
    the nodes neither send nor receive) and optionally one node with ``hub`` in-edges."""
    rng = np.random.default_rng(seed)
    live = max(2, n - n // 10)
    src = rng.integers(0, live, e)
    dst = rng.integers(0, live, e)
    loops = rng.integers(0, live, max(1, e // 20))
    dup = rng.integers(0, e, max(1, e // 10))
    src = np.concatenate([src, loops, src[dup]])
    dst = np.concatenate([dst, loops, dst[dup]])
    if hub:
        src = np.concatenate([src, rng.integers(0, live, hub)])
        dst = np.concatenate([dst, np.zeros(hub, np.int64)])
    return np.stack([src, dst]).astype(np.int64)


def features(n: int, f: int, seed: int, binary: bool) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if binary:
        return (rng.random((n, f)) < 0.15).astype(np.float32)
    return rng.normal(size=(n, f)).astype(np.float32)


def torch_trace(model: torch.nn.Module, x: np.ndarray, ei: np.ndarray) -> dict[str, np.ndarray]:
    """The engine's named intermediates, computed by the PyTorch model's own modules."""
    tr: dict[str, np.ndarray] = {}
    h = torch.from_numpy(x)
    edge_index = torch.from_numpy(ei)
    n = len(model.convs)
    with torch.no_grad():
        for i, conv in enumerate(model.convs):
            if isinstance(model, BinSAGE) and i > 0 and conv.sign_messages:
                m = conv.lin_l.input_quantizer(conv.lin_l.center(h))
                tr[f"m{i}_l"] = ref.pack_bits((m >= 0).numpy())
                agg = conv.propagate(edge_index, x=(m, None), size=(h.size(0), h.size(0)))
                tr[f"b{i}_l"] = ref.pack_bits((agg >= 0).numpy())
                tr[f"b{i}_r"] = ref.pack_bits((conv.lin_r.center(h) >= 0).numpy())
            elif isinstance(model, BinSAGE) and i > 0:
                agg = conv.propagate(edge_index, x=(h, h), size=None)
                tr[f"a{i}"] = agg.numpy()
                tr[f"b{i}_l"] = ref.pack_bits((conv.lin_l.center(agg) >= 0).numpy())
                tr[f"b{i}_r"] = ref.pack_bits((conv.lin_r.center(h) >= 0).numpy())
            if isinstance(model, BinGCN) and i > 0:
                c = conv.block.center(h)
                tr[f"b{i}"] = ref.pack_bits((c >= 0).numpy())
                if conv.node_scale:
                    tr[f"beta{i}"] = c.abs().mean(dim=-1).numpy()
            out = conv(h, edge_index)
            if i == n - 1:
                tr["logits"] = out.numpy()
            else:
                h = model.acts[i](out)
                tr[f"h{i}"] = h.numpy()
    return tr


def check(model: torch.nn.Module, em: EngineModel, x: np.ndarray, ei: np.ndarray, *,
          exact_layer0: bool) -> None:
    t, e = torch_trace(model, x, ei), em.trace(x, ei)
    scale = max(1.0, float(np.abs(t["logits"]).max()))
    for key, want in t.items():
        got = e[key]
        if re.fullmatch(r"[bm]\d+(_[lr])?", key):  # every bit of every binary layer
            np.testing.assert_array_equal(got, want, err_msg=key)
        elif exact_layer0:
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:  # float32 rounding of the first layer's real arithmetic
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * scale, err_msg=key)
    # The fused pass (what predict runs) computes the very same numbers as the traced one.
    np.testing.assert_array_equal(em.logits(x, ei), e["logits"])
    np.testing.assert_array_equal(em.predict(x, ei), t["logits"].argmax(-1))


def make(arch: str, f: int, hidden: int, classes: int, layers: int, seed: int, **kw):
    torch.manual_seed(seed)
    cls = BinSAGE if arch == "sage" else BinGCN
    return perturb(cls(f, hidden, layers, classes, dropout=0.0, **kw), seed)


@pytest.mark.parametrize("arch", ["sage", "gcn"])
@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("binary_x", [True, False])
def test_random_graph_parity(arch: str, native: bool, binary_x: bool) -> None:
    model = make(arch, 37, 70, 5, 3, seed=1)
    em = EngineModel(*fold(model), native=native)
    ei = random_graph(300, 1500, seed=2)
    x = features(300, 37, seed=3, binary=binary_x)
    # GCN's first layer on 0/1 features is integer arithmetic: exact end to end.
    check(model, em, x, ei, exact_layer0=binary_x and arch == "gcn")


@pytest.mark.parametrize("native", [True, False])
@pytest.mark.parametrize("centering", ["batchnorm", "mean"])
def test_sign_messages_parity(monkeypatch, native: bool, centering: str) -> None:
    """GraphSAGE with sign messages: the majority votes (``b*_l``), every other bit and the
    logits equal PyTorch's, with isolated nodes (all ones), self-loops, duplicates, ties (even
    degrees) and a hub of 600 in-edges (wider counters than a byte)."""
    model = make("sage", 37, 70, 5, 3, seed=21, centering=centering, sign_messages=True)
    assert all(c.sign_messages for c in model.convs[1:]) and not model.convs[0].sign_messages
    desc, arrays = fold(model)
    assert [ly["op"] for ly in desc["layers"]].count("majority") == 2
    assert not any(ly["op"] == "aggregate" and ly["name"] != "conv0_aggr"
                   for ly in desc["layers"])
    em = EngineModel(desc, arrays, native=native)
    ei = random_graph(400, 1600, seed=22, hub=600)
    x = features(400, 37, seed=23, binary=True)
    check(model, em, x, ei, exact_layer0=False)
    nodes = np.array([0, 5, 399, 17])
    full = em.logits(x, ei)
    np.testing.assert_array_equal(em.logits(x, ei, nodes=nodes), full[nodes])
    # The first layer's aggregate writes both sets of signs of its rows and never stores the
    # float rows (two thresholds with BatchNorm, two identical mean signs otherwise).
    from bingnn.engine import _graph_ops

    kept, real = [], _graph_ops.aggregate

    def aggregate(*args, **kwargs):
        kept.append((kwargs.get("keep_rows", True), kwargs.get("signs2") is not None))
        return real(*args, **kwargs)

    monkeypatch.setattr(_graph_ops, "aggregate", aggregate)
    np.testing.assert_array_equal(em.logits(x, ei), full)
    assert kept == [(False, True)]


@pytest.mark.parametrize("arch", ["sage", "gcn"])
@pytest.mark.parametrize("centering", ["mean", "median", "none"])
def test_per_node_centerings(arch: str, centering: str) -> None:
    """The Planetoid recipe centres hidden layers by their per-node mean (ATen's summation
    order is reproduced, so even the signs next to the mean agree)."""
    model = make(arch, 29, 33, 4, 3, seed=4, centering=centering)
    em = EngineModel(*fold(model))
    ei = random_graph(200, 900, seed=5)
    # GraphSAGE's first layer averages 0/1 features before PyTorch's BLAS sums them, so a sum
    # the engine computes exactly as 0 can come out as +-1e-9 in PyTorch; a sign taken right
    # at 0 (no centring) would then differ. Real features have no such exact cancellations.
    binary = arch == "gcn" or centering != "none"
    check(model, em, features(200, 29, seed=6, binary=binary), ei,
          exact_layer0=arch == "gcn")


@pytest.mark.parametrize("arch,alive", [("sage", [2, 0, 0]), ("gcn", [1, 0, 0])])
def test_a_pass_releases_values_no_later_layer_reads(monkeypatch, arch: str,
                                                     alive: list[int]) -> None:
    """Memory stays at the live values: when a later layer's aggregate runs, the first
    layer's sums (read only by the first aggregate) are gone, and the logits are unchanged."""
    import weakref

    from bingnn.engine import _graph_ops

    model = make(arch, 37, 70, 5, 3, seed=1)
    em = EngineModel(*fold(model))
    ei = random_graph(300, 1500, seed=2)
    x = features(300, 37, seed=3, binary=True)
    want = em.logits(x, ei)
    made: list[weakref.ref] = []
    seen: list[int] = []
    real_linear, real_aggregate = _graph_ops.signed_linear, _graph_ops.aggregate

    depth = [0]

    def signed_linear(*args, **kwargs):
        depth[0] += 1  # a list of weights recurses: record the outermost results only
        try:
            out = real_linear(*args, **kwargs)
        finally:
            depth[0] -= 1
        if depth[0] == 0:
            made.extend(weakref.ref(z) for z in (out if isinstance(out, list) else [out]))
        return out

    def aggregate(*args, **kwargs):
        seen.append(sum(r() is not None for r in made))
        return real_aggregate(*args, **kwargs)

    monkeypatch.setattr(_graph_ops, "signed_linear", signed_linear)
    monkeypatch.setattr(_graph_ops, "aggregate", aggregate)
    got = em.logits(x, ei)
    assert seen == alive
    np.testing.assert_array_equal(got, want)
    # Tracing keeps every value (nothing is released).
    made.clear()
    trace = em.trace(x, ei)
    assert trace and made and all(r() is not None for r in made)


def test_hub_node_with_thousands_of_neighbours() -> None:
    model = make("sage", 16, 64, 3, 2, seed=7)
    em = EngineModel(*fold(model))
    ei = random_graph(5000, 8000, seed=8, hub=4000)
    assert np.bincount(ei[1]).max() > 4000
    check(model, em, features(5000, 16, seed=9, binary=True), ei, exact_layer0=False)
    model = make("gcn", 16, 64, 3, 2, seed=7)
    check(model, EngineModel(*fold(model)), features(5000, 16, seed=9, binary=True), ei,
          exact_layer0=True)


@pytest.mark.parametrize("arch", ["sage", "gcn"])
def test_single_layer_and_no_node_scale(arch: str) -> None:
    kw = {"node_scale": False} if arch == "gcn" else {}
    for layers in (1, 2):
        model = make(arch, 12, 20, 3, layers, seed=10, **kw)
        ei = random_graph(80, 300, seed=11)
        check(model, EngineModel(*fold(model)), features(80, 12, 12, True), ei,
              exact_layer0=arch == "gcn")


@pytest.mark.parametrize("arch", ["sage", "gcn"])
def test_node_subsets_sparse_inputs_and_graph_reuse(arch: str, tmp_path) -> None:
    model = make(arch, 40, 32, 6, 3, seed=13)
    path = export(model, tmp_path / "m.bgnn", class_names=[f"c{i}" for i in range(6)])
    em = bingnn.engine.load(path)
    assert em.task == "node_classification" and em.num_points is None and em.k is None
    ei = random_graph(400, 2000, seed=14)
    x = features(400, 40, seed=15, binary=True)
    full = em.logits(x, ei)
    nodes = np.array([7, 3, 399, 3, 0])
    np.testing.assert_array_equal(em.logits(x, ei, nodes=nodes), full[nodes])
    mask = np.zeros(400, bool)
    mask[[5, 6, 390]] = True
    np.testing.assert_array_equal(em.predict(x, ei, nodes=mask), full[mask].argmax(-1))
    assert em.logits(x, ei, nodes=np.zeros(0, np.int64)).shape == (0, 6)
    g = Graph(ei, 400)
    np.testing.assert_array_equal(em.logits(x, g), full)
    scipy_sparse = pytest.importorskip("scipy.sparse")
    np.testing.assert_array_equal(em.logits(scipy_sparse.csr_matrix(x), ei), full)
    np.testing.assert_array_equal(em.logits(scipy_sparse.coo_matrix(x), g, nodes=nodes),
                                  full[nodes])
    p = em.predict_proba(x, ei)
    np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)


def test_empty_graph_and_no_edges() -> None:
    model = make("gcn", 8, 16, 3, 2, seed=16)
    em = EngineModel(*fold(model))
    assert em.logits(np.zeros((0, 8), np.float32), np.zeros((2, 0), np.int64)).shape == (0, 3)
    x = features(10, 8, 17, True)
    check(model, em, x, np.zeros((2, 0), np.int64), exact_layer0=True)
    model = make("sage", 8, 16, 3, 2, seed=16)
    check(model, EngineModel(*fold(model)), x, np.zeros((2, 0), np.int64), exact_layer0=False)


@pytest.mark.parametrize("bad_x,bad_ei,err,match", [
    (None, np.array([[0, 1], [2, 10]]), ValueError, "refers to node 10 but the graph has 10"),
    (None, np.array([[0, -1], [2, 3]]), ValueError, "negative"),
    (None, np.array([[0.0, 1.0], [2.0, 3.0]]), TypeError, "integer node indices"),
    (None, np.zeros((3, 4), np.int64), ValueError, r"shape \(2, E\)"),
    (None, np.zeros((4, 2), np.int64), ValueError, "transpose"),
    (None, torch.zeros(2, 3, dtype=torch.long), TypeError, "numpy"),
    (np.zeros((10, 7), np.float32), None, ValueError, "trained on 8"),
    (np.zeros((10,), np.float32), None, ValueError, r"\(N, 8\)"),
    (np.zeros((10, 8), np.int64), None, TypeError, "float"),
    (np.full((10, 8), np.nan, np.float32), None, ValueError, "NaN"),
    (np.full((10, 8), 1e300), None, ValueError, "too large"),
    (torch.zeros(10, 8), None, TypeError, "numpy"),
])
def test_bad_inputs_give_one_clear_error(bad_x, bad_ei, err, match) -> None:
    em = EngineModel(*fold(make("sage", 8, 16, 3, 2, seed=18)))
    x = bad_x if bad_x is not None else features(10, 8, 19, True)
    ei = bad_ei if bad_ei is not None else random_graph(10, 20, 20)
    with pytest.raises(err, match=match) as info:
        em.predict(x, ei)
    assert len(str(info.value).splitlines()) == 1
    with pytest.raises(TypeError, match="node-classification model"):
        em.predict(features(10, 8, 19, True))
    with pytest.raises(ValueError, match="outside"):
        em.predict(features(10, 8, 19, True), random_graph(10, 20, 20), nodes=[3, 10])


@pytest.mark.parametrize("make_model,match", [
    (lambda: BinSAGE(8, 16, 2, 3, stage=2), "stage 2"),
    (lambda: GraphSAGE(8, 16, 2, 3), "stage 0"),
    (lambda: GCN(8, 16, 2, 3), "stage 0"),
    (lambda: BinSAGE(8, 16, 2, 3, binary_last=False), "binary_last"),
    (lambda: BinSAGE(8, 16, 2, 3, aggr="max"), "aggr='max'"),
])
def test_unsupported_node_models_refused(make_model, match, tmp_path) -> None:
    with pytest.raises(ExportError, match=match):
        export(make_model(), tmp_path / "x.bgnn")
    assert not (tmp_path / "x.bgnn").exists()


def test_gcn_norm_weights_match_pyg() -> None:
    ei = random_graph(500, 3000, seed=21, hub=700)
    g = Graph(ei, 500)
    indptr, indices, w = g.gcn(1.0)
    ei2, w2 = gcn_norm(torch.from_numpy(ei), None, 500, False, True, "source_to_target",
                       torch.float32)
    order = np.argsort(ei2[1].numpy(), kind="stable")
    np.testing.assert_array_equal(indices, ei2[0].numpy()[order])
    np.testing.assert_array_equal(w, w2.numpy()[order])
    np.testing.assert_array_equal(np.diff(indptr), np.bincount(ei2[1].numpy(), minlength=500))


# ------------------------------------------------------------------------ Cora and CiteSeer


def _train(model: torch.nn.Module, data, epochs: int = 10) -> torch.nn.Module:
    """A few full-batch Adam steps: real BatchNorm statistics and weights off their init."""
    import warnings

    from torch_geometric.utils import to_torch_csr_tensor

    with warnings.catch_warnings():  # PyG's beta notice about sparse CSR tensors
        warnings.simplefilter("ignore", UserWarning)
        adj_t = to_torch_csr_tensor(data.edge_index.flip(0), size=(data.num_nodes,) * 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    model.train()
    for _ in range(epochs):
        out = model(data.x, adj_t)
        loss = torch.nn.functional.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.eval()


@pytest.fixture(scope="module")
def planetoid(tmp_path_factory):
    from bingnn.graphs.datasets import load_node_dataset

    root = tmp_path_factory.mktemp("planetoid")
    return {name: load_node_dataset(name, root, raw_dir=str(PLANETOID_RAW)).data
            for name in ("cora", "citeseer")}


@needs_planetoid
@pytest.mark.parametrize("name", ["cora", "citeseer"])
@pytest.mark.parametrize("arch,centering", [("sage", "batchnorm"), ("gcn", "batchnorm"),
                                            ("sage", "mean"), ("gcn", "mean")])
def test_planetoid_parity(planetoid, name: str, arch: str, centering: str, tmp_path) -> None:
    data = planetoid[name]
    torch.manual_seed(0)
    cls = BinSAGE if arch == "sage" else BinGCN
    model = _train(cls(data.num_features, 64, 2, int(data.y.max()) + 1,
                       centering=centering), data)
    em = bingnn.engine.load(export(model, tmp_path / "m.bgnn"))
    x, ei = data.x.numpy(), data.edge_index.numpy()
    check(model, em, x, ei, exact_layer0=False)
    # Raw 0/1 bag-of-words features: GCN is then exact from the first layer on.
    raw = (x > 0).astype(np.float32)
    check(model, em, raw, ei, exact_layer0=arch == "gcn")
    with torch.no_grad():
        acc = (model(data.x, data.edge_index).argmax(-1) == data.y)[data.test_mask].float()
    assert float(acc.mean()) > 0.3  # trained: far above chance
    np.testing.assert_array_equal(em.predict(x, ei, nodes=data.test_mask.numpy()),
                                  em.predict(x, ei)[data.test_mask.numpy()])


def test_node_engine_runs_without_torch(tmp_path) -> None:
    model = make("gcn", 8, 16, 3, 2, seed=22)
    path = export(model, tmp_path / "m.bgnn")
    x, ei = features(20, 8, 23, True), random_graph(20, 60, 24)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "ei.npy", ei)
    script = f"""
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, _Block())
import numpy as np
import bingnn.engine
m = bingnn.engine.load({str(path)!r})
p = m.predict(np.load({str(tmp_path / "x.npy")!r}), np.load({str(tmp_path / "ei.npy")!r}))
print(" ".join(map(str, p.tolist())), "torch" in sys.modules)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    *labels, torch_loaded = out.stdout.split()
    assert torch_loaded == "False"
    with torch.no_grad():
        want = model(torch.from_numpy(x), torch.from_numpy(ei)).argmax(-1).tolist()
    assert [int(v) for v in labels] == want


@pytest.mark.parametrize("kind", ["binary", "counts", "wide", "real"])
def test_dense_features_measured_lazily_give_the_scanned_result(kind) -> None:
    """Dense features are not scanned up front: the first layer tries int8 and scans only when
    that fails. Every kind of input (0/1, counts up to 127 per row, row sums past 127, real
    values) gives the logits of the reference engine, which scans first."""
    rng = np.random.default_rng(23)
    x = {"binary": features(60, 8, 24, True),
         "counts": rng.integers(0, 15, (60, 8)).astype(np.float32),
         "wide": rng.integers(0, 60, (60, 8)).astype(np.float32),
         "real": features(60, 8, 24, False)}[kind]
    ei = random_graph(60, 240, 25)
    for arch in ("sage", "gcn"):
        folded = fold(make(arch, 8, 16, 3, 2, seed=26))
        want = EngineModel(*folded, native=False).logits(x, ei)
        got = EngineModel(*folded).logits(x, ei)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_one_bad_feature_anywhere_is_refused(bad) -> None:
    """A single NaN or infinity among 0/1 features fails the int8 attempt and the scan then
    refuses it, also when the requested nodes do not reach that row."""
    em = EngineModel(*fold(make("sage", 8, 16, 3, 2, seed=27)))
    x = features(50, 8, 28, True)
    x[37, 5] = bad
    ei = random_graph(50, 100, 29)
    for nodes in (None, [0, 1]):
        with pytest.raises(ValueError, match="NaN or infinite"):
            em.predict(x, ei, nodes=nodes)
