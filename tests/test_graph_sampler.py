"""CSR neighbour sampler against a brute-force reference, uniformity, mini-batches."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch_geometric.data import Data

from bingnn.graphs.sampler import CSRGraph, sample_neighbors
from bingnn.models.graphsage import BinSAGE


def _random_graph(n: int, e: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, n, (2, e), generator=g)


def _in_edges_brute(edge_index: torch.Tensor, node: int) -> list[int]:
    """Columns of the edges whose target is ``node``."""
    return [k for k in range(edge_index.size(1)) if int(edge_index[1, k]) == node]


def _reference_hops(edge_index, seeds, hops):
    """Per node, the hop at which it is first reached (seeds: 0), by breadth-first search over
    incoming edges, and the set of edge columns a full (fan-out -1) sample must contain."""
    level = {int(s): 0 for s in seeds}
    frontier = [int(s) for s in seeds]
    edges = []
    for h in range(1, hops + 1):
        nxt = []
        for v in frontier:
            for k in _in_edges_brute(edge_index, v):
                edges.append(k)
                u = int(edge_index[0, k])
                if u not in level:
                    level[u] = h
                    nxt.append(u)
        frontier = nxt
    return level, sorted(edges)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 25), e=st.integers(0, 80), hops=st.integers(1, 3),
       n_seeds=st.integers(1, 5), seed=st.integers(0, 1000))
def test_full_fanout_equals_bfs_reference(n, e, hops, n_seeds, seed):
    ei = _random_graph(n, e, seed)
    seeds = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:n_seeds]
    sub = sample_neighbors(CSRGraph.from_edge_index(ei, n), seeds, [-1] * hops)
    level, edges = _reference_hops(ei, seeds.tolist(), hops)
    assert sorted(sub.e_id.tolist()) == edges
    assert set(sub.n_id.tolist()) == set(level)
    assert sub.n_id[: len(seeds)].tolist() == seeds.tolist()  # seeds first
    assert sub.batch_size == len(seeds)
    # local ids map back to the original edges
    glob = sub.n_id[sub.edge_index]
    torch.testing.assert_close(glob, ei[:, sub.e_id])
    # nodes are numbered hop by hop
    hop_of = [level[v] for v in sub.n_id.tolist()]
    assert hop_of == sorted(hop_of)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 30), e=st.integers(0, 120), fanouts=st.lists(st.integers(1, 4),
       min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_sampled_counts_and_validity(n, e, fanouts, seed):
    ei = _random_graph(n, e, seed)
    csr = CSRGraph.from_edge_index(ei, n)
    seeds = torch.arange(min(3, n))
    sub = sample_neighbors(csr, seeds, fanouts, torch.Generator().manual_seed(seed))
    assert len(set(sub.e_id.tolist())) == sub.e_id.numel()  # no edge twice
    assert len(set(sub.n_id.tolist())) == sub.n_id.numel()
    torch.testing.assert_close(sub.n_id[sub.edge_index], ei[:, sub.e_id])  # edges exist
    # every node expanded at hop h got min(in-degree, fanouts[h]) of its edges
    deg = Counter(ei[1].tolist())
    got = Counter(sub.edge_index[1].tolist())
    # hop of first reach within the sample = BFS distance over the sampled edges
    level, _ = _reference_hops(sub.n_id[sub.edge_index], seeds.tolist(), len(fanouts))
    for local, v in enumerate(sub.n_id.tolist()):
        h = level[v]
        expect = min(deg[v], fanouts[h]) if h < len(fanouts) else 0
        assert got[local] == expect, (v, h)


def test_sampling_is_uniform_without_replacement():
    # node 0 has 10 in-neighbours; each should be drawn with probability 3/10
    ei = torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)])
    csr = CSRGraph.from_edge_index(ei, 11)
    g = torch.Generator().manual_seed(0)
    counts = Counter()
    trials = 3000
    for _ in range(trials):
        sub = sample_neighbors(csr, torch.tensor([0]), [3], g)
        src = sub.n_id[sub.edge_index[0]].tolist()
        assert len(set(src)) == 3
        counts.update(src)
    sd = (trials * 0.3 * 0.7) ** 0.5
    for v in range(1, 11):
        assert abs(counts[v] - 0.3 * trials) < 5 * sd, counts


def test_sampling_reproducible_with_generator():
    ei = _random_graph(50, 400, 1)
    csr = CSRGraph.from_edge_index(ei, 50)
    a = sample_neighbors(csr, torch.arange(5), [4, 3], torch.Generator().manual_seed(7))
    b = sample_neighbors(csr, torch.arange(5), [4, 3], torch.Generator().manual_seed(7))
    assert torch.equal(a.n_id, b.n_id) and torch.equal(a.edge_index, b.edge_index)


def test_csr_in_edges_and_weights():
    ei = _random_graph(12, 40, 2)
    w = torch.rand(40)
    csr = CSRGraph.from_edge_index(ei, 12, edge_weight=w)
    nodes = torch.tensor([3, 0, 11])
    src, pos, ww = csr.in_edges(nodes)
    got = sorted(zip(src.tolist(), nodes[pos].tolist(), ww.tolist(), strict=True))
    ref = sorted((int(ei[0, k]), int(ei[1, k]), float(w[k])) for k in range(40)
                 if int(ei[1, k]) in (3, 0, 11))
    assert [g[:2] for g in got] == [r[:2] for r in ref]
    torch.testing.assert_close(torch.tensor([g[2] for g in got]), torch.tensor([r[2] for r in ref]))
    assert csr.degree().tolist() == torch.bincount(ei[1], minlength=12).tolist()


def test_bad_inputs():
    ei = torch.tensor([[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="outside"):
        CSRGraph.from_edge_index(ei, 2)
    with pytest.raises(ValueError, match=r"\(2, E\)"):
        CSRGraph.from_edge_index(torch.tensor([0, 1]), 2)
    csr = CSRGraph.from_edge_index(ei, 3)
    with pytest.raises(ValueError, match="seed ids"):
        sample_neighbors(csr, torch.tensor([5]), [2])
    with pytest.raises(ValueError, match="distinct"):
        sample_neighbors(csr, torch.tensor([1, 1]), [2])
    with pytest.raises(ValueError, match="fan-outs"):
        sample_neighbors(csr, torch.tensor([1]), [0])


def test_empty_graph_and_no_edges():
    csr = CSRGraph.from_edge_index(torch.empty(2, 0, dtype=torch.long), 4)
    sub = sample_neighbors(csr, torch.tensor([2, 0]), [5, 5])
    assert sub.n_id.tolist() == [2, 0] and sub.edge_index.shape == (2, 0)
    empty = CSRGraph.from_edge_index(torch.empty(2, 0, dtype=torch.long), 0)
    assert sample_neighbors(empty, torch.empty(0, dtype=torch.long), [3]).n_id.numel() == 0


def _data(n=40, e=160, c=5, seed=3):
    g = torch.Generator().manual_seed(seed)
    return Data(x=torch.randn(n, c, generator=g), y=torch.randint(0, 3, (n,), generator=g),
                edge_index=_random_graph(n, e, seed), num_nodes=n)


def test_node_task_batches_cover_the_seed_nodes_once_and_slice_features():
    from bingnn.graphs.node_task import NodeTask
    from bingnn.train.distributed import DistContext

    data = _data()
    train = torch.zeros(40, dtype=torch.bool)
    train[::3] = True
    data.train_mask, data.val_mask = train, ~train
    data.test_mask = ~train
    task = NodeTask(data, 3, mode="minibatch", fanouts=[3, 2], batch_size=4, seed=0)
    seen = []
    for b in task.train_batches(1, DistContext()):
        x, ei = b.inputs
        n_seeds = b.kd_rows.numel()
        # the batch's nodes are a sampled subgraph: features and labels sliced alike
        assert x.shape[0] == b.y.shape[0] and ei.max() < x.shape[0]
        seeds = [int((data.x == row).all(1).nonzero()[0]) for row in x[:n_seeds]]
        assert b.y[:n_seeds].tolist() == data.y[seeds].tolist()
        seen += seeds
    assert sorted(seen) == train.nonzero().view(-1).tolist()


def test_full_neighbourhood_batches_reproduce_full_graph_outputs():
    """A model on a sampled computation graph with fan-outs -1 gives the seeds exactly the
    logits of the full graph (eval mode), the property mini-batch training relies on."""
    data = _data()
    model = BinSAGE(5, 8, 3, 3).eval()
    full = model(data.x, data.edge_index)
    csr = CSRGraph.from_edge_index(data.edge_index, data.num_nodes)
    for seeds in torch.arange(40).split(7):
        sub = sample_neighbors(csr, seeds, [-1, -1, -1])
        out = model(data.x[sub.n_id], sub.edge_index)[: sub.batch_size]
        torch.testing.assert_close(out, full[seeds], atol=1e-5, rtol=1e-5)
