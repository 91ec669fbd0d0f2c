"""Runs of a recipe: one stage (:func:`run_stage`), the cascade of a teacher and its three
binary students (:func:`run_cascade`), and either over several seeds (:func:`run_seeds`) --
for point clouds and graphs alike.

Stage 0 trains (or takes) the float teacher; for each variant, stages 1-3 distil it into ever
more binary students. Layout of ``OUT``::

    OUT/recipe.json                  the resolved recipe
    OUT/<teacher>/stage0/            "float" (point clouds) or "gcn"/"graphsage" (graphs)
    OUT/<variant>/stage<i>/          i = 1, 2, 3
        config.json  checkpoint.pt  metrics.csv  best.pt  final.pt  done.json  curves.png
    OUT/summary.json  OUT/summary.csv  OUT/summary.txt  OUT/accuracy.png

Each stage's model is its best validation epoch (``best.pt``); it is reported on the test
split and becomes the teacher of the next stage, whose student starts from its weights when
the layouts match (node models at every stage, DGCNN students from stage 2). Running the same
command again skips stages whose ``done.json`` exists and resumes an interrupted stage after
its last epoch (:func:`bingnn.train.trainer.fit`). A stage folder whose ``config.json`` differs
from the new configuration is refused rather than silently mixed. Only rank 0 of a torchrun
job writes files; every process trains.

Example::

    recipe = load_recipe("quick")
    rows = run_cascade(recipe, "runs/quick", device="auto")
"""

from __future__ import annotations

import json
import os
import re
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from bingnn.distill.binary_scale import match_binary_scale
from bingnn.distill.recipe import check_stage_config, stage_config, start_stage, teacher_name
from bingnn.train.distributed import DistContext, init_distributed
from bingnn.train.model_files import load_model_file, save_model_file, write_json
from bingnn.train.objective import Objective
from bingnn.train.optim import build_optimizer, build_scheduler
from bingnn.train.report import (
    aggregate_seeds,
    format_summary,
    metric_names,
    summary_columns,
    summary_row,
    write_csv,
)
from bingnn.train.task import Task
from bingnn.train.trainer import DONE_FILE, fit
from bingnn.utils.atomic import atomic_write_text

__all__ = ["DataCache", "build_task", "run_cascade", "run_seeds", "run_stage", "stage_dir"]

#: ``callback(stage_config, epoch, row)`` after each epoch of any stage.
StageCallback = Callable[[dict[str, Any], int, dict[str, Any]], None]


def stage_dir(out: str | os.PathLike, stage: int, variant: str) -> Path:
    """``OUT/<variant>/stage<i>`` (stage 0: ``variant`` is the teacher's name)."""
    return Path(out) / str(variant) / f"stage{stage}"


class DataCache:
    """Data sets loaded once per data configuration and shared by all stages of a run.

    In a torchrun job rank 0 loads (and downloads, processes, caches on disk) first; the others
    load after it has finished."""

    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    @staticmethod
    def _key(cfg: dict[str, Any]) -> str:
        d = cfg["data"]
        return json.dumps([cfg["task"], d, cfg["seed"] if cfg["task"] == "pointcloud" else 0],
                          sort_keys=True)

    def put(self, cfg: dict[str, Any], value: Any) -> None:
        """Use ``value`` as the data of ``cfg`` (in-memory data: tests, notebooks): a
        :class:`~bingnn.graphs.datasets.NodeDataset`, or ``(train, val, test)`` point-cloud
        datasets."""
        self._cache[self._key(cfg)] = value

    def get(self, cfg: dict[str, Any], ctx: DistContext) -> Any:
        key = self._key(cfg)
        if key not in self._cache:
            if ctx.is_main:
                self._cache[key] = _load(cfg)
            ctx.barrier()
            if not ctx.is_main:
                self._cache[key] = _load(cfg, download=False)
        return self._cache[key]


def _load(cfg: dict[str, Any], download: bool | None = None) -> Any:
    d = cfg["data"]
    dl = bool(d.get("download", False)) if download is None else download
    if cfg["task"] == "node":
        from bingnn.graphs.datasets import load_node_dataset

        return load_node_dataset(d["dataset"], d.get("root"), raw_dir=d.get("raw_dir"),
                                 download=dl, normalize_features=d.get("normalize_features"))
    from bingnn.data import get_dataset

    common = {
        "num_points": int(d["num_points"]),
        "root": d.get("root"),
        "seed": int(cfg["seed"]),
        "val_fraction": float(d.get("val_fraction", 0.1)),
    }
    train = get_dataset(d["dataset"], "train", augment=d.get("augment", True),
                        num_samples=d.get("train_samples"), download=dl, **common)
    val = get_dataset(d["dataset"], "val", augment=False, num_samples=d.get("train_samples"),
                      **common)
    test = get_dataset(d["dataset"], "test", augment=False, num_samples=d.get("test_samples"),
                       **common)
    return train, val, test


def build_task(cfg: dict[str, Any], ctx: DistContext, data: DataCache | None = None,
               distilling: bool = False) -> Task:
    """The task of a stage configuration (point-cloud or node classification) on ``ctx``'s
    device. ``distilling``: a teacher is present (KD over all nodes then applies)."""
    data = data or DataCache()
    tr = cfg["train"]
    seed = _seed_for(cfg)
    if cfg["task"] == "node":
        from bingnn.graphs.node_task import NodeTask

        ds = data.get(cfg, ctx)
        # run seed s trains on split s where a data set has several (Facebook, Actor)
        graph = ds.for_seed(int(cfg["seed"]))
        return NodeTask(
            graph, ds.num_classes, metric=ds.metric, evaluator=ds.evaluator,
            multilabel=ds.multilabel, mode=tr["mode"], fanouts=tr.get("fanouts", (15, 10, 5)),
            batch_size=tr["batch_size"], eval_mode=tr["eval_mode"],
            eval_batch_size=tr["eval_batch_size"],
            kd_over_all_nodes=distilling and cfg["loss"].get("kd_nodes", "all") == "all",
            seed=seed, device=ctx.device,
        )
    from bingnn.train.pointcloud_task import PointCloudTask

    train, val, test = data.get(cfg, ctx)
    return PointCloudTask(train, val, test, tr["batch_size"], tr["eval_batch_size"], seed=seed,
                          device=ctx.device)


def _comparable(cfg: dict[str, Any]) -> dict[str, Any]:
    """The parts of a stage config that change results (not where files live)."""
    out = {k: v for k, v in cfg.items() if k != "recipe_source"}
    out["data"] = {
        k: v for k, v in dict(cfg.get("data", {})).items()
        if k not in ("root", "download", "raw_dir")
    }
    return out


def _check_same_config(folder: Path, cfg: dict[str, Any]) -> None:
    f = folder / "config.json"
    if not f.exists():
        return
    try:
        old = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError):
        return  # unreadable: fit() rewrites it
    a, b = _comparable(old), _comparable(json.loads(json.dumps(cfg)))
    if a != b:
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        raise ValueError(
            f"{folder} holds a run with a different configuration (differs in: "
            f"{', '.join(diff)}); use another output folder or delete that one"
        )


def _seed_for(cfg: dict[str, Any]) -> int:
    return int(cfg["seed"]) * 1000 + int(cfg["stage"]) * 97 + zlib.crc32(cfg["variant"].encode())


def _check_outputs(model: torch.nn.Module, task: Task, what: str) -> None:
    mc = getattr(model, "config", {})
    for key, want in task.model_dims().items():
        if mc.get(key) != want:
            raise ValueError(f"{what} has {key} = {mc.get(key)} but the data needs {want}")


def run_stage(
    cfg: dict[str, Any],
    out_dir: str | os.PathLike,
    device: str | torch.device | DistContext = "auto",
    teacher_path: str | os.PathLike | None = None,
    data: DataCache | None = None,
    progress: bool = True,
    callbacks: Sequence[StageCallback] = (),
    bf16: bool = False,
) -> dict[str, Any]:
    """Run one stage from its resolved config (:func:`bingnn.distill.recipe.stage_config`, or
    one built by a command line).

    With ``teacher_path`` the student is distilled from that model file (KD + LSP as
    ``cfg["loss"]`` says, starting from the teacher's weights if ``cfg["init_from_teacher"]``);
    without, it is trained on labels alone. Every value is checked and the model is run once
    on the data before the first file is written. Returns the completion record
    (``done.json``).
    """
    from bingnn.models import build_model

    ctx = device if isinstance(device, DistContext) else init_distributed(device)
    out = Path(out_dir)
    check_stage_config(cfg, f"stage {cfg['stage']} ({cfg['variant']})")
    _check_same_config(out, cfg)
    if (out / DONE_FILE).exists():
        return json.loads((out / DONE_FILE).read_text())
    data = data or DataCache()
    task = build_task(cfg, ctx, data, distilling=teacher_path is not None)
    desc = f"{cfg['variant']} stage {cfg['stage']}"

    if cfg["stage"] == 0 and cfg.get("teacher_file"):
        # A trained teacher is given: it is this stage's model; evaluate it for the report.
        model, _ = load_model_file(cfg["teacher_file"], ctx.device)
        arch = getattr(model, "config", {}).get("arch")
        stage = getattr(model, "config", {}).get("stage", 0)
        if arch != cfg["model"]["arch"] or stage != 0:
            raise ValueError(
                f"teacher {cfg['teacher_file']} is a {arch} model at stage {stage}; this "
                f"cascade's teacher is a float {cfg['model']['arch']} (stage 0)"
            )
        _check_outputs(model, task, f"teacher {cfg['teacher_file']}")
        record = {
            "epochs": 0,
            "best_epoch": 0,
            "val": task.evaluate(model, "val", ctx),
            "test": task.evaluate(model, "test", ctx),
            "params": sum(p.numel() for p in model.parameters()),
            "time_s": 0.0,
        }
        if ctx.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "config.json", cfg)
            for name in ("best.pt", "final.pt"):
                save_model_file(out / name, model, {"metrics": record, "config": cfg})
            write_json(out / DONE_FILE, record)
        ctx.barrier()
        return record

    seed = _seed_for(cfg)
    torch.manual_seed(seed)
    model = build_model({**cfg["model"], **task.model_dims()})
    teacher = None
    if teacher_path is not None:
        teacher, _ = load_model_file(teacher_path, ctx.device)
        _check_outputs(teacher, task, f"teacher {teacher_path}")
        if cfg.get("init_from_teacher"):
            try:
                _load_teacher_weights(model, teacher)
            except RuntimeError as e:
                raise ValueError(
                    f"the stage-{cfg['stage']} student does not share its teacher's layout "
                    f"({teacher_path}): {str(e).splitlines()[0]}"
                ) from e
            match_binary_scale(model, teacher)
    loss = {k: v for k, v in cfg["loss"].items() if k != "kd_nodes"}
    objective = Objective(**loss, multilabel=task.multilabel)
    tr = cfg["train"]
    optimizer = build_optimizer(model.parameters(), tr["optimizer"], tr["lr"], tr["weight_decay"])
    scheduler = build_scheduler(optimizer, tr["schedule"], tr["epochs"])
    cbs = [lambda e, r, cb=cb: cb(cfg, e, r) for cb in callbacks]
    result = fit(
        task, model, objective, optimizer, scheduler,
        epochs=tr["epochs"], out_dir=out, teacher=teacher, seed=seed, config=cfg, ctx=ctx,
        recalibrate_bn=bool(tr.get("recalibrate_bn")),
        recalibrate_samples=tr.get("recalibrate_samples"), bf16=bf16, progress=progress,
        callbacks=cbs, desc=desc,
    )
    if ctx.is_main:
        try:
            from bingnn.train.metrics_log import read_metrics
            from bingnn.train.plots import plot_training_curves

            plot_training_curves(read_metrics(out / "metrics.csv"), out / "curves.png", desc)
        except (OSError, ValueError, KeyError) as e:  # a chart must never fail a stage
            print(f"warning: could not draw {out / 'curves.png'}: {e}", flush=True)
    return result.record


def _load_teacher_weights(model: torch.nn.Module, teacher: torch.nn.Module) -> None:
    """The teacher's weights into its student of the same layout; parameters that only the
    student has and that start as an identity (the zero biases of ``prelu_shift``) keep their
    initial values, so such an option can start from a teacher trained without it."""
    missing, unexpected = model.load_state_dict(teacher.state_dict(), strict=False)
    extra = [k for k in missing if not re.fullmatch(r"convs\.\d+\.linear\.bias", k)]
    if unexpected or extra:
        raise RuntimeError(f"missing keys {extra[:4]}, unexpected keys {unexpected[:4]}")


def write_summary(out: Path, rows: list[dict[str, Any]], title: str = "") -> None:
    """``summary.json``/``.csv``/``.txt`` and the ``accuracy.png`` chart of a cascade."""
    metrics = metric_names(rows)
    write_json(out / "summary.json", rows)
    write_csv(out / "summary.csv", rows, summary_columns(metrics))
    atomic_write_text(out / "summary.txt", format_summary(rows, metrics) + "\n")
    from bingnn.train.plots import plot_cascade_accuracy

    plot_cascade_accuracy(rows, out / "accuracy.png", title, metric=metrics[0])


def run_cascade(
    recipe: dict[str, Any],
    out: str | os.PathLike,
    device: str | torch.device | DistContext = "auto",
    progress: bool = True,
    callbacks: Sequence[StageCallback] = (),
    echo: Callable[[str], None] | None = None,
    bf16: bool = False,
    data: DataCache | None = None,
    last_stage: int = 3,
    jobs: int = 1,
) -> list[dict[str, Any]]:
    """Run (or resume) stage 0 and stages 1-``last_stage`` of every variant of ``recipe`` into
    ``out``.

    Args:
        recipe: from :func:`bingnn.distill.recipe.load_recipe` (+ ``apply_overrides``).
        out: output folder.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` or a :class:`DistContext` (torchrun).
        progress: progress bars and per-epoch lines.
        callbacks: ``cb(stage_config, epoch, row)`` after each epoch.
        echo: where rank 0 prints stage headers and the summary (default ``print``).
        bf16: bfloat16 autocast for the float models on CUDA (:func:`~bingnn.train.fit`).
        jobs: after the teacher, train the students of up to ``jobs`` variants at once, each
            in its own CPU process with ``torch.get_num_threads() // jobs`` threads (at least
            1). Several single-threaded trainings use a multi-core CPU better than one
            multi-threaded training (docs/results.md, ModelNet10). Results are those of
            ``jobs=1``.

    Returns:
        summary rows (:func:`bingnn.train.report.summary_row`), also written to
        ``summary.json``/``summary.csv``/``summary.txt`` with ``accuracy.png``.
    """
    if last_stage not in (0, 1, 2, 3):
        raise ValueError(f"last_stage must be 0, 1, 2 or 3, got {last_stage}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive integer, got {jobs!r}")
    ctx = device if isinstance(device, DistContext) else init_distributed(device)
    if jobs > 1 and (ctx.distributed or ctx.device.type != "cpu"):
        raise ValueError("jobs > 1 trains variants in parallel CPU processes; under torchrun or "
                         "on a GPU use jobs = 1")
    if jobs > 1 and callbacks:
        raise ValueError("epoch callbacks run in this process only; use jobs = 1 with callbacks")

    def say(text: str) -> None:
        if ctx.is_main:
            (echo or (lambda t: print(t, flush=True)))(text)

    root = Path(out)
    if ctx.is_main:
        root.mkdir(parents=True, exist_ok=True)
        write_json(root / "recipe.json", recipe)
    data = data or DataCache()
    rows: list[dict[str, Any]] = []
    done_teachers: dict[str, Path] = {}
    first, given = start_stage(recipe)
    starts: dict[str, Path] = {}
    for variant in recipe["variants"]:
        if given is not None:
            starts[variant] = _start_teacher(given, stage_config(recipe, first - 1, variant))
            continue
        name = teacher_name(recipe, variant)
        if name not in done_teachers:
            row, done_teachers[name] = _run_one(recipe, root, 0, variant, None, ctx, data,
                                                progress, callbacks, bf16, say)
            rows.append(row)
        starts[variant] = done_teachers[name]
    students = range(first, last_stage + 1)
    if jobs > 1 and len(recipe["variants"]) > 1 and len(students):
        rows += _students_in_processes(recipe, root, starts, students, jobs, progress)
    else:
        for variant in recipe["variants"]:
            t = starts[variant]
            for stage in students:
                row, t = _run_one(recipe, root, stage, variant, t, ctx, data, progress,
                                  callbacks, bf16, say)
                rows.append(row)
    if ctx.is_main:
        write_summary(root, rows, f"{recipe.get('name', '')}: test accuracy per stage")
        say(format_summary(rows))
        say(f"results: {root / 'summary.csv'}, chart: {root / 'accuracy.png'}")
    ctx.barrier()
    return rows


def _run_one(recipe: dict[str, Any], root: Path, stage: int, variant: str,
             teacher: Path | None, ctx: DistContext, data: DataCache, progress: bool,
             callbacks: Sequence[StageCallback], bf16: bool, say: Callable[[str], None]
             ) -> tuple[dict[str, Any], Path]:
    """Run (or resume, or skip when done) one stage: its summary row and its ``best.pt``."""
    cfg = stage_config(recipe, stage, variant)
    folder = stage_dir(root, stage, cfg["variant"])
    if (folder / DONE_FILE).exists():
        _check_same_config(folder, cfg)
        say(f"[{cfg['variant']} stage {stage}] already done, skipped ({folder})")
    else:
        say(f"[{cfg['variant']} stage {stage}] {cfg['train']['epochs']} epochs on "
            f"{ctx.device}" + (f" x {ctx.world} processes" if ctx.distributed else "")
            + f" -> {folder}")
    rec = run_stage(cfg, folder, ctx, teacher, data, progress, callbacks, bf16)
    return summary_row(stage, cfg["variant"], rec), folder / "best.pt"


def _student_worker(recipe: dict[str, Any], root: str, variant: str, teacher: str,
                    stages: list[int], threads: int, progress: bool) -> list[dict[str, Any]]:
    """One variant's student stages in a process of their own (:func:`run_cascade`'s jobs)."""
    exit_with_parent()
    torch.set_num_threads(threads)
    ctx = DistContext(device=torch.device("cpu"))
    rows, t, data = [], Path(teacher), DataCache()
    for stage in stages:
        row, t = _run_one(recipe, Path(root), stage, variant, t, ctx, data, progress, (),
                          False, lambda text: print(text, flush=True))
        rows.append(row)
    return rows


def exit_with_parent() -> None:
    """In a ``multiprocessing`` child: end this process as soon as its parent ends.

    A killed ``bingnn distill --jobs N`` (``kill``, a job scheduler's SIGTERM or SIGKILL) would
    otherwise leave its student processes training on, still writing to the run folder that a
    re-run resumes from. Stopping mid-epoch loses nothing saved: every file is written
    atomically and the stage resumes from its last checkpoint."""
    import multiprocessing
    import sys
    import threading

    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        parent.join()  # returns once the parent's sentinel closes, i.e. the parent has ended
        print(f"the main bingnn process ({parent.pid}) has stopped, so this student process "
              "stops too; run the same command again to resume", file=sys.stderr, flush=True)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _students_in_processes(recipe: dict[str, Any], root: Path, starts: dict[str, Path],
                           stages: range, jobs: int, progress: bool) -> list[dict[str, Any]]:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    variants = recipe["variants"]
    workers = min(jobs, len(variants))
    threads = max(1, torch.get_num_threads() // workers)
    # spawn: a fresh interpreter per worker (fork would copy this process's thread pools).
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_student_worker, recipe, str(root), v, str(starts[v]),
                               list(stages), threads, progress) for v in variants]
        return [row for f in futures for row in f.result()]


def _start_teacher(path: str, expected: dict[str, Any]) -> Path:
    """The model file that teaches the first stage run (``[stageN] teacher``), checked to be the
    stage-(N-1) model of this variant (architecture, variant, stage)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"teacher file {p} does not exist; give the best.pt of the "
                                f"stage-{expected['stage']} run to start from")
    got = load_model_file(p)[1]["model_config"]
    want = expected["model"]
    keys = [k for k in ("arch", "variant", "knn", "stage") if k in want]
    diff = [f"{k} {got.get(k)!r} (expected {want[k]!r})" for k in keys if got.get(k) != want[k]]
    if diff:
        raise ValueError(f"teacher file {p} is not this cascade's stage-{expected['stage']} "
                         f"model: {', '.join(diff)}")
    return p


def run_seeds(
    run: Callable[[int, Path], list[dict[str, Any]]],
    seeds: Sequence[int],
    out: str | os.PathLike,
    ctx: DistContext,
    title: str = "",
) -> list[dict[str, Any]]:
    """Call ``run(seed, OUT/seed<k>)`` for every seed (a cascade or one stage; each returns
    its summary rows) and write ``OUT/results.csv`` (one row per seed, stage and variant, then
    ``mean`` and ``std`` rows), ``summary.json`` and ``accuracy.png``. Returns the aggregate
    rows."""
    root = Path(out)
    rows: list[dict[str, Any]] = []
    for seed in seeds:
        for r in run(seed, root / f"seed{seed}"):
            rows.append({"seed": seed, **r})
    metrics = metric_names(rows)
    agg = aggregate_seeds(rows, metrics)
    if ctx.is_main:
        root.mkdir(parents=True, exist_ok=True)
        write_csv(root / "results.csv", [*rows, *agg], [*summary_columns(metrics, seed=True), "n"])
        write_json(root / "summary.json", {"seeds": list(seeds), "rows": agg})
        from bingnn.train.plots import plot_cascade_accuracy

        means = [{**r, "stage": r["stage"]} for r in agg if r["seed"] == "mean"]
        plot_cascade_accuracy(means, root / "accuracy.png", title, metric=metrics[0])
    ctx.barrier()
    return agg
