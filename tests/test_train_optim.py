import pytest
import torch

from bingnn.train.model_files import resolve_device
from bingnn.train.optim import SCHEDULES, build_optimizer, build_scheduler, step_scheduler


def _lrs(schedule, epochs, lr=1.0, scores=None):
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(1))], "adam", lr)
    sched = build_scheduler(opt, schedule, epochs)
    out = []
    for e in range(epochs):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        step_scheduler(sched, scores[e] if scores else 0.0)
    return out


def test_multistep_half_and_three_quarters():
    got = _lrs({"type": "multistep", "milestones": [0.5, 0.75], "gamma": 0.5}, 8)
    assert got == [1, 1, 1, 1, 0.5, 0.5, 0.25, 0.25]


def test_step_every_n():
    assert _lrs({"type": "step", "step_size": 2, "gamma": 0.5}, 5) == [1, 1, 0.5, 0.5, 0.25]
    assert _lrs({"type": "step", "step_size_frac": 0.5}, 4) == [1, 1, 0.5, 0.5]


def test_plateau_reads_the_validation_score():
    scores = [0.1, 0.2, 0.2, 0.2, 0.3, 0.3, 0.3, 0.3]
    got = _lrs({"type": "plateau", "patience": 1, "gamma": 0.5}, 8, scores=scores)
    assert got == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25]


def test_one_meaning_per_name():
    assert SCHEDULES == ("constant", "cosine", "multistep", "step", "plateau")
    # "multistep" is the x0.5 at 1/2 and 3/4 schedule by default, whoever trains
    assert _lrs({"type": "multistep"}, 8, lr=0.01) == pytest.approx(
        [0.01] * 4 + [0.005] * 2 + [0.0025] * 2)


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
    with pytest.raises(ValueError, match="gamma"):
        build_scheduler(opt, {"type": "step", "step_size": 2, "gamma": 2.0}, 3)
    with pytest.raises(ValueError, match="patience"):
        build_scheduler(opt, {"type": "plateau", "patience": -1}, 3)
    with pytest.raises(ValueError, match="step_size must be an integer"):
        build_scheduler(opt, {"type": "step", "step_size": 1.5}, 3)
    with pytest.raises(ValueError, match="must be a number"):
        build_scheduler(opt, {"type": "step", "step_size": "x"}, 3)
    with pytest.raises(ValueError, match="table"):
        build_scheduler(opt, "cosine", 3)


def test_device():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError):
        resolve_device("tpu")
