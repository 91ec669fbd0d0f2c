"""Synthetic shapes: the embedded default dataset (procedurally generated, no download).

This is **synthetic data**, not a benchmark: it lets every command of bingnn run offline and
quickly (tests, smoke runs, CPU demos). Numbers measured on it say nothing about ModelNet40.

Each sample is a point cloud sampled on the surface of one of :data:`SYNTHETIC_CLASSES`
(12 primitive shapes). Each shape has its own random proportions (e.g. cylinder height,
torus tube radius, annulus hole), so a class is a family, not a template. Pipeline per cloud:

1. sample ``N`` points on the surface (area-weighted over the parts of a composite surface,
   e.g. the side and the two caps of a cylinder);
2. add isotropic Gaussian noise :math:`\\mathcal{N}(0, \\sigma^2 I)` (``noise_std``, relative to
   a shape of unit size), then cut away a random part of the surface beyond a random plane
   (``occlusion``, as a scanner sees only part of an object);
3. rotate by a uniformly random rotation in :math:`SO(3)` (random pose);
4. normalise like ModelNet: subtract the centroid, divide by the largest point norm;
5. multiply by a random scale :math:`s \\sim U[s_{lo}, s_{hi}]`, so every cloud lies in the unit
   ball with radius ``s``.

Generation is vectorised with numpy per class (2,000 clouds of 1,024 points in about 1.5 s
on one core) and deterministic: the same ``(seed, split)`` gives bit-identical arrays,
and ``split="train"``/``"test"`` draw from independent seed streams
(``SeedSequence(seed, spawn_key=(split,))``), so the two never coincide.

Example::

    from bingnn.data.synthetic import make_synthetic_shapes, SYNTHETIC_CLASSES
    x, y = make_synthetic_shapes(240, 1024, seed=0)      # (240, 1024, 3) float32, (240,) int64
    SYNTHETIC_CLASSES[y[0]]
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["SYNTHETIC_CLASSES", "make_synthetic_shapes", "random_rotations"]

SYNTHETIC_CLASSES: tuple[str, ...] = (
    "sphere",
    "ellipsoid",
    "cube",
    "cylinder",
    "cone",
    "torus",
    "pyramid",
    "disk",
    "annulus",
    "helix",
    "capsule",
    "dumbbell",
)

_SPLITS = {"train": 0, "test": 1, "val": 2}

Sampler = Callable[[np.random.Generator, int, int], np.ndarray]


# ---- helpers (all shapes: (n, P, ...) with n clouds of P points) ---------------------------


def _unit_sphere(rng: np.random.Generator, n: int, p: int) -> np.ndarray:
    v = rng.standard_normal((n, p, 3))
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def _param(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    """One shape parameter per cloud, broadcastable against (n, P)."""
    return rng.uniform(lo, hi, size=(n, 1))


def _pick(rng: np.random.Generator, areas: np.ndarray, p: int) -> np.ndarray:
    """Part index per point, with probability proportional to part area.

    ``areas``: (n, K) -> (n, P) integers in [0, K).
    """
    cum = np.cumsum(areas, axis=1)
    u = rng.uniform(size=(areas.shape[0], p)) * cum[:, -1:]
    return (u[..., None] >= cum[:, None, :]).sum(-1).clip(max=areas.shape[1] - 1)


def _disk(rng, n, p, r_in=0.0, r_out=1.0):
    """Uniform on an annulus in the z = 0 plane: r = sqrt(U (R^2 - r^2) + r^2)."""
    r = np.sqrt(rng.uniform(size=(n, p)) * (r_out**2 - r_in**2) + r_in**2)
    t = rng.uniform(0, 2 * np.pi, size=(n, p))
    return np.stack([r * np.cos(t), r * np.sin(t), np.zeros_like(r)], -1)


def _tube(rng, n, p, radius, half_h):
    """Uniform on the side of a cylinder around z, z in [-h, h]."""
    t = rng.uniform(0, 2 * np.pi, size=(n, p))
    z = rng.uniform(-1, 1, size=(n, p)) * half_h
    return np.stack([radius * np.cos(t), radius * np.sin(t), z], -1)


def _select(parts: list[np.ndarray], idx: np.ndarray) -> np.ndarray:
    out = parts[0].copy()
    for k in range(1, len(parts)):
        out = np.where((idx == k)[..., None], parts[k], out)
    return out


def _triangle(rng, n, p, a, b, c):
    """Uniform in triangles abc (each (n, 1, 3)): a + s (b - a) + t (c - a), folded."""
    u = rng.uniform(size=(n, p, 2))
    flip = u.sum(-1, keepdims=True) > 1
    u = np.where(flip, 1 - u, u)
    return a + u[..., :1] * (b - a) + u[..., 1:] * (c - a)


# ---- the shape families --------------------------------------------------------------------


def _sphere(rng, n, p):
    return _unit_sphere(rng, n, p)


def _ellipsoid(rng, n, p):
    # Clearly non-spherical axes, so that it never passes for a sphere. (Approximately uniform:
    # a stretched sphere sample, which over-weights the flat sides a little.)
    axes = np.concatenate(
        [np.ones((n, 1)), _param(rng, n, 0.55, 0.85), _param(rng, n, 0.35, 0.6)], 1
    )[:, None, :]
    return _unit_sphere(rng, n, p) * axes


def _cube(rng, n, p):
    # Six faces of equal area: a uniform face, then pin one coordinate to +-1.
    face = rng.integers(0, 6, size=(n, p, 1))
    pts = rng.uniform(-1, 1, size=(n, p, 3))
    np.put_along_axis(pts, face // 2, np.where(face % 2 == 0, 1.0, -1.0), axis=-1)
    return pts


def _cylinder(rng, n, p):
    h = _param(rng, n, 0.6, 1.4)  # half height, radius 1
    areas = np.concatenate([4 * np.pi * h, np.full((n, 1), np.pi), np.full((n, 1), np.pi)], 1)
    idx = _pick(rng, areas, p)
    side = _tube(rng, n, p, 1.0, h)
    top = _disk(rng, n, p) + np.stack([0 * h, 0 * h, h], -1)
    bottom = _disk(rng, n, p) - np.stack([0 * h, 0 * h, h], -1)
    return _select([side, top, bottom], idx)


def _cone(rng, n, p):
    h = _param(rng, n, 1.0, 2.2)  # height, base radius 1
    slant = np.sqrt(h**2 + 1)
    areas = np.concatenate([np.pi * slant, np.full((n, 1), np.pi)], 1)
    idx = _pick(rng, areas, p)
    # Lateral surface: the radius grows linearly from the apex, so its area density ~ t:
    # t = sqrt(U) makes the sample uniform.
    t = np.sqrt(rng.uniform(size=(n, p)))
    a = rng.uniform(0, 2 * np.pi, size=(n, p))
    lateral = np.stack([t * np.cos(a), t * np.sin(a), h * (1 - t)], -1)
    base = _disk(rng, n, p)
    return _select([lateral, base], idx)


def _torus(rng, n, p):
    r = _param(rng, n, 0.25, 0.5)  # tube radius, ring radius 1
    u = rng.uniform(0, 2 * np.pi, size=(n, p))
    v = rng.uniform(0, 2 * np.pi, size=(n, p))
    rho = 1 + r * np.cos(v)
    return np.stack([rho * np.cos(u), rho * np.sin(u), r * np.sin(v)], -1)


def _pyramid(rng, n, p):
    h = _param(rng, n, 1.0, 1.8)  # apex height over the square base [-1, 1]^2
    side_area = np.sqrt(h**2 + 1)  # each triangle: base 2, slant height sqrt(h^2 + 1)
    areas = np.concatenate([np.full((n, 1), 4.0)] + [side_area] * 4, 1)
    idx = _pick(rng, areas, p)
    base = np.concatenate([rng.uniform(-1, 1, size=(n, p, 2)), np.zeros((n, p, 1))], -1)
    apex = np.concatenate([np.zeros((n, 2)), h], 1)[:, None, :]
    corners = np.array([[1, 1, 0], [-1, 1, 0], [-1, -1, 0], [1, -1, 0]], float)
    sides = [
        _triangle(rng, n, p, apex, corners[k][None, None], corners[(k + 1) % 4][None, None])
        for k in range(4)
    ]
    return _select([base, *sides], idx)


def _flat_disk(rng, n, p):
    return _disk(rng, n, p)


def _annulus(rng, n, p):
    return _disk(rng, n, p, r_in=_param(rng, n, 0.3, 0.6))


def _helix(rng, n, p):
    turns = _param(rng, n, 2.0, 4.0)
    half_h = _param(rng, n, 0.8, 1.4)
    s = rng.uniform(size=(n, p))
    t = s * turns * 2 * np.pi
    curve = np.stack([np.cos(t), np.sin(t), (2 * s - 1) * half_h], -1)
    # A thin wire: points on a small tube around the curve, approximated isotropically.
    return curve + 0.06 * _unit_sphere(rng, n, p) * rng.uniform(size=(n, p, 1))


def _capsule(rng, n, p):
    h = _param(rng, n, 0.4, 1.2)  # half height of the cylindrical part, radius 1
    areas = np.concatenate([4 * np.pi * h, np.full((n, 1), 4 * np.pi)], 1)
    idx = _pick(rng, areas, p)
    side = _tube(rng, n, p, 1.0, h)
    cap = _unit_sphere(rng, n, p)  # one sphere split in two hemispheres, shifted apart
    cap[..., 2] += np.sign(cap[..., 2] + 1e-12) * h
    return _select([side, cap], idx)


def _dumbbell(rng, n, p):
    rs = _param(rng, n, 0.45, 0.65)  # ball radius
    d = _param(rng, n, 1.2, 1.7)  # ball centre distance from the origin
    rb = 0.12  # bar radius
    bar_half = d - rs
    areas = np.concatenate([4 * np.pi * rs**2, 4 * np.pi * rs**2, 2 * np.pi * rb * 2 * bar_half], 1)
    idx = _pick(rng, areas, p)
    zero = np.zeros_like(d)
    b1 = rs[..., None] * _unit_sphere(rng, n, p) + np.stack([zero, zero, d], -1)
    b2 = rs[..., None] * _unit_sphere(rng, n, p) - np.stack([zero, zero, d], -1)
    bar = _tube(rng, n, p, rb, bar_half)
    return _select([b1, b2, bar], idx)


_SAMPLERS: dict[str, Sampler] = {
    "sphere": _sphere,
    "ellipsoid": _ellipsoid,
    "cube": _cube,
    "cylinder": _cylinder,
    "cone": _cone,
    "torus": _torus,
    "pyramid": _pyramid,
    "disk": _flat_disk,
    "annulus": _annulus,
    "helix": _helix,
    "capsule": _capsule,
    "dumbbell": _dumbbell,
}
assert tuple(_SAMPLERS) == SYNTHETIC_CLASSES


def random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    r"""``n`` rotation matrices drawn uniformly (Haar measure) from :math:`SO(3)`, ``(n, 3, 3)``.

    A normalised 4-D Gaussian vector is a uniform unit quaternion :math:`(w, x, y, z)`, whose
    rotation matrix is uniform on :math:`SO(3)`.
    """
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        1,
    )


def _occlude(rng: np.random.Generator, pts: np.ndarray, keep: int, max_frac: float):
    """Cut away the fraction ``f ~ U[0, max_frac]`` of each cloud beyond a random plane, then
    keep ``keep`` of the remaining points. ``pts``: (n, P, 3) in random order -> (n, keep, 3)."""
    n, p, _ = pts.shape
    if max_frac == 0:
        return pts[:, :keep]
    u = _unit_sphere(rng, n, 1)  # plane normals, (n, 1, 3)
    proj = (pts * u).sum(-1)  # (n, P)
    frac = rng.uniform(0, max_frac, size=n)
    # Threshold = the (1 - f) quantile of the projections: points beyond it are occluded.
    kth = np.minimum(((1 - frac) * p).astype(int), p - 1)
    thresh = np.take_along_axis(np.sort(proj, axis=1), kth[:, None], axis=1)
    visible = proj <= thresh
    # Visible points first, in their (random) sample order; P was sized so that >= keep remain.
    order = np.argsort(~visible, axis=1, kind="stable")[:, :keep]
    return np.take_along_axis(pts, order[..., None], axis=1)


def make_synthetic_shapes(
    num_samples: int,
    num_points: int = 1024,
    seed: int = 0,
    *,
    split: str = "train",
    noise_std: float = 0.03,
    occlusion: float = 0.3,
    stretch: float = 1.0,
    scale_range: tuple[float, float] = (0.8, 1.0),
    rotate: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Generate a balanced, shuffled set of synthetic point clouds.

    Args:
        num_samples: ``M``, number of clouds; class ``c`` gets ``M // C`` or ``M // C + 1``
            of them (``C = len(SYNTHETIC_CLASSES)``), in a random order.
        num_points: ``N``, points per cloud.
        seed: base seed; with ``split`` it fixes the output bit for bit.
        split: ``"train"``, ``"test"`` or ``"val"``: independent seed streams.
        noise_std: standard deviation of the Gaussian point jitter, relative to a unit shape.
        occlusion: largest fraction of the surface cut away, as a scan sees only part of an
            object: each cloud loses the fraction ``f ~ U[0, occlusion]`` of its surface beyond
            a plane of random orientation (``0`` disables it; must be ``< 1``).
        stretch: intra-class variation: each axis of the canonical shape is scaled by
            :math:`e^{u}`, :math:`u \\sim U[-\\ln a, \\ln a]` (``a = stretch``; ``1`` disables it).
        scale_range: ``(lo, hi)``, the final radius of each cloud is uniform in it; ``hi <= 1``
            keeps clouds inside the unit ball.
        rotate: random pose (uniform rotation); ``False`` keeps the canonical axes.

    Returns:
        ``points`` of shape ``(M, N, 3)``, ``float32``; ``labels`` of shape ``(M,)``, ``int64``,
        indices into :data:`SYNTHETIC_CLASSES`.
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)):
        raise TypeError(f"num_samples must be an int, got {type(num_samples).__name__}")
    if isinstance(num_points, bool) or not isinstance(num_points, (int, np.integer)):
        raise TypeError(f"num_points must be an int, got {type(num_points).__name__}")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    if num_points < 1:
        raise ValueError(f"num_points must be >= 1, got {num_points}")
    if split not in _SPLITS:
        raise ValueError(f"split must be one of {sorted(_SPLITS)}, got {split!r}")
    if not (np.isfinite(noise_std) and noise_std >= 0):
        raise ValueError(f"noise_std must be finite and >= 0, got {noise_std}")
    if not (np.isfinite(stretch) and stretch >= 1):
        raise ValueError(f"stretch must be finite and >= 1, got {stretch}")
    if not (np.isfinite(occlusion) and 0 <= occlusion < 1):
        raise ValueError(f"occlusion must be in [0, 1), got {occlusion}")
    lo, hi = scale_range
    if not (0 < lo <= hi):
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {scale_range}")

    ss = np.random.SeedSequence(int(seed), spawn_key=(_SPLITS[split],))
    rng = np.random.default_rng(ss)
    c = len(SYNTHETIC_CLASSES)
    labels = rng.permutation(np.arange(num_samples) % c).astype(np.int64)
    points = np.empty((num_samples, num_points, 3), dtype=np.float32)
    for k, sampler in enumerate(_SAMPLERS.values()):
        where = np.flatnonzero(labels == k)
        if where.size == 0:
            continue
        # Oversample so that N points survive the occlusion cut.
        total = num_points if occlusion == 0 else int(np.ceil(num_points / (1 - occlusion))) + 1
        pts = sampler(rng, where.size, total)
        if stretch > 1:
            log_a = np.log(stretch)
            pts = pts * np.exp(rng.uniform(-log_a, log_a, size=(where.size, 1, 3)))
        pts = pts + noise_std * rng.standard_normal(pts.shape)
        pts = _occlude(rng, pts, num_points, occlusion)
        if rotate:
            pts = pts @ random_rotations(rng, where.size).transpose(0, 2, 1)
        pts -= pts.mean(axis=1, keepdims=True)
        radius = np.linalg.norm(pts, axis=-1).max(axis=1)[:, None, None]
        pts *= rng.uniform(lo, hi, size=(where.size, 1, 1)) / np.maximum(radius, 1e-12)
        points[where] = pts
    return points, labels
