import torch

from bingnn.distill.binary_scale import match_binary_scale
from bingnn.models import BinDGCNN

SMALL = dict(num_classes=4, k=4, widths=(8, 8, 8, 16), emb_dims=16, mlp=(8, 8))


def _effective_weights(mod: torch.nn.Module, scale: torch.Tensor | None = None) -> torch.Tensor:
    """The weights a layer multiplies its input by: per-channel scale times quantized weights."""
    s = mod.rescale.channel_scale if scale is None else scale
    return s[:, None] * mod.linear.quantized_weight()


def _scaled_layers(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    return {n: m for n, m in model.named_modules() if getattr(m, "rescale", None) is not None}


def test_matched_scale_is_the_best_binary_approximation_of_the_teacher():
    """After matching, alpha_s * sign(W) is the closest scaled-sign matrix to the teacher's
    alpha_t * W (least squares, per output channel): scaling any channel up or down by 2% moves
    it further away, and it is much closer than the unmatched student (scale alpha_t)."""
    torch.manual_seed(0)
    for variant, knn in (("bf2", "hamming"), ("rf", "l2")):
        teacher = BinDGCNN(variant=variant, knn=knn, stage=2, **SMALL)
        with torch.no_grad():  # a trained teacher: non-trivial scales, some negative
            for m in _scaled_layers(teacher).values():
                m.rescale.channel_scale.uniform_(-2.0, 3.0)
        student = BinDGCNN(variant=variant, knn=knn, stage=3, **SMALL)
        student.load_state_dict(teacher.state_dict())
        # 4 edge convolutions, the embedding, fc1, fc2; fc3 keeps real weights
        assert match_binary_scale(student, teacher) == 7
        t_layers, s_layers = _scaled_layers(teacher), _scaled_layers(student)
        n_binary = 0
        with torch.no_grad():
            for name, s_mod in s_layers.items():
                t_mod = t_layers[name]
                target = _effective_weights(t_mod)
                if not s_mod.linear.binary_weights:  # real in both: left as the teacher had it
                    torch.testing.assert_close(_effective_weights(s_mod), target)
                    continue
                n_binary += 1
                scale = s_mod.rescale.channel_scale

                def err(sc: torch.Tensor, s_mod=s_mod, target=target) -> torch.Tensor:
                    return (_effective_weights(s_mod, sc) - target).pow(2).sum(dim=1)

                best = err(scale)
                assert (best < err(scale * 1.02)).all(), name
                assert (best < err(scale * 0.98)).all(), name
                unmatched = err(t_mod.rescale.channel_scale)
                assert best.sum() < 0.5 * unmatched.sum(), name
        assert n_binary == 7


def test_matched_student_outputs_have_the_teachers_magnitude():
    teacher = BinDGCNN(variant="bf2", knn="hamming", stage=2, **SMALL)
    student = BinDGCNN(variant="bf2", knn="hamming", stage=3, **SMALL)
    student.load_state_dict(teacher.state_dict())
    x = torch.randn(3, 6, 2 * 8)
    t_conv, s_conv = (getattr(c, "block", c) for c in (teacher.convs[2], student.convs[2]))
    with torch.no_grad():
        before = s_conv.rescale(s_conv.linear(x)).abs().mean() / t_conv.rescale(
            t_conv.linear(x)).abs().mean()
        match_binary_scale(student, teacher)
        after = s_conv.rescale(s_conv.linear(x)).abs().mean() / t_conv.rescale(
            t_conv.linear(x)).abs().mean()
    assert before > 5  # sign(W) is about 1/|W| times larger than the small real weights
    assert 0.5 < after < 2.0


def test_nothing_to_match_when_the_teacher_is_binary_too():
    a, b = BinDGCNN(stage=3, **SMALL), BinDGCNN(stage=3, **SMALL)
    before = {k: v.clone() for k, v in a.state_dict().items()}
    assert match_binary_scale(a, b) == 0
    for k, v in a.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_matching_keeps_the_bias_shift_of_prelu_shift():
    """With a real bias b (prelu_shift), alpha (W x + b) becomes alpha m (sign(W) x + b / m):
    the bias is divided by the mean |W| that multiplies the scale, so where sign(W) x
    approximates W x / m the shift before the PReLU is the teacher's."""
    torch.manual_seed(1)
    teacher = BinDGCNN(variant="bf2", knn="hamming", stage=2, prelu_shift=True, **SMALL)
    with torch.no_grad():
        for conv in teacher.convs[1:]:
            conv.linear.bias.normal_(0.0, 0.3)
    student = BinDGCNN(variant="bf2", knn="hamming", stage=3, prelu_shift=True, **SMALL)
    student.load_state_dict(teacher.state_dict())
    match_binary_scale(student, teacher)
    for t_conv, s_conv in zip(teacher.convs[1:], student.convs[1:], strict=True):
        m = t_conv.linear.weight.clamp(-1, 1).abs().mean(dim=1)
        torch.testing.assert_close(s_conv.linear.bias, t_conv.linear.bias / m)
        # the shift in rescaled units, alpha * b, is the teacher's
        torch.testing.assert_close(s_conv.rescale.channel_scale * s_conv.linear.bias,
                                   t_conv.rescale.channel_scale * t_conv.linear.bias)
