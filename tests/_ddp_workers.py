"""Training cases run both in one process and in each of several gloo processes (spawned by
tests/test_train_ddp.py; module-level so that spawned processes can import them)."""

from __future__ import annotations

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
