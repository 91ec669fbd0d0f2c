"""Run every kernel benchmark side by side: ``python benchmarks/run.py [--smoke] [--threads 1,all]
[--out results.json] [--only gemm,knn]``.

The harness discovers ``benchmarks/bench_*.py``; each module exposes
``run(smoke: bool, threads: list[int]) -> list[dict]`` (row format in ``_harness.py``). All
implementations of one operation run in this same process, after a warm-up, and the median of
several repeats is reported with the speed-up against the row marked as baseline. ``--smoke``
uses tiny sizes and one repeat (CI runs it). Timings on a shared machine are noisy: compare
rows of one run, not runs of different days.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))  # bench modules import the shared _harness


def discover(only: list[str] | None = None) -> list[ModuleType]:
    """Import ``bench_*.py`` (or only ``bench_<name>.py`` for the given names), sorted by name."""
    mods = []
    for path in sorted(HERE.glob("bench_*.py")):
        short = path.stem[len("bench_") :]
        if only and short not in only:
            continue
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        if not callable(getattr(mod, "run", None)):
            raise SystemExit(f"{path.name} has no run(smoke, threads) function")
        mods.append(mod)
    if only:
        missing = set(only) - {m.__name__[len("bench_") :] for m in mods}
        if missing:
            raise SystemExit(f"no benchmark named {', '.join(sorted(missing))} in {HERE}")
    return mods


def parse_threads(text: str) -> list[int]:
    """``"1,all"`` -> ``[1, os.cpu_count()]`` (deduplicated, order kept)."""
    out: list[int] = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        if part == "all":
            n = os.cpu_count() or 1
        elif part.isdigit() and int(part) >= 1:
            n = int(part)
        else:
            raise argparse.ArgumentTypeError(f"bad thread count {part!r}: use integers or 'all'")
        if n not in out:
            out.append(n)
    if not out:
        raise argparse.ArgumentTypeError("give at least one thread count")
    return out


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """``speedup`` = baseline median / row median, within each (name, shape, threads) group."""
    base: dict[tuple, float] = {}
    for r in rows:
        if r.get("baseline"):
            base[(r["name"], r["shape"], r["threads"])] = r["median_ms"]
    for r in rows:
        b = base.get((r["name"], r["shape"], r["threads"]))
        r["speedup"] = None if b is None or r["median_ms"] <= 0 else b / r["median_ms"]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a text table; a row's optional ``columns`` dict adds named columns (e.g.
    clouds per second, peak memory) after the standard ones."""
    extra: list[str] = []
    for r in rows:
        for key in r.get("columns", {}):
            if key not in extra:
                extra.append(key)
    head = ("name", "shape", "impl", "threads", "median ms", "speed-up", *extra)
    body = [
        (
            r["name"],
            r["shape"],
            r["impl"] + (" (baseline)" if r.get("baseline") else ""),
            str(r["threads"]),
            f"{r['median_ms']:.3f}",
            "-" if r.get("speedup") is None else f"{r['speedup']:.1f}x",
            *(str(r.get("columns", {}).get(key, "")) for key in extra),
        )
        for r in rows
    ]
    widths = [
        max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)
    ]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)


def environment() -> dict[str, Any]:
    from bingnn.engine import kernels

    env: dict[str, Any] = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "cpu_features": kernels.cpu_features(),
    }
    try:
        import torch

        env["torch"] = torch.__version__
    except ImportError:
        env["torch"] = None
    return env


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat (seconds)")
    ap.add_argument(
        "--threads",
        type=parse_threads,
        default=parse_threads("1,all"),
        help="comma-separated thread counts, 'all' = every core (default 1,all)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    ap.add_argument(
        "--only",
        type=lambda s: [p.strip() for p in s.split(",") if p.strip()],
        default=None,
        help="comma-separated bench names (e.g. gemm,knn)",
    )
    args = ap.parse_args(argv)

    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for mod in discover(args.only):
        bench = mod.__name__
        print(f"# {bench} ...", file=sys.stderr, flush=True)
        for r in mod.run(smoke=args.smoke, threads=args.threads):
            r.setdefault("bench", bench)
            rows.append(r)
    add_ratios(rows)
    print(format_table(rows))
    print(f"# {len(rows)} rows in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if args.out is not None:
        from bingnn.utils.atomic import atomic_write_text

        payload = {
            "smoke": args.smoke,
            "threads": args.threads,
            "environment": environment(),
            "rows": rows,
        }
        atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
        print(f"# wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
