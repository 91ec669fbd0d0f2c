"""Where the engine's time goes: median wall time of each layer of one forward pass.

    python benchmarks/profile_engine.py [--variant bf2] [--shortcut] [--batch 1] [--points 1024]
    python benchmarks/profile_engine.py --model FILE.bgnn --graph cora   # any exported model

Point-cloud models (default: a ModelNet40-sized BinDGCNN, random weights): the L2 k-NN on xyz,
the first layer (edge max/min + thresholds), each binary XorEdgeConv layer (Hamming k-NN + XOR
+ popcount + thresholds, fused), the embedding (binary GEMM + pooling, fused) and the head.
Node models: every layer of the file over the whole graph (``--graph cora|citeseer`` reads the
Planetoid raw files under ``--raw``, ``--graph powerlaw`` generates one, see
``bench_node_inference.py``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def profile(em, args_for_call: tuple, repeats: int) -> tuple[dict[str, float], float]:
    """Median seconds per layer and of the whole call."""
    import time

    em._runner.timings = None
    em.logits(*args_for_call)  # warm-up
    em._runner.timings = {}
    totals = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        em.logits(*args_for_call)
        totals.append(time.perf_counter() - t0)
    timings = em._runner.timings
    em._runner.timings = None
    return {k: statistics.median(v) for k, v in timings.items()}, statistics.median(totals)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="bf2", choices=["bf1", "bf2", "rf"])
    ap.add_argument("--shortcut", action="store_true",
                    help="BF variants with real-valued shortcuts (real XOR layer values)")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--model", type=Path, default=None, help="an exported .bgnn to profile")
    ap.add_argument("--graph", default="powerlaw", help="node models: cora, citeseer, powerlaw")
    ap.add_argument("--raw", default=None, help="folder of the Planetoid raw files")
    ap.add_argument("--nodes", type=int, default=100_000, help="power-law graph size")
    args = ap.parse_args(argv)

    import bingnn.engine

    if args.model is None:
        from bingnn.export import export
        from bingnn.models import BinDGCNN

        with tempfile.TemporaryDirectory() as tmp:
            model = BinDGCNN(num_classes=40, variant=args.variant, shortcut=args.shortcut)
            path = export(model, Path(tmp) / "m.bgnn")
            em = bingnn.engine.load(path, num_threads=args.threads)
    else:
        em = bingnn.engine.load(args.model, num_threads=args.threads)
    if em.is_point_model:
        x = np.random.default_rng(0).standard_normal((args.batch, args.points, 3),
                                                     dtype=np.float32)
        call: tuple = (x,)
        what = f"{em.variant} B={args.batch} N={args.points}"
    else:
        from bench_node_inference import load_graph

        g = load_graph(args.graph, args.nodes, raw=args.raw)
        if g.x.shape[1] != em.in_channels:
            raise SystemExit(f"the model reads {em.in_channels} features, {args.graph} has "
                             f"{g.x.shape[1]}")
        call = (g.x, g.edge_index)
        what = f"{em.arch} on {args.graph} ({g.x.shape[0]} nodes, {g.edge_index.shape[1]} edges)"
    layers, total = profile(em, call, args.repeats)
    print(f"{what} threads={args.threads}")
    for name, s in layers.items():
        print(f"  {name:<32} {1e3 * s:10.3f} ms  {100 * s / total:5.1f} %")
    print(f"  {'sum of layers':<32} {1e3 * sum(layers.values()):10.3f} ms")
    print(f"  {'end to end (logits)':<32} {1e3 * total:10.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
