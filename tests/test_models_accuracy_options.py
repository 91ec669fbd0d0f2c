"""Accuracy options of the binary DGCNN: BF2's offset after the neighbour max (``max_offset``:
its value, its place in the layer on both computation paths, outputs and gradients, the models
that refuse it) and the real-weight first layer (``first_layer_binary=False``); their recipe keys.
Export and engine parity of both: tests/test_engine_parity.py."""

from __future__ import annotations

import statistics

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import bingnn.nn as bnn
from bingnn.distill.recipe import load_recipe, stage_config
from bingnn.models import BinDGCNN, build_model
from bingnn.models._pointcloud import run_edge_convs
from bingnn.nn.conv import XorPointEdgeConv
from bingnn.nn.conv.xor_point_edge_conv import max_offset_for
from bingnn.nn.edge_features import edge_features


@given(st.integers(1, 4096))
def test_offset_is_the_median_of_the_max_of_k_normals(k: int) -> None:
    d = max_offset_for(k)
    assert statistics.NormalDist().cdf(d) ** k == pytest.approx(0.5, abs=1e-9)
    assert max_offset_for(k + 1) > d


def test_offset_balances_the_max_of_independent_values() -> None:
    g = torch.Generator().manual_seed(0)
    for k in (1, 5, 20):
        m = torch.randn(200_000, k, generator=g, dtype=torch.float64).max(dim=1).values
        assert (m > max_offset_for(k)).double().mean().item() == pytest.approx(0.5, abs=0.01)
    assert max_offset_for(1) == pytest.approx(0.0, abs=1e-12)
    assert max_offset_for(20) == pytest.approx(1.8242, abs=1e-4)


@pytest.mark.parametrize("k", [0, -1, 2.5, True, None])
def test_offset_refuses_bad_k(k) -> None:
    with pytest.raises(ValueError, match="k must be a positive integer"):
        max_offset_for(k)  # type: ignore[arg-type]


def _pair(edge_op: str, quant: str, seed: int, offset: float):
    """Two BF2 layers with the same weights, one with ``offset``; non-trivial BN state."""
    torch.manual_seed(seed)
    kw = dict(k=4, version=2, knn_metric="hamming" if edge_op == "xor" else "l2",
              edge_op=edge_op, output_quantizer=quant, kernel_quantizer="ste_sign")
    a = XorPointEdgeConv(6, 9, **kw).double()
    b = XorPointEdgeConv(6, 9, max_offset=offset, **kw).double()
    with torch.no_grad():
        a.bn.bias.normal_()
        a.bn.running_mean.normal_()
        a.rescale.channel_scale.uniform_(0.3, 1.5)
    b.load_state_dict(a.state_dict())
    return a, b


@pytest.mark.parametrize("edge_op", ["xor", "sub"])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("reference", [True, False])
def test_layer_subtracts_the_offset_before_the_quantizer(edge_op, train, reference) -> None:
    offset = 0.7
    a, b = _pair(edge_op, "tanh", 1, offset)
    a.output_quantizer = bnn.quantizers.get("identity")  # a: the value before the quantizer
    a.train(train)
    b.train(train)
    x = torch.randn(2, 11, 6, dtype=torch.float64)
    if edge_op == "xor":
        x = torch.where(x >= 0, 1.0, -1.0).double()
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with bnn.reference_mode(reference):
        want = torch.tanh(a(x1) - offset)
        got = b(x2)
    torch.testing.assert_close(got, want)
    g = torch.randn_like(want)
    (want * g).sum().backward()
    (got * g).sum().backward()
    torch.testing.assert_close(x2.grad, x1.grad)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pb.grad, pa.grad, msg=n)


def test_offset_moves_signs_towards_balance() -> None:
    """At initialisation most BF2 node bits are +1; an offset brings them towards half (the
    independent-value median overshoots: a point's edges share its centre term)."""
    torch.manual_seed(0)
    shares = {}
    for on in (0.0, 0.5, max_offset_for(8)):
        m = BinDGCNN(num_classes=4, variant="bf2", stage=2, k=8, widths=(32, 32), emb_dims=32,
                     mlp=(16, 8), max_offset=on).train()
        torch.manual_seed(1)
        with torch.no_grad():
            h, idx = m.convs[0](torch.randn(4, 64, 3), return_graph=True)
            out = m.convs[1](h)
        shares[on] = (out > 0).double().mean().item()
    assert shares[0.0] > 0.6
    assert abs(shares[0.5] - 0.5) < abs(shares[0.0] - 0.5)
    assert shares[max_offset_for(8)] < 0.4


@pytest.mark.parametrize("variant", ["rf", "bf1", "bf1_bal"])
def test_models_without_bn_before_the_max_refuse_it(variant: str) -> None:
    with pytest.raises(ValueError, match="max_offset applies to the BF2 variants"):
        BinDGCNN(num_classes=3, variant=variant, knn="l2" if variant == "rf" else "hamming",
                 max_offset=0.5)
    with pytest.raises(ValueError, match="applies to version 2"):
        XorPointEdgeConv(3, 4, version=1, max_offset=1.0)
    with pytest.raises(ValueError, match="must be finite"):
        XorPointEdgeConv(3, 4, version=2, max_offset=float("nan"))


@settings(max_examples=10, deadline=None)
@given(k=st.integers(1, 30))
def test_model_sets_every_bf2_layer(k: int) -> None:
    m = BinDGCNN(num_classes=3, variant="bf2_bal", k=k, widths=(8, 8), emb_dims=8, mlp=(8, 8),
                 max_offset=max_offset_for(k))
    assert m.config["max_offset"] == max_offset_for(k)
    assert all(c.max_offset == max_offset_for(k) for c in m.convs)
    assert ("max_offset" in repr(m.convs[0])) == (k > 1)  # k = 1: the offset is 0


def test_recipe_key_reaches_bf2_students_only(tmp_path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('base = "quick"\nvariants = ["bf2-hamming", "rf"]\n[model]\nmax_offset = 0.5\n')
    r = load_recipe(p)
    assert stage_config(r, 2, "bf2-hamming")["model"]["max_offset"] == 0.5
    assert "max_offset" not in stage_config(r, 2, "rf")["model"]
    assert "max_offset" not in stage_config(r, 0)["model"]
    p.write_text('base = "quick"\n[model]\nmax_offset = "auto"\n')
    with pytest.raises(Exception, match="max_offset"):
        load_recipe(p)


@pytest.mark.parametrize("variant", ["bf2", "rf"])
def test_real_first_layer_keeps_its_weights_real_in_stage_3(variant: str) -> None:
    torch.manual_seed(0)
    kw = dict(num_classes=3, variant=variant, knn="l2" if variant == "rf" else "hamming",
              k=4, widths=(8, 8), emb_dims=8, mlp=(8, 8), stage=3)
    m = BinDGCNN(first_layer_binary=False, **kw).eval()
    lins = [c.block.linear if variant == "rf" else c.linear for c in m.convs]
    assert [lin.binary_weights for lin in lins] == [False, True]
    assert m.embed.linear.binary_weights and m.fc1.linear.binary_weights
    # The first layer follows its real weights: sign-preserving changes of their magnitudes
    # change its output, where a binary first layer (the signs) would not notice.
    x = torch.randn(2, 16, 3)
    rebuilt = build_model({**m.config}).eval()
    rebuilt.load_state_dict(m.state_dict())
    torch.testing.assert_close(rebuilt(x), m(x))
    binary = BinDGCNN(**kw).eval()
    binary.load_state_dict(m.state_dict())
    g = torch.Generator().manual_seed(1)
    factors = 1.0 + 3.0 * torch.rand(lins[0].weight.shape, generator=g)
    outs = {}
    for name, model in (("real", m), ("binary", binary)):
        before = model.convs[0](x)
        lin = model.convs[0].block.linear if variant == "rf" else model.convs[0].linear
        with torch.no_grad():
            lin.weight.mul_(factors)
        outs[name] = torch.equal(model.convs[0](x), before)
    assert outs == {"real": False, "binary": True}


def test_recipe_key_first_layer_binary_reaches_every_student(tmp_path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('base = "quick"\nvariants = ["bf2-hamming", "rf"]\n'
                 "[model]\nfirst_layer_binary = false\n")
    r = load_recipe(p)
    for v in ("bf2-hamming", "rf"):
        for stage in (1, 2, 3):
            assert stage_config(r, stage, v)["model"]["first_layer_binary"] is False
    assert "first_layer_binary" not in stage_config(r, 0)["model"]


# ---------------------------------------------------------------- prelu_shift (RPReLU's shift)


def _shifted(edge_op: str, version: int, seed: int,
             dtype: torch.dtype = torch.float64) -> XorPointEdgeConv:
    torch.manual_seed(seed)
    conv = XorPointEdgeConv(6, 9, k=4, version=version,
                            knn_metric="hamming" if edge_op == "xor" else "l2",
                            edge_op=edge_op, output_quantizer="tanh", kernel_quantizer="ste_sign",
                            prelu_shift=True).to(dtype)
    with torch.no_grad():
        conv.linear.bias.normal_(0.0, 2.0)
        conv.bn.bias.normal_()
        conv.bn.running_mean.normal_()
        conv.rescale.channel_scale.uniform_(0.3, 1.5)
        conv.act.weight.uniform_(-0.5, 0.5)  # negative slopes too: the max can pick a minimum
    return conv


@pytest.mark.parametrize("edge_op", ["xor", "sub"])
@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_prelu_shift_fast_path_equals_the_plain_one(edge_op, version, train, dtype) -> None:
    """The bias rides on the per-node term of the fast path with batch statistics (and of its
    native kernels, in float32), on the finished pre-activation with running statistics:
    outputs and every gradient (the bias's included) equal the edge-by-edge formulation."""
    conv = _shifted(edge_op, version, 3, dtype)
    x = torch.randn(2, 13, 6, dtype=dtype)
    if edge_op == "xor":
        x = torch.where(x >= 0, 1.0, -1.0).to(dtype)
    outs, grads = [], []
    for reference in (True, False):
        conv.zero_grad()
        conv.train(train)
        state = {k: v.clone() for k, v in conv.state_dict().items()}
        x1 = x.clone().requires_grad_()
        with bnn.reference_mode(reference):
            y = conv(x1)
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append([x1.grad] + [p.grad.clone() for p in conv.parameters()])
        conv.load_state_dict(state)  # the same running statistics for both paths
    tol = {} if dtype == torch.float64 else {"rtol": 1e-4, "atol": 1e-4}
    torch.testing.assert_close(outs[1], outs[0], **tol)
    for a, b in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(a, b, **tol)
    assert conv.linear.bias.grad is not None and conv.linear.bias.grad.abs().sum() > 0


def test_prelu_shift_is_a_shift_before_the_prelu() -> None:
    """PReLU(alpha (y + b)) on every edge, then BN2d and the max: ReActNet's PReLU(t - gamma)
    with gamma = -alpha b, computed here edge by edge from the bias-free layer's parts."""
    conv = _shifted("xor", 2, 5).eval()
    x = torch.where(torch.randn(2, 13, 6) >= 0, 1.0, -1.0).double()
    with torch.no_grad():
        got, idx = conv(x, return_graph=True)
        y = F.linear(edge_features(x, idx, "xor"), conv.linear.quantized_weight())
        h = conv.act(conv.rescale(y + conv.linear.bias))
        want = torch.tanh(conv.bn(h).max(dim=2).values)
        unshifted = torch.tanh(conv.bn(conv.act(conv.rescale(y))).max(dim=2).values)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, unshifted)


def test_prelu_shift_model_and_refusals() -> None:
    m = BinDGCNN(num_classes=3, variant="bf2", k=4, widths=(8, 8, 8), emb_dims=8, mlp=(8, 8),
                 prelu_shift=True)
    assert m.config["prelu_shift"] is True
    # every XOR layer has a bias, the xyz layer none (the engine's float predicate of that
    # layer expects the PReLU's kink at 0)
    assert [c.linear.bias is not None for c in m.convs] == [False, True, True]
    rebuilt = build_model(dict(m.config))
    assert set(rebuilt.state_dict()) == set(m.state_dict())
    with pytest.raises(ValueError, match="prelu_shift applies to the BF variants"):
        BinDGCNN(num_classes=3, variant="rf", knn="l2", prelu_shift=True)


def test_prelu_shift_recipe_key_reaches_bf_students_only(tmp_path) -> None:
    p = tmp_path / "r.toml"
    p.write_text('base = "quick"\nvariants = ["bf2-hamming", "rf"]\n[model]\nprelu_shift = true\n')
    r = load_recipe(p)
    assert stage_config(r, 3, "bf2-hamming")["model"]["prelu_shift"] is True
    assert "prelu_shift" not in stage_config(r, 3, "rf")["model"]
    assert "prelu_shift" not in stage_config(r, 0)["model"]
    p.write_text('base = "quick"\n[model]\nprelu_shift = 1.0\n')
    with pytest.raises(Exception, match="prelu_shift"):
        load_recipe(p)


# ---------------------------------------------------------------- shortcut (Bi-Real Net)


def _shortcut_pair(stage: int, widths=(8, 8, 16, 32)):
    torch.manual_seed(7)
    kw = dict(num_classes=5, variant="bf2", k=4, widths=widths, emb_dims=16, mlp=(8, 8),
              stage=stage)
    with_sc = BinDGCNN(shortcut=True, **kw)
    plain = BinDGCNN(**kw)
    plain.load_state_dict(with_sc.state_dict())  # the option adds no parameter
    return with_sc, plain


@pytest.mark.parametrize("stage", [1, 2, 3])
def test_shortcut_quantizes_the_residual_stream(stage: int) -> None:
    """Layer l >= 1 quantizes h_l + R(h_{l-1}) (h: the value before the quantizer, shortcut
    included; R repeats channels where the width doubles); layer 0 is unchanged."""
    model, _ = _shortcut_pair(stage)
    model.eval()
    x = torch.randn(2, 24, 3)
    with torch.no_grad():
        feats, graphs = run_edge_convs(model.convs, x, shortcut=True)
        inp, stream, outs = x, None, []
        for li, conv in enumerate(model.convs):
            h, idx = conv.pre_activation(inp)
            torch.testing.assert_close(graphs[li][1], idx)
            if stream is not None:
                m = h.shape[-1] // stream.shape[-1]
                h = h + torch.cat([stream] * m, dim=-1)
            stream = h
            inp = conv.quantize(h)
            outs.append(inp)
    torch.testing.assert_close(feats, torch.cat(outs, dim=-1))
    assert torch.equal(outs[0], model.convs[0](x))


def test_shortcut_changes_the_bits_and_carries_gradient_past_each_sign() -> None:
    """With shortcuts the first layer also receives gradient through the real stream, not
    only through the straight-through estimator of the signs after it."""
    with_sc, plain = _shortcut_pair(2)
    x = torch.randn(2, 24, 3)
    with torch.no_grad():
        a, b = with_sc.eval()(x), plain.eval()(x)
    assert not torch.allclose(a, b)
    grads = {}
    for name, model in (("shortcut", with_sc), ("plain", plain)):
        model.train()
        model.zero_grad()
        feats, _ = run_edge_convs(model.convs, x, model.config["shortcut"])
        feats[..., -32:].sum().backward()  # the last layer's bits only
        grads[name] = model.convs[0].bn.bias.grad.clone()
    assert not torch.allclose(grads["shortcut"], grads["plain"])


def test_shortcut_on_both_computation_paths() -> None:
    """The whole model with shortcuts, training mode, float64: the fast convolutions and the
    plain ones give the same outputs and gradients."""
    model, _ = _shortcut_pair(3)
    model = model.double().train()
    x = torch.randn(2, 20, 3, dtype=torch.float64)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    out = {}
    for ref in (True, False):
        model.load_state_dict(state)
        model.zero_grad()
        torch.manual_seed(3)  # the same dropout masks
        with bnn.reference_mode(ref):
            y = model(x)
        y.sum().backward()
        out[ref] = (y.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None])
    torch.testing.assert_close(out[False][0], out[True][0])
    assert len(out[False][1]) == len(out[True][1]) > 0
    for a, b in zip(out[False][1], out[True][1], strict=True):
        torch.testing.assert_close(a, b)


def test_shortcut_refusals_and_export(tmp_path) -> None:
    with pytest.raises(ValueError, match="shortcut applies to the BF variants"):
        BinDGCNN(num_classes=3, variant="rf", knn="l2", shortcut=True)
    with pytest.raises(ValueError, match="multiple of the one before it.*16 -> 24"):
        BinDGCNN(num_classes=3, variant="bf2", widths=(16, 24), shortcut=True)
    from bingnn.export import fold
    model, _ = _shortcut_pair(3)
    # exported with its real values and sums (parity: tests/test_engine_shortcut.py)
    ops = [layer["op"] for layer in fold(model.eval())[0]["layers"]]
    assert ops.count("shortcut_add") == len(model.convs) - 1
    p = tmp_path / "r.toml"
    p.write_text('base = "quick"\nvariants = ["bf2-hamming", "rf"]\n[model]\nshortcut = true\n')
    r = load_recipe(p)
    assert stage_config(r, 1, "bf2-hamming")["model"]["shortcut"] is True
    assert "shortcut" not in stage_config(r, 1, "rf")["model"]
