"""Wall time of a whole distillation recipe (default: ``paper``), estimated from measured epochs.

Every stage of the recipe (the float teacher, then stages 1-3 of each variant) is run by the
trainer's own epoch (:func:`bingnn.train.trainer._train_epoch`: teacher forward, student
forward, CE + KD + LSP as the recipe weighs them, backward, optimizer step) and its own
validation pass, on generated clouds of the recipe's size (``num_points``, ``batch_size``,
``eval_batch_size``, k, widths), with freshly initialised models: accuracy is not the point,
step time is. After one warm-up epoch, ``--steps`` training steps and ``--val-clouds``
validation clouds are timed (CUDA synchronised), and a stage's estimate is

    epochs x (steps per epoch x time per step + val clouds x time per val cloud)

with ``steps per epoch = ceil(train clouds / batch)``. ``--train-clouds`` and ``--val-clouds-
per-epoch`` default to ModelNet40's 9,843 training shapes less the 10 % validation split
(8,859 and 984). Not counted: data loading from disk (the generated clouds sit in memory),
the final test evaluation, BatchNorm recalibration (off in ``paper``), checkpoint writes.

``--processes P`` estimates P data-parallel processes: each runs ``batch / P`` clouds a step
and the epoch has as many steps as with one process; the step is timed at ``batch / P`` on
this one device and gradient all-reduce is **not** counted, so the figure is a lower bound
for P devices. ``--bf16`` adds, for the float models (teacher, stage 1), rows under bfloat16
autocast (CUDA only; ``bingnn distill --bf16``).

Run (on a GPU): ``python benchmarks/bench_recipe_walltime.py --device cuda --bf16
--processes 1,8 --out walltime.json``. ``--smoke`` runs the ``quick`` recipe's first variant
for one step on the CPU.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bingnn.data import get_dataset
from bingnn.distill.recipe import load_recipe, stage_config
from bingnn.models import build_model
from bingnn.train.distributed import DistContext
from bingnn.train.objective import Objective
from bingnn.train.optim import build_optimizer
from bingnn.train.pointcloud_task import PointCloudTask

# the trainer's own epoch and teacher wrapper, so the timed work is what `fit` runs
from bingnn.train.trainer import _is_float_model, _Teacher, _train_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def stages(recipe: dict[str, Any]) -> list[tuple[int, str | None]]:
    return [(0, None)] + [(s, v) for v in recipe["variants"] for s in (1, 2, 3)]


def time_stage(
    cfg: dict[str, Any],
    teacher_cfg: dict[str, Any] | None,
    batch: int,
    steps: int,
    val_clouds: int,
    device: torch.device,
    bf16: bool,
) -> dict[str, float]:
    """Seconds per training step (mean over ``steps``, after a warm-up epoch) and per
    validation cloud of one stage, at ``batch`` clouds a step."""
    d = cfg["data"]
    n = int(d["num_points"])
    # generated shapes of the recipe's size; "val" is the seeded 10 % of "train"'s clouds
    total = max(math.ceil(steps * batch / 0.85), math.ceil(val_clouds / 0.09))
    common = {"num_points": n, "seed": 0, "num_samples": total}
    train = get_dataset("synthetic", "train", augment=True, **common)
    val = get_dataset("synthetic", "val", augment=False, **common)
    test = get_dataset("synthetic", "test", augment=False, num_points=n, num_samples=16)
    ebatch = int(cfg["train"]["eval_batch_size"])
    task = PointCloudTask(train, val, test, batch, ebatch, device=device)
    ctx = DistContext(device=device)
    torch.manual_seed(0)
    model = build_model({**cfg["model"], **task.model_dims()}).to(device)
    teacher = None
    if teacher_cfg is not None:
        teacher = build_model({**teacher_cfg["model"], **task.model_dims()}).to(device)
    loss = {k: v for k, v in cfg["loss"].items() if k != "kd_nodes"}
    objective = Objective(**loss, multilabel=False)
    tr = cfg["train"]
    opt = build_optimizer(model.parameters(), tr["optimizer"], tr["lr"], tr["weight_decay"])
    t = _Teacher(teacher, task, objective.uses_lsp, bf16, device)
    amp = bf16 and _is_float_model(model)
    # every epoch yields the training set's full batches: limit the set to the timed steps
    task.splits["train"] = torch.utils.data.Subset(train, range(steps * batch))
    task.splits["train"].num_classes = train.num_classes  # type: ignore[attr-defined]
    task.splits["val"] = torch.utils.data.Subset(val, range(val_clouds))
    task.splits["val"].num_classes = val.num_classes  # type: ignore[attr-defined]

    def epoch(e: int) -> tuple[float, float]:
        _sync(device)
        t0 = time.perf_counter()
        _train_epoch(task, model, model, t, objective, opt, e, ctx, amp, "", False)
        _sync(device)
        t1 = time.perf_counter()
        task.evaluate(model, "val", ctx)
        _sync(device)
        return t1 - t0, time.perf_counter() - t1

    epoch(1)  # warm-up: allocator, cuDNN/cuBLAS plans, lazily built kernels
    train_s, val_s = epoch(2)
    out = {"step_s": train_s / steps, "val_cloud_s": val_s / val_clouds}
    if device.type == "cuda":
        out["peak_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return out


def estimate(
    recipe: dict[str, Any],
    device: torch.device,
    processes: list[int],
    bf16: bool,
    steps: int,
    val_clouds: int,
    train_clouds: int,
    val_per_epoch: int,
    only: int | None = None,
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    teacher_cfg = stage_config(recipe, 0)
    for stage, variant in stages(recipe)[:only]:
        cfg = stage_config(recipe, stage, variant)
        batch = int(cfg["train"]["batch_size"])
        epochs = int(cfg["train"]["epochs"])
        float_model = stage <= 1
        for p in processes:
            if batch % p:
                raise SystemExit(
                    f"batch {batch} of stage {stage} does not split over {p} processes"
                )
            for amp in [False, True] if bf16 and float_model else [False]:
                m = time_stage(
                    cfg,
                    teacher_cfg if stage > 0 else None,
                    batch // p,
                    steps,
                    val_clouds,
                    device,
                    amp,
                )
                per_epoch = (
                    math.ceil(train_clouds / batch) * m["step_s"]
                    + val_per_epoch / p * m["val_cloud_s"]
                )
                rows.append(
                    {
                        "stage": stage,
                        "variant": variant or "teacher",
                        "processes": p,
                        "bf16": amp,
                        "batch_per_process": batch // p,
                        "epochs": epochs,
                        "step_ms": 1e3 * m["step_s"],
                        "val_ms_per_cloud": 1e3 * m["val_cloud_s"],
                        "clouds_per_s": (batch // p) / m["step_s"],
                        "epoch_s": per_epoch,
                        "stage_h": epochs * per_epoch / 3600,
                        "peak_gib": m.get("peak_gib"),
                    }
                )
                r = rows[-1]
                print(
                    f"stage {stage} {r['variant']:<12} P={p} bf16={int(amp)} "
                    f"step {r['step_ms']:8.1f} ms  {r['clouds_per_s']:7.1f} clouds/s  "
                    f"epoch {per_epoch:7.1f} s  stage {r['stage_h']:6.2f} h",
                    flush=True,
                )
    return rows


def totals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Whole-recipe hours per (processes, bf16 for the float stages): each stage once,
    stages run one after another (the CLI's ``--jobs 1``); with bf16, a stage's bf16 row where
    it has one."""
    out = []
    for p in sorted({r["processes"] for r in rows}):
        mine = [r for r in rows if r["processes"] == p]
        fp32 = {(r["stage"], r["variant"]): r["stage_h"] for r in mine if not r["bf16"]}
        bf16 = {(r["stage"], r["variant"]): r["stage_h"] for r in mine if r["bf16"]}
        for amp, pick in ((False, fp32), (True, {**fp32, **bf16})):
            if amp and not bf16:
                continue
            out.append({"processes": p, "bf16": amp, "hours": sum(pick.values()),
                        "stages": len(pick)})
    return out


def run(smoke: bool, threads: list[int]) -> list[dict[str, Any]]:
    """``benchmarks/run.py``'s rows: seconds per training step of each stage, fp32 the
    baseline of its group, bf16 beside it on CUDA. Smoke: the ``quick`` recipe's teacher and
    first stage on the CPU, one step. Full: the ``paper`` recipe on CUDA where there is one
    (every stage, 1 and 8 processes); on a CPU its teacher and first variant's three stages
    (two steps each: a CPU takes seconds a step), at each thread count."""
    from _harness import row

    cuda = torch.cuda.is_available() and not smoke
    device = torch.device("cuda" if cuda else "cpu")
    recipe = load_recipe("quick" if smoke else "paper")
    steps, val = (1, 4) if smoke else ((8, 64) if cuda else (2, 16))
    only = 2 if smoke else (None if cuda else 4)
    out: list[dict[str, Any]] = []
    for t in [1] if cuda else threads:
        torch.set_num_threads(t)
        for r in estimate(recipe, device, [1, 8] if cuda else [1], cuda, steps, val, 8859, 984,
                          only=only):
            shape = f"{recipe['name']} B={r['batch_per_process']} ({r['processes']} proc)"
            out.append(row(f"recipe step stage {r['stage']} {r['variant']}", shape,
                           "bf16" if r["bf16"] else "fp32", t, r["step_ms"],
                           baseline=not r["bf16"], stage_h=r["stage_h"],
                           columns={"stage h": f"{r['stage_h']:.2f}"}))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="paper", help="recipe name or TOML file (default paper)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument(
        "--processes",
        default="1",
        help="comma-separated data-parallel process counts to estimate (default 1)",
    )
    ap.add_argument("--bf16", action="store_true", help="also time bfloat16 autocast rows")
    ap.add_argument("--steps", type=int, default=8, help="timed training steps per stage")
    ap.add_argument("--val-clouds", type=int, default=64, help="timed validation clouds")
    ap.add_argument(
        "--train-clouds",
        type=int,
        default=8859,
        help="training clouds per epoch (default: ModelNet40 less validation)",
    )
    ap.add_argument("--val-clouds-per-epoch", type=int, default=984)
    ap.add_argument("--smoke", action="store_true", help="quick recipe, one stage, CPU sizes")
    ap.add_argument("--out", type=Path, default=None, help="write rows and totals as JSON")
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is available")
    if args.bf16 and device.type != "cuda":
        ap.error("--bf16 needs a CUDA device")
    processes = [int(p) for p in args.processes.split(",")]
    if any(p < 1 for p in processes) or args.steps < 1 or args.val_clouds < 1:
        ap.error("--processes, --steps and --val-clouds must be >= 1")
    recipe = load_recipe("quick" if args.smoke else args.recipe)
    if recipe.get("task", "pointcloud") != "pointcloud":
        ap.error(f"recipe {args.recipe} is not a point-cloud recipe")
    steps, val_clouds = (1, 4) if args.smoke else (args.steps, args.val_clouds)
    rows = estimate(
        recipe,
        device,
        processes,
        args.bf16,
        steps,
        val_clouds,
        args.train_clouds,
        args.val_clouds_per_epoch,
        only=2 if args.smoke else None,
    )
    tot = totals(rows)
    for t in tot:
        print(
            f"whole recipe, {t['processes']} process(es), bf16={int(t['bf16'])}: "
            f"{t['hours']:.1f} h over {t['stages']} stages"
        )
    if args.out is not None:
        from bingnn.utils.atomic import atomic_write_text

        env = {"torch": torch.__version__, "device": str(device)}
        if device.type == "cuda":
            env["gpu"] = torch.cuda.get_device_name(device)
        payload = {
            "args": vars(args) | {"out": str(args.out)},
            "environment": env,
            "rows": rows,
            "totals": tot,
        }
        atomic_write_text(args.out, json.dumps(payload, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
