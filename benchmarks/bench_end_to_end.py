"""End-to-end classification latency: binary DGCNNs (BF2, BF2 with real-valued shortcuts, RF)
in the bingnn engine vs the float ``DGCNN`` in eager PyTorch (the baseline) and in ONNX Runtime
(float32), on ``N = 1024`` points, batch 1 and 16. Every row times the full forward pass (k-NN
graphs included) on the same input.

The models are randomly initialised (the run time of a forward pass does not depend on the
weights); the engine runs the model file written by ``bingnn.export``, read back from disk.
The ONNX graph replaces the stable-sort k-NN (not exportable) with ``topk``, the same work.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _harness import median_ms, row

import bingnn.engine
from bingnn.export import export
from bingnn.models import DGCNN, BinDGCNN

NUM_CLASSES = 40
# (file name, variant, real-valued shortcuts): with shortcuts the XOR layers keep real values
# (tabulated), so they cannot use the fused bits-only kernel
VARIANTS = (("bf2", "bf2", False), ("bf2-shortcut", "bf2", True), ("rf", "rf", False))


def _onnx_session(model: DGCNN, n: int, path: Path, threads: int):
    """Export ``model`` to ONNX (float32, dynamic batch) and open a session with ``threads``."""
    import importlib

    import onnxruntime as ort

    import bingnn.nn

    # the module, not the function bingnn.nn.knn that the package exports under its name
    knn_module = importlib.import_module("bingnn.nn.knn")
    from bingnn.nn.knn import pairwise_distance

    if not path.exists():
        def knn_topk(x: torch.Tensor, k: int, metric: str = "l2") -> torch.Tensor:
            return torch.topk(pairwise_distance(x, "l2"), k, dim=-1, largest=False).indices

        # The plain formulation and a traceable k-NN (the fast paths and the exact-distance
        # k-NN call native kernels ONNX cannot trace); layers build graphs via knn_unchecked.
        original = knn_module.knn_unchecked
        knn_module.knn_unchecked = knn_topk
        try:
            with warnings.catch_warnings(), bingnn.nn.reference_mode():
                warnings.simplefilter("ignore")
                torch.onnx.export(model, (torch.zeros(1, n, 3),), str(path),
                                  input_names=["points"], output_names=["logits"],
                                  dynamic_axes={"points": {0: "B"}}, opset_version=17,
                                  dynamo=False)
        finally:
            knn_module.knn_unchecked = original
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def run(smoke: bool, threads: list[int]) -> list[dict[str, Any]]:
    n = 128 if smoke else 1024
    batches = [1, 2] if smoke else [1, 16]
    reps = 1 if smoke else 5
    torch.manual_seed(0)
    dgcnn = DGCNN(num_classes=NUM_CLASSES).eval()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for name, variant, shortcut in VARIANTS:
            model = BinDGCNN(num_classes=NUM_CLASSES, variant=variant, shortcut=shortcut,
                             knn="l2" if variant == "rf" else "hamming").eval()
            files[name] = export(model, Path(tmp) / f"{name}.bgnn")
        onnx_path = Path(tmp) / "dgcnn.onnx"
        rng = np.random.default_rng(0)
        for b in batches:
            x = rng.standard_normal((b, n, 3), dtype=np.float32)
            xt = torch.from_numpy(x)
            shape = f"B={b} N={n}"
            for t in threads:
                torch.set_num_threads(t)
                with torch.no_grad():
                    ms = median_ms(dgcnn, xt, repeats=reps)
                rows.append(row("end_to_end", shape, "DGCNN float32, eager PyTorch", t, ms,
                                baseline=True))
                sess = _onnx_session(dgcnn, n, onnx_path, t)
                ort_ms = median_ms(sess.run, None, {"points": x}, repeats=reps)
                rows.append(row("end_to_end", shape, "DGCNN float32, ONNX Runtime", t, ort_ms))
                for name, label in (("bf2", "BF2"), ("bf2-shortcut", "BF2 + shortcuts"),
                                    ("rf", "RF")):
                    em = bingnn.engine.load(files[name], num_threads=t)
                    ms = median_ms(em.logits, x, repeats=reps)
                    rows.append(row("end_to_end", shape, f"BinDGCNN {label}, bingnn engine", t,
                                    ms, vs_onnx=ort_ms / ms))
    torch.set_num_threads(os.cpu_count() or 1)
    return rows
