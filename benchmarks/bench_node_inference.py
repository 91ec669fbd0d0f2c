"""Full-graph node classification: binary GraphSAGE / GCN in the bingnn engine vs the same float
model in eager PyTorch Geometric, latency, peak memory and model file size.

Graphs: Cora (Planetoid raw files, 2,708 nodes, row-normalised bag-of-words as trained),
Facebook Page-Page (the MUSAE release files, 22,470 nodes, 4,714 0/1 features) and a generated
power-law graph (Chung-Lu, 1,000,000 nodes, 10,000,000 directed edges without duplicates,
256 0/1 features, density 5 %). Models: 2 layers, hidden 256, random weights with non-trivial
BatchNorm statistics (speed does not depend on the values); ``sage-signs`` is BinSAGE whose
second layer aggregates its neighbours' signs by majority vote (``sign_messages=True``) beside
the same float GraphSAGE. Float: ``GraphSAGE`` / ``GCN``
(stage 0) on PyG's most efficient CPU path, a ``torch.sparse_csr`` adjacency built once
(``spmm``, no E x C message tensor; GCN's normalised adjacency cached). Binary: the stage-3
``BinSAGE`` / ``BinGCN`` exported to ``.bgnn``, run by ``bingnn.engine`` with an
``engine.Graph`` built once from the edge index.

Each (model, implementation, threads) runs in its own process: ``peak_mb`` is the largest
resident size during the first forward pass minus the resident size just before it (inputs,
graph structure and model loaded; the pass's one-time work, such as GCN's normalised adjacency,
is included), read from ``/proc/self/status`` with the high-water mark reset through
``/proc/self/clear_refs``; ``median_ms`` is the median of the passes that follow. Model
size rows carry ``bytes`` and ``ratio`` (float state dict / ``.bgnn``); their ``median_ms`` is
the time to load the file.

Standalone: ``python benchmarks/bench_node_inference.py [--smoke] [--graphs cora,powerlaw]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _harness import row  # noqa: E402

HIDDEN, LAYERS = 256, 2
POWERLAW = {"nodes": 1_000_000, "avg_degree": 10, "features": 256, "density": 0.05,
            "classes": 16}
SMOKE = {"nodes": 3000, "avg_degree": 10, "features": 32, "density": 0.1, "classes": 4}


class GraphData:
    """A benchmark graph: features ``x (N, F)`` float32, ``edge_index (2, E)`` int64; bag-of-words
    graphs (``sparse_features``) are also given to the engine as a CSR matrix."""

    def __init__(self, name: str, x: np.ndarray, edge_index: np.ndarray, num_classes: int,
                 sparse_features: bool = False) -> None:
        self.name, self.x, self.edge_index = name, x, edge_index
        self.num_classes, self.sparse_features = num_classes, sparse_features


def shared_data() -> Path | None:
    """The folder of the project's offline datasets (``$BINGNN_SHARED_DATA`` or a
    ``shared/data`` next to a parent of the checkout)."""
    env = os.environ.get("BINGNN_SHARED_DATA")
    roots = [Path(env)] if env else []
    roots += [p / "shared" / "data" for p in HERE.parents]
    return next((r for r in roots if r.is_dir()), None)


def powerlaw_graph(nodes: int, avg_degree: int, features: int, density: float, classes: int,
                   seed: int = 0, exponent: float = 2.1) -> GraphData:
    """Chung-Lu graph: expected degrees from a Pareto law (exponent 2.1) capped at 20,000,
    ``nodes * avg_degree / 2`` undirected pairs drawn in proportion to them, both directions
    kept, duplicates and self-loops dropped; 0/1 features of the given density."""
    rng = np.random.default_rng(seed)
    w = (1.0 - rng.random(nodes)) ** (-1.0 / (exponent - 1.0))
    w = np.minimum(w / w.sum() * nodes * avg_degree, 20_000.0)
    cdf = np.cumsum(w)
    m = nodes * avg_degree // 2
    src = np.searchsorted(cdf, rng.random(int(m * 1.02)) * cdf[-1])
    dst = np.searchsorted(cdf, rng.random(int(m * 1.02)) * cdf[-1])
    keep = src != dst
    pairs = np.unique(np.minimum(src, dst)[keep] * nodes + np.maximum(src, dst)[keep])[:m]
    a, b = pairs // nodes, pairs % nodes
    order = rng.permutation(2 * a.size)
    ei = np.stack([np.concatenate([a, b]), np.concatenate([b, a])])[:, order].astype(np.int64)
    x = (rng.random((nodes, features), dtype=np.float32) < density).astype(np.float32)
    return GraphData("powerlaw", x, ei, classes)


def cora(raw: Path) -> GraphData:
    """Cora through bingnn's loader (row-normalised features, as the models are trained)."""
    from bingnn.graphs.datasets import load_node_dataset

    with tempfile.TemporaryDirectory() as tmp:
        d = load_node_dataset("cora", tmp, raw_dir=str(raw)).data
        return GraphData("cora", d.x.numpy().astype(np.float32), d.edge_index.numpy(),
                         int(d.y.max()) + 1)


def facebook(folder: Path) -> GraphData:
    """Facebook Page-Page from its release files (``facebook_edges.csv``,
    ``facebook_target.csv``, ``facebook_features.json``): undirected edges in both directions,
    0/1 features."""
    edges = np.loadtxt(folder / "facebook_edges.csv", delimiter=",", skiprows=1, dtype=np.int64)
    feats = json.loads((folder / "facebook_features.json").read_text())
    n = 1 + max(int(k) for k in feats)
    f = 1 + max((max(v) for v in feats.values() if v), default=0)
    x = np.zeros((n, f), np.float32)
    for k, v in feats.items():
        x[int(k), v] = 1.0
    labels = np.loadtxt(folder / "facebook_target.csv", delimiter=",", skiprows=1, usecols=3,
                        dtype=str, encoding="utf-8")
    ei = np.concatenate([edges.T, edges.T[::-1]], axis=1)
    ei = ei[:, ei[0] != ei[1]]
    return GraphData("facebook", x, np.ascontiguousarray(ei), len(set(labels.tolist())),
                     sparse_features=True)


def load_graph(name: str, nodes: int | None = None, raw: str | None = None) -> GraphData:
    """One benchmark graph by name: ``cora``, ``facebook``, ``powerlaw`` (``nodes`` nodes)."""
    data = shared_data()
    if name == "cora":
        return cora(Path(raw) if raw else data / "planetoid")
    if name == "facebook":
        return facebook(Path(raw) if raw else data / "facebook")
    spec = dict(POWERLAW)
    if nodes:
        spec["nodes"] = nodes
    return powerlaw_graph(**spec)


# ----------------------------------------------------------------------------- models


def build(arch: str, stage: int, f: int, classes: int, seed: int = 0):
    """The float (stage 0) or binary (stage 3) model with BatchNorm statistics that are not
    the identity (thresholds are then ordinary values)."""
    import torch

    from bingnn.models import BinGCN, BinSAGE

    torch.manual_seed(seed)
    cls = BinSAGE if arch.startswith("sage") else BinGCN
    kw = {"cached": True} if arch == "gcn" and stage == 0 else {}
    if arch == "sage-signs":  # the float teacher is the same GraphSAGE (it has no signs)
        kw["sign_messages"] = True
    model = cls(f, HIDDEN, LAYERS, classes, stage=stage, **kw)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                m.running_mean.normal_(0.0, 0.5, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
    return model.eval()


# ----------------------------------------------------------------------------- workers


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _peak_extra_mb(fn) -> float | None:
    """Largest resident size during ``fn()`` minus the size before it (Linux), in MiB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    before = _rss_kb("VmRSS")
    fn()
    return (_rss_kb("VmHWM") - before) / 1024.0


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(1e3 * (time.perf_counter() - t0))
    return out


def worker(args: argparse.Namespace) -> None:
    """One measurement in this process; prints a JSON line."""
    d = Path(args.dir)
    x = np.load(d / "x.npy")
    ei = np.load(d / "ei.npy")
    n = x.shape[0]
    if args.impl == "torch":
        import torch

        torch.set_num_threads(args.threads)
        from torch_geometric.utils import to_torch_csr_tensor

        meta = json.loads((d / "meta.json").read_text())
        model = build(args.arch, 0, x.shape[1], meta["classes"])
        model.load_state_dict(torch.load(d / f"{args.arch}_float.pt"))
        xt = torch.from_numpy(x)
        import warnings

        with warnings.catch_warnings():  # PyG's beta notice about sparse CSR tensors
            warnings.simplefilter("ignore", UserWarning)
            adj_t = to_torch_csr_tensor(torch.from_numpy(ei).flip(0), size=(n, n))

        def call():
            with torch.no_grad():
                return model(xt, adj_t)
    else:
        import bingnn.engine

        em = bingnn.engine.load(d / f"{args.arch}.bgnn", num_threads=args.threads)
        feats = x
        if args.impl == "engine_sparse":
            import scipy.sparse

            feats = scipy.sparse.csr_matrix(x)
        graph = bingnn.engine.Graph(ei, n, num_threads=args.threads)

        def call():
            return em.logits(feats, graph)
    peak = _peak_extra_mb(call)  # the first pass also warms up (GCN's normalisation cached)
    times = _time(call, args.repeats)
    print(json.dumps({"times_ms": times, "median_ms": statistics.median(times),
                      "peak_mb": peak}))


def _measure(impl: str, arch: str, d: Path, threads: int, repeats: int) -> dict[str, Any]:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", impl, "--arch", arch,
           "--dir", str(d), "--threads", str(threads), "--repeats", str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{impl} {arch} worker failed: {out.stderr.strip()[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


IMPLS = {
    "torch": "{F} float32, eager PyG (sparse CSR adjacency)",
    "engine": "{B}, bingnn engine",
    "engine_sparse": "{B}, bingnn engine (CSR features)",
}
NAMES = {"sage": ("GraphSAGE", "BinSAGE"), "gcn": ("GCN", "BinGCN"),
         "sage-signs": ("GraphSAGE", "BinSAGE with sign messages")}


def prepare(g: GraphData, d: Path) -> dict[str, dict[str, int]]:
    """Write the graph and both models of each architecture to ``d``; return file sizes."""
    import torch

    from bingnn.export import export

    np.save(d / "x.npy", g.x)
    np.save(d / "ei.npy", g.edge_index)
    (d / "meta.json").write_text(json.dumps({"classes": g.num_classes}))
    sizes = {}
    for arch in NAMES:
        float_model = build(arch, 0, g.x.shape[1], g.num_classes)
        torch.save(float_model.state_dict(), d / f"{arch}_float.pt")
        export(build(arch, 3, g.x.shape[1], g.num_classes, seed=1), d / f"{arch}.bgnn")
        sizes[arch] = {"float": (d / f"{arch}_float.pt").stat().st_size,
                       "bgnn": (d / f"{arch}.bgnn").stat().st_size}
    return sizes


def _load_ms(path: Path) -> float:
    """Median time to load a model file (``torch.load`` / ``bingnn.engine.load``)."""
    from _harness import median_ms

    if path.suffix == ".bgnn":
        import bingnn.engine

        return median_ms(bingnn.engine.load, path, repeats=5)
    import torch

    return median_ms(lambda: torch.load(path, weights_only=True), repeats=5)


def run(smoke: bool, threads: list[int], graphs: list[str] | None = None) -> list[dict]:
    if smoke:
        names, repeats = ["smoke"], 1
    else:
        names, repeats = graphs or ["cora", "facebook", "powerlaw"], 5
    rows: list[dict] = []
    for name in names:
        if name == "smoke":
            g = powerlaw_graph(**SMOKE)
            g.name = "powerlaw-smoke"
        else:
            try:
                g = load_graph(name)
            except (OSError, ValueError, TypeError) as e:
                print(f"# skipping {name}: {e}", file=sys.stderr)
                continue
        n, e, f = g.x.shape[0], g.edge_index.shape[1], g.x.shape[1]
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            sizes = prepare(g, d)
            for arch, (fname, bname) in NAMES.items():
                shape = f"{g.name} N={n} E={e} F={f} {arch}"
                size_shape = f"{g.name} {arch}"
                base, packed = sizes[arch]["float"], sizes[arch]["bgnn"]
                rows.append(row("node_model_size", size_shape,
                                f"{fname} float32 state dict: {base / 1024:.0f} KiB", 1,
                                _load_ms(d / f"{arch}_float.pt"), baseline=True, bytes=base,
                                ratio=1.0))
                rows.append(row("node_model_size", size_shape,
                                f"{bname} .bgnn: {packed / 1024:.1f} KiB (1/{base / packed:.1f})",
                                1, _load_ms(d / f"{arch}.bgnn"), bytes=packed,
                                ratio=base / packed))
                impls = ["torch", "engine"] + (["engine_sparse"] if g.sparse_features else [])
                for t in threads:
                    for impl in impls:
                        r = _measure(impl, arch, d, t, repeats)
                        label = IMPLS[impl].format(F=fname, B=bname)
                        rows.append(row("node_inference", shape, label, t, r["median_ms"],
                                        baseline=impl == "torch", peak_mb=r["peak_mb"],
                                        times_ms=r["times_ms"], nodes=n, edges=e))
                        print(f"# {shape} {label} threads={t}: {r['median_ms']:.1f} ms, "
                              f"peak +{r['peak_mb']} MiB", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--worker", choices=sorted(IMPLS), help=argparse.SUPPRESS)
    ap.add_argument("--arch", choices=sorted(NAMES), help=argparse.SUPPRESS)
    ap.add_argument("--dir", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--graphs", default=None, help="comma-separated: cora,facebook,powerlaw")
    args = ap.parse_args(argv)
    if args.worker:
        args.impl = args.worker
        worker(args)
        return 0
    graphs = args.graphs.split(",") if args.graphs else None
    for r in run(args.smoke, [args.threads], graphs):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
