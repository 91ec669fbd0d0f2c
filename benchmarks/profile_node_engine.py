"""Where the engine's time goes on a node-classification pass, and the memory bound it meets.

    python benchmarks/profile_node_engine.py [--nodes 1000000] [--arch sage,sage-signs,gcn]
        [--repeats 2]

Builds the benchmark's power-law graph (``bench_node_inference.powerlaw_graph``), exports the
same random stage-3 model as the benchmark, runs ``repeats`` full passes on 1 thread and prints
each layer's median wall time (fused layers under their aggregate's name). Then, as the
reference for the aggregations, the time numpy needs only to *gather* one row per edge
(``np.take`` of E rows of 256 channels, the edges' sources in CSR order) from an int8 and from a
float32 table: the aggregation of a layer cannot be faster than reading those bytes.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_node_inference as bench  # noqa: E402


def gather_ms(table: np.ndarray, sources: np.ndarray, block: int = 100_000) -> float:
    """Wall time (ms) of ``np.take`` of the rows ``sources`` of ``table``, in blocks."""
    out = np.empty((block, table.shape[1]), table.dtype)
    t0 = time.perf_counter()
    for i in range(0, sources.size, block):
        part = sources[i:i + block]
        np.take(table, part, axis=0, out=out[:part.size])
    return 1e3 * (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=bench.POWERLAW["nodes"])
    ap.add_argument("--arch", default="sage,sage-signs,gcn")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args(argv)

    import bingnn.engine
    from bingnn.export import export

    g = bench.load_graph("powerlaw", nodes=args.nodes)
    n = g.x.shape[0]
    graph = bingnn.engine.Graph(g.edge_index, n, num_threads=1)
    print(f"power-law graph: N={n} E={g.edge_index.shape[1]} F={g.x.shape[1]}")
    for arch in args.arch.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.bgnn"
            export(bench.build(arch, 3, g.x.shape[1], g.num_classes, seed=1), path)
            model = bingnn.engine.load(path, num_threads=1)
        model._runner.timings = timings = {}
        passes = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            model.logits(g.x, graph)
            passes.append(1e3 * (time.perf_counter() - t0))
        print(f"\n{arch}: pass median {statistics.median(passes):,.0f} ms")
        for name, ts in timings.items():
            ms = 1e3 * statistics.median(ts)
            print(f"  {name:28s} {ms:9,.0f} ms  {ms / statistics.median(passes):5.1%}")
    rng = np.random.default_rng(0)
    sources = graph.indices.astype(np.int64)
    print(f"\ngather only, E={sources.size} rows of 256 channels in CSR order (np.take):")
    for dtype in (np.int8, np.float32):
        table = rng.integers(-5, 5, (n, 256)).astype(dtype)
        print(f"  {np.dtype(dtype).name:8s} {gather_ms(table, sources):9,.0f} ms")
        del table
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
