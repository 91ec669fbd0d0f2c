"""Options shared by the training commands (``train``, ``distill``, ``train-node``,
``distill-node``): the schedule, the processes (torchrun), precision and output."""

from __future__ import annotations

import argparse
from typing import Any

from bingnn.cli._common import add_device, add_progress, positive_float, positive_int

SCHEDULES = ("constant", "cosine", "multistep", "step", "plateau")


def fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1), got {text}")
    return v


def unit_interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}") from None
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a value in [0, 1], got {text}")
    return v


def non_negative_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not v >= 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def add_schedule(g: argparse._ArgumentGroup, default: str | None) -> None:
    """``--schedule`` and its parameters (one meaning per name: bingnn.train.optim)."""
    g.add_argument(
        "--schedule",
        choices=SCHEDULES,
        default=default,
        help="learning-rate schedule: constant; cosine (to 0); multistep (x GAMMA at 1/2 and "
        "3/4 of the epochs); step (x GAMMA every STEP_SIZE epochs); plateau (x GAMMA after "
        "PATIENCE epochs without validation gain)"
        + (f" (default: {default})" if default else " (default: the recipe's)"),
    )
    g.add_argument("--step-size", type=positive_int, default=None,
                   help="epochs between decays of --schedule step (default: 50)")
    g.add_argument("--gamma", type=unit_interval, default=None,
                   help="decay factor of multistep/step/plateau (default: 0.5)")
    g.add_argument("--patience", type=int, default=None,
                   help="epochs without validation gain before a plateau decay (default: 10)")


def schedule_from_args(args: argparse.Namespace) -> dict[str, Any] | None:
    """The schedule table of the options, ``None`` when ``--schedule`` is not given."""
    if args.schedule is None:
        for opt in ("step_size", "gamma", "patience"):
            if getattr(args, opt) is not None:
                raise ValueError(f"--{opt.replace('_', '-')} needs --schedule")
        return None
    s: dict[str, Any] = {"type": args.schedule}
    if args.schedule == "multistep":
        s.update(milestones=[0.5, 0.75], gamma=0.5)
    if args.schedule == "step":
        s.update(step_size=args.step_size or 50, gamma=0.5)
    if args.schedule == "plateau":
        s.update(patience=10 if args.patience is None else args.patience, gamma=0.5)
    if args.gamma is not None:
        if args.schedule in ("constant", "cosine"):
            raise ValueError(f"--gamma does not apply to --schedule {args.schedule}")
        s["gamma"] = args.gamma
    if args.step_size is not None and args.schedule != "step":
        raise ValueError("--step-size applies to --schedule step only")
    if args.patience is not None and args.schedule != "plateau":
        raise ValueError("--patience applies to --schedule plateau only")
    return s


def add_runtime(p: argparse.ArgumentParser) -> None:
    """Device, processes, precision, threads and progress."""
    add_device(p)
    r = p.add_argument_group(
        "processes and precision",
        "Data-parallel training: start the same command with torchrun, one process per "
        "device, e.g. 'torchrun --nproc_per_node 2 -m bingnn train ...'. Only rank 0 writes "
        "files; re-running resumes.",
    )
    r.add_argument("--backend", choices=("auto", "gloo", "nccl"), default="auto",
                   help="torch.distributed backend under torchrun: NCCL on CUDA, gloo on CPU "
                   "(default: auto)")
    r.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast for the float models (teacher, stage 0 and 1) on "
                   "CUDA; binary students keep float32, so their signs are exact")
    r.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads per process (default: torch's)")
    add_progress(p)


def runtime(args: argparse.Namespace):
    """Apply ``--threads`` and start (or join) the process group: the
    :class:`~bingnn.train.distributed.DistContext` of this process. Refuses, in one line,
    NCCL or ``--bf16`` without CUDA."""
    import torch

    from bingnn.train.distributed import init_distributed
    from bingnn.train.model_files import resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    if args.backend == "nccl" and dev.type != "cuda":
        raise ValueError(
            "--backend nccl needs CUDA GPUs"
            + ("" if torch.cuda.is_available() else " and none is available")
            + "; use --backend gloo (or auto) on the CPU"
        )
    if args.bf16 and dev.type != "cuda":
        raise ValueError("--bf16 (bfloat16 autocast) needs a CUDA device; drop it on the CPU")
    return init_distributed(dev, args.backend)


def say(ctx, args: argparse.Namespace, text: str, always: bool = False) -> None:
    """Print on rank 0 (unless --no-progress, for progress lines)."""
    if ctx.is_main and (always or not args.no_progress):
        print(text, flush=True)


__all__ = [
    "SCHEDULES",
    "add_runtime",
    "add_schedule",
    "fraction",
    "non_negative_float",
    "positive_float",
    "positive_int",
    "runtime",
    "say",
    "schedule_from_args",
    "unit_interval",
]
