r"""Local Structure Preservation (LSP) distillation (Yang et al., CVPR 2020).

For every node :math:`i` and a set :math:`\mathcal{N}(i)` of neighbours, a model's *local
structure* is the distribution

.. math::
    p_{ij} = \frac{\exp(-d(z_i, z_j))}{\sum_{l \in \mathcal{N}(i)} \exp(-d(z_i, z_l))},
    \qquad j \in \mathcal{N}(i),

a softmax over the neighbours of a similarity kernel :math:`K(z_i, z_j) = \exp(-d(z_i, z_j))`
of the node features :math:`z`. The student is taught to reproduce the teacher's structure:

.. math::
    \mathcal{L}_{LSP} = \frac{1}{|V|} \sum_{i \in V} \sum_{j \in \mathcal{N}(i)}
        p^{T}_{ij} \left(\log p^{T}_{ij} - \log p^{S}_{ij}\right)
        = \frac{1}{|V|} \sum_i \mathrm{KL}\left(p^T_{i\cdot} \,\|\, p^S_{i\cdot}\right).

For dynamic graphs (DGCNN), :math:`\mathcal{N}(i)` is the union of the teacher's and the
student's k-NN lists of :math:`i` (an index present in both counts once). Softmaxes are taken in
log space (``log_softmax``), so large distances never underflow to ``0/0``.

Kernels (:data:`KERNELS`, by name; :math:`C` = feature width):

============== ===================================================================
name           :math:`d(z_i, z_j)` inside :math:`K = \exp(-d)`
============== ===================================================================
rbf_l2         :math:`\|z_i - z_j\|_2^2`
rbf_hamming    :math:`h_{ij} = \tfrac12 \sum_c (1 - z_{ic} z_{jc})` (relaxed Hamming; on
               +-1 features the number of differing bits)
rbf_l2_sq      :math:`\left(\|z_i - z_j\|_2^2\right)^2`
rbf_hamming_sq :math:`h_{ij}^2`
============== ===================================================================

The ``_sq`` kernels square the base distance of the plain kernel (the squared Euclidean
distance, resp. the relaxed Hamming distance), i.e. :math:`K = \exp(-d^2)`.

Example::

    loss = lsp_loss_knn(s_feat, t_feat, s_idx, t_idx, "rbf_hamming", "rbf_l2")
    loss = lsp_loss_edges(s_x, t_x, edge_index, "rbf_l2", "rbf_l2")   # general graphs
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch_geometric.utils import coalesce, scatter

from bingnn.distill.lsp_pairs import pair_base_distances

__all__ = [
    "KERNELS",
    "LSPKernel",
    "get_kernel",
    "lsp_loss_edges",
    "lsp_loss_knn",
    "union_neighbors",
]


@dataclass(frozen=True)
class LSPKernel:
    """A similarity kernel :math:`K(z_i, z_j) = \\exp(-d(z_i, z_j))` used by LSP.

    Args:
        name: registry name.
        base: ``"l2"`` (squared Euclidean distance) or ``"hamming"`` (relaxed Hamming
            distance :math:`\\tfrac12 \\sum_c (1 - z_{ic} z_{jc})`).
        squared: if ``True``, the base distance is squared inside the exponential.
    """

    name: str
    base: str
    squared: bool = False

    def distance_pairs(self, zi: Tensor, zj: Tensor) -> Tensor:
        """Base distance of matching rows: ``(E, C)``, ``(E, C)`` -> ``(E,)``."""
        if self.base == "l2":
            return ((zi - zj) ** 2).sum(-1)
        return 0.5 * (1.0 - zi * zj).sum(-1)

    def log_kernel(self, d: Tensor) -> Tensor:
        """:math:`\\log K = -d` or :math:`-d^2`."""
        return -(d * d) if self.squared else -d


KERNELS: dict[str, LSPKernel] = {
    k.name: k
    for k in (
        LSPKernel("rbf_l2", "l2"),
        LSPKernel("rbf_hamming", "hamming"),
        LSPKernel("rbf_l2_sq", "l2", squared=True),
        LSPKernel("rbf_hamming_sq", "hamming", squared=True),
    )
}
# Short aliases used in recipes ("hamming" / "l2" as in the paper's table).
_ALIASES = {"l2": "rbf_l2", "hamming": "rbf_hamming"}


def get_kernel(kernel: str | LSPKernel) -> LSPKernel:
    """Look up a kernel by name (``rbf_l2``, ``rbf_hamming``, ``rbf_l2_sq``,
    ``rbf_hamming_sq``; aliases ``l2``, ``hamming``) or pass an :class:`LSPKernel` through."""
    if isinstance(kernel, LSPKernel):
        return kernel
    if not isinstance(kernel, str):
        raise TypeError(f"LSP kernel must be a name or an LSPKernel, got {type(kernel).__name__}")
    name = _ALIASES.get(kernel.lower(), kernel.lower())
    if name not in KERNELS:
        raise ValueError(
            f"unknown LSP kernel {kernel!r}; choose one of {', '.join([*KERNELS, *_ALIASES])}"
        )
    return KERNELS[name]


def _check_finite(x: Tensor, name: str) -> None:
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def union_neighbors(s_idx: Tensor, t_idx: Tensor) -> tuple[Tensor, Tensor]:
    """Union of two neighbour lists per node.

    Args:
        s_idx: ``(B, N, k)`` and ``t_idx``: ``(B, N, k')`` int64 neighbour indices.

    Returns:
        ``(idx, valid)``: ``idx (B, N, k + k')`` sorted candidate indices and ``valid``, a bool
        mask of the same shape that is ``False`` on repeats, so every neighbour counts once.
    """
    idx = torch.cat([s_idx, t_idx], dim=-1).sort(dim=-1).values
    valid = torch.ones_like(idx, dtype=torch.bool)
    valid[..., 1:] = idx[..., 1:] != idx[..., :-1]
    return idx, valid


def _masked_kl(log_p_t: Tensor, log_p_s: Tensor, valid: Tensor) -> Tensor:
    """Per-entry :math:`p_t (\\log p_t - \\log p_s)`, exactly 0 where ``valid`` is False."""
    zero = torch.zeros((), dtype=log_p_t.dtype, device=log_p_t.device)
    diff = torch.where(valid, log_p_t - log_p_s, zero)
    return torch.where(valid, log_p_t.exp(), zero) * diff


def lsp_loss_knn(
    s_feat: Tensor,
    t_feat: Tensor,
    s_idx: Tensor,
    t_idx: Tensor,
    kernel_s: str | LSPKernel = "rbf_l2",
    kernel_t: str | LSPKernel = "rbf_l2",
) -> Tensor:
    r"""LSP loss of batched k-NN graphs (DGCNN), on the union of both graphs' neighbours.

    Args:
        s_feat: ``(B, N, C_s)`` student features (the ones its k-NN graph was built on).
        t_feat: ``(B, N, C_t)`` teacher features (detached here: the teacher is fixed).
        s_idx: ``(B, N, k)`` student neighbour indices; ``t_idx``: ``(B, N, k')`` teacher's.
        kernel_s, kernel_t: kernel names or objects for the student and the teacher.

    Returns:
        scalar: :math:`\frac{1}{BN} \sum_{b,i} \mathrm{KL}(p^T_{bi} \| p^S_{bi})` over
        :math:`\mathcal{N}(i) = \mathrm{kNN}_S(i) \cup \mathrm{kNN}_T(i)`.
    """
    ks, kt = get_kernel(kernel_s), get_kernel(kernel_t)
    for name, x in (("s_feat", s_feat), ("t_feat", t_feat), ("s_idx", s_idx), ("t_idx", t_idx)):
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3:
            raise ValueError(f"{name} must have 3 dimensions (B, N, .), got {tuple(x.shape)}")
    b, n = s_feat.shape[:2]
    for name, x in (("t_feat", t_feat), ("s_idx", s_idx), ("t_idx", t_idx)):
        if tuple(x.shape[:2]) != (b, n):
            raise ValueError(
                f"{name} is shaped {tuple(x.shape)} but s_feat has (B, N) = ({b}, {n}); "
                "student and teacher graphs must cover the same point sets"
            )
    if b == 0 or n == 0:
        raise ValueError(f"empty point sets (B, N) = ({b}, {n})")
    if s_idx.shape[-1] == 0 or t_idx.shape[-1] == 0:
        raise ValueError("neighbour lists are empty (k = 0)")
    if s_idx.dtype != torch.int64 or t_idx.dtype != torch.int64:
        raise TypeError(f"neighbour indices must be int64, got {s_idx.dtype} and {t_idx.dtype}")
    lo = min(int(s_idx.min()), int(t_idx.min()))
    hi = max(int(s_idx.max()), int(t_idx.max()))
    if lo < 0 or hi >= n:
        raise ValueError(f"neighbour indices must lie in [0, {n}), got range [{lo}, {hi}]")
    _check_finite(s_feat, "s_feat")
    _check_finite(t_feat, "t_feat")

    idx, valid = union_neighbors(s_idx, t_idx)
    t_feat = t_feat.detach()
    ninf = torch.tensor(float("-inf"), dtype=s_feat.dtype, device=s_feat.device)
    # Pair by pair where the native kernels run, else the (B, N, N) matrix gathered: both
    # cheaper than gathering (B, N, K, C) features (bingnn.distill.lsp_pairs).
    logit_s = ks.log_kernel(pair_base_distances(s_feat, idx, ks.base))
    with torch.no_grad():
        logit_t = kt.log_kernel(pair_base_distances(t_feat, idx, kt.base))
    log_p_s = torch.log_softmax(torch.where(valid, logit_s, ninf), dim=-1)
    log_p_t = torch.log_softmax(torch.where(valid, logit_t.to(log_p_s.dtype), ninf), dim=-1)
    return _masked_kl(log_p_t, log_p_s, valid).sum(-1).mean()


def _grouped_log_softmax(logits: Tensor, group: Tensor, num_groups: int) -> Tensor:
    """``log_softmax`` of ``logits (E,)`` within the groups given by ``group (E,)``."""
    gmax = scatter(logits.detach(), group, dim=0, dim_size=num_groups, reduce="max")
    shifted = logits - gmax[group]
    lse = scatter(shifted.exp(), group, dim=0, dim_size=num_groups, reduce="sum").log()
    return shifted - lse[group]


def lsp_loss_edges(
    s_feat: Tensor,
    t_feat: Tensor,
    edge_index: Tensor,
    kernel_s: str | LSPKernel = "rbf_l2",
    kernel_t: str | LSPKernel = "rbf_l2",
) -> Tensor:
    r"""LSP loss on a general graph given as an edge list.

    Args:
        s_feat: ``(M, C_s)`` student node features; ``t_feat``: ``(M, C_t)`` teacher's.
        edge_index: ``(2, E)`` int64 in PyG's orientation: row 0 = neighbour (source)
            :math:`j`, row 1 = centre (target) :math:`i`; :math:`\mathcal{N}(i)` is the set
            of sources of ``i``'s incoming edges. Repeated edges count once. For the union of
            two graphs, concatenate their edge lists.
        kernel_s, kernel_t: kernel names or objects.

    Returns:
        scalar: mean over the centre nodes that have at least one incoming edge of
        :math:`\mathrm{KL}(p^T_{i\cdot} \| p^S_{i\cdot})` (softmax over each centre's edges).
        ``0`` when there is no edge.
    """
    ks, kt = get_kernel(kernel_s), get_kernel(kernel_t)
    if s_feat.dim() != 2 or t_feat.dim() != 2:
        raise ValueError(
            f"node features must be (M, C), got {tuple(s_feat.shape)} and {tuple(t_feat.shape)}"
        )
    m = s_feat.shape[0]
    if t_feat.shape[0] != m:
        raise ValueError(f"student has {m} nodes but teacher has {t_feat.shape[0]}")
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise ValueError(f"edge_index must be (2, E), got {tuple(edge_index.shape)}")
    if edge_index.dtype != torch.int64:
        raise TypeError(f"edge_index must be int64, got {edge_index.dtype}")
    if edge_index.shape[1] == 0:
        return s_feat.sum() * 0.0
    if int(edge_index.min()) < 0 or int(edge_index.max()) >= m:
        raise ValueError(f"edge_index refers to nodes outside [0, {m})")
    _check_finite(s_feat, "s_feat")
    _check_finite(t_feat, "t_feat")

    edge_index = coalesce(edge_index, num_nodes=m)  # drops repeated edges
    nbr, centre = edge_index
    t_feat = t_feat.detach()
    logit_s = ks.log_kernel(ks.distance_pairs(s_feat[centre], s_feat[nbr]))
    logit_t = kt.log_kernel(kt.distance_pairs(t_feat[centre], t_feat[nbr])).to(logit_s.dtype)
    log_p_s = _grouped_log_softmax(logit_s, centre, m)
    log_p_t = _grouped_log_softmax(logit_t, centre, m)
    kl = log_p_t.exp() * (log_p_t - log_p_s)
    per_node = scatter(kl, centre, dim=0, dim_size=m, reduce="sum")
    has_edge = torch.zeros(m, dtype=torch.bool, device=centre.device)
    has_edge[centre] = True
    return per_node[has_edge].mean()
