"""The fast point-set convolutions under the data-parallel trainer (2 gloo processes on the
CPU): they combine their fused per-edge BatchNorm statistics over the processes
(:mod:`bingnn.nn.global_batchnorm`) instead of falling back to the plain formulation, and
compute what one process computes on the whole batch, gradients included."""

from __future__ import annotations

import copy
import os

import pytest
import torch
from _ddp_workers import (
    count_paths,
    identical_replicas,
    layer_step,
    run_cases_counting,
    run_layers,
    train_case,
)
from test_nn_fast_paths import CASES, check_equal, in_channels, perturb, points
from test_train_ddp import _eval_logits

from bingnn.nn import global_batchnorm
from bingnn.train.distributed import DistContext, spawn

# float DGCNN, stage-1 edge statistics from per-node sums; RF stage 3: the fused native kernels
# (deep layers) and the folded xyz layer; BF2/BF1 on XOR edges (stage 3) and on xyz (sub); the
# tanh stage (fused RF kernels in mode 1)
LAYER_CASES = ["edgeconv", "rf_s3_xyz", "rf_s3_deep", "rf_s2_deep", "bf2_s3_xor",
               "bf2_s3_sub", "bf1_s3_xor", "bf2_s2_sub"]
_FACTORY = {name: (factory, binary) for name, factory, binary in CASES}
_CLASS = {"edgeconv": "PointEdgeConv", "rf": "BinPointEdgeConv", "bf": "XorPointEdgeConv"}


def _layer_cases(dtype: torch.dtype) -> list:
    cases = []
    for i, name in enumerate(LAYER_CASES):
        factory, binary = _FACTORY[name]
        c = in_channels(name)
        torch.manual_seed(i)
        conv = factory(c, 5).to(dtype)
        perturb(conv, seed=i)
        # 5 clouds: the processes hold 3 and 2 (uneven shards weigh their moments by count)
        x = points(5, 23, c, seed=i, dtype=dtype, binary=binary)
        with torch.no_grad():
            out_shape = copy.deepcopy(conv).eval()(x).shape
        r = torch.randn(out_shape, generator=torch.Generator().manual_seed(i), dtype=dtype)
        cases.append((conv, x, r))
    return cases


def _class_of(name: str) -> str:
    return _CLASS["edgeconv" if name == "edgeconv" else name[:2]]


def test_fast_convs_over_two_processes_equal_one(tmp_path) -> None:
    """Each fast convolution, one training step, in float64 (the PyTorch formulations, tight)
    and float32 (the native kernels, to float32 rounding): outputs, input and parameter
    gradients and the running statistics of 2 processes (each on its shard, BatchNorm over the
    global batch) equal one process on the whole batch; only the fast formulation runs, in
    global mode."""
    dtypes = (torch.float64, torch.float32)
    cases = [case for dtype in dtypes for case in _layer_cases(dtype)]
    singles = [layer_step(copy.deepcopy(conv), x, r) for conv, x, r in cases]
    spawn(run_layers, 2, tmp_path, cases, str(tmp_path))
    ranks = [torch.load(os.path.join(tmp_path, f"layers_rank{r}.pt"), weights_only=False)
             for r in (0, 1)]
    names = [(name, dtype) for dtype in dtypes for name in LAYER_CASES]
    for i, (name, dtype) in enumerate(names):
        tol = 1e-9 if dtype == torch.float64 else 2e-4
        a, b = ranks[0]["results"][i], ranks[1]["results"][i]
        for key in ("grads", "bufs"):  # the replicas agree bit for bit
            for n in a[key]:
                assert torch.equal(a[key][n], b[key][n]), (name, key, n)
        out = torch.empty_like(singles[i]["out"])
        gx = torch.empty_like(singles[i]["gx"])
        for rank, res in enumerate((a, b)):
            out[rank::2], gx[rank::2] = res["out"], res["gx"]
        single = singles[i]
        moved = [n for n, v in single["bufs"].items() if v.is_floating_point()
                 and not torch.equal(v, cases[i][0].state_dict()[n])]
        assert moved, name  # the running statistics were updated
        try:
            check_equal((out, gx, a["grads"], a["bufs"], []),
                        (single["out"], single["gx"], single["grads"], single["bufs"], []), tol)
        except AssertionError as e:
            raise AssertionError(f"{name} {dtype}: {e}") from e
    for paths in (ranks[0]["paths"], ranks[1]["paths"]):
        assert not any(kind == "plain" for _, kind, _ in paths), paths
        assert not any(not on for _, _, on in paths), paths
        for cls in {_class_of(n) for n in LAYER_CASES}:
            want = len(dtypes) * sum(_class_of(n) == cls for n in LAYER_CASES)
            assert paths.get((cls, "fast", True), 0) == want, (cls, paths)


PC_TINY = dict(k=4, widths=[8, 8], emb_dims=16, mlp=[16, 8], dropout=0.0)


def _model_specs() -> list[dict]:
    base = dict(kind="pointcloud", epochs=2, optimizer="sgd", loss={"label_smoothing": 0.1})
    # Binary students: batches of 12 (6 clouds a process). The BatchNorm inputs of their binary
    # head take few distinct values, and with small batches a value often equals the batch
    # mean: it normalises to rounding noise, whose sign the next quantizer keeps, so one and
    # two processes (sums in another order) part at once (seen at 8 clouds, plain path too).
    return [
        dict(base, batch_size=8, lr=0.05, seed=1, init_seed=0,
             model={"arch": "dgcnn", **PC_TINY}, recalibrate_bn=True),
        dict(base, batch_size=12, lr=0.02, seed=2, init_seed=1,
             model={"arch": "bindgcnn", "variant": "bf2", "knn": "hamming", "stage": 3,
                    **PC_TINY}),
        dict(base, batch_size=12, lr=0.02, seed=3, init_seed=2,
             model={"arch": "bindgcnn", "variant": "rf", "knn": "l2", "stage": 3, **PC_TINY}),
    ]


def test_fast_paths_train_under_two_processes(tmp_path) -> None:
    """DGCNN, BF2 and RF stage-3 students trained for a few steps by 2 gloo processes with the
    fast convolutions: the replicas stay identical, match one process on the same global
    batches (tolerances of tests/test_train_ddp.py), and the plain formulation never ran."""
    specs = _model_specs()
    spawn(run_cases_counting, 2, tmp_path, specs, str(tmp_path))
    for rank in (0, 1):
        paths = torch.load(os.path.join(tmp_path, f"paths_rank{rank}.pt"))
        assert not any(kind == "plain" for _, kind, _ in paths), paths
        for cls in ("PointEdgeConv", "XorPointEdgeConv", "BinPointEdgeConv"):
            assert paths.get((cls, "fast", True), 0) > 0, (cls, paths)  # training steps
    for i, spec in enumerate(specs):
        rank0 = identical_replicas(str(tmp_path), i)
        single = train_case(spec, DistContext())
        moved = 0
        for k, v in single["final"].items():
            torch.testing.assert_close(rank0["final"][k], v, atol=1e-4, rtol=1e-3,
                                       msg=lambda m, i=i, k=k: f"case {i}: {k}: {m}")
            moved += "running_var" in k and not torch.allclose(v, torch.ones_like(v))
        assert moved, i  # BatchNorm statistics were gathered, so the comparison means something
        torch.testing.assert_close(_eval_logits(spec, rank0["final"]),
                                   _eval_logits(spec, single["final"]), atol=1e-4, rtol=1e-3)
        for a, b in zip(rank0["history"], single["history"], strict=True):
            assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-6), i


def test_global_mode_needs_a_process_group() -> None:
    """A converted layer outside a process group (or in eval mode) is not in global mode, and
    the fast convolutions then compute exactly what an unconverted layer computes."""
    name = "rf_s3_deep"
    factory, binary = _FACTORY[name]
    torch.manual_seed(0)
    conv = factory(in_channels(name), 5)
    perturb(conv, 0)
    x = points(3, 19, in_channels(name), 0, torch.float32, binary)
    r = torch.randn(3, 19, 9, generator=torch.Generator().manual_seed(0))
    plain = layer_step(copy.deepcopy(conv), x, r)
    converted = copy.deepcopy(conv)
    assert global_batchnorm.convert(converted) == 1
    assert global_batchnorm.converted(converted.block.center)
    assert not global_batchnorm.active(converted.block.center)
    with count_paths() as paths:
        got = layer_step(converted, x, r)
    assert paths == {("BinPointEdgeConv", "fast", False): 1}
    assert torch.equal(got["out"], plain["out"]) and torch.equal(got["gx"], plain["gx"])
    for n, g in plain["grads"].items():
        assert torch.equal(got["grads"][n], g), n
