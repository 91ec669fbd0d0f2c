"""Shared timing helpers of the benchmark modules (``bench_*.py``).

A bench module exposes ``run(smoke: bool, threads: list[int]) -> list[dict]``. Each row has
``name`` (the operation), ``shape`` (a short text), ``impl`` (the implementation), ``threads``,
``median_ms`` and, on exactly one row of each (name, shape, threads) group, ``baseline: True``;
``benchmarks/run.py`` computes every row's speed-up against that baseline.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_ms(
    fn: Callable[..., Any], *args: Any, repeats: int, warmup: int = 1, **kwargs: Any
) -> float:
    """Median wall time of ``fn(*args, **kwargs)`` in milliseconds over ``repeats`` runs, after
    ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn(*args, **kwargs)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn(*args, **kwargs)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def row(
    name: str, shape: str, impl: str, threads: int, ms: float, baseline: bool = False, **extra: Any
) -> dict[str, Any]:
    """One result row in the harness format."""
    return {
        "name": name,
        "shape": shape,
        "impl": impl,
        "threads": threads,
        "median_ms": ms,
        "baseline": baseline,
        **extra,
    }
