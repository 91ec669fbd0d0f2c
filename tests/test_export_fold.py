"""The exporter's exact threshold predicates against brute-force evaluation of the modules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bingnn.engine import reference as ref
from bingnn.export.fold import _bn_affine, _chain, float_predicate, int_predicate
from bingnn.nn.activations import ChannelPReLU
from bingnn.nn.centering import ChannelBatchNorm
from bingnn.nn.rescale import LearnedRescale


def random_chain(c: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    scale, act, bn = LearnedRescale(c), ChannelPReLU(c), ChannelBatchNorm(c)
    with torch.no_grad():
        scale.channel_scale.copy_(torch.randn(c, generator=g))
        act.weight.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_mean.copy_(torch.randn(c, generator=g) * 3)
        bn.running_var.copy_(torch.rand(c, generator=g) * 2 + 0.1)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
    bn.eval()
    return _chain(scale, act, bn)


def signs(fn, v: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return (fn(torch.from_numpy(v)) >= 0).numpy()


@pytest.mark.parametrize("seed", range(4))
def test_int_predicate_is_exact(seed: int) -> None:
    c, n = 48, 70
    fn = random_chain(c, seed)
    lo, hi, neg = int_predicate(fn, n, c)
    ys = np.arange(-n, n + 1, 2, dtype=np.float32)[:, None].repeat(c, 1)
    np.testing.assert_array_equal(ref.predicate(ys.astype(np.int32), lo, hi, neg), signs(fn, ys))
    # Both shapes occur: sets expressed as ends of the line and as intervals.
    assert neg.any() and (~neg.astype(bool)).any()
    inv = np.random.default_rng(seed).random(c) < 0.5
    lo2, hi2, neg2 = int_predicate(fn, n, c, invert=inv)
    np.testing.assert_array_equal(ref.predicate(ys.astype(np.int32), lo2, hi2, neg2),
                                  signs(fn, ys) ^ inv)


@pytest.mark.parametrize("seed", range(4))
def test_float_predicate_is_exact(seed: int) -> None:
    c = 40
    fn = random_chain(c, seed)
    lo, hi, neg = float_predicate(fn, c)
    rng = np.random.default_rng(seed)
    v = np.concatenate([rng.normal(size=(2000, c)) * 10 ** rng.uniform(-3, 3, size=(2000, 1)),
                        np.zeros((1, c)), -np.zeros((1, c))]).astype(np.float32)
    # Values at and right next to every finite boundary: where a derived threshold would fail.
    for t in (lo, hi):
        t = np.where(np.isfinite(t), t, 0).astype(np.float32)
        for step in (-2, -1, 0, 1, 2):
            w = t.copy()
            for _ in range(abs(step)):
                w = np.nextafter(w, np.float32(np.inf if step > 0 else -np.inf))
            v = np.concatenate([v, w[None]])
    np.testing.assert_array_equal(ref.predicate(v, lo, hi, neg), signs(fn, v))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("c", [16, 20, 96])
def test_bn_affine_matches_torch_bits(seed: int, c: int) -> None:
    bn = ChannelBatchNorm(c)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(c, generator=g))
        bn.running_var.copy_(torch.rand(c, generator=g) + 0.2)
        bn.weight.copy_(torch.randn(c, generator=g))
        bn.bias.copy_(torch.randn(c, generator=g))
    bn.eval()
    x = torch.randn(3000, c, generator=g)
    scale, shift = _bn_affine(bn, "bn")
    with torch.no_grad():
        want = bn(x).numpy()
    got = ref.fma_affine(x.numpy(), scale, shift)
    # PyTorch's CPU BatchNorm is a fused multiply-add on x86-64 with FMA (checked here).
    np.testing.assert_array_equal(got, want)
