"""BinSAGEConv / BinGCNConv against dense reference computations, STE gradients, bad inputs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.utils import coalesce, remove_self_loops, to_torch_csr_tensor

from bingnn.models.gcn import GCN, BinGCN
from bingnn.models.graphsage import BinSAGE, GraphSAGE
from bingnn.nn import BinGCNConv, BinSAGEConv


def _sign(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x >= 0, 1.0, -1.0)


def _ste_sign(x: torch.Tensor) -> torch.Tensor:
    """Textbook STE: forward sign (sign(0)=+1), backward 1_{|x|<=1}."""
    h = x.clamp(-1, 1)
    return h + (_sign(x) - h).detach()


def _dense_adj(edge_index: torch.Tensor, n_dst: int, n_src: int) -> torch.Tensor:
    a = torch.zeros(n_dst, n_src)
    for j, i in edge_index.t().tolist():
        a[i, j] += 1.0
    return a


def _randomise(conv: torch.nn.Module, seed: int) -> None:
    """Non-trivial rescale factors and bias, so the reference checks that they are applied."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in conv.named_parameters():
            if "channel_scale" in name or name.endswith("bias"):
                p.copy_(torch.rand(p.shape, generator=g) + 0.5)


graphs = st.fixed_dictionaries({
    "n": st.integers(1, 23),
    "e": st.integers(0, 60),
    "c_in": st.sampled_from([1, 5, 64, 67]),
    "c_out": st.sampled_from([1, 3, 65]),
    "seed": st.integers(0, 10_000),
})


def _graph(p):
    g = torch.Generator().manual_seed(p["seed"])
    x = torch.randn(p["n"], p["c_in"], generator=g)
    ei = torch.randint(0, p["n"], (2, p["e"]), generator=g)  # self-loops, duplicates, isolated
    return x, ei


def _sage_reference(conv: BinSAGEConv, xs, xd, ei):
    a = _dense_adj(ei, xd.shape[0], xs.shape[0])
    deg = a.sum(1, keepdim=True)
    m = torch.where(deg > 0, a @ xs / deg.clamp(min=1), torch.zeros(1))

    def block(b, h):
        h = h - h.mean(-1, keepdim=True)  # centering="mean"
        z = _ste_sign(h) @ _ste_sign(b.linear.weight).t()
        if b.linear.bias is not None:  # the block's bias comes before its rescaling
            z = z + b.linear.bias
        return z * b.rescale.channel_scale

    return block(conv.lin_l, m) + block(conv.lin_r, xd)


@settings(max_examples=25, deadline=None)
@given(graphs)
def test_bin_sage_conv_matches_dense_reference(p):
    x, ei = _graph(p)
    torch.manual_seed(p["seed"])  # the weights too, so that a failing example replays
    conv = BinSAGEConv(p["c_in"], p["c_out"], centering="mean", bias=True)
    _randomise(conv, p["seed"])
    out = conv(x, ei)
    assert out.shape == (p["n"], p["c_out"])
    torch.testing.assert_close(out, _sage_reference(conv, x, x, ei), atol=1e-4, rtol=1e-4)


def test_bin_sage_conv_sparse_adjacency_and_bipartite():
    g = torch.Generator().manual_seed(1)
    xs, xd = torch.randn(9, 7, generator=g), torch.randn(4, 5, generator=g)
    ei = torch.stack([torch.randint(0, 9, (20,), generator=g), torch.randint(0, 4, (20,),
                                                                             generator=g)])
    conv = BinSAGEConv((7, 5), 6, centering="mean")
    _randomise(conv, 1)
    out = conv((xs, xd), ei)
    torch.testing.assert_close(out, _sage_reference(conv, xs, xd, ei), atol=1e-4, rtol=1e-4)
    adj_t = to_torch_csr_tensor(ei.flip(0), size=(4, 9))  # (targets, sources)
    torch.testing.assert_close(conv((xs, xd), adj_t), out, atol=1e-5, rtol=1e-5)


def test_bin_sage_conv_ste_gradients_match_reference():
    g = torch.Generator().manual_seed(2)
    x = (2.5 * torch.randn(12, 8, generator=g)).requires_grad_()  # many |x| > 1
    ei = torch.randint(0, 12, (2, 30), generator=g)
    conv = BinSAGEConv(8, 4, centering="mean")
    _randomise(conv, 2)
    conv(x, ei).pow(2).sum().backward()
    gx, gw = x.grad.clone(), conv.lin_l.linear.weight.grad.clone()
    x2 = x.detach().clone().requires_grad_()
    conv.zero_grad()
    _sage_reference(conv, x2, x2, ei).pow(2).sum().backward()
    torch.testing.assert_close(gx, x2.grad, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(gw, conv.lin_l.linear.weight.grad, atol=1e-4, rtol=1e-4)
    assert gx.abs().sum() > 0 and gw.abs().sum() > 0
    # the STE blocks the gradient of a centred input entry beyond +-1
    xc = x2.detach() - x2.detach().mean(-1, keepdim=True)
    assert (xc.abs() > 1).any()


def _sign_messages_reference(conv: BinSAGEConv, xs, xd, ei):
    """sign(mean_j sign(centre(x_j))) (a majority vote, sign(0) = +1, isolated -> +1), then the
    binary map; the root term as without sign messages."""
    a = _dense_adj(ei, xd.shape[0], xs.shape[0])
    deg = a.sum(1, keepdim=True)
    s = _ste_sign(xs - xs.mean(-1, keepdim=True))
    m = _ste_sign(a @ s / deg.clamp(min=1))
    b = conv.lin_l
    left = (m @ _ste_sign(b.linear.weight).t()) * b.rescale.channel_scale
    r = conv.lin_r
    right = (_ste_sign(xd - xd.mean(-1, keepdim=True)) @ _ste_sign(r.linear.weight).t()
             ) * r.rescale.channel_scale
    return left + right


@settings(max_examples=25, deadline=None)
@given(graphs)
def test_bin_sage_conv_sign_messages_match_dense_reference(p):
    x, ei = _graph(p)
    x.requires_grad_()
    torch.manual_seed(p["seed"])  # the weights too, so that a failing example replays
    conv = BinSAGEConv(p["c_in"], p["c_out"], centering="mean", sign_messages=True)
    _randomise(conv, p["seed"])
    out = conv(x, ei)
    x2 = x.detach().clone().requires_grad_()
    want = _sign_messages_reference(conv, x2, x2, ei)
    torch.testing.assert_close(out, want, atol=1e-4, rtol=1e-4)
    out.pow(2).sum().backward()
    want.pow(2).sum().backward()
    # A small entry can be the difference of terms as large as the largest one: float32 rounding
    # scales with that (measured against float64: at most 4e-7 of the largest entry).
    tol = 1e-4 + 1e-5 * float(x2.grad.abs().max())
    torch.testing.assert_close(x.grad, x2.grad, atol=tol, rtol=1e-4)
    # Every aggregated value is a majority vote: the output takes few distinct values.
    assert "sign_messages=True" in repr(conv)


def test_sign_messages_options_are_checked():
    with pytest.raises(ValueError, match="aggr"):
        BinSAGEConv(4, 4, aggr="max", sign_messages=True)
    with pytest.raises(ValueError, match="activation quantizer"):
        BinSAGEConv(4, 4, input_quantizer="identity", sign_messages=True)
    # The float teacher ignores the option; the students' hidden layers use it and keep the
    # teacher's parameter names (a student starts from the teacher's weights).
    teacher = BinSAGE(6, 8, 3, 2, stage=0, sign_messages=True)
    student = BinSAGE(6, 8, 3, 2, stage=1, sign_messages=True)
    assert not any(c.sign_messages for c in teacher.convs)
    assert [c.sign_messages for c in student.convs] == [False, True, True]
    student.load_state_dict(teacher.state_dict())
    assert student.config["sign_messages"] is True
    assert "sign_messages" not in BinSAGE(6, 8, 3, 2).config


def _gcn_reference(conv: BinGCNConv, x, ei, n):
    a = _dense_adj(ei, n, n)
    a.fill_diagonal_(1.0)  # one self-loop per node, however many the edge list had
    d = a.sum(1)
    dinv = d.pow(-0.5)
    a_norm = dinv[:, None] * a * dinv[None, :]
    h = x - x.mean(-1, keepdim=True)
    z = _ste_sign(h) @ _ste_sign(conv.block.linear.weight).t()
    z = z * h.abs().mean(-1, keepdim=True) * conv.block.rescale.channel_scale
    return a_norm @ z + conv.bias


@settings(max_examples=25, deadline=None)
@given(graphs)
def test_bin_gcn_conv_matches_dense_reference(p):
    x, ei = _graph(p)
    torch.manual_seed(p["seed"])  # the weights too, so that a failing example replays
    conv = BinGCNConv(p["c_in"], p["c_out"], centering="mean")
    _randomise(conv, p["seed"])
    out = conv(x, ei)
    torch.testing.assert_close(out, _gcn_reference(conv, x, ei, p["n"]), atol=1e-4, rtol=1e-4)


def test_bin_gcn_conv_sparse_cached_and_bipartite():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(10, 6, generator=g)
    ei = coalesce(remove_self_loops(torch.randint(0, 10, (2, 25), generator=g))[0])
    conv = BinGCNConv(6, 3, centering="mean", cached=True)
    _randomise(conv, 3)
    ref = _gcn_reference(conv, x, ei, 10)
    torch.testing.assert_close(conv(x, ei), ref, atol=1e-4, rtol=1e-4)
    # cached=True normalises the first graph once and reuses it: a later call with another
    # graph still propagates over the first one (PyG's GCNConv contract) ...
    other = coalesce(remove_self_loops(torch.randint(0, 10, (2, 25), generator=g))[0])
    ref_other = _gcn_reference(conv, x, other, 10)
    assert not torch.allclose(ref_other, ref, atol=1e-3)
    torch.testing.assert_close(conv(x, other), ref, atol=1e-4, rtol=1e-4)
    # ... until the cache is dropped, or when caching is off
    weights = {k: v.clone() for k, v in conv.state_dict().items()}
    conv.reset_parameters()
    conv.load_state_dict(weights)
    torch.testing.assert_close(conv(x, other), ref_other, atol=1e-4, rtol=1e-4)
    conv.cached = False
    torch.testing.assert_close(conv(x, ei), ref, atol=1e-4, rtol=1e-4)
    adj_t = to_torch_csr_tensor(ei.flip(0), size=(10, 10))
    torch.testing.assert_close(conv(x, adj_t), ref, atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="bipartite"):
        conv((x, x[:4]), ei[:, ei[1] < 4])
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    ein, w = gcn_norm(ei, None, 10, add_self_loops=True)
    keep = ein[1] < 4
    conv.normalize = False
    out = conv((x, x[:4]), ein[:, keep], w[keep])
    torch.testing.assert_close(out, ref[:4], atol=1e-4, rtol=1e-4)


def test_bin_gcn_conv_gradient_flows_through_ste():
    x = torch.randn(6, 4, requires_grad=True)
    ei = torch.tensor([[0, 1, 2, 3], [1, 2, 3, 4]])
    conv = BinGCNConv(4, 3)
    conv(x, ei).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert conv.block.linear.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("conv_cls", [BinSAGEConv, BinGCNConv])
def test_bad_inputs(conv_cls):
    conv = conv_cls(4, 2)
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="node 7"):
        conv(x, torch.tensor([[0, 7], [1, 2]]))
    with pytest.raises(ValueError, match="negative"):
        conv(x, torch.tensor([[0, -1], [1, 2]]))
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        conv(x, torch.tensor([[0, 1, 2]]))
    with pytest.raises(TypeError, match="int64"):
        conv(x, torch.tensor([[0.0, 1.0], [1.0, 2.0]]))
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        conv(bad, torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="channels"):
        conv(torch.randn(5, 3), torch.tensor([[0], [1]]))
    with pytest.raises(ValueError, match="num_nodes, channels"):
        conv(torch.randn(5), torch.tensor([[0], [1]]))


@pytest.mark.parametrize("conv_cls", [BinSAGEConv, BinGCNConv])
def test_empty_graphs(conv_cls):
    conv = conv_cls(4, 3, centering="mean").eval()
    out = conv(torch.randn(5, 4), torch.empty(2, 0, dtype=torch.long))  # no edges
    assert out.shape == (5, 3) and torch.isfinite(out).all()
    out = conv(torch.randn(0, 4), torch.empty(2, 0, dtype=torch.long))  # no nodes
    assert out.shape == (0, 3)


def test_isolated_nodes_aggregate_to_zero():
    conv = BinSAGEConv(3, 2, centering="mean", root_weight=False)
    x = torch.randn(4, 3)
    out = conv(x, torch.tensor([[0], [1]]))  # nodes 0, 2, 3 receive nothing
    zero_msg = conv.lin_l(torch.zeros(1, 3))
    torch.testing.assert_close(out[[0, 2, 3]], zero_msg.expand(3, -1))


@pytest.mark.parametrize("conv_cls", [BinSAGEConv, BinGCNConv])
def test_reset_parameters(conv_cls):
    conv = conv_cls(4, 3)
    before = {k: v.clone() for k, v in conv.state_dict().items()}
    with torch.no_grad():
        for p in conv.parameters():
            p.add_(1.0)
    conv.reset_parameters()
    for k, v in conv.state_dict().items():
        if "channel_scale" in k or k.endswith("bias") or "running" in k:
            torch.testing.assert_close(v, before[k])
    assert all(torch.all(v.abs() <= 1) for k, v in conv.state_dict().items()
               if k.endswith("linear.weight"))


@pytest.mark.parametrize("model_cls,kw", [(GraphSAGE, {}), (BinSAGE, {}), (GCN, {}),
                                          (BinGCN, {}), (BinSAGE, {"sign_messages": True})])
@pytest.mark.parametrize("centering", ["batchnorm", "mean"])
def test_layerwise_inference_equals_forward(model_cls, kw, centering):
    g = torch.Generator().manual_seed(4)
    n = 37
    x = torch.randn(n, 9, generator=g)
    ei = torch.randint(0, n - 3, (2, 90), generator=g)  # the last 3 nodes are isolated
    model = model_cls(9, 16, 3, 5, centering=centering, **kw)
    model.train()
    for _ in range(2):  # move BatchNorm statistics away from their initial values
        model(x, ei)
    model.eval()
    full = model(x, ei)
    torch.testing.assert_close(model.inference(x, ei, batch_size=8), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("stage,act,weights", [
    (0, "identity", "identity"), (1, "tanh", "identity"), (2, "ste_sign", "identity"),
    (3, "ste_sign", "ste_sign"),
])
def test_model_stages_set_quantizers(stage, act, weights):
    m = BinSAGE(5, 8, 3, 3, stage=stage)
    first, hidden = m.convs[0], m.convs[1]
    assert first.lin_l.input_quantizer.name == "identity"  # real inputs in layer 1
    assert hidden.lin_l.input_quantizer.name == act
    assert hidden.lin_l.linear.kernel_quantizer.name == weights
    assert first.lin_l.linear.kernel_quantizer.name == weights
    # every stage shares one layout: a student loads its teacher exactly
    BinSAGE(5, 8, 3, 3, stage=3).load_state_dict(m.state_dict())


def test_model_argument_checks():
    with pytest.raises(ValueError, match="stage"):
        BinGCN(4, 8, 2, 2, stage=4)
    with pytest.raises(ValueError, match="num_layers"):
        BinSAGE(4, 8, 0, 2)
    with pytest.raises(ValueError, match="dropout"):
        GCN(4, 8, 2, 2, dropout=1.0)
    m = BinSAGE(4, 8, 3, 2)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        m(torch.randn(3, 5), torch.empty(2, 0, dtype=torch.long))
    with pytest.raises(RuntimeError, match="eval"):
        m.train().inference(torch.randn(3, 4), torch.empty(2, 0, dtype=torch.long))


def test_binary_model_learns_separable_graph():
    g = torch.Generator().manual_seed(5)
    n, c = 60, 3
    y = torch.arange(n) % c
    x = F.one_hot(y, 8).float() + 0.3 * torch.randn(n, 8, generator=g)
    same = (y[:, None] == y[None, :]) & (torch.rand(n, n, generator=g) < 0.15)
    ei = same.nonzero().t()
    model = BinSAGE(8, 16, 2, c, dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(60):
        opt.zero_grad()
        F.cross_entropy(model(x, ei), y).backward()
        opt.step()
    acc = (model.eval()(x, ei).argmax(-1) == y).float().mean()
    assert acc > 0.9
