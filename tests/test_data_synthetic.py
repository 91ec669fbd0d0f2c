"""Synthetic shapes: determinism, seed streams, normalisation, and the geometry of each family."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bingnn.data import synthetic
from bingnn.data.synthetic import SYNTHETIC_CLASSES, make_synthetic_shapes, random_rotations

C = len(SYNTHETIC_CLASSES)


def test_shapes_dtypes_balance():
    x, y = make_synthetic_shapes(5 * C + 3, 100, seed=0)
    assert x.shape == (5 * C + 3, 100, 3) and x.dtype == np.float32
    assert y.shape == (5 * C + 3,) and y.dtype == np.int64
    counts = np.bincount(y, minlength=C)
    assert counts.min() == 5 and counts.max() == 6 and counts.sum() == 5 * C + 3
    assert len(set(SYNTHETIC_CLASSES)) == C >= 10
    assert np.isfinite(x).all()


def test_labels_are_shuffled():
    _, y = make_synthetic_shapes(10 * C, 8, seed=0)
    assert not np.array_equal(y, np.arange(10 * C) % C)


def test_deterministic_and_seed_dependent():
    a = make_synthetic_shapes(30, 64, seed=3)
    b = make_synthetic_shapes(30, 64, seed=3)
    c = make_synthetic_shapes(30, 64, seed=4)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.allclose(a[0], c[0])


def test_train_and_test_streams_never_coincide():
    tr, _ = make_synthetic_shapes(48, 32, seed=0, split="train")
    te, _ = make_synthetic_shapes(48, 32, seed=0, split="test")
    # No test cloud equals (or nearly equals) any train cloud.
    d = np.abs(tr[:, None] - te[None]).max(axis=(2, 3))
    assert d.min() > 1e-3
    # And the test stream of seed s is not the train stream of another small seed.
    for s in range(1, 4):
        other, _ = make_synthetic_shapes(48, 32, seed=s, split="train")
        assert not np.allclose(other, te)


def test_normalised_like_modelnet():
    x, _ = make_synthetic_shapes(40, 256, seed=1, scale_range=(0.8, 1.0))
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)
    r = np.linalg.norm(x, axis=-1).max(axis=1)
    assert r.min() >= 0.8 - 1e-5 and r.max() <= 1.0 + 1e-5
    assert r.std() > 0.01  # the scale varies between clouds
    x1, _ = make_synthetic_shapes(10, 256, seed=1, scale_range=(1.0, 1.0))
    np.testing.assert_allclose(np.linalg.norm(x1, axis=-1).max(axis=1), 1.0, rtol=1e-5)


def test_random_pose():
    # The normal of a disk (least-variance axis) is z without rotation, anywhere with it.
    def normals(rotate):
        x, y = make_synthetic_shapes(20 * C, 256, seed=2, rotate=rotate, noise_std=0.0)
        d = x[y == SYNTHETIC_CLASSES.index("disk")].astype(np.float64)
        return np.linalg.eigh(np.einsum("bni,bnj->bij", d, d))[1][:, :, 0]

    np.testing.assert_allclose(np.abs(normals(False)[:, 2]), 1.0, atol=1e-6)
    n = normals(True)
    assert np.abs(n[:, 2]).min() < 0.9  # not all aligned with z
    # Uniform directions: |n_z| is uniform on [0, 1], mean 1/2.
    assert 0.3 < np.abs(n[:, 2]).mean() < 0.7


def test_random_rotations_are_uniform_rotations():
    r = random_rotations(np.random.default_rng(0), 4000)
    np.testing.assert_allclose(
        r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape), atol=1e-12
    )
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-12)
    # Haar measure: E[R] = 0 and E[R_ij^2] = 1/3.
    np.testing.assert_allclose(r.mean(0), 0, atol=0.05)
    np.testing.assert_allclose((r**2).mean(0), 1 / 3, atol=0.03)


# ---- raw samplers: geometry before noise/pose/normalisation -----------------------------------


def raw(name, n=4, p=2048, seed=0):
    return synthetic._SAMPLERS[name](np.random.default_rng(seed), n, p)


def test_sphere_and_ellipsoid_geometry():
    np.testing.assert_allclose(np.linalg.norm(raw("sphere"), axis=-1), 1.0, rtol=1e-12)
    e = raw("ellipsoid")
    ax = np.abs(e).max(axis=1)  # half axes, per cloud
    assert np.all(ax[:, 0] > 0.95) and np.all(ax[:, 2] < 0.61) and np.all(ax[:, 1] < 0.86)
    np.testing.assert_allclose(((e / ax[:, None]) ** 2).sum(-1), 1.0, atol=0.02)


def test_cube_surface():
    c = raw("cube")
    np.testing.assert_allclose(np.abs(c).max(axis=-1), 1.0)
    # Six faces equally likely.
    face = np.argmax(np.abs(c), -1) * 2 + (
        np.take_along_axis(c, np.argmax(np.abs(c), -1)[..., None], -1)[..., 0] < 0
    )
    frac = np.bincount(face.ravel(), minlength=6) / face.size
    np.testing.assert_allclose(frac, 1 / 6, atol=0.02)


def test_cylinder_surface_area_weighted():
    cyl = raw("cylinder", n=3, p=8000)
    r = np.linalg.norm(cyl[..., :2], axis=-1)
    h = np.abs(cyl[..., 2]).max(axis=1, keepdims=True)
    on_side = np.isclose(r, 1.0)
    on_cap = np.isclose(np.abs(cyl[..., 2]), h) & (r <= 1 + 1e-9)
    assert np.all(on_side | on_cap)
    expected_side = (4 * np.pi * h[:, 0]) / (4 * np.pi * h[:, 0] + 2 * np.pi)
    np.testing.assert_allclose(on_side.mean(axis=1), expected_side, atol=0.03)


def _apex_height(z, d):
    """Least-squares h of z = h (1 - d) (lateral surface of a cone/pyramid), per cloud."""
    w = 1 - d
    return (z * w).sum(1, keepdims=True) / (w * w).sum(1, keepdims=True)


def test_cone_and_pyramid_surfaces():
    for name, dist in (
        ("cone", lambda q: np.linalg.norm(q[..., :2], axis=-1)),
        ("pyramid", lambda q: np.abs(q[..., :2]).max(axis=-1)),
    ):
        k = raw(name)
        d, z = dist(k), k[..., 2]
        base = z == 0  # the base is drawn exactly in the plane z = 0
        assert np.all(d[base] <= 1 + 1e-12)
        assert 0.1 < base.mean() < 0.5
        lat_z, lat_d = np.where(base, 0, z), np.where(base, 1, d)
        h = _apex_height(lat_z, lat_d)
        np.testing.assert_allclose(lat_z, h * (1 - lat_d), atol=1e-9)


def test_torus_disk_annulus():
    t = raw("torus")
    tube = np.sqrt((np.linalg.norm(t[..., :2], axis=-1) - 1) ** 2 + t[..., 2] ** 2)
    np.testing.assert_allclose(tube, tube[:, :1].repeat(tube.shape[1], 1), rtol=1e-9)
    assert np.all((tube[:, 0] >= 0.25) & (tube[:, 0] <= 0.5))
    d, a = raw("disk"), raw("annulus")
    assert np.all(d[..., 2] == 0) and np.all(a[..., 2] == 0)
    rd, ra = np.linalg.norm(d, axis=-1), np.linalg.norm(a, axis=-1)
    assert rd.max() <= 1 and rd.min() < 0.1
    assert np.all(ra.min(axis=1) >= 0.3 - 1e-9) and ra.max() <= 1 + 1e-12


def test_capsule_and_dumbbell_are_closed_shapes():
    c = raw("capsule")
    r = np.linalg.norm(c[..., :2], axis=-1)
    # Surface at distance 1 from the z segment [-h, h]; cap points give h = |z| - sqrt(1 - r^2).
    h = (np.abs(c[..., 2]) - np.sqrt(np.clip(1 - r**2, 0, None))).max(axis=1, keepdims=True)
    dz = np.clip(np.abs(c[..., 2]) - h, 0, None)
    np.testing.assert_allclose(np.sqrt(r**2 + dz**2), 1.0, atol=1e-9)
    assert np.all((h > 0.4 - 1e-9) & (h < 1.2 + 1e-9))
    db = raw("dumbbell")
    zr = np.abs(db[..., 2])
    # Two balls far out on z and a thin bar in between.
    assert np.all(np.linalg.norm(db[..., :2], axis=-1) <= 0.65 + 1e-9)
    assert np.all(zr.max(axis=1) > 1.6)


def test_learnable_by_a_trivial_feature():
    """Rotation-invariant radial histograms + inertia spectrum, nearest centroid: far above
    chance (1/12), yet far from perfect (the task is not trivial)."""

    def feats(x):
        r = np.linalg.norm(x, axis=-1)
        h = np.stack([np.histogram(ri, bins=12, range=(0, 1))[0] for ri in r]) / x.shape[1]
        ev = np.linalg.eigvalsh(np.einsum("bni,bnj->bij", x, x) / x.shape[1])
        return np.concatenate([h, ev], 1)

    x, y = make_synthetic_shapes(40 * C, 256, seed=0)
    xt, yt = make_synthetic_shapes(15 * C, 256, seed=0, split="test")
    f, ft = feats(x), feats(xt)
    cent = np.stack([f[y == k].mean(0) for k in range(C)])
    acc = np.mean(np.argmin(((ft[:, None] - cent[None]) ** 2).sum(-1), 1) == yt)
    assert 0.35 < acc < 0.95


def test_fast_enough():
    t = time.perf_counter()
    make_synthetic_shapes(2000, 1024, seed=0)
    assert time.perf_counter() - t < 10.0


@pytest.mark.parametrize(
    "kwargs,exc",
    [
        (dict(num_samples=0, num_points=8), ValueError),
        (dict(num_samples=4, num_points=0), ValueError),
        (dict(num_samples=4.0, num_points=8), TypeError),
        (dict(num_samples=4, num_points=8, split="valid"), ValueError),
        (dict(num_samples=4, num_points=8, noise_std=-1.0), ValueError),
        (dict(num_samples=4, num_points=8, scale_range=(1.0, 0.5)), ValueError),
    ],
)
def test_bad_arguments(kwargs, exc):
    with pytest.raises(exc):
        make_synthetic_shapes(**kwargs)


def test_occlusion_cuts_a_half_space():
    rng = np.random.default_rng(0)
    pts = synthetic._SAMPLERS["sphere"](rng, 50, 400)
    kept = synthetic._occlude(np.random.default_rng(1), pts, 200, 0.5)
    assert kept.shape == (50, 200, 3)
    for a, b in zip(pts, kept, strict=True):  # every kept point is one of the cloud's points
        assert np.isin(b.view("V24"), a.view("V24")).all()
    # Cutting a cap off a sphere moves the centroid away from the centre, on average.
    assert (
        np.linalg.norm(kept.mean(1), axis=-1).mean()
        > 3 * np.linalg.norm(pts[:, :200].mean(1), axis=-1).mean()
    )
    # Occlusion 0 keeps the first points, untouched.
    np.testing.assert_array_equal(synthetic._occlude(rng, pts, 200, 0.0), pts[:, :200])


def test_stretch_adds_shape_variation():
    def flatness(**kw):
        x, y = make_synthetic_shapes(10 * C, 512, seed=0, noise_std=0.0, occlusion=0.0, **kw)
        s = x[y == SYNTHETIC_CLASSES.index("sphere")].astype(np.float64)
        ev = np.linalg.eigvalsh(np.einsum("bni,bnj->bij", s, s))
        return ev[:, 0] / ev[:, 2]  # 1 for a round sphere

    assert flatness(stretch=1.0).min() > 0.8
    assert flatness(stretch=1.5).min() < 0.6


@pytest.mark.parametrize("kw", [dict(occlusion=1.0), dict(occlusion=-0.1), dict(stretch=0.5)])
def test_bad_occlusion_or_stretch(kw):
    with pytest.raises(ValueError):
        make_synthetic_shapes(4, 8, **kw)
