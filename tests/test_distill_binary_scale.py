import torch

from bingnn.distill.binary_scale import match_binary_scale
from bingnn.models import BinDGCNN

SMALL = dict(num_classes=4, k=4, widths=(8, 8, 8, 16), emb_dims=16, mlp=(8, 8))


def test_folds_mean_abs_weight_into_every_binary_layer_of_bindgcnn():
    for variant, knn in (("bf2", "hamming"), ("rf", "l2")):
        teacher = BinDGCNN(variant=variant, knn=knn, stage=2, **SMALL)
        student = BinDGCNN(variant=variant, knn=knn, stage=3, **SMALL)
        student.load_state_dict(teacher.state_dict())
        before = {n: m.rescale.channel_scale.clone() for n, m in student.named_modules()
                  if getattr(m, "rescale", None) is not None}
        # 4 edge convolutions, the embedding, fc1, fc2; fc3 keeps real weights
        assert match_binary_scale(student, teacher) == 7
        mods = dict(student.named_modules())
        for name, scale in before.items():
            w = mods[name].linear.weight.clamp(-1, 1)
            binary = mods[name].linear.binary_weights
            want = scale * w.abs().mean(dim=1) if binary else scale
            assert torch.allclose(mods[name].rescale.channel_scale, want), name
        # the scaled binary layer approximates the teacher's real one
        x = torch.randn(3, 6, 2 * 8)
        t_conv, s_conv = (getattr(c, "block", c) for c in (teacher.convs[2], student.convs[2]))
        t_out = t_conv.rescale(t_conv.linear(x))
        s_out = s_conv.rescale(s_conv.linear(x))
        ratio = s_out.abs().mean() / t_out.abs().mean()
        assert 0.5 < ratio < 2.0


def test_nothing_to_match_when_the_teacher_is_binary_too():
    a, b = BinDGCNN(stage=3, **SMALL), BinDGCNN(stage=3, **SMALL)
    assert match_binary_scale(a, b) == 0
