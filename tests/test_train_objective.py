"""The training objective: CE + KD + LSP against plain computations; global row counts."""

import numpy as np
import pytest
import torch

from bingnn.distill.kd import kd_loss
from bingnn.distill.lsp import lsp_loss_edges, lsp_loss_knn
from bingnn.nn.knn import knn
from bingnn.train.objective import EdgeGraph, KnnGraph, Objective
from bingnn.train.task import Batch


def _smoothed_ce(logits, y, eps):
    logp = torch.log_softmax(logits.double(), -1)
    c = logits.shape[-1]
    target = torch.full_like(logp, eps / c)
    target[torch.arange(len(y)), y] += 1 - eps
    return float(-(target * logp).sum(-1).mean())


def _kd(s, t, temp):
    ps = torch.softmax(s.double() / temp, -1)
    pt = torch.softmax(t.double() / temp, -1)
    return float((pt * (pt.log() - ps.log())).sum(-1).mean() * temp * temp)


def _graphs(seed, layers=2, b=2, n=12, k=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        f = torch.randn(b, n, 5, generator=g)
        out.append(KnnGraph(f, knn(f, k)))
    return out


def test_composition_matches_plain_terms():
    torch.manual_seed(0)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([0, 5, 2, 2])
    sg, tg = _graphs(1), _graphs(2)
    obj = Objective(alpha=0.3, lsp_weight=7.0, temperature=2.0, label_smoothing=0.1)
    total, parts = obj(s, Batch((s,), y, 4), t, sg, tg)
    ce, kd = _smoothed_ce(s, y, 0.1), _kd(s, t, 2.0)
    lsp = sum(float(lsp_loss_knn(a.features, b.features, a.idx, b.idx))
              for a, b in zip(sg, tg, strict=True)) / 2  # mean over layers
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)
    assert parts["lsp"] == pytest.approx(lsp, rel=1e-5)
    assert float(total) == pytest.approx(0.7 * ce + 0.3 * kd + 7.0 * lsp, rel=1e-5)
    assert kd == pytest.approx(float(kd_loss(s, t, 2.0)), rel=1e-5)


def test_without_teacher_it_is_the_cross_entropy():
    s = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([1, 2, 3])
    total, parts = Objective(label_smoothing=0.2, lsp_weight=100.0)(s, Batch((s,), y, 3))
    assert float(total.detach()) == pytest.approx(_smoothed_ce(s.detach(), y, 0.2), rel=1e-5)
    assert set(parts) == {"ce"}
    total.backward()
    assert s.grad.abs().sum() > 0


def test_shares_of_a_global_batch_add_up_to_its_mean():
    """Two processes' terms (sum over local rows / global count) add up to the one-process
    mean: the data-parallel split of the objective."""
    torch.manual_seed(1)
    s, t = torch.randn(10, 5), torch.randn(10, 5)
    y = torch.randint(0, 5, (10,))
    obj = Objective(alpha=0.4, temperature=3.0, label_smoothing=0.1)
    whole, _ = obj(s, Batch((s,), y, 10), t)
    halves = [obj(s[r::2], Batch((s[r::2],), y[r::2], 10, ce_total=10, kd_total=10), t[r::2])[0]
              for r in (0, 1)]
    assert float(sum(halves)) == pytest.approx(float(whole), rel=1e-6)


def test_rows_select_labelled_and_distilled_nodes():
    torch.manual_seed(2)
    s, t = torch.randn(8, 3), torch.randn(8, 3)
    y = torch.randint(0, 3, (8,))
    ce_rows, kd_rows = torch.tensor([1, 4]), torch.arange(8)
    obj = Objective(alpha=0.9, temperature=2.0)
    loss, parts = obj(s, Batch((s,), y, 8, ce_rows=ce_rows, kd_rows=kd_rows), t)
    ce = _smoothed_ce(s[ce_rows], y[ce_rows], 0.0)
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(_kd(s, t, 2.0), rel=1e-5)
    assert float(loss) == pytest.approx(0.1 * ce + 0.9 * _kd(s, t, 2.0), rel=1e-5)
    # no labelled row in the batch: the CE term is 0 and the KD term still teaches
    x = s.clone().requires_grad_(True)
    loss, parts = obj(x, Batch((x,), y, 8, ce_rows=torch.arange(0), kd_rows=kd_rows), t)
    assert parts["ce"] == 0.0
    loss.backward()
    assert x.grad.abs().sum() > 0


def test_edge_structures_and_multilabel():
    torch.manual_seed(3)
    ei = torch.tensor([[1, 2, 0, 3], [0, 0, 1, 2]])
    hs, ht = torch.randn(4, 6), torch.randn(4, 6)
    s, t = torch.randn(4, 2), torch.randn(4, 2)
    y = torch.randint(0, 2, (4, 2))
    obj = Objective(alpha=0.5, temperature=2.0, lsp_weight=3.0, multilabel=True)
    loss, parts = obj(s, Batch((s,), y, 4), t, [EdgeGraph(hs, ei)], [EdgeGraph(ht, ei)])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(s, y.float())
    assert parts["ce"] == pytest.approx(float(bce), rel=1e-5)
    assert parts["lsp"] == pytest.approx(float(lsp_loss_edges(hs, ht, ei)), rel=1e-5)
    ps, pt = torch.sigmoid(s / 2).numpy(), torch.sigmoid(t / 2).numpy()
    kd = -(pt * np.log(ps) + (1 - pt) * np.log(1 - ps)).mean() * 4
    assert parts["kd"] == pytest.approx(float(kd), rel=1e-5)
    assert float(loss) == pytest.approx(0.5 * float(bce) + 0.5 * kd + 3 * parts["lsp"], rel=1e-5)


def test_errors():
    s, y = torch.randn(2, 3), torch.tensor([0, 1])
    b = Batch((s,), y, 2)
    with pytest.raises(ValueError, match="local structures were not computed"):
        Objective(lsp_weight=1.0)(s, b, torch.randn(2, 3))
    with pytest.raises(ValueError, match="pairs them"):
        Objective(lsp_weight=1.0)(s, b, torch.randn(2, 3), _graphs(0, 2), _graphs(1, 1))
    with pytest.raises(TypeError, match="cannot pair"):
        Objective(lsp_weight=1.0)(s, b, torch.randn(2, 3), _graphs(0, 1),
                                  [EdgeGraph(torch.randn(3, 2), torch.zeros(2, 0).long())])
    for kwargs, match in [(dict(alpha=1.5), "alpha"), (dict(temperature=0), "temperature"),
                          (dict(temperature=-1), "temperature"),
                          (dict(label_smoothing=1.0), "label_smoothing"),
                          (dict(lsp_weight=-1), "lsp_weight"),
                          (dict(kernel_s="nope"), "unknown LSP kernel")]:
        with pytest.raises(ValueError, match=match):
            Objective(**kwargs)


def test_multilabel_kd_matches_numpy_and_vanishes_at_the_teacher():
    from bingnn.distill.kd import kd_loss_multilabel

    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    T = 2.0
    ps, pt = 1 / (1 + np.exp(-s.numpy() / T)), 1 / (1 + np.exp(-t.numpy() / T))
    ref = -(pt * np.log(ps) + (1 - pt) * np.log(1 - ps)).mean() * T * T
    assert float(kd_loss_multilabel(s, t, T)) == pytest.approx(float(ref), rel=1e-5)
    x = t.clone().requires_grad_(True)
    kd_loss_multilabel(x, t, T).backward()
    assert x.grad.abs().max() < 1e-6
    with pytest.raises(ValueError, match="shape"):
        kd_loss_multilabel(s, t[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        kd_loss_multilabel(s, t, 0.0)
