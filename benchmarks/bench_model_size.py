"""Model size: the packed ``.bgnn`` file of BF2 and RF (ModelNet40 architecture, 40 classes) vs
the float32 ``DGCNN`` state dict (``torch.save``). Rows carry ``bytes`` and ``ratio`` (float
state dict / this file); ``median_ms`` is the time to load the file (``bingnn.engine.load`` or
``torch.load``), read back from disk."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import torch
from _harness import median_ms, row

import bingnn.engine
from bingnn.export import export
from bingnn.models import DGCNN, BinDGCNN


def run(smoke: bool, threads: list[int]) -> list[dict[str, Any]]:
    reps = 1 if smoke else 5
    torch.manual_seed(0)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        sd_path = Path(tmp) / "dgcnn.pt"
        torch.save(DGCNN(num_classes=40).state_dict(), sd_path)
        base = sd_path.stat().st_size
        ms = median_ms(lambda: torch.load(sd_path, weights_only=True), repeats=reps)
        shape = "ModelNet40, 40 classes"
        rows.append(row("model_size", shape, f"DGCNN float32 state dict: {base / 1024:.0f} KiB",
                        1, ms, baseline=True, bytes=base, ratio=1.0))
        for variant, label in (("bf2", "BF2"), ("rf", "RF")):
            model = BinDGCNN(num_classes=40, variant=variant,
                             knn="l2" if variant == "rf" else "hamming")
            path = export(model, Path(tmp) / f"{variant}.bgnn")
            size = path.stat().st_size
            ms = median_ms(bingnn.engine.load, path, repeats=reps)
            rows.append(row("model_size", shape,
                            f"BinDGCNN {label} .bgnn: {size / 1024:.0f} KiB (1/{base / size:.1f})",
                            1, ms, bytes=size, ratio=base / size))
            # The same binary model as PyTorch keeps it (latent float32 weights): no smaller.
            latent = Path(tmp) / f"{variant}.pt"
            torch.save(model.state_dict(), latent)
            size = latent.stat().st_size
            ms = median_ms(lambda p=latent: torch.load(p, weights_only=True), repeats=reps)
            rows.append(row("model_size", shape,
                            f"BinDGCNN {label} latent float32 state dict: {size / 1024:.0f} KiB",
                            1, ms, bytes=size, ratio=base / size))
    return rows
