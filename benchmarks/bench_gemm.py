"""Binary GEMM (XOR + popcount on packed rows) vs float32 ``torch.matmul``, on the matrix shapes
of a DGCNN: edge layers multiply ``M = B * N * k`` edge features (N = 1024 points, k = 20) by
the layer weights; the 1x1 conv after the concat has ``M = N`` rows."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from _harness import median_ms, row

from bingnn.engine import kernels

FULL = [(1024 * 20, 128, 64), (1024 * 20, 256, 128), (1024 * 20, 512, 256), (1024, 512, 1024)]
SMOKE = [(64, 128, 64), (32, 200, 40)]


def pack_and_gemm(a: np.ndarray, packed_w: np.ndarray, n_bits: int, threads: int) -> np.ndarray:
    """Binary GEMM including the packing of float activations (what a layer really pays)."""
    return kernels.binary_gemm(
        kernels.pack_signs(a, num_threads=threads), packed_w, n_bits, num_threads=threads
    )


def run(smoke: bool, threads: list[int]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    reps = 1 if smoke else 7
    rows = []
    for m, k, n in SMOKE if smoke else FULL:
        a = rng.standard_normal((m, k), dtype=np.float32)
        w = rng.standard_normal((n, k), dtype=np.float32)
        ta, twt = torch.from_numpy(a), torch.from_numpy(w).T
        pa, pw = kernels.pack_signs(a), kernels.pack_signs(w)
        # Preallocated outputs: without them both sides pay page faults on a fresh buffer.
        tout, out = torch.empty(m, n), np.empty((m, n), np.int32)
        shape = f"M={m} K={k} N={n}"
        for t in threads:
            torch.set_num_threads(t)
            ms = median_ms(torch.matmul, ta, twt, repeats=reps)
            rows.append(row("gemm", shape, "torch.matmul float32", t, ms, baseline=True))
            ms = median_ms(torch.matmul, ta, twt, out=tout, repeats=reps)
            rows.append(row("gemm", shape, "torch.matmul float32 out=", t, ms))
            ms = median_ms(kernels.binary_gemm, pa, pw, k, num_threads=t, repeats=reps)
            rows.append(row("gemm", shape, "bingnn binary_gemm", t, ms))
            ms = median_ms(kernels.binary_gemm, pa, pw, k, out=out, num_threads=t, repeats=reps)
            rows.append(row("gemm", shape, "bingnn binary_gemm out=", t, ms))
            ms = median_ms(pack_and_gemm, a, pw, k, t, repeats=reps)
            rows.append(row("gemm", shape, "bingnn pack_signs + binary_gemm", t, ms))
    return rows
