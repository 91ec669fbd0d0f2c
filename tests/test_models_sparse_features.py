"""Node models on sparse input features compute what they compute on the dense copy.

Only the first layer reads the features; it computes the same values up to float rounding
(products in another order). Models with real activations (stages 0 and 1) therefore give the
same logits and gradients; after a sign (stages 2 and 3) a rounding difference can flip a bit
whose centred input is ~1e-8, so binary models are compared on their first layer.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.models import GCN, BinGCN, BinSAGE, GraphSAGE
from bingnn.models._node import sparse_dropout

MODELS = [GraphSAGE, BinSAGE, GCN, BinGCN]
REAL_ACTIVATIONS = [(GraphSAGE, 0), (GCN, 0), (BinSAGE, 1), (BinGCN, 1)]


def _graph(n: int, f: int, e: int, density: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(n, f, generator=g) < density).float()
    # the last node never receives an edge: it is isolated
    ei = torch.randint(0, max(n - 1, 1), (2, e), generator=g) if n > 1 else torch.zeros(
        2, 0, dtype=torch.long)
    return x, ei


def _to(x: torch.Tensor, layout: str) -> torch.Tensor:
    return x.to_sparse_csr() if layout == "csr" else x.to_sparse_coo()


@pytest.mark.parametrize("cls,stage", REAL_ACTIVATIONS)
@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_training_step_matches_dense(cls, stage, layers, layout):
    x, ei = _graph(40, 70, 150, 0.1, seed=layers)
    m = cls(70, 16, layers, 4, centering="mean", stage=stage).train()
    grads = []
    for feats in (x, _to(x, layout)):
        torch.manual_seed(1)  # the same dropout masks between layers
        out = m(feats, ei)
        grads.append((out, torch.autograd.grad(out.square().sum(), list(m.parameters()))))
    (a, ga), (b, gb) = grads
    torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-5)
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(v, u, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_first_layer_of_binary_models_matches_dense(cls, layout):
    x, ei = _graph(40, 70, 150, 0.1, seed=3)
    m = cls(70, 16, 2, 4, centering="mean", stage=3).train()
    w = m.convs[0].lin_l.linear.weight if hasattr(m.convs[0], "lin_l") else \
        m.convs[0].block.linear.weight
    up = torch.randn(40, 16, generator=torch.Generator().manual_seed(0))
    res = []
    for feats in (x, _to(x, layout)):
        h = m._first_layer(feats, ei)
        res.append((h, torch.autograd.grad((h * up).sum(), w)[0]))
    torch.testing.assert_close(res[1][0], res[0][0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res[1][1], res[0][1], atol=1e-4, rtol=1e-4)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), f=st.integers(1, 70), e=st.integers(0, 200),
       density=st.sampled_from([0.0, 0.05, 0.5]), layers=st.integers(1, 3),
       model=st.sampled_from(REAL_ACTIVATIONS), layout=st.sampled_from(["csr", "coo"]),
       batch=st.integers(1, 50))
def test_sparse_eval_and_layerwise_match_dense(n, f, e, density, layers, model, layout, batch):
    x, ei = _graph(n, f, e, density, seed=n * 1000 + f)
    cls, stage = model
    m = cls(f, 8, layers, 3, centering="mean", stage=stage).eval()
    dense = m(x, ei)
    xs = _to(x, layout)
    assert dense.shape == (n, 3)
    torch.testing.assert_close(m(xs, ei), dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(m.inference(xs, ei, batch_size=batch), dense, atol=1e-5,
                               rtol=1e-5)


@pytest.mark.parametrize("layout", ["csr", "coo"])
def test_sparse_dropout_drops_stored_entries_only(layout):
    x = torch.zeros(200, 300)
    x[torch.rand(200, 300) < 0.05] = 2.0
    out = sparse_dropout(_to(x, layout), 0.25, training=True).to_dense()
    kept = out != 0
    assert not (kept & (x == 0)).any()  # zeros stay zero
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 2.0 / 0.75))
    frac = 1 - kept.sum() / (x != 0).sum()
    assert 0.2 < float(frac) < 0.3
    same = _to(x, layout)
    assert sparse_dropout(same, 0.25, training=False) is same


def _fit(model, task, epochs):
    from bingnn.train.objective import Objective
    from bingnn.train.optim import build_optimizer, build_scheduler
    from bingnn.train.trainer import fit

    opt = build_optimizer(model.parameters(), "adam", 0.01)
    return fit(task, model, Objective(), opt, build_scheduler(opt, None, epochs), epochs=epochs)


@pytest.mark.parametrize("mode", ["full", "minibatch"])
@pytest.mark.parametrize("cls", [GraphSAGE, GCN])
def test_trainer_accepts_sparse_features(cls, mode):
    from torch_geometric.data import Data

    from bingnn.graphs.node_task import NodeTask

    x, ei = _graph(60, 30, 300, 0.2, seed=7)
    y = torch.arange(60) % 3
    masks = {k: torch.arange(60) % 3 == i for i, k in enumerate(("train", "val", "test"))}
    runs = []
    for feats in (x, x.to_sparse_csr()):
        data = Data(x=feats, edge_index=ei, y=y, num_nodes=60,
                    **{f"{k}_mask": v for k, v in masks.items()})
        task = NodeTask(data, 3, mode=mode, fanouts=[-1, -1], batch_size=8, seed=1)
        torch.manual_seed(0)
        m = cls(30, 16, 2, 3, dropout=0.0, input_dropout=0.0, centering="mean")
        runs.append(_fit(m, task, 5))
        assert data.x.layout == feats.layout  # the caller's graph is left as it was
    dense, sparse = runs
    assert [r["val_acc"] for r in sparse.history] == pytest.approx(
        [r["val_acc"] for r in dense.history])
    assert [r["loss"] for r in sparse.history] == pytest.approx(
        [r["loss"] for r in dense.history], rel=1e-4)
    bad = Data(x=torch.sparse_csr_tensor(torch.tensor([0, 1]), torch.tensor([0]),
                                         torch.tensor([float("nan")]), (1, 30)),
               edge_index=torch.zeros(2, 0, dtype=torch.long), y=torch.zeros(1, dtype=torch.long),
               train_mask=torch.ones(1, dtype=torch.bool), num_nodes=1)
    with pytest.raises(ValueError, match="NaN or inf"):
        NodeTask(bad, 3)
