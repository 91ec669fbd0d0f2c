"""Where the engine's time goes: median time of each stage of one forward pass.

    python benchmarks/profile_engine.py [--variant bf2] [--batch 1] [--points 1024] [--threads 1]

Stages (BF): L2 k-NN on xyz, first layer (edge max/min + thresholds), each binary XorEdgeConv
layer (Hamming k-NN + XOR + popcount + thresholds, fused), the embedding (binary GEMM + column
statistics + pooling) and the classifier head.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import median_ms  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", default="bf2", choices=["bf1", "bf2"])
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--points", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)

    import bingnn.engine
    from bingnn.engine import _ops
    from bingnn.export import export
    from bingnn.models import BinDGCNN

    with tempfile.TemporaryDirectory() as tmp:
        path = export(BinDGCNN(num_classes=40, variant=args.variant), Path(tmp) / "m.bgnn")
        em = bingnn.engine.load(path, num_threads=args.threads)
    x = np.random.default_rng(0).standard_normal((args.batch, args.points, 3), dtype=np.float32)
    reps = args.repeats
    tr = em.trace(x)
    a, widths = em._a, em.widths
    stages = {}
    stages["k-NN on xyz (L2)"] = median_ms(em._l2_knn, x, repeats=reps)
    stages["layer 0 (edge max/min, thresholds)"] = median_ms(em._layer0_bf, x, tr["idx0"],
                                                             repeats=reps)
    chans = [3, *widths]
    for li in range(1, len(widths)):
        lo, hi, neg = em._pred(f"layer{li}.p_")
        stages[f"layer {li} (Hamming k-NN + XorEdgeConv, fused)"] = median_ms(
            _ops.xor_edge_conv_knn, tr[f"x{li - 1}"], em.k, a[f"layer{li}.w_rel"],
            a[f"layer{li}.w_self"], lo, hi, neg, a[f"layer{li}.out_negate"], chans[li], True,
            args.threads, repeats=reps)
    cat = em._concat_bits([tr[f"x{li}"] for li in range(len(widths))])
    stages["embedding (binary GEMM + stats + pooling)"] = median_ms(em._embed_pool, cat, True,
                                                                    repeats=reps)
    stages["classifier head"] = median_ms(em._head, tr["pooled"], None, repeats=reps)
    total = median_ms(em.logits, x, repeats=reps)
    print(f"{args.variant} B={args.batch} N={args.points} threads={args.threads}")
    for name, ms in stages.items():
        print(f"  {name:<48} {ms:8.3f} ms  {100 * ms / total:5.1f} %")
    print(f"  {'sum of stages':<48} {sum(stages.values()):8.3f} ms")
    print(f"  {'end to end (logits)':<48} {total:8.3f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
