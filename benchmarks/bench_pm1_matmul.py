"""Backward products of binary layers: float32 ``torch.matmul`` vs the table-lookup kernel
(``pm1_codes`` + ``pm1_matmul``: the +-1 operand read as packed bits, the 32 signed sums of every
5 gradient values tabulated once), on the shapes of a BF2 training step at batch 4, 1,024
points, k = 20: the XOR EdgeConvs' input gradients ``g (E, C_out) @ W (C_out, C_in)`` and weight
gradients ``g^T (C_out, E) @ X (E, C_in)`` over E = 81,920 edges, and the embedding's
(4,096 points, 512 -> 1,024). Outputs are preallocated on both sides (a fresh buffer costs both
the same page faults). The lookup runs at the AVX-512 level only; elsewhere the rows are
skipped."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from _harness import median_ms, row

from bingnn import _native
from bingnn.engine import kernels

E = 4 * 1024 * 20
# (name, rows of A, K, C, A transposed): out (rows, C) = A (rows, K) @ B (K, C), B +-1
FULL = [
    ("input grad 64<-64", E, 64, 64, False),
    ("input grad 64<-128", E, 128, 64, False),
    ("input grad 128<-256", E, 256, 128, False),
    ("weight grad 64x64", 64, E, 64, True),
    ("weight grad 128x64", 128, E, 64, True),
    ("weight grad 256x128", 256, E, 128, True),
    ("embedding input grad", 4096, 1024, 512, False),
    ("embedding weight grad", 1024, 4096, 512, True),
]
SMOKE = [("input grad", 300, 37, 70, False), ("weight grad", 21, 503, 45, True)]


def lookup(a: np.ndarray, transpose: bool, bits: np.ndarray, c: int, codes: np.ndarray,
           out: np.ndarray, threads: int) -> None:
    """What a backward pays: the codes of the +-1 operand, then the product."""
    _native.pm1_codes(bits, c, False, codes, threads)
    _native.pm1_matmul(a, transpose, codes, out, threads)


def run(smoke: bool, threads: list[int]) -> list[dict[str, Any]]:
    if "avx512" not in kernels.cpu_features()["levels"] or not hasattr(_native, "pm1_matmul"):
        return []
    rng = np.random.default_rng(0)
    reps = 1 if smoke else 5
    rows = []
    for name, r, k, c, transpose in SMOKE if smoke else FULL:
        a = rng.standard_normal((k, r) if transpose else (r, k), dtype=np.float32)
        b = np.where(rng.random((k, c)) < 0.5, -1.0, 1.0).astype(np.float32)
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        ta = ta.T if transpose else ta
        bits = kernels.pack_signs(b)
        codes = np.empty(((k + 4) // 5, c), np.uint8)
        tout, out = torch.empty(r, c), np.empty((r, c), np.float32)
        shape = f"{name}: ({r}x{k}) @ (+-1 {k}x{c})"
        for t in threads:
            torch.set_num_threads(t)
            ms = median_ms(torch.matmul, ta, tb, out=tout, repeats=reps)
            rows.append(row("pm1 matmul", shape, "torch.matmul float32", t, ms, baseline=True))
            with kernels.dispatch("avx512"):
                ms = median_ms(lookup, a, transpose, bits, c, codes, out, t, repeats=reps)
            rows.append(row("pm1 matmul", shape, "bingnn pm1_codes + pm1_matmul", t, ms))
    return rows
