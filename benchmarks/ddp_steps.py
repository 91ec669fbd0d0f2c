"""Data-parallel training steps under ``torchrun``: which formulation the point-set
convolutions run, and how long a step takes, fast beside plain.

Every process joins the process group torchrun set up (gloo on the CPU), wraps each model of
``bench_training.MODELS`` as the trainer does (global-batch BatchNorm, then
``DistributedDataParallel``) and runs training steps (forward with the k-NN graphs,
cross-entropy, backward with the gradient all-reduce) on its shard of a global batch of random
clouds: first the default (fast) formulation, then the plain one (``bingnn.nn.reference_mode``).
It counts, on every process, the calls of each convolution's ``forward_fast`` and
``forward_reference`` and whether the layer's BatchNorm normalised over the global batch
(:func:`bingnn.nn.global_batchnorm.active`). Rank 0 prints one row per model and formulation
(median ms per step after one warm-up step) and exits with status 1 if a fast row ran any plain
formulation or any layer outside the global-batch mode.

Run: ``torchrun --nproc_per_node 2 benchmarks/ddp_steps.py --points 256 --batch 4``.
"""

from __future__ import annotations

import argparse
import collections
import sys
import time
from statistics import median

import torch
import torch.distributed as dist
from bench_training import MODELS
from torch.nn.parallel import DistributedDataParallel

import bingnn.nn as bnn
from bingnn.nn import global_batchnorm
from bingnn.train.distributed import init_distributed, sync_batchnorm

CONVS = (bnn.PointEdgeConv, bnn.XorPointEdgeConv, bnn.BinPointEdgeConv)


def count_calls(counts: collections.Counter) -> None:
    """Wrap each convolution's two formulations to count ``(formulation, global mode)``."""
    for cls in CONVS:
        for method, kind in (("forward_fast", "fast"), ("forward_reference", "plain")):
            orig = getattr(cls, method)

            def wrapped(self, *a, _orig=orig, _kind=kind, **kw):
                on = any(global_batchnorm.active(m) for m in self.modules()
                         if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
                counts[(_kind, on)] += 1
                return _orig(self, *a, **kw)

            setattr(cls, method, wrapped)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--points", type=int, default=256)
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--batch", type=int, default=4, help="global batch (all processes)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps after one warm-up")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    ctx = init_distributed("cpu")
    counts: collections.Counter = collections.Counter()
    count_calls(counts)
    g = torch.Generator().manual_seed(0)
    x = ctx.shard(torch.randn(args.batch, args.points, 3, generator=g))
    y = ctx.shard(torch.randint(0, 40, (args.batch,), generator=g))
    ok = True
    if ctx.is_main:
        print(f"{ctx.world} processes, global batch {args.batch}, {args.points} points, "
              f"k = {args.k}, {args.threads} thread(s) each")
        print(f"{'model':<12} {'formulation':<11} {'ms/step':>8}  convolution calls per step "
              "(rank 0; every rank is checked)")
    for name, factory in MODELS.items():
        torch.manual_seed(0)
        model = factory(args.k)
        sync_batchnorm(model)
        net = DistributedDataParallel(model)
        for plain in (False, True):
            times = []
            with bnn.reference_mode(plain):
                for i in range(args.repeats + 1):
                    counts.clear()
                    net.zero_grad(set_to_none=True)
                    dist.barrier()
                    t0 = time.perf_counter()
                    logits, _ = net(x, return_graphs=True)
                    torch.nn.functional.cross_entropy(logits, y).backward()
                    dist.barrier()
                    if i:
                        times.append(time.perf_counter() - t0)
            calls = dict(counts)
            ok &= plain or set(calls) == {("fast", True)}
            if ctx.is_main:
                seen = ", ".join(f"{kind}{' (global BN)' if on else ' (local BN)'}: {n}"
                                 for (kind, on), n in sorted(calls.items()))
                print(f"{name:<12} {'plain' if plain else 'fast':<11} "
                      f"{1000 * median(times):>8.0f}  {seen}")
    flags = torch.tensor([int(ok)])
    dist.all_reduce(flags, op=dist.ReduceOp.MIN)
    dist.destroy_process_group()
    return 0 if int(flags) else 1


if __name__ == "__main__":
    sys.exit(main())
