r"""The first linear map of an EdgeConv, computed per node instead of per edge.

On the edge feature :math:`e_{ij} = [x_j - x_i,\ x_i]` a linear map :math:`W = [W_a\ W_b]`
(optionally after a per-channel affine map :math:`e \mapsto e \odot s + t`, BatchNorm) gives

.. math::
    W (e_{ij} \odot s + t) = \underbrace{(W_a \operatorname{diag} s_a)\, x_j}_{u_j}
        + \underbrace{(W_b \operatorname{diag} s_b - W_a \operatorname{diag} s_a)\, x_i
        + W t}_{v_i},

so two products over the N nodes replace one over the N k edges. This holds wherever nothing
non-linear (no quantizer, no activation) sits between the edge feature and the weights: the
float DGCNN, the pseudo-quantized (``tanh``) students' subtraction edges, and the real-valued
xyz input of every binary model.

For 3-D inputs (the xyz layer, whose pre-activations the engine must reproduce bit for bit)
:func:`linear_parts` uses the fixed elementwise float32 order of the engine's contract
(``csrc/engine_float.hpp``): every product and sum rounded on its own, no BLAS.
"""

from __future__ import annotations

import torch
from torch import Tensor


def linear_parts(
    x: Tensor, weight: Tensor, scale: Tensor | None = None, shift: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    r"""Per-node parts :math:`u, v` with :math:`W(e_{ij} \odot s + t) = u_j + v_i`.

    Args:
        x: ``(B, N, C)`` node features.
        weight: ``(C_out, 2C)``, the columns of :math:`x_j - x_i` first.
        scale, shift: optional ``(2C,)`` affine map applied to the edge feature first.

    Returns:
        ``u, v (B, N, C_out)``. For ``C = 3`` in the engine's fixed order (module docstring):
        :math:`u_{jc} = (x_{j0} a_{c0} + x_{j1} a_{c1}) + x_{j2} a_{c2}`, likewise
        :math:`v_{ic}` with :math:`d = b - a`, plus the bias
        :math:`(\cdots(w_{c0} t_0 + w_{c1} t_1) + \cdots) + w_{c5} t_5` last.
    """
    c = x.shape[-1]
    if scale is not None:
        a = weight[:, :c] * scale[:c]
        d = weight[:, c:] * scale[c:] - a
    else:
        a = weight[:, :c]
        d = weight[:, c:] - a
    if c == 3:
        x0, x1, x2 = x[..., 0:1], x[..., 1:2], x[..., 2:3]
        u = (x0 * a[:, 0] + x1 * a[:, 1]) + x2 * a[:, 2]
        v = (x0 * d[:, 0] + x1 * d[:, 1]) + x2 * d[:, 2]
        if shift is not None:
            bias = weight[:, 0] * shift[0]
            for q in range(1, 2 * c):
                bias = bias + weight[:, q] * shift[q]
            v = v + bias
        return u, v
    uv = torch.matmul(x, torch.cat([a, d], dim=0).t())
    u, v = uv.split(a.shape[0], dim=-1)
    if shift is not None:
        v = v + torch.matmul(weight, shift)
    return u, v
