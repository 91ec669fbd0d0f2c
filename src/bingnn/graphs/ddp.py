"""Distributed data-parallel training of node classifiers (``torch.distributed``, DDP).

Start one process per device with ``torchrun`` (gloo on CPU, NCCL on GPU)::

    torchrun --nproc_per_node 2 -m bingnn.graphs.ddp --dataset cora --model binsage \\
        --raw-dir ../shared/data/planetoid --epochs 200 --out runs/ddp-cora

or call :func:`fit_ddp` in processes of your own once the process group is up.

How the work is split, so that ``W`` processes compute exactly what one process computes:

- **full batch**: every rank runs the forward pass on the whole graph (same dropout masks:
  all ranks share the seed) and takes the loss over its shard ``train_idx[rank::W]``, summed
  and divided by the global number of training nodes, times ``W`` (DDP averages gradients).
  BatchNorm statistics are those of the whole graph on every rank.
- **mini-batch**: every rank draws the same permutation of the training nodes; each global
  batch of ``batch_size`` seeds is split ``seeds[rank::W]`` and each rank samples its own
  computation graph. The gradient equals the single-process one when the sampled
  neighbourhoods do not depend on the batch (fan-outs ``-1``) and no layer mixes nodes of a
  batch (no BatchNorm: ``centering="mean"``/``"median"``/``"none"``, or SyncBatchNorm on GPU).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch_geometric.data import Data

from bingnn.graphs.node_trainer import (
    FitResult,
    Objective,
    TrainConfig,
    evaluate_splits,
    labelled_mask,
    set_seed,
    split_index,
)

__all__ = ["fit_ddp", "main", "spawn_fit", "spawn_fits"]


def _global_step_seeds(pool: torch.Tensor, cfg: TrainConfig, epoch: int):
    g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
    perm = pool[torch.randperm(pool.numel(), generator=g)]
    for i in range(0, perm.numel(), cfg.batch_size):
        yield perm[i:i + cfg.batch_size]


def fit_ddp(model: nn.Module, data: Data, cfg: TrainConfig, teacher: nn.Module | None = None,
            evaluator: Any = None, device: str | torch.device = "cpu") -> FitResult:
    """Like :func:`bingnn.graphs.node_trainer.fit`, in each process of an initialised process
    group (see module docstring for the split). Returns the same result on every rank; the
    replicas stay identical because DDP all-reduces the gradients."""
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError("fit_ddp needs an initialised process group (torchrun or "
                           "torch.distributed.init_process_group)")
    cfg.validate()
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device(device)
    set_seed(cfg.seed)
    model.to(device)
    if teacher is not None:
        teacher.to(device)
    if device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    cpu_data, data = data, copy.copy(data).to(device)  # Data.to() is in place
    train_idx, val_idx, test_idx = (split_index(data, s) for s in ("train", "val", "test"))
    if train_idx.numel() == 0:
        raise ValueError("the training split is empty")
    obj = Objective(cfg, teacher)
    opt = torch.optim.Adam(ddp.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    all_idx = torch.arange(data.num_nodes, device=device)
    is_train = labelled_mask(train_idx.cpu(), data.num_nodes)
    csr = None
    if cfg.mode == "minibatch":
        from bingnn.graphs.sampler import CSRGraph, sample_neighbors

        csr = CSRGraph.from_edge_index(cpu_data.edge_index, cpu_data.num_nodes)
    t_out = None
    if teacher is not None and csr is None:  # frozen teacher, same graph every epoch
        t_out = obj.teacher_outputs(data.x, data.edge_index)
    best = {"epoch": 0, "train": math.nan, "val": -math.inf, "test": math.nan}
    best_state = copy.deepcopy(model.state_dict())
    history = []
    for epoch in range(1, cfg.epochs + 1):
        ddp.train()
        total, steps = 0.0, 0
        if csr is None:
            opt.zero_grad()
            shard = train_idx[rank::world]
            kd = {"kd_rows": all_idx[rank::world], "kd_reduction_size": data.num_nodes} \
                if obj.kd_on_all_nodes else {}
            loss = obj(ddp, data.x, data.edge_index, data.y, shard,
                       reduction_size=train_idx.numel(), teacher_out=t_out, **kd) * world
            loss.backward()
            opt.step()
            total, steps = float(loss.detach()) / world, 1
        else:
            gen = torch.Generator().manual_seed((cfg.seed * 100003 + epoch) * 64 + rank)
            pool = all_idx.cpu() if obj.kd_on_all_nodes else train_idx.cpu()
            for seeds in _global_step_seeds(pool, cfg, epoch):
                sub = sample_neighbors(csr, seeds[rank::world], cfg.fanouts, gen)
                x = cpu_data.x[sub.n_id].to(device)
                y = cpu_data.y[sub.n_id].to(device)
                seed_rows = torch.arange(sub.batch_size, device=device)
                rows = is_train[sub.n_id[: sub.batch_size]].nonzero().view(-1).to(device)
                opt.zero_grad()
                loss = obj(ddp, x, sub.edge_index.to(device), y, rows,
                           reduction_size=max(int(is_train[seeds].sum()), 1),
                           kd_rows=seed_rows, kd_reduction_size=seeds.numel()) * world
                loss.backward()
                opt.step()
                total, steps = total + float(loss.detach()) / world, steps + 1
        row = {"epoch": epoch, "loss": total / max(steps, 1)}
        if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
            row.update(evaluate_splits(
                model, data, {"train": train_idx, "val": val_idx, "test": test_idx}, cfg,
                evaluator))
            score = row["val"] if val_idx.numel() else row["train"]
            if score > best["val"] or best["epoch"] == 0:
                best = {"epoch": epoch, "train": row["train"], "val": score, "test": row["test"]}
                best_state = copy.deepcopy(model.state_dict())
            history.append(row)
    return FitResult(int(best["epoch"]), float(best["train"]), float(best["val"]),
                     float(best["test"]), history, best_state)


def _spawn_worker(rank: int, world_size: int, init_file: str, out_dir: str,
                  runs: list[tuple], threads: int) -> None:
    from bingnn.models import build_model
    from bingnn.train.checkpoint import save_checkpoint

    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world_size)
    try:
        for i, run in enumerate(runs):
            model_config, data, cfg = run[:3]
            teacher = None
            if len(run) > 3 and run[3] is not None:  # (teacher config, teacher state dict)
                teacher = build_model(run[3][0])
                teacher.load_state_dict(run[3][1])
            torch.manual_seed(cfg.seed)
            model = build_model(model_config)
            r = fit_ddp(model, data, cfg, teacher=teacher)
            save_checkpoint(os.path.join(out_dir, f"run{i}_rank{rank}.pt"), {
                "final": model.state_dict(), "best": r.state_dict, "result": r.summary(),
                "history": r.history,
            })
    finally:
        dist.destroy_process_group()


def spawn_fits(world_size: int, runs: list[tuple], work_dir: str | os.PathLike,
               threads: int = 1) -> list[list[dict[str, Any]]]:
    """Train each ``(model_config, data, cfg)`` of ``runs`` with DDP over ``world_size`` CPU
    processes (gloo) started from Python, without ``torchrun``; a fourth element
    ``(teacher_config, teacher_state_dict)`` distils from that teacher. Returns, per run and rank,
    ``{"final", "best", "result", "history"}`` (final and best state dicts). Each model is
    rebuilt in every process from its config after ``torch.manual_seed(cfg.seed)``, as a
    single-process run would build it."""
    import torch.multiprocessing as mp

    from bingnn.train.checkpoint import load_checkpoint

    work = os.path.abspath(os.fspath(work_dir))
    os.makedirs(work, exist_ok=True)
    init_file = os.path.join(work, "ddp_init")
    if os.path.exists(init_file):
        os.unlink(init_file)
    mp.spawn(_spawn_worker, args=(world_size, init_file, work, list(runs), threads),
             nprocs=world_size, join=True)
    return [[load_checkpoint(os.path.join(work, f"run{i}_rank{r}.pt"))
             for r in range(world_size)] for i in range(len(runs))]


def spawn_fit(world_size: int, model_config: dict[str, Any], data: Data, cfg: TrainConfig,
              work_dir: str | os.PathLike, threads: int = 1) -> list[dict[str, Any]]:
    """One run of :func:`spawn_fits`; returns the per-rank results."""
    return spawn_fits(world_size, [(model_config, data, cfg)], work_dir, threads)[0]


def main(argv: list[str] | None = None) -> int:
    """``torchrun ... -m bingnn.graphs.ddp <train-node options>``: rank 0 prints and saves."""
    from bingnn.cli import node_cmd

    parser = argparse.ArgumentParser(prog="bingnn-ddp", description=__doc__.splitlines()[0])
    node_cmd._add_common(parser, distill=False)
    args = parser.parse_args(argv)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    backend = "nccl" if cuda else "gloo"
    dist.init_process_group(backend)
    rank = dist.get_rank()
    local = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device(f"cuda:{local}") if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        from bingnn.graphs.datasets import load_node_dataset

        ds = load_node_dataset(args.dataset, args.root, raw_dir=args.raw_dir,
                               download=args.download and rank == 0,
                               normalize_features=args.normalize_features)
        opts = node_cmd._options(args)
        if opts["mode"] == "minibatch":
            ds.densify_features()  # the sampler slices rows of x
        tests = []
        for seed in range(args.seed, args.seed + args.seeds):
            torch.manual_seed(seed)
            model = node_cmd.build_node_model(args.model, ds.data.num_features, ds.num_classes,
                                              opts, stage=args.stage)
            cfg = node_cmd._train_config(opts, args, ds, seed)
            r = fit_ddp(model, ds.for_seed(seed), cfg, evaluator=ds.evaluator, device=device)
            tests.append(r.test)
            if rank == 0:
                print(f"seed {seed}: best epoch {r.best_epoch}, val {100 * r.val:.2f}, "
                      f"test {100 * r.test:.2f} ({dist.get_world_size()} processes, {backend})",
                      flush=True)
                if args.out:
                    from bingnn.train.checkpoint import save_checkpoint

                    save_checkpoint(os.path.join(args.out, f"seed{seed}", "best.pt"),
                                    {"model": r.state_dict, "model_config": model.config,
                                     "result": r.summary()})
        if rank == 0:
            m, s = node_cmd.mean_std(tests)
            print(f"test {100 * m:.2f} +- {100 * s:.2f} over {len(tests)} seeds")
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
