"""Golden inputs/outputs for checking another build of the engine (ARM64) against this one.

    python scripts/arm64_golden.py make GOLDEN.npz    # here (x86-64, needs PyTorch)
    python scripts/arm64_golden.py check GOLDEN.npz   # there (numpy + bingnn.engine only)

``make`` records, for the real-valued engine kernels (3-D L2 k-NN, row selection, first-layer
edge max/min, RF edge layer, embedding pooling) and for whole models (BF1, BF2 and RF binary
DGCNNs with perturbed BatchNorm/rescale/PReLU, folded as for export), the inputs and the
outputs of this machine's native engine, after checking that every dispatch level here agrees
with the scalar reference and that the engine agrees with PyTorch (3-D k-NN graphs on generic
points, every neighbour list and bit of the BF models, predictions).

``check`` recomputes everything with the engine it runs on, at every dispatch level that CPU
supports, and requires the results to equal the recorded ones bit for bit: the engine's
arithmetic is the same on both machines. The model traces are also compared with PyTorch's
recorded ones, as the parity tests do. The numpy reference backend (``native=False``) is
checked the same way; its RF layers 1..3 compute distances with a BLAS matrix product, whose
summation order is the BLAS library's, so for those the check requires equal predictions and
logits within 1e-5 instead of equal bits.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np

VARIANTS = ("bf1", "bf2", "rf")
SMALL = dict(k=5, widths=(16, 16, 32, 64), emb_dims=64, mlp=(40, 24))


# ----------------------------------------------------------------------------- inputs


def kernel_inputs() -> dict[str, Any]:
    """Deterministic inputs of the real-valued kernels (same on every machine)."""
    rng = np.random.default_rng(2024)
    cases: dict[str, Any] = {}
    for i, (b, n, k, kind) in enumerate([(2, 40, 7, "normal"), (1, 300, 20, "normal"),
                                         (3, 33, 9, "grid"), (1, 64, 64, "grid"),
                                         (2, 1024, 20, "normal")]):
        if kind == "grid":
            x = (rng.integers(-3, 4, size=(b, n, 3)) / 8).astype(np.float32)
        else:
            x = rng.standard_normal((b, n, 3)).astype(np.float32)
        cases[f"knn3.{i}"] = (x, k, kind)
    for i, (rows, m) in enumerate([(20, 90), (7, 1000), (3, 17)]):
        d = rng.integers(0, 5, size=(rows, m)).astype(np.float32)  # ties everywhere
        cases[f"select.{i}"] = (d, int(rng.integers(1, m + 1)))
    for i, (c, bn) in enumerate([(16, False), (70, True), (64, True)]):
        x = rng.standard_normal((2, 50, 3)).astype(np.float32)
        idx = rng.integers(0, 50, size=(2, 50, 9)).astype(np.int32)
        w = np.where(rng.random((c, 6)) < 0.5, 1.0, -1.0).astype(np.float32)
        s = rng.standard_normal(6).astype(np.float32) if bn else None
        t = rng.standard_normal(6).astype(np.float32) if bn else None
        cases[f"edge0.{i}"] = (x, idx, w, s, t)
    for i, (c, c_out) in enumerate([(10, 9), (64, 16), (130, 33)]):
        h = rng.standard_normal((2, 24, c)).astype(np.float32)
        idx = rng.integers(0, 24, size=(2, 24, 6)).astype(np.int32)
        lo = (rng.standard_normal(c) - 0.5).astype(np.float32)
        hi = (rng.standard_normal(c) + 0.5).astype(np.float32)
        neg = (rng.random(c) < 0.3).astype(np.uint8)
        cases[f"rf.{i}"] = (h, idx, lo, hi, neg, _random_bits(rng, 48, c),
                            _random_bits(rng, c_out, c), _random_bits(rng, c_out, c))
    for i, (b, n, c, bn) in enumerate([(2, 24, 32, False), (1, 1024, 256, True),
                                       (3, 100, 64, True), (1, 17, 96, False)]):
        y = rng.integers(-60, 61, size=(b, n, c)).astype(np.int32)
        alpha = rng.standard_normal(c).astype(np.float32)
        slope = (rng.standard_normal(c) * 0.3).astype(np.float32)
        s = rng.standard_normal(c).astype(np.float32) if bn else None
        t = rng.standard_normal(c).astype(np.float32) if bn else None
        cases[f"pool.{i}"] = (y, alpha, slope, s, t)
    return cases


def _random_bits(rng: np.random.Generator, rows: int, c: int) -> np.ndarray:
    """``rows`` random packed rows of ``c`` bits (padding bits 0), ``(rows, ceil(c / 64))``."""
    bits = np.pad(rng.random((rows, c)) < 0.5, [(0, 0), (0, -c % 64)])
    return np.packbits(bits, axis=-1, bitorder="little").view("<u8").astype(np.uint64)


def run_kernel(name: str, args: tuple) -> np.ndarray | tuple[np.ndarray, ...]:
    from bingnn import _native

    kind = name.split(".")[0]
    if kind == "knn3":
        x, k, _ = args
        return _native.l2_knn3(x, k, 0)
    if kind == "select":
        return _native.select_k_rows(args[0], args[1], 0)
    if kind == "edge0":
        return _native.edge_conv0_minmax(*args, 0)
    if kind == "rf":
        return _native.rf_edge_minmax(*args, 0)
    return _native.embed_pool(*args, 0)


def as_tuple(out: Any) -> tuple[np.ndarray, ...]:
    return tuple(out) if isinstance(out, tuple) else (out,)


# ----------------------------------------------------------------------------- make


def make(path: str) -> None:
    import torch

    from bingnn.engine import EngineModel
    from bingnn.engine import kernels as K
    from bingnn.export import fold
    from bingnn.models import BinDGCNN
    from bingnn.nn.knn import knn as torch_knn

    levels = K.cpu_features()["levels"]
    store: dict[str, np.ndarray] = {}
    for name, args in kernel_inputs().items():
        with K.dispatch("scalar"):
            want = as_tuple(run_kernel(name, args))
        for lvl in levels:
            with K.dispatch(lvl):
                for a, b in zip(as_tuple(run_kernel(name, args)), want, strict=True):
                    np.testing.assert_array_equal(a, b, err_msg=f"{name} at {lvl}")
        if name.startswith("knn3") and args[2] == "normal":
            np.testing.assert_array_equal(
                want[0], torch_knn(torch.from_numpy(args[0]), args[1], "l2").numpy(),
                err_msg=f"{name}: engine vs PyTorch")
        if name.startswith("select"):
            np.testing.assert_array_equal(
                want[0], np.argsort(args[0], axis=1, kind="stable")[:, :args[1]])
        for j, a in enumerate(want):
            store[f"{name}.out{j}"] = a

    meta = {}
    for vi, variant in enumerate(VARIANTS):
        torch.manual_seed(100 + vi)
        model = BinDGCNN(num_classes=7, variant=variant,
                         knn="l2" if variant == "rf" else "hamming", **SMALL).eval()
        _perturb(model, 200 + vi)
        desc, arrays = fold(model)
        rng = np.random.default_rng(300 + vi)
        if variant == "rf":
            x = rng.normal(size=(3, 48, 3)).astype(np.float32)
        else:  # a 2**-6 grid: layer 0 sums are exact and distance ties are frequent
            x = (rng.integers(-64, 65, size=(3, 48, 3)) / 64.0).astype(np.float32)
        with K.dispatch("scalar"):
            want = EngineModel(desc, arrays).trace(x)
        for lvl in levels:
            with K.dispatch(lvl):
                got = EngineModel(desc, arrays).trace(x)
            for key in want:
                np.testing.assert_array_equal(got[key], want[key], err_msg=f"{variant} {key}")
        tr = _torch_trace(model, x)
        np.testing.assert_array_equal(want["logits"].argmax(-1), tr["logits"].argmax(-1))
        meta[variant] = {"desc": desc, "arrays": sorted(arrays), "trace": sorted(want),
                         "torch": sorted(tr)}
        store[f"model.{variant}.x"] = x
        for key, a in arrays.items():
            store[f"model.{variant}.arr.{key}"] = np.asarray(a)
        for key, a in want.items():
            store[f"model.{variant}.trace.{key}"] = a
        for key, a in tr.items():
            store[f"model.{variant}.torch.{key}"] = a
    store["meta"] = np.frombuffer(json.dumps(meta).encode(), np.uint8)
    np.savez_compressed(path, **store)
    print(f"golden: {len(store)} arrays -> {path}")


def _perturb(model, seed: int) -> None:
    """Non-trivial BatchNorm statistics, rescales and slopes, about a third negative (max turns
    into min, sign sets become intervals), as the engine parity tests do."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.2)
                m.weight.copy_(torch.randn(n, generator=g))
                m.bias.copy_(torch.randn(n, generator=g) * 0.5)
            for name, p in m.named_parameters(recurse=False):
                if name == "channel_scale":
                    p.copy_(torch.rand(p.shape, generator=g) * 2.0 - 0.5)
                elif name == "weight" and type(m).__name__ == "ChannelPReLU":
                    p.copy_(torch.rand(p.shape, generator=g) * 1.4 - 0.6)


def _torch_trace(model, x: np.ndarray) -> dict[str, np.ndarray]:
    import torch

    out: dict[str, np.ndarray] = {}
    with torch.no_grad():
        h = torch.from_numpy(x)
        for li, conv in enumerate(model.convs):
            h, idx = conv(h, return_graph=True)
            out[f"idx{li}"] = idx.numpy()
            out[f"x{li}"] = h.numpy()
        out["logits"] = model(torch.from_numpy(x)).numpy()
    return out


# ----------------------------------------------------------------------------- check


def check(path: str) -> int:
    from bingnn.engine import EngineModel
    from bingnn.engine import kernels as K
    from bingnn.engine import reference as ref

    g = np.load(path)
    meta = json.loads(g["meta"].tobytes().decode())
    feats = K.cpu_features()
    levels = feats["levels"]
    print(f"engine on {feats['arch']}: levels {', '.join(levels)}")
    failures: list[str] = []

    def same(got: np.ndarray, want: np.ndarray, what: str) -> None:
        if got.shape != want.shape or got.dtype != want.dtype or not np.array_equal(got, want):
            diff = (int(np.sum(got != want)) if got.shape == want.shape else "shape")
            failures.append(f"{what}: differs ({diff} entries)")

    n_kernel = 0
    for name, args in kernel_inputs().items():
        want = [g[f"{name}.out{j}"] for j in range(2 if name.split(".")[0] in ("edge0", "rf")
                                                   else 1)]
        for lvl in levels:
            with K.dispatch(lvl):
                for j, a in enumerate(as_tuple(run_kernel(name, args))):
                    same(a, want[j], f"{name} out{j} at {lvl}")
                    n_kernel += 1

    n_model = 0
    for variant in VARIANTS:
        info = meta[variant]
        arrays = {key: g[f"model.{variant}.arr.{key}"] for key in info["arrays"]}
        x = g[f"model.{variant}.x"]
        want = {key: g[f"model.{variant}.trace.{key}"] for key in info["trace"]}
        torch_tr = {key: g[f"model.{variant}.torch.{key}"] for key in info["torch"]}
        runs = [(lvl, True) for lvl in levels] + [("numpy", False)]
        for lvl, native in runs:
            em = EngineModel(info["desc"], arrays, native=native)
            if native:
                with K.dispatch(lvl):
                    got = em.trace(x)
            else:
                got = em.trace(x)
            exact = native or variant != "rf"
            for key in want:
                if exact or key in ("idx0", "x0"):
                    same(got[key], want[key], f"{variant} {key} ({lvl})")
            if not exact and not np.allclose(got["logits"], want["logits"], rtol=1e-5,
                                             atol=1e-5):
                failures.append(f"{variant} logits ({lvl}): not within 1e-5 of the recorded")
            # Against PyTorch, as the parity tests: BF graphs and bits exact, predictions equal.
            if variant != "rf":
                for li in range(sum(1 for key in torch_tr if key.startswith("idx"))):
                    same(got[f"idx{li}"], torch_tr[f"idx{li}"].astype(got[f"idx{li}"].dtype),
                         f"{variant} idx{li} vs PyTorch ({lvl})")
                    same(got[f"x{li}"], ref.pack_bits(torch_tr[f"x{li}"] >= 0),
                         f"{variant} bits of layer {li} vs PyTorch ({lvl})")
            else:
                same(got["idx0"], torch_tr["idx0"].astype(got["idx0"].dtype),
                     f"rf idx0 vs PyTorch ({lvl})")
            same(got["logits"].argmax(-1), torch_tr["logits"].argmax(-1),
                 f"{variant} predictions vs PyTorch ({lvl})")
            if not np.allclose(got["logits"], torch_tr["logits"], rtol=1e-3, atol=1e-3):
                failures.append(f"{variant} logits ({lvl}): not within 1e-3 of PyTorch's")
            n_model += 1

    for f in failures:
        print("FAIL", f)
    print(f"golden check: {n_kernel} kernel outputs, {n_model} model runs "
          f"({len(VARIANTS)} variants x {len(levels)} levels + numpy): "
          f"{'all equal' if not failures else f'{len(failures)} differences'}")
    return 1 if failures else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] not in ("make", "check"):
        sys.exit(__doc__.split("\n\n")[1])
    if sys.argv[1] == "make":
        make(sys.argv[2])
    else:
        sys.exit(check(sys.argv[2]))
