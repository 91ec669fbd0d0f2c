"""Data-parallel training with ``torch.distributed``: the process context, sharding helpers and
BatchNorm with statistics over all processes.

Launch one process per device with ``torchrun``; every training command of bingnn then trains
with PyTorch's ``DistributedDataParallel`` (gloo on CPU, NCCL on GPU)::

    torchrun --nproc_per_node 2 -m bingnn train --model dgcnn --out runs/t
    torchrun --nproc_per_node 2 -m bingnn train-node --dataset cora --model bingcn

:func:`init_distributed` reads torchrun's environment (``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and returns a :class:`DistContext`; without
torchrun it returns the single-process context, and the same code runs unchanged.

How work is split so that ``W`` processes compute what one process computes on the same
global batch: every process walks the same sequence of global batches (same permutation, from
the run's seed and the epoch) and takes the rows ``rank::W`` of each; every loss term is a sum
over the local rows divided by the *global* row count (:mod:`bingnn.train.objective`), times
``W`` because DDP averages gradients. BatchNorm layers normalise with the statistics of the
whole global batch (:func:`sync_batchnorm`; a task whose processes all run the same inputs, a
full-batch graph, has them already). Only rank 0 writes files.

:func:`spawn` starts ``W`` CPU processes with the gloo backend from Python (tests, notebooks).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "BACKENDS",
    "DistContext",
    "init_distributed",
    "launched_by_torchrun",
    "spawn",
    "sync_batchnorm",
]

BACKENDS = ("auto", "gloo", "nccl")


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world`` processes, its ``device``, and the
    ``backend`` (``None`` when there is a single process and no process group)."""

    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and prints."""
        return self.rank == 0

    def shard(self, rows: Tensor) -> Tensor:
        """This process's rows ``rows[rank::world]`` of a global batch."""
        return rows[self.rank :: self.world] if self.distributed else rows

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def all_reduce_sum(self, values: Tensor) -> Tensor:
        """Element-wise sum over processes (a copy; the input is left alone)."""
        out = values.detach().clone().to(self.device)
        if self.distributed:
            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out.cpu()

    def gather_rows(self, local: Tensor, total: int) -> Tensor:
        """Reassemble a global ``(total, ...)`` tensor whose rows ``rank::world`` each process
        computed (its ``local``); the same tensor is returned on every process."""
        if not self.distributed:
            return local
        size = -(-total // self.world)
        pad = torch.zeros((size, *local.shape[1:]), dtype=local.dtype, device=self.device)
        pad[: local.shape[0]] = local.to(self.device)
        parts = [torch.empty_like(pad) for _ in range(self.world)]
        dist.all_gather(parts, pad)
        out = local.new_empty((total, *local.shape[1:]))
        for r, part in enumerate(parts):
            n = len(range(r, total, self.world))
            out[r :: self.world] = part[:n].to(out.device)
        return out


def launched_by_torchrun() -> bool:
    """Whether this process was started by torchrun (or another launcher that sets
    ``WORLD_SIZE``) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: str | torch.device = "auto", backend: str = "auto") -> DistContext:
    """Join the process group torchrun set up, or return the single-process context.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``: under torchrun with CUDA each process takes
            ``cuda:LOCAL_RANK``.
        backend: ``"auto"`` (NCCL on CUDA, gloo on CPU), ``"gloo"`` or ``"nccl"``.

    Raises:
        ValueError: an unknown backend, NCCL without CUDA, more processes on a node than it has
            GPUs, or a backend given without torchrun.
    """
    from bingnn.train.model_files import resolve_device

    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    dev = resolve_device(device)
    if not launched_by_torchrun():
        if dist.is_available() and dist.is_initialized():  # a process group set up by the caller
            return DistContext(dist.get_rank(), dist.get_world_size(), dev, dist.get_backend())
        return DistContext(device=dev)
    if not dist.is_available():
        raise ValueError("this PyTorch build has no torch.distributed; run without torchrun")
    if backend == "auto":
        backend = "nccl" if dev.type == "cuda" else "gloo"
    if backend == "nccl" and dev.type != "cuda":
        raise ValueError(
            "the NCCL backend needs CUDA GPUs"
            + ("" if torch.cuda.is_available() else ", and none is available")
            + "; use --backend gloo (CPU) or --device cuda"
        )
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if dev.type == "cuda":
        if local >= torch.cuda.device_count():
            raise ValueError(
                f"process with local rank {local} has no GPU (this node has "
                f"{torch.cuda.device_count()}); start at most that many processes per node"
            )
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return DistContext(dist.get_rank(), dist.get_world_size(), dev, backend)


# -- BatchNorm over the global batch ----------------------------------------------------------


def sync_batchnorm(model: nn.Module) -> int:
    """Make every BatchNorm layer of ``model`` normalise, in training mode, with the mean and
    variance of the global batch (all processes' rows), gradients included; running statistics
    are updated from the same global moments, so they stay identical on every process
    (:func:`bingnn.nn.global_batchnorm.convert`). The fast EdgeConvs, which compute their
    per-edge statistics themselves, combine them over the processes the same way.

    torch's ``SyncBatchNorm`` is not used: it accepts GPU tensors only (the CPU/gloo runs and
    the tests need it too), and ``convert_sync_batchnorm`` would replace bingnn's channel-last
    ``ChannelBatchNorm`` by a channel-first layer. The layers keep their class and parameter
    names, so state dicts and checkpoints are those of the plain model. Returns the number of
    layers converted.
    """
    from bingnn.nn import global_batchnorm

    return global_batchnorm.convert(model)


# -- processes started from Python --------------------------------------------------------------


def _spawn_entry(rank: int, world: int, init_file: str, threads: int, fn: Callable, args: tuple):
    torch.set_num_threads(threads)
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        fn(DistContext(rank, world, torch.device("cpu"), "gloo"), *args)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable[..., Any], world: int, work_dir: str | os.PathLike, *args: Any,
          threads: int = 1) -> None:
    """Run ``fn(ctx, *args)`` in ``world`` new CPU processes joined by a gloo process group
    (rendezvous through a file in ``work_dir``); ``fn`` must be importable (a module-level
    function). Returns when all have finished; an exception in one is raised here."""
    import torch.multiprocessing as mp

    work = os.path.abspath(os.fspath(work_dir))
    os.makedirs(work, exist_ok=True)
    init_file = os.path.join(work, "dist_init")
    if os.path.exists(init_file):
        os.unlink(init_file)
    mp.spawn(_spawn_entry, args=(world, init_file, threads, fn, args), nprocs=world, join=True)
