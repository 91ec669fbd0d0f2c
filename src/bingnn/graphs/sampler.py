"""Neighbour sampling over a CSR graph, for mini-batch training on large graphs.

Plain PyTorch (PyG's ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse``), seeded by an
explicit generator, so a data-parallel job samples reproducibly in every process. The node
task (:class:`bingnn.graphs.node_task.NodeTask`) draws the seed batches and calls
:func:`sample_neighbors`; the result's first ``batch_size`` nodes are the seeds::

    csr = CSRGraph.from_edge_index(data.edge_index, data.num_nodes)
    sub = sample_neighbors(csr, seeds, [15, 10, 5], generator)
    out = model(data.x[sub.n_id], sub.edge_index)[: sub.batch_size]

Sampling semantics (those of PyG): hop ``h`` draws, for every node first reached at hop
``h - 1`` (the seeds at hop 1), up to ``num_neighbors[h-1]`` of its incoming edges uniformly
without replacement (all of them if the fan-out is ``-1`` or the node has fewer); the batch
holds the union of the sampled edges, relabelled to local ids (seeds first, then nodes in the
order they were reached).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["CSRGraph", "SampledSubgraph", "sample_neighbors"]


class CSRGraph:
    """A graph stored by target node: the incoming edges of node ``i`` are
    ``col[rowptr[i]:rowptr[i+1]]`` (their sources), with ``eid`` mapping each CSR slot back to
    the column of the original ``edge_index`` and optional per-edge ``weight``.

    Build with :meth:`from_edge_index` (row 0 = source, row 1 = target, PyG's convention).
    """

    def __init__(self, rowptr: Tensor, col: Tensor, eid: Tensor, weight: Tensor | None,
                 num_nodes: int) -> None:
        self.rowptr, self.col, self.eid, self.weight = rowptr, col, eid, weight
        self.num_nodes = num_nodes

    @classmethod
    def from_edge_index(cls, edge_index: Tensor, num_nodes: int,
                        edge_weight: Tensor | None = None) -> CSRGraph:
        if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
            raise ValueError(
                f"edge_index must be a (2, E) tensor, got {getattr(edge_index, 'shape', None)}"
            )
        if num_nodes < 0:
            raise ValueError(f"num_nodes must be >= 0, got {num_nodes}")
        edge_index = edge_index.long()
        if edge_index.numel() and (int(edge_index.min()) < 0 or int(edge_index.max()) >= num_nodes):
            raise ValueError(
                f"edge_index holds node ids outside [0, {num_nodes}); fix or drop those edges"
            )
        if edge_weight is not None and edge_weight.shape != (edge_index.size(1),):
            raise ValueError("edge_weight must have one entry per edge")
        dst = edge_index[1]
        eid = torch.argsort(dst, stable=True)
        counts = torch.bincount(dst, minlength=num_nodes)
        rowptr = torch.zeros(num_nodes + 1, dtype=torch.long, device=edge_index.device)
        rowptr[1:] = torch.cumsum(counts, 0)
        weight = edge_weight[eid] if edge_weight is not None else None
        return cls(rowptr, edge_index[0, eid], eid, weight, num_nodes)

    @property
    def num_edges(self) -> int:
        return int(self.col.numel())

    def degree(self) -> Tensor:
        """In-degree of every node, ``(N,)``."""
        return self.rowptr[1:] - self.rowptr[:-1]

    def edge_index(self) -> Tensor:
        """The edges as ``(2, E)`` (source, target), in CSR order."""
        dst = torch.repeat_interleave(
            torch.arange(self.num_nodes, device=self.col.device), self.degree()
        )
        return torch.stack([self.col, dst])

    def _slots(self, nodes: Tensor) -> tuple[Tensor, Tensor]:
        """CSR slots of all incoming edges of ``nodes`` and, per slot, the position in
        ``nodes`` of its target."""
        dev = self.rowptr.device
        deg = self.rowptr[nodes + 1] - self.rowptr[nodes]
        seg = torch.repeat_interleave(torch.arange(nodes.numel(), device=dev), deg)
        offs = torch.cumsum(deg, 0) - deg
        slots = self.rowptr[nodes][seg] + torch.arange(seg.numel(), device=dev) - offs[seg]
        return slots, seg

    def in_edges(self, nodes: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """All incoming edges of ``nodes``: ``(source ids, target position in nodes, weight)``."""
        slots, seg = self._slots(nodes.long().to(self.rowptr.device))
        w = self.weight[slots] if self.weight is not None else None
        return self.col[slots], seg, w


def _sample_slots(csr: CSRGraph, nodes: Tensor, k: int,
                  generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Up to ``k`` incoming edges per node, uniform without replacement (all if ``k < 0``)."""
    slots, seg = csr._slots(nodes)
    if k < 0 or slots.numel() == 0:
        return slots, seg
    deg = csr.rowptr[nodes + 1] - csr.rowptr[nodes]
    if int(deg.max()) <= k:
        return slots, seg
    # Random key per slot, sort slots by (segment, key): the first k of each segment are a
    # uniform k-subset (a random permutation restricted to the segment).
    keys = torch.rand(seg.numel(), generator=generator, dtype=torch.float64)
    order = torch.argsort(seg.double() + keys)  # seg is already sorted, keys < 1
    offs = torch.cumsum(deg, 0) - deg
    rank = torch.arange(seg.numel()) - offs[seg]  # seg[order] == seg
    keep = order[rank < k]
    keep, _ = torch.sort(keep)
    return slots[keep], seg[keep]


def _unique_first(x: Tensor) -> Tensor:
    """Distinct values of ``x`` in order of first occurrence."""
    if x.numel() == 0:
        return x
    uniq, inv = torch.unique(x, return_inverse=True)
    first = torch.full((uniq.numel(),), x.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inv, torch.arange(x.numel()), reduce="amin")
    return uniq[torch.argsort(first)]


@dataclass
class SampledSubgraph:
    """``n_id (n,)`` global ids (seeds first); ``edge_index (2, m)`` local ids (source,
    target); ``e_id (m,)`` columns of the original ``edge_index``; ``batch_size`` seeds."""

    n_id: Tensor
    edge_index: Tensor
    e_id: Tensor
    batch_size: int


def sample_neighbors(csr: CSRGraph, seeds: Tensor, num_neighbors: Sequence[int],
                     generator: torch.Generator | None = None) -> SampledSubgraph:
    """Sample the ``len(num_neighbors)``-hop computation graph of ``seeds`` (module docstring
    gives the semantics). Seeds must be distinct node ids in ``[0, N)``."""
    seeds = torch.as_tensor(seeds).long().view(-1)
    if seeds.numel() and (int(seeds.min()) < 0 or int(seeds.max()) >= csr.num_nodes):
        raise ValueError(f"seed ids must lie in [0, {csr.num_nodes})")
    if torch.unique(seeds).numel() != seeds.numel():
        raise ValueError("seed nodes must be distinct")
    if any(int(k) == 0 or int(k) < -1 for k in num_neighbors):
        raise ValueError(f"fan-outs must be positive or -1 (all), got {list(num_neighbors)}")
    local = torch.full((csr.num_nodes,), -1, dtype=torch.long)
    local[seeds] = torch.arange(seeds.numel())
    n_ids, frontier = [seeds], seeds
    srcs, dsts, eids = [], [], []
    count = seeds.numel()
    for k in num_neighbors:
        if frontier.numel() == 0:
            break
        slots, seg = _sample_slots(csr, frontier, int(k), generator)
        src = csr.col[slots]
        dsts.append(local[frontier][seg])
        # Nodes reached for the first time, numbered in order of first appearance.
        cand = src[local[src] < 0]
        frontier = _unique_first(cand)
        local[frontier] = torch.arange(count, count + frontier.numel())
        count += frontier.numel()
        n_ids.append(frontier)
        srcs.append(local[src])
        eids.append(csr.eid[slots])
    n_id = torch.cat(n_ids)
    local[n_id] = -1  # leave the scratch map clean (not reused, but cheap)
    if srcs:
        edge_index = torch.stack([torch.cat(srcs), torch.cat(dsts)])
        e_id = torch.cat(eids)
    else:
        edge_index = torch.empty(2, 0, dtype=torch.long)
        e_id = torch.empty(0, dtype=torch.long)
    return SampledSubgraph(n_id, edge_index, e_id, int(seeds.numel()))
