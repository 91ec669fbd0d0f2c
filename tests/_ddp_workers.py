"""Training cases run both in one process and in each of several gloo processes (spawned by
tests/test_train_ddp.py; module-level so that spawned processes can import them)."""

from __future__ import annotations

import collections
import contextlib
import copy
import os

import torch

from bingnn.models import build_model
from bingnn.train.distributed import DistContext
from bingnn.train.objective import Objective
from bingnn.train.optim import build_optimizer, build_scheduler
from bingnn.train.trainer import fit


def _task(spec: dict, ctx: DistContext):
    if spec["kind"] == "pointcloud":
        from bingnn.data import get_dataset
        from bingnn.train.pointcloud_task import PointCloudTask

        kw = dict(num_points=32, num_samples=40, seed=0)
        return PointCloudTask(
            get_dataset("synthetic", "train", **kw), get_dataset("synthetic", "val", **kw),
            get_dataset("synthetic", "test", num_points=32, num_samples=12),
            batch_size=spec["batch_size"], eval_batch_size=5, seed=2, device=ctx.device)
    from _graphs import sbm

    from bingnn.graphs.node_task import NodeTask

    return NodeTask(sbm(), 3, mode=spec["mode"], fanouts=[-1, -1], batch_size=10,
                    kd_over_all_nodes=spec.get("teacher") is not None, seed=4,
                    device=ctx.device)


def train_case(spec: dict, ctx: DistContext, out_dir=None) -> dict:
    """Train the case ``spec`` on ``ctx`` (one process or one of several); returns the final
    state dict, the record and the epoch rows."""
    task = _task(spec, ctx)
    torch.manual_seed(spec["init_seed"])
    model = build_model({**spec["model"], **task.model_dims()})
    teacher = None
    if spec.get("teacher") is not None:
        teacher = build_model({**spec["teacher"][0], **task.model_dims()})
        teacher.load_state_dict(spec["teacher"][1])
    opt = build_optimizer(model.parameters(), spec.get("optimizer", "adam"), spec["lr"])
    sched = build_scheduler(opt, {"type": "multistep"}, spec["epochs"])
    res = fit(task, model, Objective(**spec.get("loss", {})), opt, sched,
              epochs=spec["epochs"], teacher=teacher, seed=spec["seed"], ctx=ctx,
              out_dir=out_dir, recalibrate_bn=spec.get("recalibrate_bn", False))
    return {"final": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "record": res.record, "history": res.history}


def run_cases(ctx: DistContext, specs: list, work: str) -> None:
    """``spawn`` entry: train every case, save each process's result."""
    for i, spec in enumerate(specs):
        out = train_case(spec, ctx)
        torch.save(out, os.path.join(work, f"case{i}_rank{ctx.rank}.pt"))


def identical_replicas(work: str, i: int, world: int = 2) -> dict:
    """Case ``i``'s result as rank 0 saved it, after checking that every rank's final state is
    bit-identical to it (gradients all-reduced, BatchNorm statistics global)."""
    ranks = [torch.load(os.path.join(work, f"case{i}_rank{r}.pt"), weights_only=False)
             for r in range(world)]
    for other in ranks[1:]:
        for k, v in ranks[0]["final"].items():
            assert torch.equal(v, other["final"][k]), (i, k)
    return ranks[0]


# -- the fast EdgeConv paths under the global-batch BatchNorm ----------------------------------

_PATH_CLASSES = ("PointEdgeConv", "XorPointEdgeConv", "BinPointEdgeConv")


@contextlib.contextmanager
def count_paths():
    """Count the calls of each point-set convolution's fast and plain formulation, keyed
    ``(class, "fast" | "plain", global)`` where ``global`` says whether the layer's BatchNorm
    normalised over every process's batch (:func:`bingnn.nn.global_batchnorm.active`)."""
    import bingnn.nn as bnn
    from bingnn.nn import global_batchnorm

    counts: collections.Counter = collections.Counter()
    saved = []
    for cname in _PATH_CLASSES:
        cls = getattr(bnn, cname)
        for method, kind in (("forward_fast", "fast"), ("forward_reference", "plain")):
            orig = getattr(cls, method)

            def wrapped(self, *a, _orig=orig, _key=(cname, kind), **kw):
                on = any(global_batchnorm.active(m) for m in self.modules()
                         if isinstance(m, torch.nn.modules.batchnorm._BatchNorm))
                counts[(*_key, on)] += 1
                return _orig(self, *a, **kw)

            saved.append((cls, method, orig))
            setattr(cls, method, wrapped)
    try:
        yield counts
    finally:
        for cls, method, orig in saved:
            setattr(cls, method, orig)


def run_cases_counting(ctx: DistContext, specs: list, work: str) -> None:
    """As :func:`run_cases`, also saving which convolution paths ran."""
    with count_paths() as counts:
        run_cases(ctx, specs, work)
    torch.save(dict(counts), os.path.join(work, f"paths_rank{ctx.rank}.pt"))


def layer_step(conv: torch.nn.Module, x: torch.Tensor, r: torch.Tensor) -> dict:
    """One training-mode forward of ``conv`` on ``x`` and the backward of ``sum(out * r)``:
    output, input gradient, parameter gradients, buffers after the step."""
    x = x.clone().requires_grad_(True)
    out = conv.train()(x)
    (out * r).sum().backward()
    return {"out": out.detach(), "gx": x.grad,
            "grads": {n: p.grad.clone() for n, p in conv.named_parameters()
                      if p.grad is not None},
            "bufs": {n: b.clone() for n, b in conv.named_buffers()}}


def run_layers(ctx: DistContext, cases: list, work: str) -> None:
    """``spawn`` entry: every ``(conv, x, r)`` case on this process's rows ``rank::world`` with
    the global-batch BatchNorm; parameter gradients summed over the processes (the total
    loss is the sum of the processes' losses)."""
    from bingnn.nn import global_batchnorm

    results = []
    with count_paths() as counts:
        for conv, x, r in cases:
            conv = copy.deepcopy(conv)  # its tensors arrive in memory shared by the processes
            global_batchnorm.convert(conv)
            res = layer_step(conv, ctx.shard(x), ctx.shard(r))
            res["grads"] = {n: global_batchnorm.sum_over_processes(g)
                            for n, g in res["grads"].items()}
            results.append(res)
    torch.save({"results": results, "paths": dict(counts)},
               os.path.join(work, f"layers_rank{ctx.rank}.pt"))
