"""Every fast EdgeConv path against the plain formulation (``bingnn.nn.reference_mode``):
outputs, gradients of the input and of every parameter, BatchNorm running statistics and the
graphs, in float64 (the PyTorch fallbacks, tight) and float32 (the native kernels, to float32
rounding), on odd shapes, k = 1 and k = N, one cloud, duplicate points, and with negative
rescale factors, PReLU slopes and BatchNorm scales (the min-instead-of-max and peaked cases)."""

from __future__ import annotations

import copy
import types
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import bingnn.nn as bnn
from bingnn.models import DGCNN, BinDGCNN
from bingnn.models.bin_dgcnn import STAGES
from bingnn.nn import BinPointEdgeConv, PointEdgeConv, XorPointEdgeConv

SHAPES = [(1, 13, 1), (2, 13, 13), (3, 37, 5), (1, 70, 20), (2, 65, 7)]


def perturb(module: torch.nn.Module, seed: int) -> None:
    """Random BN statistics and affine parameters, rescales and slopes, about a third negative."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.randn(n, generator=g) + 0.3)
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
            for name, p in m.named_parameters(recurse=False):
                if name == "channel_scale":
                    p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 0.5)
                elif name == "weight" and type(m).__name__ == "ChannelPReLU":
                    p.copy_(torch.rand(p.shape, generator=g) * 1.4 - 0.6)


def points(b: int, n: int, c: int, seed: int, dtype, binary: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, n, c, generator=g, dtype=torch.float64)
    if binary:
        x = torch.where(x >= 0, 1.0, -1.0).to(torch.float64)
    if n > 3:
        x[:, 1] = x[:, 0]  # a duplicate point: equal distances, tie rule
    return x.to(dtype)


def run_both(module: torch.nn.Module, x: torch.Tensor, train: bool, seed: int = 0):
    """Forward + backward of a copy on each path; returns (fast, plain) results."""
    out = []
    for reference in (False, True):
        m = copy.deepcopy(module).train(train)
        xi = x.clone().requires_grad_(True)
        torch.manual_seed(seed)  # dropout
        with bnn.reference_mode(reference):
            y, graphs = forward(m, xi)
        w = torch.randn(y.shape, generator=torch.Generator().manual_seed(1), dtype=y.dtype)
        (y * w).sum().backward()
        grads = {n: p.grad for n, p in m.named_parameters() if p.grad is not None}
        bufs = {n: b.clone() for n, b in m.named_buffers()}
        out.append((y.detach(), xi.grad, grads, bufs, graphs))
    return out


def forward(m: torch.nn.Module, x: torch.Tensor):
    if isinstance(m, (DGCNN, BinDGCNN)):
        y, graphs = m(x, return_graphs=True)
        return y, [g[1] for g in graphs]
    y, idx = m(x, return_graph=True)
    return y, [idx]


def merge_duplicates(gx: torch.Tensor) -> torch.Tensor:
    """Points 0 and 1 are equal (``points``): a max over neighbours that ties between them may
    send the gradient to either (the plain path's matrix product can round equal rows apart);
    their sum is what both paths must agree on."""
    if gx.shape[1] <= 3:
        return gx
    return torch.cat([gx[:, :1] + gx[:, 1:2], gx[:, 2:]], dim=1)


def check_equal(fast, plain, tol: float) -> None:
    yf, gxf, gf, bf, grf = fast
    yp, gxp, gp, bp, grp = plain
    gxf, gxp = merge_duplicates(gxf), merge_duplicates(gxp)
    for a, b in zip(grf, grp, strict=True):
        assert torch.equal(a, b)  # the same graphs
    torch.testing.assert_close(yf, yp, rtol=tol, atol=tol)
    scale = max([float(g.abs().max()) for g in gp.values()] + [float(gxp.abs().max()), 1e-6])
    torch.testing.assert_close(gxf, gxp, rtol=tol, atol=tol * scale)
    assert gf.keys() == gp.keys()
    for name in gp:
        torch.testing.assert_close(gf[name], gp[name], rtol=tol, atol=tol * scale, msg=name)
    for name in bp:
        torch.testing.assert_close(bf[name], bp[name], rtol=tol, atol=tol, msg=name)


def in_channels(name: str) -> int:
    """xyz for the layers on real coordinates; for deeper layers 7 channels with +-1 weights
    (integer pre-activations: many exact ties, resolved by the tie rule on both paths) and 24
    with real weights (ties between equal sign patterns would be decided by the plain path's
    matrix-product rounding, an arbitrary subgradient choice; 24 channels make them rare)."""
    if "xyz" in name or "sub" in name or "edgeconv" in name:
        return 3
    return 7 if "_s3" in name else 24


def conv_cases() -> list[tuple[str, Callable[[int, int], torch.nn.Module], bool]]:
    """(name, factory(c_in, k), binary input) for every fast path."""
    cases = [
        ("edgeconv", lambda c, k: PointEdgeConv(c, 11, k=k), False),
        ("edgeconv_l1", lambda c, k: PointEdgeConv(c, 9, k=k, knn_metric="l1"), False),
    ]
    for st_ in (1, 2, 3):
        act_q, w_q = STAGES[st_]
        for first in (True, False):
            q = "identity" if first else act_q
            cases.append((f"rf_s{st_}_{'xyz' if first else 'deep'}",
                          lambda c, k, q=q, w_q=w_q: BinPointEdgeConv(
                              c, 9, k=k, input_quantizer=q, kernel_quantizer=w_q), False))
        for version in (1, 2):
            cases.append((f"bf{version}_s{st_}_sub",
                          lambda c, k, v=version, w_q=w_q, a=act_q: XorPointEdgeConv(
                              c, 11, k=k, version=v, knn_metric="l2", edge_op="sub",
                              kernel_quantizer=w_q, output_quantizer=a), False))
            if act_q == "ste_sign":
                cases.append((f"bf{version}_s{st_}_xor",
                              lambda c, k, v=version, w_q=w_q: XorPointEdgeConv(
                                  c, 11, k=k, version=v, knn_metric="hamming", edge_op="xor",
                                  kernel_quantizer=w_q), True))
    return cases


CASES = conv_cases()


@pytest.mark.parametrize("name,factory,binary", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("b,n,k", SHAPES)
@pytest.mark.parametrize("train", [True, False])
def test_conv_fast_equals_plain_float64(name, factory, binary, b, n, k, train) -> None:
    c = in_channels(name)
    torch.manual_seed(n + k)
    conv = factory(c, k).double()
    perturb(conv, seed=b * n + k)
    x = points(b, n, c, seed=n, dtype=torch.float64, binary=binary)
    if train and b * n * k == 1:
        for reference in (False, True):
            with bnn.reference_mode(reference), pytest.raises(ValueError, match="more than 1"):
                copy.deepcopy(conv).train()(x)
        return
    fast, plain = run_both(conv, x, train)
    check_equal(fast, plain, 1e-9)


@pytest.mark.parametrize("name,factory,binary", CASES, ids=[c[0] for c in CASES])
def test_conv_fast_equals_plain_float32(name, factory, binary) -> None:
    """The native kernels' path, to float32 rounding."""
    c = in_channels(name)
    torch.manual_seed(0)
    conv = factory(c, 6)
    perturb(conv, seed=1)
    x = points(2, 45, c, seed=2, dtype=torch.float32, binary=binary)
    for train in (True, False):
        fast, plain = run_both(conv, x, train)
        check_equal(fast, plain, 2e-4)


@settings(max_examples=20, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(2, 40), seed=st.integers(0, 10**6),
       case=st.sampled_from(range(len(CASES))), train=st.booleans())
def test_conv_fast_equals_plain_property(b, n, seed, case, train) -> None:
    name, factory, binary = CASES[case]
    g = torch.Generator().manual_seed(seed)
    k = int(torch.randint(1, n + 1, (1,), generator=g))
    c = in_channels(name)
    torch.manual_seed(seed)
    conv = factory(c, k).double()
    perturb(conv, seed)
    x = points(b, n, c, seed, torch.float64, binary)
    fast, plain = run_both(conv, x, train)
    check_equal(fast, plain, 1e-9)


MODELS = {
    "dgcnn": lambda: DGCNN(5, k=6, widths=(8, 16, 8), emb_dims=32, mlp=(16, 8)),
    **{f"{v}_s{s}": (lambda v=v, s=s: BinDGCNN(5, v, "l2" if v == "rf" else "hamming", s, k=6,
                                               widths=(8, 16, 8), emb_dims=32, mlp=(16, 8)))
       for v in ("rf", "bf1", "bf2") for s in (1, 2, 3)},
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_models_fast_equal_plain(name: str, dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    model = MODELS[name]().to(dtype)
    # Non-trivial BN statistics: with the initial ones (mean 0, variance 1) an RF layer whose
    # two weight halves agree in sign gives mathematically equal features at different points,
    # which the plain path's rounding splits at random (a sign at the next layer may flip).
    perturb(model, seed=6)
    x = points(2, 37, 3, seed=4, dtype=dtype)
    tol = 1e-9 if dtype == torch.float64 else 2e-3  # float32: long chains of BN gradients
    for train in (True, False):
        fast, plain = run_both(model, x, train, seed=5)
        check_equal(fast, plain, tol)


def test_fast_training_steps_match_plain_steps() -> None:
    """Three SGD steps on each path end with the same weights and BN statistics (float64).
    (SGD, not Adam: Adam divides by the gradient's own size, so it would blow rounding noise
    in a mathematically zero gradient up to a full step.)"""
    torch.manual_seed(0)
    base = MODELS["bf2_s3"]().double()
    # Non-zero BN biases: a channel constant over the batch normalises to its bias, whose sign
    # is then well defined (with a zero bias PyTorch's kernel rounds it to +-1e-13).
    perturb(base, seed=7)
    x = points(3, 30, 3, seed=1, dtype=torch.float64)
    y = torch.tensor([0, 3, 1])
    states = []
    for reference in (False, True):
        m = copy.deepcopy(base).train()
        opt = torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9)
        torch.manual_seed(2)
        with bnn.reference_mode(reference):
            for _ in range(3):
                loss = torch.nn.functional.cross_entropy(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        states.append(m.state_dict())
    for key in states[1]:
        torch.testing.assert_close(states[0][key], states[1][key], rtol=1e-7, atol=1e-9,
                                   msg=key)


def test_peaked_channels_are_computed_edge_by_edge() -> None:
    """BF2 with a negative PReLU slope and a negative BN scale: the activation peaks inside its
    range, so the max over neighbours is not at an extreme of y; the fast path must still agree."""
    torch.manual_seed(0)
    conv = XorPointEdgeConv(3, 6, k=8, version=2, knn_metric="l2", edge_op="sub").double()
    with torch.no_grad():
        conv.act.weight.fill_(-0.5)
        conv.bn.weight.fill_(-1.0)
        conv.bn.running_var.fill_(1.0)
    x = points(2, 20, 3, seed=0, dtype=torch.float64)
    for train in (True, False):
        fast, plain = run_both(conv, x, train)
        check_equal(fast, plain, 1e-9)


@pytest.mark.parametrize("name,factory,binary", CASES, ids=[c[0] for c in CASES])
def test_replaced_batchnorm_forward_is_honoured(name, factory, binary) -> None:
    """A BatchNorm whose forward was replaced on the instance by something the fast convolutions
    do not know (not the data-parallel trainer's global-batch BatchNorm, whose statistics they
    combine themselves: tests/test_train_ddp_fast.py) is called in training: the fast
    convolutions, which compute edge statistics themselves, fall back to the plain formulation
    for that layer."""
    torch.manual_seed(3)
    conv = factory(in_channels(name), 5).double()
    perturb(conv, 3)
    x = points(2, 17, in_channels(name), 3, torch.float64, binary)
    bns = [m for m in conv.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert bns
    calls = []

    def shifted(self, t):  # a different normalisation than the layer's own statistics
        calls.append(1)
        return type(self).forward(self, t) + 0.25

    for bn in bns:
        bn.forward = types.MethodType(shifted, bn)  # a bound method: deepcopy rebinds it
    fast, plain = run_both(conv, x, train=True)
    assert calls
    check_equal(fast, plain, 1e-10)
    calls.clear()
    conv.eval()
    with torch.no_grad():
        conv(x)  # eval mode: running statistics, no replaced forward needed by the fast path


@settings(max_examples=25, deadline=None)
@given(b=st.integers(1, 3), n=st.integers(2, 40), c=st.integers(1, 70), seed=st.integers(0, 10**6),
       stage=st.sampled_from([1, 2, 3]))
def test_rf_eval_without_gradients_equals_plain_bit_for_bit(b, n, c, seed, stage) -> None:
    """A frozen teacher or a validation pass (eval mode, no gradient) runs RF's quantized edges
    through the fused kernels with the running statistics in PyTorch's BatchNorm arithmetic: the
    signs equal the plain path's, so stage 3 (integer products) equals it bit for bit; stage 2
    to float32 rounding (the plain path sums both halves in one matrix product) and stage 1's
    tanh too (the kernels' vector tanh)."""
    from bingnn.nn import edge_diff_quant

    calls = []
    real = edge_diff_quant.eval_edge_extremes
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(edge_diff_quant, "eval_edge_extremes",
                   lambda *a, **kw: calls.append(1) or real(*a, **kw))
        check_rf_eval(b, n, c, seed, stage, calls)


def check_rf_eval(b: int, n: int, c: int, seed: int, stage: int, calls: list) -> None:
    from bingnn.nn import edge_diff_quant

    k = int(torch.randint(1, n + 1, (1,), generator=torch.Generator().manual_seed(seed)))
    act_q, w_q = STAGES[stage]
    torch.manual_seed(seed)
    conv = BinPointEdgeConv(c, 19, k=k, input_quantizer=act_q, kernel_quantizer=w_q)
    perturb(conv, seed)
    conv.eval()
    x = points(b, n, c, seed, torch.float32)
    with torch.no_grad():
        fast = conv(x)
        with bnn.reference_mode():
            plain = conv(x)
    if edge_diff_quant.applies(x, tanh=act_q == "tanh"):
        assert calls
    if stage == 3:
        assert torch.equal(fast, plain)
    else:
        torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
    xg = x.clone().requires_grad_(True)  # with a gradient to compute: the plain path
    calls.clear()
    conv(xg).sum().backward()
    assert not calls and xg.grad is not None


def test_rf_models_in_eval_mode_equal_plain_bit_for_bit() -> None:
    """Whole fully binary RF students in eval mode without gradients (validation, the
    exporter's reference) give the plain path's logits exactly, also with the residual
    connections the recipes use."""
    stage = 3
    for residual in (False, True):
        for first_binary in (False, True):
            torch.manual_seed(stage)
            model = BinDGCNN(5, "rf", "l2", stage, k=6, widths=(8, 16, 16), emb_dims=32,
                             mlp=(16, 8), residual=residual, first_layer_binary=first_binary)
            perturb(model, seed=stage)
            model.eval()
            x = points(3, 41, 3, seed=stage, dtype=torch.float32)
            with torch.no_grad():
                fast = model(x)
                with bnn.reference_mode():
                    plain = model(x)
            assert torch.equal(fast, plain), (residual, first_binary)


def test_the_environment_switches_a_whole_process_to_the_plain_formulation() -> None:
    """``BINGNN_REFERENCE=1`` runs every point-cloud layer of a process (a whole training
    command) in the plain formulation; a value that is not a switch is refused on one line by
    the command line and by the first layer that asks, never silently read as off."""
    import os
    import subprocess
    import sys

    probe = "import bingnn.nn as n; print(n.is_reference_mode())"
    for value, expected in (("1", "True"), ("0", "False"), ("", "False")):
        env = {**os.environ, "BINGNN_REFERENCE": value}
        r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                           env=env, check=True)
        assert r.stdout.strip() == expected, value
    env = {**os.environ, "BINGNN_REFERENCE": "plain"}
    r = subprocess.run([sys.executable, "-m", "bingnn", "report", "nowhere"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "bingnn: error: BINGNN_REFERENCE='plain' is not a switch: set it to 1 (on) or 0 (off)"]
    r = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env)
    assert r.returncode != 0 and "is not a switch" in r.stderr
