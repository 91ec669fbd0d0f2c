"""Backends of the fast EdgeConv paths: the native kernels (``csrc/train_float.hpp``) on CPU
float32 tensors, PyTorch operations with the same meaning everywhere else (GPUs, other dtypes,
a source checkout without the extension). Nothing here records autograd history."""

from __future__ import annotations

import torch
from torch import Tensor

try:
    from bingnn import _native
except ImportError:  # pragma: no cover - exercised only without a built extension
    _native = None

#: Bytes of edge values per chunk of the PyTorch fallbacks on the CPU (fits the caches).
CPU_CHUNK_BYTES = 4 << 20


def use_native(*tensors: Tensor | None) -> bool:
    """Whether the native kernels apply: extension built, every tensor a CPU float32 (or
    int64 index) tensor."""
    if _native is None or not hasattr(_native, "neighbor_extremes"):
        return False
    for t in tensors:
        if t is None:
            continue
        if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.int64):
            return False
    return True


def _np(t: Tensor):
    return t.detach().contiguous().numpy()


def threads() -> int:
    return torch.get_num_threads()


def neighbor_extremes(
    src: Tensor, idx: Tensor | None, with_sum: bool = False
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
    """Max, first rank of the max, min, first rank of the min (and the sum) over neighbours.

    ``src (B, N, C)`` with ``idx (B, N, k)`` (the neighbour rows of ``src``), or edge values
    ``src (B, N, k, C)`` with ``idx=None``. Outputs ``(B, N, C)``; ranks int64."""
    with torch.no_grad():
        src = src.detach()
        if idx is None:
            b, n, _, c = src.shape
        else:
            b, n, c = src.shape
        if use_native(src, idx):
            mx = torch.empty(b, n, c)
            mn = torch.empty(b, n, c)
            rmx = torch.empty(b, n, c, dtype=torch.int64)
            rmn = torch.empty(b, n, c, dtype=torch.int64)
            sm = torch.empty(b, n, c) if with_sum else None
            _native.neighbor_extremes(
                _np(src), None if idx is None else _np(idx), mx.numpy(), rmx.numpy(),
                mn.numpy(), rmn.numpy(), None if sm is None else sm.numpy(), threads())
            return mx, rmx, mn, rmn, sm
        from bingnn.nn.knn import gather_neighbors

        edges = src if idx is None else gather_neighbors(src, idx)
        mx, rmx = edges.max(dim=2)
        mn, rmn = edges.min(dim=2)
        return mx, rmx, mn, rmn, (edges.sum(dim=2) if with_sum else None)


def neighbor_scatter_sum(g: Tensor, idx: Tensor) -> Tensor:
    r""":math:`\\mathrm{out}_j = \\sum_{i: j \\in \\mathcal{N}(i)} g_i`: ``g (B, N, C)``,
    ``idx (B, N, k)`` -> ``(B, N, C)``."""
    with torch.no_grad():
        if use_native(g, idx):
            out = torch.empty(g.shape)
            _native.neighbor_scatter_sum(_np(g), _np(idx), out.numpy(), threads())
            return out
        out = torch.zeros_like(g)
        c = g.shape[-1]
        for r in range(idx.shape[-1]):
            out.scatter_add_(1, idx[:, :, r : r + 1].expand(-1, -1, c), g)
        return out


def _prelu(z: Tensor, slope: Tensor | None) -> Tensor:
    return z if slope is None else torch.where(z >= 0, z, z * slope)


def _chunk_rows(rel: Tensor) -> int:
    per_row = rel.shape[1] * rel.shape[2] * rel.element_size()  # one point's (k, C) edges
    budget = CPU_CHUNK_BYTES if rel.device.type == "cpu" else 1 << 30
    return max(1, budget // max(1, per_row))


def edge_act_stats(
    rel: Tensor, v: Tensor, alpha: Tensor, slope: Tensor | None
) -> tuple[Tensor, Tensor]:
    r"""Mean and biased variance over all edges of
    :math:`h = \mathrm{PReLU}(\alpha (r + v))`: ``rel (R, k, C)``, ``v (R, C)`` -> ``(C,)``
    each, in ``rel``'s dtype (accumulated in float64)."""
    with torch.no_grad():
        if use_native(rel, v, alpha, slope):
            mean, var = _native.edge_act_stats(
                _np(rel), _np(v), _np(alpha), None if slope is None else _np(slope), threads())
            return torch.from_numpy(mean).float(), torch.from_numpy(var).float()
        rows, k, c = rel.shape
        wide = torch.float64
        mean = torch.zeros(c, dtype=wide, device=rel.device)
        m2 = torch.zeros(c, dtype=wide, device=rel.device)
        seen = 0
        step = _chunk_rows(rel)
        v3 = v.unsqueeze(1)
        for s0 in range(0, rows, step):
            h = _prelu((rel[s0 : s0 + step] + v3[s0 : s0 + step]) * alpha, slope)
            cnt = h.shape[0] * k
            var_c, mean_c = torch.var_mean(h.reshape(-1, c), dim=0, correction=0)
            delta = mean_c.to(wide) - mean
            tot = seen + cnt
            mean += delta * (cnt / tot)
            m2 += var_c.to(wide) * cnt + delta * delta * (seen * cnt / tot)
            seen = tot
        return mean.to(rel.dtype), (m2 / seen).to(rel.dtype)


def edge_act_stats_backward(
    rel: Tensor, v: Tensor, alpha: Tensor, slope: Tensor | None, mean: Tensor,
    c1: Tensor, c2: Tensor, sel_rank: Tensor | None, sel_grad: Tensor | None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    r"""Gradients of :func:`edge_act_stats` (``c1 = dL/dmean / M``, ``c2 = 2 dL/dvar / M``),
    plus ``sel_grad (R, C)`` added to ``grad_rel`` at the ranks ``sel_rank (R, C)``:
    ``grad_rel (R, k, C)``, ``grad_v (R, C)``, ``grad_alpha (C)``, ``grad_slope (C)``."""
    with torch.no_grad():
        rows, k, c = rel.shape
        if use_native(rel, v, alpha, slope, mean, c1, c2, sel_rank, sel_grad):
            grad_rel = torch.empty(rows, k, c)
            grad_v = torch.empty(rows, c)
            ga, gs = _native.edge_act_stats_backward(
                _np(rel), _np(v), _np(alpha), None if slope is None else _np(slope),
                _np(mean), _np(c1), _np(c2),
                None if sel_rank is None else _np(sel_rank),
                None if sel_grad is None else _np(sel_grad),
                grad_rel.numpy(), grad_v.numpy(), threads())
            return grad_rel, grad_v, torch.from_numpy(ga).float(), torch.from_numpy(gs).float()
        grad_rel = torch.empty_like(rel)
        grad_v = torch.empty_like(v)
        g_alpha = torch.zeros(c, dtype=torch.float64, device=rel.device)
        g_slope = torch.zeros(c, dtype=torch.float64, device=rel.device)
        step = _chunk_rows(rel)
        v3 = v.unsqueeze(1)
        for s0 in range(0, rows, step):
            sl = slice(s0, s0 + step)
            y = rel[sl] + v3[sl]
            z = y * alpha
            pos = z >= 0 if slope is not None else None
            h = torch.where(pos, z, z * slope) if slope is not None else z
            dh = (h - mean) * c2 + c1
            if slope is not None:
                g_slope += torch.where(pos, 0.0, dh * z).sum((0, 1), dtype=torch.float64)
                dz = torch.where(pos, dh, dh * slope)
            else:
                dz = dh
            g_alpha += (dz * y).sum((0, 1), dtype=torch.float64)
            dy = dz * alpha
            grad_v[sl] = dy.sum(1)
            if sel_rank is not None:
                dy.scatter_add_(1, sel_rank[sl].unsqueeze(1), sel_grad[sl].unsqueeze(1))
            grad_rel[sl] = dy
        return grad_rel, grad_v, g_alpha.to(rel.dtype), g_slope.to(rel.dtype)


def select_rank(src: Tensor, rank: Tensor) -> Tensor:
    """``src (R, k, C)``, ``rank (R, C)`` -> ``(R, C)``: ``src[p, rank[p, c], c]``."""
    with torch.no_grad():
        if use_native(src, rank) and hasattr(_native, "select_rank"):
            out = torch.empty(rank.shape)
            _native.select_rank(_np(src), _np(rank), out.numpy(), threads())
            return out
        return src.gather(1, rank.unsqueeze(1)).squeeze(1)


def scatter_rank(g: Tensor, rank: Tensor, k: int) -> Tensor:
    """Transpose of :func:`select_rank`: ``(R, C)`` -> ``(R, k, C)``, zero but at the ranks."""
    with torch.no_grad():
        rows, c = g.shape
        if use_native(g, rank) and hasattr(_native, "scatter_rank"):
            out = torch.empty(rows, k, c)
            _native.scatter_rank(_np(g), _np(rank), out.numpy(), threads())
            return out
        out = torch.zeros(rows, k, c, dtype=g.dtype, device=g.device)
        return out.scatter_(1, rank.unsqueeze(1), g.unsqueeze(1))


def xor_edge_features(x: Tensor, idx: Tensor) -> Tensor:
    """``x_j * x_i`` for every edge: ``x (B, N, C)``, ``idx (B, N, k)`` -> ``(B, N, k, C)``."""
    with torch.no_grad():
        if use_native(x, idx) and hasattr(_native, "xor_edge_features"):
            out = torch.empty(*idx.shape, x.shape[-1])
            _native.xor_edge_features(_np(x), _np(idx), out.numpy(), threads())
            return out
        from bingnn.nn.knn import gather_neighbors

        return gather_neighbors(x, idx).mul_(x.unsqueeze(2))


def xor_edge_features_backward(g: Tensor, x: Tensor, idx: Tensor) -> Tensor:
    """Gradient of :func:`xor_edge_features` with respect to ``x`` for ``g (B, N, k, C)``."""
    with torch.no_grad():
        if use_native(g, x, idx) and hasattr(_native, "xor_edge_features_backward"):
            out = torch.empty(x.shape)
            _native.xor_edge_features_backward(_np(g), _np(x), _np(idx), out.numpy(), threads())
            return out
        from bingnn.nn.knn import gather_neighbors

        b, n, c = x.shape
        gx = (g * gather_neighbors(x, idx)).sum(2)
        flat = (idx + (torch.arange(b, device=idx.device) * n).view(b, 1, 1)).reshape(-1)
        gx.view(b * n, c).index_add_(0, flat, (g * x.unsqueeze(2)).reshape(-1, c))
        return gx
