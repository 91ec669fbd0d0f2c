"""The training library on a CUDA device: the same graphs and outputs as on the CPU, the same
gradients, and a bfloat16-autocast distillation that keeps the binary student in float32.

These run only where PyTorch sees a CUDA device (the native kernels are CPU-only; on CUDA the
layers run their PyTorch formulation, which these tests hold to the CPU's results)."""

from __future__ import annotations

import pytest
import torch

from bingnn.models import DGCNN, BinDGCNN, BinSAGE

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

CLOUD_MODELS = {
    "dgcnn": lambda: DGCNN(10, k=16),
    "bf2-s1": lambda: BinDGCNN(10, "bf2", "hamming", stage=1, k=16),
    "bf2-s3": lambda: BinDGCNN(10, "bf2", "hamming", stage=3, k=16),
    "bf2-s3-shortcut": lambda: BinDGCNN(10, "bf2", "hamming", stage=3, k=16, shortcut=True),
    "bf1-s3": lambda: BinDGCNN(10, "bf1", "hamming", stage=3, k=16),
    "rf-s3": lambda: BinDGCNN(10, "rf", "l2", stage=3, k=16),
    "rf-s3-residual": lambda: BinDGCNN(10, "rf", "l2", stage=3, k=16, residual=True),
}


@pytest.fixture(autouse=True)
def _exact_float32():
    # TF32 would change float32 products on the GPU by ~1e-3 and with them k-NN orders
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def _pair(name: str) -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    cpu = CLOUD_MODELS[name]()
    gpu = CLOUD_MODELS[name]()
    gpu.load_state_dict(cpu.state_dict())
    return cpu, gpu.cuda()


@pytest.mark.parametrize("name", sorted(CLOUD_MODELS))
def test_cloud_models_match_cpu(name):
    # float64: no sign or k-NN order can hinge on the devices' different float32 rounding
    cpu, gpu = _pair(name)
    cpu, gpu = cpu.double().eval(), gpu.double().eval()
    x = torch.randn(3, 200, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with torch.no_grad():
        lc, gc = cpu(x, return_graphs=True)
        lg, gg = gpu(x.cuda(), return_graphs=True)
    for layer, ((_, ic), (_, ig)) in enumerate(zip(gc, gg, strict=True)):
        assert torch.equal(ig.cpu(), ic), (name, layer)
    torch.testing.assert_close(lg.cpu(), lc, atol=1e-8, rtol=1e-8)


@pytest.mark.parametrize("name", ["dgcnn", "bf2-s3", "bf2-s3-shortcut", "rf-s3"])
def test_cloud_gradients_match_cpu(name):
    cpu, gpu = _pair(name)
    cpu, gpu = cpu.double(), gpu.double()
    x = torch.randn(4, 128, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 3])
    cpu.train(), gpu.train()
    for m in [*cpu.modules(), *gpu.modules()]:
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0  # the two devices draw different masks
    for m in (cpu, gpu):
        # The head's BatchNorms normalise 4 pooled rows; a binary channel that is constant
        # over them normalises to 0 up to rounding, and the sign of that rounding (each
        # device's reduction order) decides the bit. Running statistics make them
        # well-defined; every other layer trains as in training.
        for sub, mod in m.named_modules():
            if sub.endswith("center") or sub == "embed_norm":
                mod.eval()
    torch.nn.functional.cross_entropy(cpu(x), y).backward()
    torch.nn.functional.cross_entropy(gpu(x.cuda()), y.cuda()).backward()
    gc = dict(cpu.named_parameters())
    bad = []
    for k, p in gpu.named_parameters():
        if gc[k].grad is None or p.grad is None:
            assert gc[k].grad is None and p.grad is None, k
            continue
        if not torch.allclose(p.grad.cpu(), gc[k].grad, atol=1e-7, rtol=1e-6):
            bad.append(k)
    assert not bad, f"{name}: gradients differ from the CPU's in {bad}"


@pytest.mark.parametrize("sign_messages", [False, True])
def test_binsage_matches_cpu(sign_messages):
    torch.manual_seed(0)
    n, f = 300, 40
    # float64 normal features: no pre-activation sits within rounding of a sign's 0
    x = torch.randn(n, f, dtype=torch.float64)
    ei = torch.randint(0, n, (2, 3000))
    cpu = BinSAGE(f, 32, 2, 5, stage=3, sign_messages=sign_messages).eval()
    gpu = BinSAGE(f, 32, 2, 5, stage=3, sign_messages=sign_messages)
    gpu.load_state_dict(cpu.state_dict())
    cpu, gpu = cpu.double(), gpu.double().cuda().eval()
    with torch.no_grad():
        lc = cpu(x, ei)
        lg = gpu(x.cuda(), ei.cuda())
    torch.testing.assert_close(lg.cpu(), lc, atol=1e-8, rtol=1e-8)


def test_bf16_distillation_keeps_binary_student_in_float32(tmp_path):
    from bingnn.data import get_dataset
    from bingnn.train.objective import Objective
    from bingnn.train.optim import build_optimizer, build_scheduler
    from bingnn.train.pointcloud_task import PointCloudTask
    from bingnn.train.trainer import fit

    common = {"num_points": 128, "seed": 0, "num_samples": 80}
    task = PointCloudTask(
        get_dataset("synthetic", "train", **common),
        get_dataset("synthetic", "val", **common),
        get_dataset("synthetic", "test", num_points=128, num_samples=16),
        8,
        16,
        device="cuda",
    )
    nc = task.model_dims()["num_classes"]
    torch.manual_seed(0)
    teacher = DGCNN(nc, k=10).cuda()
    opt = build_optimizer(teacher.parameters(), "adam", 1e-3, 0.0)
    rec = fit(task, teacher, Objective(), opt, build_scheduler(opt, {"type": "cosine"}, 1),
              epochs=1, out_dir=tmp_path / "t", bf16=True)
    assert rec.record["epochs"] == 1 and 0.0 <= rec.record["test"]["oa"] <= 1.0

    for stage in (1, 3):  # stage 1 runs under autocast through the fused edge passes
        student = BinDGCNN(nc, "bf2", "hamming", stage=stage, k=10).cuda()
        seen: list[torch.dtype] = []
        hook = student.convs[1].register_forward_hook(
            lambda m, i, o, seen=seen: seen.append((o[0] if isinstance(o, tuple) else o).dtype))
        before = [p.detach().clone() for p in student.parameters()]
        opt = build_optimizer(student.parameters(), "adam", 1e-3, 0.0)
        rec = fit(task, student, Objective(alpha=0.1, lsp_weight=100.0), opt,
                  build_scheduler(opt, {"type": "cosine"}, 1), epochs=1,
                  out_dir=tmp_path / f"s{stage}", teacher=teacher, bf16=True)
        hook.remove()
        assert 0.0 <= rec.record["test"]["oa"] <= 1.0
        changed = [not torch.equal(a, b) for a, b in zip(before, student.parameters(),
                                                          strict=True)]
        assert any(changed), stage
        assert seen
        if stage == 3:  # binary students keep float32, so their signs are exact
            assert all(d == torch.float32 for d in seen)
