"""Bar chart of the end-to-end rows of a ``benchmarks/run.py --out results.json`` file.

    python benchmarks/plot_end_to_end.py results.json -o docs/performance_end_to_end.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="JSON written by benchmarks/run.py --out")
    ap.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bingnn.utils.atomic import atomic_save

    rows = [r for r in json.loads(args.results.read_text())["rows"] if r["name"] == "end_to_end"]
    if not rows:
        raise SystemExit(f"{args.results} holds no end_to_end rows")
    groups = sorted({(r["shape"], r["threads"]) for r in rows},
                    key=lambda g: (int(g[0].split()[0][2:]), g[1]))
    impls = list(dict.fromkeys(r["impl"] for r in rows))
    ms = {(r["shape"], r["threads"], r["impl"]): r["median_ms"] for r in rows}
    fig, ax = plt.subplots(figsize=(10, 4.8))
    width = 0.8 / len(impls)
    for q, impl in enumerate(impls):
        xs = [g + (q - (len(impls) - 1) / 2) * width for g in range(len(groups))]
        ys = [ms.get((s, t, impl), float("nan")) for s, t in groups]
        bars = ax.bar(xs, ys, width, label=impl)
        ax.bar_label(bars, labels=[f"{y:.0f}" if y >= 10 else f"{y:.1f}" for y in ys],
                     fontsize=7, padding=1)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([f"{s}\n{t} thread{'s' if t > 1 else ''}" for s, t in groups])
    ax.set_yscale("log")
    ax.set_ylabel("median latency per batch (ms, log scale)")
    ax.set_title("DGCNN classification, 1,024 points: float vs binary (bingnn engine)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    atomic_save(args.output, lambda tmp: fig.savefig(tmp, dpi=120, format="png"))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
