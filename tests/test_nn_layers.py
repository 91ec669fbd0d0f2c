import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from bingnn.nn import (
    BinaryBlock,
    BinaryLinear,
    ChannelBatchNorm,
    ChannelPReLU,
    LearnedRescale,
    get_centering,
)


def test_binary_linear_uses_sign_of_weights():
    lin = BinaryLinear(5, 3)
    x = torch.randn(4, 7, 5)
    ref = F.linear(x, torch.where(lin.weight >= 0, 1.0, -1.0))
    assert torch.allclose(lin(x), ref)


def test_binary_linear_clips_latent_weights_in_training():
    lin = BinaryLinear(4, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, -2.0, 0.5, -0.1], [1.5, 0.0, -7.0, 0.9]]))
    lin.train()
    lin(torch.randn(1, 4))
    assert lin.weight.abs().max() <= 1.0
    assert lin.weight[0, 2].item() == 0.5  # values inside the range are untouched


def test_binary_linear_real_weights_are_not_clipped():
    lin = BinaryLinear(4, 2, kernel_quantizer="identity")
    with torch.no_grad():
        lin.weight.fill_(3.0)
    out = lin(torch.ones(1, 4))
    assert torch.allclose(out, torch.full((1, 2), 12.0))
    assert lin.weight.max() == 3.0


def test_binary_linear_ste_gradient_zero_outside_clip():
    lin = BinaryLinear(3, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[0.5, -1.0, 1.0]]))
    lin.eval()  # no clipping, so the STE mask is visible
    with torch.no_grad():
        lin.weight[0, 2] = 1.5
    lin(torch.ones(2, 3)).sum().backward()
    assert lin.weight.grad[0].tolist() == [2.0, 2.0, 0.0]


def test_binary_linear_bad_shape():
    with pytest.raises(ValueError, match="input channels"):
        BinaryLinear(4, 2)(torch.randn(3, 5))


def test_rescale_outer_product():
    r = LearnedRescale(3, num_points=4, num_neighbors=2)
    with torch.no_grad():
        r.channel_scale.copy_(torch.tensor([1.0, 2.0, 3.0]))
        r.point_scale.copy_(torch.tensor([1.0, 10.0, 100.0, 1000.0]))
        r.neighbor_scale.copy_(torch.tensor([1.0, -1.0]))
    x = torch.ones(2, 4, 2, 3)
    out = r(x)
    expected = torch.einsum("c,n,j->njc", r.channel_scale, r.point_scale, r.neighbor_scale)
    assert torch.allclose(out, expected.expand_as(out))
    with pytest.raises(ValueError, match="per-neighbour"):
        r(torch.ones(2, 4, 3, 3))


def test_channel_batchnorm_matches_batchnorm2d():
    x = torch.randn(3, 5, 4, 6)  # (B, N, k, C)
    ours, ref = ChannelBatchNorm(6), torch.nn.BatchNorm2d(6)
    with torch.no_grad():
        ours.weight.uniform_(); ref.weight.copy_(ours.weight)  # noqa: E702
    assert torch.allclose(ours(x), ref(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1), atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 9), st.integers(1, 5))
def test_median_center_balances_bits(c, n):
    x = torch.randn(n, c)
    y = get_centering("median", c)(x)
    pos = (y >= 0).sum(-1)
    # the lower median leaves at least half of the values >= 0
    assert (pos >= (c + 1) // 2).all()
    assert torch.allclose(get_centering("mean", c)(x).mean(-1), torch.zeros(n), atol=1e-5)


def test_unknown_centering():
    with pytest.raises(ValueError, match="unknown centering"):
        get_centering("zscore", 3)


def test_prelu_per_channel():
    p = ChannelPReLU(2)
    with torch.no_grad():
        p.weight.copy_(torch.tensor([0.5, -1.0]))
    x = torch.tensor([[-2.0, -2.0], [3.0, 3.0]])
    assert p(x).tolist() == [[-1.0, 2.0], [3.0, 3.0]]


def test_binary_block_on_a_hand_computed_example():
    """centre -> sign -> +-1 linear -> rescale -> PReLU, worked out by hand on 3 -> 2 channels.

    x = (0.5, 0.2, -0.5) minus the running mean (1, 0, -1) is (-0.5, 0.2, 0.5): signs
    (-, +, +) (uncentred they would be (+, +, -)). Weight signs (+, -, +) and (-, -, +) give
    dot products -1 and +1; rescale (2, 3) gives (-2, 3); PReLU slope 0.25 gives (-0.5, 3).
    The second cloud, x = (1, 0, -1), sits exactly on the mean: sign(0) = +1 for all three,
    dots +1 and -1, rescaled (2, -3), activated (2, -0.75)."""
    blk = BinaryBlock(3, 2, centering="batchnorm").eval()
    with torch.no_grad():
        blk.center.running_mean.copy_(torch.tensor([1.0, 0.0, -1.0]))
        blk.center.running_var.fill_(1.0)
        blk.linear.weight.copy_(torch.tensor([[0.3, -0.2, 0.5], [-0.7, -0.1, 0.4]]))
        blk.rescale.channel_scale.copy_(torch.tensor([2.0, 3.0]))
    x = torch.tensor([[0.5, 0.2, -0.5], [1.0, 0.0, -1.0]])
    want = torch.tensor([[-0.5, 3.0], [2.0, -0.75]])
    torch.testing.assert_close(blk(x), want)
    torch.testing.assert_close(blk(x[None, :, None]), want[None, :, None])  # (*, C) layout


def test_binary_block_gradients_reach_latent_weights():
    blk = BinaryBlock(8, 4)
    blk(torch.randn(10, 8)).pow(2).sum().backward()
    assert blk.linear.weight.grad is not None and blk.linear.weight.grad.abs().sum() > 0
    assert blk.rescale.channel_scale.grad.abs().sum() > 0
