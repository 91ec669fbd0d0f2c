"""Hamming k-NN of binary point features (each point against its own set, k = 20) vs float
k-NN (``torch.cdist`` + ``topk``), the training library's ``bingnn.nn.knn(..., "hamming")``
(float matmul + topk) and ``faiss.knn_hamming`` (uint8-packed rows, one call per set)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from _harness import median_ms, row

from bingnn.engine import kernels
from bingnn.nn import knn as torch_knn

try:
    import faiss
except ImportError:  # faiss-cpu is an optional benchmark dependency
    faiss = None

K = 20


def float_knn(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean k-NN of float features, as float DGCNN computes it."""
    return torch.cdist(x, x).topk(k, dim=-1, largest=False)


def faiss_knn(codes: list[np.ndarray], k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """faiss Hamming k-NN, each set against itself."""
    return [faiss.knn_hamming(c, c, k) for c in codes]


def run(smoke: bool, threads: list[int]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    reps = 1 if smoke else 7
    b, n = (2, 128) if smoke else (8, 1024)
    rows = []
    for c in (64, 128, 256):
        x = np.where(rng.random((b, n, c)) < 0.5, -1.0, 1.0).astype(np.float32)
        xt = torch.from_numpy(x)
        packed = kernels.pack_signs(x)
        codes = [np.packbits(x[s] >= 0, axis=-1, bitorder="little") for s in range(b)]
        shape = f"B={b} N={n} C={c} k={K}"
        for t in threads:
            torch.set_num_threads(t)
            ms = median_ms(float_knn, xt, K, repeats=reps)
            rows.append(row("knn", shape, "torch cdist+topk float32", t, ms, baseline=True))
            ms = median_ms(torch_knn, xt, K, "hamming", repeats=reps)
            rows.append(row("knn", shape, "bingnn.nn.knn hamming (torch)", t, ms))
            if faiss is not None:
                faiss.omp_set_num_threads(t)
                ms = median_ms(faiss_knn, codes, K, repeats=reps)
                rows.append(row("knn", shape, "faiss.knn_hamming", t, ms))
            ms = median_ms(kernels.hamming_knn, packed, K, num_threads=t, repeats=reps)
            rows.append(row("knn", shape, "bingnn hamming_knn", t, ms))
    return rows
