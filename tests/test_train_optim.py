import pytest
import torch

from bingnn.train.loop import make_loader, resolve_device
from bingnn.train.optim import build_optimizer, build_scheduler


def _lrs(schedule, epochs, lr=1.0):
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], "adam", lr)
    sched = build_scheduler(opt, schedule, epochs)
    out = []
    for _ in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_multistep_half_and_three_quarters():
    got = _lrs({"type": "multistep", "milestones": [0.5, 0.75], "gamma": 0.5}, 8)
    assert got == [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]


def test_step_every_n():
    assert _lrs({"type": "step", "step_size": 2, "gamma": 0.5}, 5) == [1, 1, 0.5, 0.5, 0.25]
    assert _lrs({"type": "step", "step_size_frac": 0.5}, 4) == [1, 1, 0.5, 0.5]


def test_cosine_and_constant():
    got = _lrs({"type": "cosine"}, 4)
    assert got[0] == 1 and all(a > b for a, b in zip(got, got[1:], strict=False))
    assert _lrs(None, 3) == [1, 1, 1]


def test_errors():
    p = [torch.nn.Parameter(torch.zeros(1))]
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer(p, "lion")
    with pytest.raises(ValueError, match="learning rate"):
        build_optimizer(p, "adam", lr=0)
    opt = build_optimizer(p)
    with pytest.raises(ValueError, match="unknown schedule"):
        build_scheduler(opt, {"type": "warp"}, 3)
    with pytest.raises(ValueError, match="unknown keys"):
        build_scheduler(opt, {"type": "cosine", "eta": 1}, 3)
    with pytest.raises(ValueError, match="exactly one"):
        build_scheduler(opt, {"type": "step"}, 3)
    with pytest.raises(ValueError, match="fractions"):
        build_scheduler(opt, {"type": "multistep", "milestones": [2]}, 3)
    with pytest.raises(ValueError, match="epochs"):
        build_scheduler(opt, None, 0)


def test_device_and_loader():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")
    ds = torch.utils.data.TensorDataset(torch.zeros(9, 2), torch.zeros(9))
    # a lone last sample would break BatchNorm in training: dropped; kept for evaluation
    assert [len(b[0]) for b in make_loader(ds, 4, train=True)] == [4, 4]
    assert [len(b[0]) for b in make_loader(ds, 4, train=False)] == [4, 4, 1]
    with pytest.raises(ValueError, match="batch size"):
        make_loader(ds, 0, train=True)
