"""DDP training of node classifiers: 2 gloo processes == 1 process, replicas identical."""

from __future__ import annotations

import torch
from torch_geometric.data import Data

from bingnn.graphs.ddp import spawn_fits
from bingnn.graphs.node_trainer import TrainConfig, fit, set_seed
from bingnn.models import build_model
from bingnn.models.graphsage import BinSAGE, GraphSAGE


def _graph(n: int = 40, c: int = 6, classes: int = 3) -> Data:
    g = torch.Generator().manual_seed(0)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, c, generator=g) + torch.nn.functional.one_hot(y, c).float()
    src = torch.randint(0, n, (4 * n,), generator=g)
    dst = torch.randint(0, n, (4 * n,), generator=g)
    train = torch.zeros(n, dtype=torch.bool)
    train[:25] = True  # odd count: shards of 13 and 12 nodes
    val = torch.zeros(n, dtype=torch.bool)
    val[25:33] = True
    test = ~(train | val)
    return Data(x=x, y=y, edge_index=torch.stack([src, dst]), train_mask=train, val_mask=val,
                test_mask=test)


def _single(config: dict, data: Data, cfg: TrainConfig, teacher=None) -> dict[str, torch.Tensor]:
    torch.manual_seed(cfg.seed)
    model = build_model(config)
    fit(model, data, cfg, teacher=teacher)
    return model.state_dict()


def _assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=1e-4, msg=k)


def test_ddp_matches_single_process(tmp_path):
    """One pair of gloo processes runs both cases (process start-up dominates the cost)."""
    data = _graph()
    full_config = GraphSAGE(6, 16, 2, 3, dropout=0.3, centering="batchnorm").config
    full_cfg = TrainConfig(epochs=6, lr=0.01, weight_decay=0.0, seed=3)
    mb_config = BinSAGE(6, 16, 2, 3, dropout=0.0, stage=1, centering="mean").config
    mb_cfg = TrainConfig(epochs=3, lr=0.01, weight_decay=0.0, seed=1, mode="minibatch",
                         fanouts=[-1, -1], batch_size=10)
    # distillation, KD over every node (unlabelled ones included), in both modes
    torch.manual_seed(5)
    teacher = GraphSAGE(6, 16, 2, 3, dropout=0.0, centering="mean")
    kd_config = BinSAGE(6, 16, 2, 3, dropout=0.0, stage=3, centering="mean").config
    kd_full_cfg = TrainConfig(epochs=4, lr=0.01, weight_decay=0.0, seed=2, kd_alpha=0.7,
                              kd_nodes="all")
    kd_mb_cfg = TrainConfig(epochs=2, lr=0.01, weight_decay=0.0, seed=4, mode="minibatch",
                            fanouts=[-1, -1], batch_size=10, kd_alpha=0.7, kd_nodes="all")
    t_spec = (teacher.config, teacher.state_dict())
    full, mb, kd_full, kd_mb = spawn_fits(2, [
        (full_config, data, full_cfg), (mb_config, data, mb_cfg),
        (kd_config, data, kd_full_cfg, t_spec), (kd_config, data, kd_mb_cfg, t_spec),
    ], tmp_path)
    _check_full_batch(full, full_config, data, full_cfg)
    _check_minibatch(mb, mb_config, data, mb_cfg)
    _check_full_batch(kd_full, kd_config, data, kd_full_cfg, teacher)
    _check_minibatch(kd_mb, kd_config, data, kd_mb_cfg, teacher)


def _check_full_batch(ranks, config, data, cfg, teacher=None):
    # replicas bit-identical (gradients are all-reduced)
    for k, v in ranks[0]["final"].items():
        assert torch.equal(v, ranks[1]["final"][k]), k
    single = _single(config, data, cfg, teacher)
    _assert_same(ranks[0]["final"], single, atol=1e-5)
    # the parameters did move, so the comparison is not trivially true
    set_seed(cfg.seed)
    init = build_model(config).state_dict()
    assert any(not torch.allclose(init[k], single[k]) for k in single if k.endswith("weight"))


def _check_minibatch(ranks, config, data, cfg, teacher=None):
    for k, v in ranks[0]["final"].items():
        assert torch.equal(v, ranks[1]["final"][k]), k
    # single process, same global batches (same permutation), full neighbourhoods
    from bingnn.graphs.ddp import _global_step_seeds
    from bingnn.graphs.node_trainer import Objective, split_index
    from bingnn.graphs.sampler import CSRGraph, sample_neighbors

    set_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    model = build_model(config)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    csr = CSRGraph.from_edge_index(data.edge_index, data.num_nodes)
    obj = Objective(cfg, teacher)
    train = split_index(data, "train")
    is_train = torch.zeros(data.num_nodes, dtype=torch.bool)
    is_train[train] = True
    # with KD over all nodes the batches are drawn from every node; CE keeps to labelled ones
    pool = torch.arange(data.num_nodes) if teacher is not None else train
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        for seeds in _global_step_seeds(pool, cfg, epoch):
            sub = sample_neighbors(csr, seeds, cfg.fanouts)
            opt.zero_grad()
            loss = obj(model, data.x[sub.n_id], sub.edge_index, data.y[sub.n_id],
                       is_train[seeds].nonzero().view(-1), kd_rows=torch.arange(seeds.numel()))
            loss.backward()
            opt.step()
    _assert_same(ranks[0]["final"], model.state_dict(), atol=1e-5)
