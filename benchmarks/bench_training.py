"""Training step speed: forward + backward of the point-cloud models, the plain formulation
(``bingnn.nn.reference_mode``, the baseline) beside the fast one, in the same process.

One step = ``model(points, return_graphs=True)`` (the graphs the LSP loss reads), a
cross-entropy loss and ``backward()`` on a batch of 16 clouds of 1,024 points, k = 20, for the
float ``DGCNN`` teacher, the three BF2 students (stages 1, 2, 3; Hamming k-NN) and the three
RF students, each freshly initialised with the same seed. Rows report the median wall time
of a step, clouds per second (batch / median) and the peak memory of a step (growth of the
process's peak resident set during one step, from ``/proc/self/status`` after resetting it via
``/proc/self/clear_refs``; Linux only, else blank). ``--smoke`` runs 64 points, k = 8, batch 2,
once.

A distillation step of a student stage costs more than its training step: ``--distill
[STUDENTS]`` adds, per student (default BF2 stage 1), the parts of one step (the fast paths)
in one group: the whole step (the frozen teacher of the cascade, the previous stage, forward
with its graphs; the student's forward and backward with cross-entropy, KD and LSP over the
three dynamic graphs, as the trainer computes them) as the baseline, then each part on its
own: teacher forward, student forward + backward with cross-entropy only, and the LSP terms'
forward + backward.

A frozen teacher, the validation pass and the BatchNorm recalibration run models forward only:
``--eval`` adds, per model, the forward with its graphs in eval mode without gradients (BatchNorm
with running statistics, set first by a few training-mode batches), plain beside fast.

Run: ``python benchmarks/run.py --only training --threads 1,all --out training.json``, or on
its own with other sizes (e.g. the batch of 4 that issue 8 measured):
``python benchmarks/bench_training.py --batch 4 --threads 1 --repeats 5``; the ModelNet10
recipe's sizes with the distillation breakdown:
``python benchmarks/bench_training.py --points 512 --models "DGCNN,BF2 stage 1" --distill``.
"""

from __future__ import annotations

import argparse
import json
import sys
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
    # the recipes' BF2 since 2026-12-04: real-valued shortcuts around the XOR EdgeConvs
    "BF2 stage 3 + shortcuts": lambda k: BinDGCNN(NUM_CLASSES, "bf2", "hamming", stage=3, k=k,
                                                  shortcut=True),
    "RF stage 1": lambda k: BinDGCNN(NUM_CLASSES, "rf", "l2", stage=1, k=k),
    "RF stage 2": lambda k: BinDGCNN(NUM_CLASSES, "rf", "l2", stage=2, k=k),
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


def run(smoke: bool, threads: list[int], models: list[str] | None = None,
        batch: int | None = None, repeats: int | None = None,
        points: int | None = None, k: int | None = None) -> list[dict[str, Any]]:
    """Rows for ``models`` (all by default) at each thread count; ``batch``, ``repeats``,
    ``points`` and ``k`` override the defaults (16, 3, 1024, 20; smoke 2, 1, 64, 8)."""
    n0, k0, batch0, reps0 = (64, 8, 2, 1) if smoke else (1024, 20, 16, 3)
    n, k = points or n0, k or k0
    batch, reps = batch or batch0, repeats or reps0
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


def timed_row(name: str, shape: str, impl: str, threads: int, fn: Callable[[], None],
              repeats: int, batch: int, baseline: bool) -> dict[str, Any]:
    """One warm-up call of ``fn``, then the row of its median over ``repeats`` calls."""
    fn()
    ms, cpu_ms = time_step(fn, repeats)
    return row(name, shape, impl, threads, ms, baseline=baseline, cpu_ms=cpu_ms,
               columns={"clouds/s": f"{batch / (ms / 1e3):.2f}"})


#: The cascade's teacher of each student: the previous stage (stage 1: the float DGCNN).
TEACHERS = {"BF2 stage 1": "DGCNN", "BF2 stage 2": "BF2 stage 1", "BF2 stage 3": "BF2 stage 2",
            "RF stage 1": "DGCNN", "RF stage 2": "RF stage 1", "RF stage 3": "RF stage 2"}


def frozen(name: str, k: int, batch: int, points: int, gen: torch.Generator) -> torch.nn.Module:
    """``MODELS[name]`` in eval mode with running BatchNorm statistics of a few training-mode
    batches (not the initial 0 / 1), as a trained teacher has."""
    torch.manual_seed(0)
    model = MODELS[name](k).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(batch, points, 3, generator=gen))
    return model.eval()


def eval_rows(models: list[str], threads: list[int], batch: int, repeats: int, points: int,
              k: int) -> list[dict[str, Any]]:
    """Forward passes of ``models`` as a teacher runs them: eval mode, no gradients, graphs
    returned; plain beside fast."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(batch, points, 3, generator=gen)
    shape = f"B={batch} N={points} k={k}"
    rows: list[dict[str, Any]] = []
    for name in models:
        model = frozen(name, k, batch, points, gen)
        for t in threads:
            torch.set_num_threads(t)
            for impl, reference in (("plain (reference)", True), ("fast", False)):
                def forward(model: torch.nn.Module = model) -> None:
                    with torch.no_grad():
                        model(x, return_graphs=True)

                with bingnn.nn.reference_mode(reference):
                    rows.append(timed_row(f"eval forward {name}", shape, impl, t, forward,
                                          repeats, batch, reference))
    return rows


def distill_parts(teacher: torch.nn.Module, student: torch.nn.Module, x: torch.Tensor,
                  y: torch.Tensor) -> list[tuple[str, Callable[[], None], bool]]:
    """``(impl, step, is_baseline)`` for the whole distillation step and each of its parts."""
    from bingnn.distill.kd import kd_loss
    from bingnn.distill.lsp import lsp_loss_knn

    with torch.no_grad():
        _, t_graphs = teacher(x, return_graphs=True)

    def lsp(s_graphs) -> torch.Tensor:
        return sum(lsp_loss_knn(sf, tf, si, ti, "rbf_l2", "rbf_l2")
                   for (sf, si), (tf, ti) in zip(s_graphs[1:], t_graphs[1:], strict=True))

    def whole() -> None:
        student.zero_grad(set_to_none=True)
        with torch.no_grad():
            tl, _ = teacher(x, return_graphs=True)
        logits, graphs = student(x, return_graphs=True)
        loss = (0.9 * torch.nn.functional.cross_entropy(logits, y)
                + 0.1 * kd_loss(logits, tl, 3.0) + lsp(graphs))
        loss.backward()

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(x, return_graphs=True)

    feats = [(f.detach().requires_grad_(), i) for f, i in student(x, return_graphs=True)[1]]

    def lsp_only() -> None:
        lsp(feats).backward()

    return [("whole step", whole, True), ("teacher forward", teacher_forward, False),
            ("student forward + backward (CE)", make_step(student, x, y), False),
            ("LSP forward + backward", lsp_only, False)]


def distill_rows(threads: list[int], batch: int, repeats: int, points: int, k: int,
                 students: list[str] | None = None) -> list[dict[str, Any]]:
    """The parts of one distillation step of each student (default BF2 stage 1) from its
    cascade teacher (:data:`TEACHERS`, frozen), fast paths (module docstring)."""
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, points, 3, generator=gen)
    y = torch.randint(0, NUM_CLASSES, (batch,), generator=gen)
    shape = f"B={batch} N={points} k={k}"
    rows: list[dict[str, Any]] = []
    for student in students or ["BF2 stage 1"]:
        teacher = frozen(TEACHERS[student], k, batch, points, gen)
        for t in threads:
            torch.set_num_threads(t)
            torch.manual_seed(0)
            parts = distill_parts(teacher, MODELS[student](k).train(), x, y)
            rows += [timed_row(f"distill step {student}", shape, impl, t, step, repeats, batch,
                               base) for impl, step, base in parts]
    return rows


def main(argv: list[str] | None = None) -> int:
    from run import add_ratios, environment, format_table, parse_threads

    ap = argparse.ArgumentParser(description="plain vs fast training steps of the point-cloud "
                                 "models (forward + backward), same process")
    ap.add_argument("--batch", type=int, default=16, help="clouds per step (default 16)")
    ap.add_argument("--points", type=int, default=1024, help="points per cloud (default 1024)")
    ap.add_argument("--k", type=int, default=20, help="neighbours (default 20)")
    ap.add_argument("--repeats", type=int, default=3, help="timed steps per row (median)")
    ap.add_argument("--threads", type=parse_threads, default=parse_threads("1"),
                    help="comma-separated thread counts, 'all' = every core (default 1)")
    ap.add_argument("--models", default=None,
                    help=f"comma-separated subset of: {', '.join(MODELS)}")
    ap.add_argument("--distill", nargs="?", const="BF2 stage 1", default=None,
                    metavar="STUDENTS",
                    help="also time the parts of a distillation step of each of these students "
                    f"(comma-separated; default BF2 stage 1) from its cascade teacher: "
                    f"{', '.join(TEACHERS)}")
    ap.add_argument("--eval", action="store_true",
                    help="also time the forward in eval mode without gradients (a teacher's)")
    ap.add_argument("--out", type=Path, default=None, help="write the rows as JSON here")
    args = ap.parse_args(argv)
    models = None if args.models is None else [m.strip() for m in args.models.split(",")]
    unknown = sorted(set(models or []) - set(MODELS))
    if unknown:
        ap.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    students = (None if args.distill is None
                else [m.strip() for m in args.distill.split(",")])
    if set(students or []) - set(TEACHERS):
        ap.error(f"--distill: unknown student {', '.join(sorted(set(students) - set(TEACHERS)))}"
                 f"; choose from {', '.join(TEACHERS)}")
    for name, value in (("batch", args.batch), ("points", args.points), ("k", args.k),
                        ("repeats", args.repeats)):
        if value < 1:
            ap.error(f"--{name} must be >= 1, got {value}")
    rows = run(False, args.threads, models, batch=args.batch, repeats=args.repeats,
               points=args.points, k=args.k)
    if args.eval:
        rows += eval_rows(models or list(MODELS), args.threads, args.batch, args.repeats,
                          args.points, args.k)
    if args.distill:
        rows += distill_rows(args.threads, args.batch, args.repeats, args.points, args.k,
                             students)
    add_ratios(rows)
    print(format_table(rows))
    if args.out is not None:
        from bingnn.utils.atomic import atomic_write_text

        payload = {"args": vars(args) | {"out": str(args.out)}, "environment": environment(),
                   "rows": rows}
        atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
