r"""BatchNorm over the global batch of a data-parallel run (every process's rows).

Under ``torchrun`` each process holds a shard of the global batch; a BatchNorm that normalises
with its own shard's statistics would compute another function than one process on the whole
batch. :func:`convert` makes the BatchNorm layers of a model normalise, in training mode, with
the mean and variance over all processes, gradients included (what torch's ``SyncBatchNorm``
does, on the CPU/gloo as well, keeping bingnn's channel-last layers).

:func:`active` is the one place that decides whether a layer runs in this global-batch mode
(converted, training, a process group initialised). Every code path that normalises with
batch statistics asks it: the converted forward (:func:`convert`) for whole tensors, and the
fast EdgeConvs (:mod:`bingnn.nn.edge_batchnorm`), which compute their per-edge statistics in
fused form, through :func:`batch_moments`.

The moments are combined from each process's local ones as BatchNorm's own two-pass
arithmetic does (no :math:`E[x^2] - E[x]^2` cancellation): with process :math:`p` holding
:math:`n_p` rows of mean :math:`\mu_p` and biased variance :math:`\sigma_p^2`,

.. math::
    N = \sum_p n_p, \qquad \mu = \frac{1}{N}\sum_p n_p \mu_p, \qquad
    \sigma^2 = \frac{1}{N}\sum_p n_p\big(\sigma_p^2 + (\mu_p - \mu)^2\big)

(two all-reduces, in float64). Backward: every process's output gradients
:math:`G_\mu, G_{\sigma^2}` are summed over the processes (one all-reduce), then

.. math::
    \partial \mu_p = \frac{n_p}{N}\big(G_\mu + 2 (\mu_p - \mu) G_{\sigma^2}\big), \qquad
    \partial \sigma_p^2 = \frac{n_p}{N} G_{\sigma^2}

(the path through :math:`\mu` in :math:`\sigma^2` vanishes: :math:`\sum_p n_p (\mu_p - \mu)
= 0`), and the local moments' own backward carries it to the rows: the gradient of the global
statistics reaches every process's inputs, as in ``SyncBatchNorm``.
"""

from __future__ import annotations

import types

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bingnn.nn._amp import fp32_backward, fp32_forward
from bingnn.nn.batchnorm_stats import update_running_stats
from bingnn.nn.centering import ChannelBatchNorm

__all__ = ["active", "batch_moments", "convert", "converted", "sum_over_processes"]


def sum_over_processes(t: Tensor) -> Tensor:
    """Element-wise sum of ``t`` over all processes (a copy; not differentiable)."""
    out = t.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


class _GlobalMoments(torch.autograd.Function):
    """Local ``mean, var (C)`` over ``count`` rows -> global ``mean, var`` (module docstring)."""

    @staticmethod
    @fp32_forward
    def forward(ctx, mean: Tensor, var: Tensor, count: int) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        wide = torch.float64
        n = float(count)
        local_mean = mean.detach().to(wide) if count > 0 else torch.zeros_like(mean, dtype=wide)
        local_var = var.detach().to(wide) if count > 0 else torch.zeros_like(var, dtype=wide)
        c = local_mean.numel()
        first = torch.empty(c + 1, dtype=wide, device=mean.device)
        first[:c] = local_mean * n
        first[c] = n
        first = sum_over_processes(first)
        total = first[c]
        g_mean = first[:c] / total
        m2 = sum_over_processes(n * (local_var + (local_mean - g_mean) ** 2))
        g_var = m2 / total
        ctx.save_for_backward(local_mean, g_mean)
        ctx.weight = n / float(total)
        ctx.dtypes = (mean.dtype, var.dtype)
        return g_mean.to(mean.dtype), g_var.to(var.dtype)

    @staticmethod
    @fp32_backward
    def backward(ctx, grad_mean: Tensor, grad_var: Tensor):  # type: ignore[override]
        local_mean, g_mean = ctx.saved_tensors
        c = local_mean.numel()
        wide = torch.float64
        g = sum_over_processes(torch.cat([grad_mean.to(wide), grad_var.to(wide)]))
        gm, gv = g[:c], g[c:]
        d_mean = ctx.weight * (gm + 2.0 * (local_mean - g_mean) * gv)
        d_var = ctx.weight * gv
        return d_mean.to(ctx.dtypes[0]), d_var.to(ctx.dtypes[1]), None


def _global_count(count: int, device: torch.device) -> int:
    return int(sum_over_processes(torch.tensor([count], dtype=torch.int64, device=device)).item())


def converted(bn: nn.Module) -> bool:
    """Whether :func:`convert` made ``bn`` a global-batch layer (whether or not it is active
    now)."""
    forward = vars(bn).get("forward")
    return getattr(forward, "__func__", None) is _converted_forward


def active(bn: nn.Module) -> bool:
    """Whether ``bn`` normalises now with the statistics of the global batch: converted, in
    training mode, inside an initialised process group. The single test of the global-batch
    mode; everything else asks it."""
    return (converted(bn) and bn.training and dist.is_available()
            and dist.is_initialized())


def batch_moments(bn: nn.Module, mean: Tensor, var: Tensor, count: int
                  ) -> tuple[Tensor, Tensor, int]:
    """The batch statistics ``bn`` normalises with, from this process's ``mean`` and biased
    ``var`` ``(C)`` over ``count`` rows: those over every process's rows (differentiable, see
    the module docstring) when :func:`active`, else ``mean, var, count`` themselves, untouched.
    Returns ``(mean, var, rows)``."""
    if not active(bn):
        return mean, var, count
    g_mean, g_var = _GlobalMoments.apply(mean, var, count)
    return g_mean, g_var, _global_count(count, mean.device)


def _local_moments(x2d: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and biased variance of ``x2d (M, C)`` over its rows (zeros for no rows)."""
    if x2d.shape[0] == 0:
        zero = x2d.sum(0)
        return zero, zero
    var, mean = torch.var_mean(x2d, dim=0, correction=0)
    return mean, var


def _converted_forward(self: nn.modules.batchnorm._BatchNorm, x: Tensor) -> Tensor:
    """Training-mode BatchNorm with mean and variance over every process's rows; anything else
    (eval mode, no process group) is the class's own forward."""
    if not active(self):
        return type(self).forward(self, x)
    channel_last = isinstance(self, ChannelBatchNorm)
    c = self.num_features
    xt = x if channel_last else x.movedim(1, -1)
    x2d = xt.reshape(-1, c)
    mean, var, count = batch_moments(self, *_local_moments(x2d), x2d.shape[0])
    if count > 1:
        update_running_stats(self, mean, var, count)
    y = (x2d - mean) * torch.rsqrt(var + self.eps)
    if self.affine:
        y = y * self.weight + self.bias
    y = y.reshape(xt.shape)
    return y if channel_last else y.movedim(-1, 1)


def convert(model: nn.Module) -> int:
    """Make every BatchNorm layer of ``model`` normalise, in training mode inside a process
    group, with the mean and variance of the global batch, gradients included; the running
    statistics are updated from the same global moments, so they stay identical on every
    process. The layers keep their class and parameter names (the forward is replaced on the
    instance), so state dicts are those of the plain model. Returns the number of layers
    converted (layers converted before are left alone)."""
    n = 0
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not converted(m):
            m.forward = types.MethodType(_converted_forward, m)
            n += 1
    return n
