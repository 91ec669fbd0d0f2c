"""One dynamic EdgeConv layer of DGCNN (k-NN graph + edge features + 1x1 conv + max over k):
float32 in PyTorch (Euclidean k-NN, ``[x_j - x_i, x_i]``, matmul, max) vs the binary
XorEdgeConv layer of the engine on packed bits, fused (``xor_edge_conv_knn``) and in two steps
(``hamming_knn`` then ``xor_edge_conv``). Channel sizes follow DGCNN's layers 2-4."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from _harness import median_ms, row

from bingnn.engine import kernels

LAYERS = [(64, 64), (64, 128), (128, 256)]


def float_edge_conv(x: torch.Tensor, w: torch.Tensor, k: int) -> torch.Tensor:
    """Float DGCNN EdgeConv: ``max_j W [x_j - x_i, x_i]`` over the k nearest neighbours."""
    b, n, c = x.shape
    idx = torch.cdist(x, x).topk(k, dim=-1, largest=False).indices
    nbrs = torch.gather(x, 1, idx.reshape(b, n * k, 1).expand(-1, -1, c)).reshape(b, n, k, c)
    centre = x.unsqueeze(2).expand_as(nbrs)
    e = torch.cat([nbrs - centre, centre], dim=-1)
    return torch.matmul(e, w.T).amax(dim=2)


def two_step(x, k, w_rel, w_self, t_hi, t_lo, negate, c_in, threads):
    idx, _ = kernels.hamming_knn(x, k, num_threads=threads)
    return kernels.xor_edge_conv(
        x, idx, w_rel, w_self, t_hi, t_lo, negate, c_in=c_in, num_threads=threads
    )


def run(smoke: bool, threads: list[int]) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    reps = 1 if smoke else 5
    b, n, k = (1, 64, 8) if smoke else (4, 1024, 20)
    rows = []
    for c_in, c_out in LAYERS:
        x = np.where(rng.random((b, n, c_in)) < 0.5, -1.0, 1.0).astype(np.float32)
        w = np.where(rng.random((c_out, 2 * c_in)) < 0.5, -1.0, 1.0).astype(np.float32)
        xt, wt = torch.from_numpy(x), torch.from_numpy(w)
        px = kernels.pack_signs(x)
        w_rel, w_self = kernels.pack_signs(w[:, :c_in]), kernels.pack_signs(w[:, c_in:])
        t_hi = rng.integers(-8, 9, size=c_out).astype(np.int32)
        t_lo = np.full(c_out, kernels.T_LO_OFF, np.int32)
        negate = np.zeros(c_out, np.uint8)
        shape = f"B={b} N={n} k={k} C={c_in}->{c_out}"
        for t in threads:
            torch.set_num_threads(t)
            with torch.inference_mode():
                ms = median_ms(float_edge_conv, xt, wt, k, repeats=reps)
            rows.append(row("edge_conv", shape, "torch float32 EdgeConv", t, ms, baseline=True))
            args = (w_rel, w_self, t_hi, t_lo, negate)
            ms = median_ms(two_step, px, k, *args, c_in, t, repeats=reps)
            rows.append(row("edge_conv", shape, "bingnn hamming_knn + xor_edge_conv", t, ms))
            ms = median_ms(
                kernels.xor_edge_conv_knn, px, k, *args, c_in=c_in, num_threads=t, repeats=reps
            )
            rows.append(row("edge_conv", shape, "bingnn xor_edge_conv_knn (fused)", t, ms))
    return rows
