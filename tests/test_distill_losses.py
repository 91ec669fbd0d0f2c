import numpy as np
import pytest
import torch

from bingnn.distill.kd import kd_loss
from bingnn.distill.losses import DistillationLoss
from bingnn.distill.lsp import lsp_loss_knn
from bingnn.nn.knn import knn


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


def _graphs(seed, layers=3, b=2, n=12, k=4):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        f = torch.randn(b, n, 5, generator=g)
        out.append((f, knn(f, k)))
    return out


def test_composition():
    torch.manual_seed(0)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    y = torch.tensor([0, 5, 2, 2])
    sg, tg = _graphs(1), _graphs(2)
    loss = DistillationLoss(alpha=0.3, lsp_weight=7.0, temperature=2.0, label_smoothing=0.1)
    total, parts = loss(s, y, t, sg, tg)
    ce, kd = _smoothed_ce(s, y, 0.1), _kd(s, t, 2.0)
    # LSP only on graphs[1:] (graphs[0] is on xyz), averaged over layers
    pairs = zip(sg[1:], tg[1:], strict=True)
    lsp = sum(float(lsp_loss_knn(a[0], b[0], a[1], b[1])) for a, b in pairs) / 2
    assert parts["ce"] == pytest.approx(ce, rel=1e-5)
    assert parts["kd"] == pytest.approx(kd, rel=1e-5)
    assert parts["lsp"] == pytest.approx(lsp, rel=1e-5)
    assert float(total) == pytest.approx(0.7 * ce + 0.3 * kd + 7.0 * lsp, rel=1e-5)
    assert kd == pytest.approx(float(kd_loss(s, t, 2.0)), rel=1e-5)


def test_defaults_and_no_teacher():
    loss = DistillationLoss()
    assert (loss.alpha, loss.lsp_weight, loss.temperature, loss.label_smoothing) == (
        0.1,
        100.0,
        3.0,
        0.2,
    )
    s = torch.randn(3, 4, requires_grad=True)
    y = torch.tensor([1, 2, 3])
    total, parts = loss(s, y)
    assert float(total.detach()) == pytest.approx(_smoothed_ce(s.detach(), y, 0.2), rel=1e-5)
    assert set(parts) == {"ce"}
    total.backward()
    assert s.grad is not None
    # lsp disabled: no graphs needed
    t2, p2 = DistillationLoss(lsp_weight=0.0)(s, y, torch.randn(3, 4))
    assert "lsp" not in p2 and torch.isfinite(t2)


def test_errors():
    s, y = torch.randn(2, 3), torch.tensor([0, 1])
    with pytest.raises(ValueError, match="graphs were not given"):
        DistillationLoss()(s, y, torch.randn(2, 3))
    with pytest.raises(ValueError, match="pairs them"):
        DistillationLoss()(s, y, torch.randn(2, 3), _graphs(0, 3), _graphs(1, 2))
    with pytest.raises(ValueError, match="alpha"):
        DistillationLoss(alpha=1.5)
    with pytest.raises(ValueError, match="temperature"):
        DistillationLoss(temperature=0)
    with pytest.raises(ValueError, match="unknown LSP kernel"):
        DistillationLoss(kernel_s="nope")


def test_multilabel_kd_matches_numpy_and_vanishes_at_the_teacher():
    from bingnn.distill.kd import kd_loss_multilabel

    torch.manual_seed(0)
    s, t = torch.randn(5, 7), torch.randn(5, 7)
    T = 2.0
    ps, pt = 1 / (1 + np.exp(-s.numpy() / T)), 1 / (1 + np.exp(-t.numpy() / T))
    ref = -(pt * np.log(ps) + (1 - pt) * np.log(1 - ps)).mean() * T * T
    assert float(kd_loss_multilabel(s, t, T)) == pytest.approx(float(ref), rel=1e-5)
    # the student's gradient is zero where it matches the teacher (tasks are independent:
    # no softmax coupling)
    x = t.clone().requires_grad_(True)
    kd_loss_multilabel(x, t, T).backward()
    assert x.grad.abs().max() < 1e-6
    with pytest.raises(ValueError, match="shape"):
        kd_loss_multilabel(s, t[:, :3])
    with pytest.raises(ValueError, match="temperature"):
        kd_loss_multilabel(s, t, 0.0)
