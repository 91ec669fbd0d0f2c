"""Chart and markdown table of the node-inference rows of a ``benchmarks/run.py --out`` file.

    python benchmarks/plot_node_inference.py results.json -o docs/performance_node.png

Prints the markdown table (latency, speed-up, peak memory beyond the inputs, per graph, model
and thread count; then the file sizes) and writes a two-panel PNG: latency and peak memory of
each implementation, per graph and model, at each thread count (log scales).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _groups(rows: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return list(dict.fromkeys((r["shape"], r["threads"]) for r in rows))


def _short_impl(impl: str) -> str:
    if "eager PyG" in impl:
        return "float PyG"
    return "engine, CSR features" if "CSR features" in impl else "engine"


def markdown(rows: list[dict[str, Any]], sizes: list[dict[str, Any]]) -> str:
    """The markdown tables of the inference and the model-size rows."""
    out = ["| graph | model | threads | implementation | median ms | speed-up | peak MiB "
           "beyond inputs | memory vs float |",
           "|---|---|---|---|---|---|---|---|"]
    base_mem = {(r["shape"], r["threads"]): r["peak_mb"] for r in rows if r.get("baseline")}
    for r in rows:
        graph, model = r["shape"].split()[0], r["shape"].split()[-1]
        speed = "" if r.get("baseline") else f"{r['speedup']:.1f}x"
        mem = ""
        b = base_mem.get((r["shape"], r["threads"]))
        if not r.get("baseline") and b and r["peak_mb"] is not None:
            mem = f"1/{b / max(r['peak_mb'], 1e-9):.1f}"
        impl = r["impl"].split(", ", 1)[0] + ", " + _short_impl(r["impl"])
        out.append(f"| {graph} | {model} | {r['threads']} | {impl} | {r['median_ms']:,.1f} | "
                   f"{speed} | {r['peak_mb']:,.1f} | {mem} |")
    out += ["", "| graph | model | float32 state dict | `.bgnn` | ratio |", "|---|---|---|---|---|"]
    by = {}
    for r in sizes:
        by.setdefault(r["shape"], []).append(r)
    for shape, (f, b) in ((s, sorted(v, key=lambda r: not r.get("baseline")))
                          for s, v in by.items()):
        graph, model = shape.split()
        out.append(f"| {graph} | {model} | {f['bytes'] / 1024:,.0f} KiB | "
                   f"{b['bytes'] / 1024:,.1f} KiB | 1/{b['ratio']:.1f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("results", type=Path, help="JSON written by benchmarks/run.py --out")
    ap.add_argument("-o", "--output", type=Path, required=True, help="PNG to write")
    args = ap.parse_args(argv)
    all_rows = json.loads(args.results.read_text())["rows"]
    rows = [r for r in all_rows if r["name"] == "node_inference"]
    sizes = [r for r in all_rows if r["name"] == "node_model_size"]
    if not rows:
        raise SystemExit(f"{args.results} holds no node_inference rows")
    print(markdown(rows, sizes))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from bingnn.utils.atomic import atomic_save

    groups = _groups(rows)
    impls = list(dict.fromkeys(_short_impl(r["impl"]) for r in rows))
    val = {(r["shape"], r["threads"], _short_impl(r["impl"])): r for r in rows}
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), sharex=True)
    width = 0.8 / len(impls)
    for ax, key, label in ((axes[0], "median_ms", "median latency (ms, log scale)"),
                           (axes[1], "peak_mb", "peak memory beyond inputs (MiB, log)")):
        for q, impl in enumerate(impls):
            xs = [g + (q - (len(impls) - 1) / 2) * width for g in range(len(groups))]
            ys = [float(val[(s, t, impl)][key]) if (s, t, impl) in val else float("nan")
                  for s, t in groups]
            bars = ax.bar(xs, ys, width, label=impl)
            ax.bar_label(bars, labels=["" if y != y else (f"{y:,.0f}" if y >= 10 else f"{y:.1f}")
                                       for y in ys], fontsize=6, padding=1)
        ax.set_yscale("log")
        ax.set_ylabel(label)
    axes[0].legend(fontsize=8)
    axes[0].set_title("Full-graph node classification, 2 layers, hidden 256: float PyG vs "
                      "binary (bingnn engine)")
    axes[1].set_xticks(range(len(groups)))
    axes[1].set_xticklabels([f"{s.split()[0]}\n{s.split()[-1]}, {t} thr" for s, t in groups],
                            fontsize=7)
    fig.tight_layout()
    atomic_save(args.output, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
