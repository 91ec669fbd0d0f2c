"""Training step speed: forward + backward of the point-cloud models, the plain formulation
(``bingnn.nn.reference_mode``, the baseline) beside the fast one, in the same process.

One step = ``model(points, return_graphs=True)`` (the graphs the LSP loss reads), a
cross-entropy loss and ``backward()`` on a batch of 16 clouds of 1,024 points, k = 20, for the
float ``DGCNN`` teacher, the three BF2 students (stages 1, 2, 3; Hamming k-NN) and the RF
stage-3 student, each freshly initialised with the same seed. Rows report the median wall time
of a step, clouds per second (batch / median) and the peak memory of a step (growth of the
process's peak resident set during one step, from ``/proc/self/status`` after resetting it via
``/proc/self/clear_refs``; Linux only, else blank). ``--smoke`` runs 64 points, k = 8, batch 2,
once.

Run: ``python benchmarks/run.py --only training --threads 1,all --out training.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import torch
from _harness import row

import bingnn.nn
from bingnn.models import DGCNN, BinDGCNN

NUM_CLASSES = 40

MODELS: dict[str, Callable[[int], torch.nn.Module]] = {
    "DGCNN": lambda k: DGCNN(NUM_CLASSES, k=k),
    "BF2 stage 1": lambda k: BinDGCNN(NUM_CLASSES, "bf2", "hamming", stage=1, k=k),
    "BF2 stage 2": lambda k: BinDGCNN(NUM_CLASSES, "bf2", "hamming", stage=2, k=k),
    "BF2 stage 3": lambda k: BinDGCNN(NUM_CLASSES, "bf2", "hamming", stage=3, k=k),
    "RF stage 3": lambda k: BinDGCNN(NUM_CLASSES, "rf", "l2", stage=3, k=k),
}


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_step_mib(step: Callable[[], Any]) -> float | None:
    """Growth of the peak resident set over one call of ``step`` (MiB), or ``None`` where the
    kernel does not let a process reset its peak (non-Linux)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    except OSError:
        step()
        return None
    before = _status_kib("VmRSS")
    step()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(0, peak - before) / 1024.0


def make_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> Callable[[], None]:
    def step() -> None:
        model.zero_grad(set_to_none=True)
        logits, graphs = model(x, return_graphs=True)
        torch.nn.functional.cross_entropy(logits, y).backward()

    return step


def time_step(step: Callable[[], None], repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU milliseconds of ``step`` over ``repeats`` calls."""
    wall, cpu = [], []
    for _ in range(max(1, repeats)):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return 1e3 * median(wall), 1e3 * median(cpu)


def run(smoke: bool, threads: list[int], models: list[str] | None = None) -> list[dict[str, Any]]:
    n, k, batch, reps = (64, 8, 2, 1) if smoke else (1024, 20, 16, 3)
    shape = f"B={batch} N={n} k={k}"
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, n, 3, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    rows: list[dict[str, Any]] = []
    for name in models or list(MODELS):
        for t in threads:
            torch.set_num_threads(t)
            for impl, reference in (("plain (reference)", True), ("fast", False)):
                torch.manual_seed(0)
                model = MODELS[name](k).train()
                with bingnn.nn.reference_mode(reference):
                    step = make_step(model, x, y)
                    peak = peak_step_mib(step)  # also the warm-up
                    ms, cpu_ms = time_step(step, reps)
                rows.append(row(
                    f"train step {name}", shape, impl, t, ms, baseline=reference,
                    clouds_per_s=batch / (ms / 1e3), peak_mib=peak, cpu_ms=cpu_ms,
                    columns={"clouds/s": f"{batch / (ms / 1e3):.2f}",
                             "peak MiB": "-" if peak is None else f"{peak:.0f}"},
                ))
                del model, step
    return rows
