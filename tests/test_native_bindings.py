"""The native second line of defence, the dispatch override and the thread pool, called on
``bingnn._native`` directly (no typed face in between).

Every binding must refuse what it cannot compute with one clear ``ValueError`` (or pybind11's
``TypeError`` for an argument of the wrong type), never read out of bounds, overflow its output
type or return garbage. Numpy only: ``scripts/test_arm64.sh`` runs this module on ARM64 too
(the tests that start a Python subprocess are marked ``spawns``; qemu-user cannot start one).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bingnn import _native
from bingnn.engine import kernels as K

LEVELS = K.cpu_features()["levels"]
SRC = str(Path(K.__file__).resolve().parents[2])


@pytest.fixture(params=LEVELS)
def level(request):
    with K.dispatch(request.param):
        yield request.param


def run_python(code: str, **env: str | None) -> subprocess.CompletedProcess:
    """Run `code` in a fresh interpreter with this checkout first on the path."""
    full = dict(os.environ)
    full["PYTHONPATH"] = SRC + os.pathsep + full.get("PYTHONPATH", "")
    for key, value in env.items():
        if value is None:
            full.pop(key, None)
        else:
            full[key] = value
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=full, timeout=120)


def packed(rows: int, c: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((rows, c)).astype(np.float32)
    return _native.pack_signs(x, 1)


# ----------------------------------------------------------------------------- refusals


def test_gemm_refuses_bit_counts_that_overflow_int32():
    a = np.zeros((2, 1), np.uint64)
    for n_bits in (2**31, 2**40, 2**62):
        with pytest.raises(ValueError, match="overflows the int32 result"):
            _native.binary_gemm(a, a, n_bits, 1)
    with pytest.raises(ValueError, match="overflows"):
        _native.binary_gemm(a, a, -1, 1)


def test_gemm_refuses_padding_bits_and_aliased_output():
    a = packed(3, 70)
    bad = a.copy()
    bad[1, 1] |= np.uint64(1) << np.uint64(6)  # bit 70 of row 1: padding
    with pytest.raises(ValueError, match="padding bits above bit 70"):
        _native.binary_gemm(bad, a, 70, 1)
    with pytest.raises(ValueError, match="b has non-zero padding"):
        _native.binary_gemm(a, bad, 70, 1)
    # An output buffer that is (a view of) an input would be overwritten while being read.
    buf = np.zeros(64, np.uint64)
    a2 = buf[:6].reshape(3, 2)
    out = buf.view(np.int32)[:9].reshape(3, 3)
    with pytest.raises(ValueError, match="shares memory"):
        _native.binary_gemm(a2, a2, 128, 1, out)
    ro = np.zeros((3, 3), np.int32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable C-contiguous int32"):
        _native.binary_gemm(a, a, 70, 1, ro)
    with pytest.raises(ValueError, match="numpy array"):
        _native.binary_gemm(a, a, 70, 1, [[0] * 3] * 3)


def test_word_counts_and_bit_bounds():
    with pytest.raises(ValueError, match="bit count must be in"):
        _native.unpack_signs(np.zeros((1, 1), np.uint64), 2**62, 1)
    with pytest.raises(ValueError, match="need 1 uint64 words, got 2"):
        _native.unpack_signs(np.zeros((1, 2), np.uint64), 5, 1)
    with pytest.raises(ValueError, match="c_in must be in"):
        _native.xor_edge_conv_minmax(np.zeros((1, 2, 1), np.uint64), np.zeros((1, 2, 1), np.int32),
                                     np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64),
                                     2**40, 1)


def test_conv_refuses_padding_bits_in_points_and_weights():
    x = packed(4, 10).reshape(1, 4, 1)
    w = packed(3, 10)
    idx = np.zeros((1, 4, 2), np.int32)
    t, neg = np.zeros(3, np.int32), np.zeros(3, np.uint8)
    dirty = lambda a: a | (np.uint64(1) << np.uint64(63))  # noqa: E731
    with pytest.raises(ValueError, match="x has non-zero padding"):
        _native.xor_edge_conv(dirty(x), idx, w, w, t, t, neg, 10, 1)
    with pytest.raises(ValueError, match="w_rel has non-zero padding"):
        _native.xor_edge_conv_minmax(x, idx, dirty(w), w, 10, 1)
    with pytest.raises(ValueError, match="w_self has non-zero padding"):
        _native.xor_edge_conv_knn(x, 2, w, dirty(w), t, t, neg, 10, 1)


def test_thread_counts_are_checked():
    x = np.ones((2, 3), np.float32)
    for bad in (-1, -100, 1025, 10**6):
        with pytest.raises(ValueError, match=r"num_threads must be in \[0, 1024\]"):
            _native.pack_signs(x, bad)
    with pytest.raises(TypeError):  # does not fit a C int
        _native.pack_signs(x, 2**40)
    with pytest.raises(ValueError, match="num_threads"):
        K.pack_signs(x, num_threads=5000)


def test_select_k_rows_refuses_nan_and_infinities():
    """Reported: select_k_rows([[nan, nan, 1, nan]], 3) returned [2, 0, 0]."""
    for bad in (np.nan, np.inf, -np.inf):
        d = np.array([[bad, bad, 1, bad]], np.float32)
        with pytest.raises(ValueError, match="d contains NaN or infinite"):
            _native.select_k_rows(d, 3, 1)
    np.testing.assert_array_equal(_native.select_k_rows(np.array([[3, 1, 2, 1]], np.float32), 3, 1),
                                  [[1, 3, 2]])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf, 1e19, -3e30])
def test_l2_knn3_refuses_points_whose_distances_are_not_finite(bad):
    x = np.random.default_rng(0).standard_normal((2, 6, 3)).astype(np.float32)
    x[1, 4, 2] = bad
    with pytest.raises(ValueError, match="finite coordinates with"):
        _native.l2_knn3(x, 3, 1)
    x[1, 4, 2] = 1e18  # the largest accepted magnitude: every neighbour list is a permutation
    idx = _native.l2_knn3(x, 6, 1)
    assert (np.sort(idx, axis=-1) == np.arange(6)).all()


def test_float_kernels_refuse_non_finite_inputs_and_half_batchnorm():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 5, 3)).astype(np.float32)
    idx = np.zeros((1, 5, 2), np.int32)
    w = np.ones((4, 6), np.float32)
    s = np.ones(6, np.float32)
    xn = x.copy()
    xn[0, 2, 1] = np.nan
    with pytest.raises(ValueError, match="x contains NaN"):
        _native.edge_conv0_minmax(xn, idx, w, None, None, 1)
    with pytest.raises(ValueError, match="weight contains NaN"):
        _native.edge_conv0_minmax(x, idx, w * np.inf, None, None, 1)
    with pytest.raises(ValueError, match="given together"):
        _native.edge_conv0_minmax(x, idx, w, s, None, 1)
    with pytest.raises(ValueError, match=r"bn_shift must have shape \(6,\)"):
        _native.edge_conv0_minmax(x, idx, w, s, s[:5], 1)
    with pytest.raises(ValueError, match="bn_scale contains NaN"):
        _native.edge_conv0_minmax(x, idx, w, s * np.nan, s, 1)
    with pytest.raises(ValueError, match="bn_scale must be a float32 array"):
        _native.edge_conv0_minmax(x, idx, w, "abc", s, 1)

    y = rng.integers(-5, 5, size=(2, 0, 4)).astype(np.int32)
    one = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="at least one point"):
        _native.embed_pool(y, one, one, None, None, 1)
    y = rng.integers(-5, 5, size=(2, 3, 4)).astype(np.int32)
    with pytest.raises(ValueError, match="alpha contains NaN"):
        _native.embed_pool(y, one * np.nan, one, None, None, 1)
    with pytest.raises(ValueError, match="given together"):
        _native.embed_pool(y, one, one, None, one, 1)

    h = rng.standard_normal((1, 5, 10)).astype(np.float32)
    lo, hi, neg = -np.ones(10, np.float32), np.ones(10, np.float32), np.zeros(10, np.uint8)
    sb, wr = packed(5, 10), packed(3, 10)
    hn = h.copy()
    hn[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="h contains NaN or infinite"):
        _native.rf_edge_minmax(hn, idx, lo, hi, neg, sb, wr, wr, 1)
    lon = lo.copy()
    lon[3] = np.nan
    with pytest.raises(ValueError, match="must not contain NaN"):
        _native.rf_edge_minmax(h, idx, lon, hi, neg, sb, wr, wr, 1)
    lo_off = lo.copy()
    lo_off[3] = -np.inf  # an infinite threshold disables a side: allowed
    _native.rf_edge_minmax(h, idx, lo_off, hi, neg, sb, wr, wr, 1)
    with pytest.raises(ValueError, match="self_bits has non-zero padding"):
        _native.rf_edge_minmax(h, idx, lo, hi, neg, sb | np.uint64(1 << 40), wr, wr, 1)


def test_wrong_dtypes_and_ranks_are_type_or_value_errors():
    x = np.zeros((2, 3), np.float64)  # no silent float64 -> float32 cast in the native layer
    with pytest.raises(TypeError, match="incompatible function arguments"):
        _native.pack_signs(x, 1)
    with pytest.raises(TypeError):
        _native.binary_gemm(np.zeros((2, 1), np.int64), np.zeros((2, 1), np.int64), 10, 1)
    with pytest.raises(ValueError, match="expects"):
        _native.hamming_knn(np.zeros((2, 1), np.uint64), 1, 1)
    with pytest.raises(ValueError, match="1 <= k <= N"):
        _native.hamming_knn(np.zeros((1, 3, 1), np.uint64), 4, 1)
    with pytest.raises(ValueError, match="at most 1023 words"):
        _native.hamming_knn(np.zeros((1, 3, 1024), np.uint64), 1, 1)
    with pytest.raises(ValueError, match="outside"):
        _native.xor_edge_conv_minmax(np.zeros((1, 2, 1), np.uint64),
                                     np.full((1, 2, 1), -1, np.int32),
                                     np.zeros((1, 1), np.uint64), np.zeros((1, 1), np.uint64),
                                     10, 1)


def test_strided_fortran_and_read_only_inputs_give_the_contiguous_result(level):
    rng = np.random.default_rng(2)
    base = rng.standard_normal((90, 70)).astype(np.float32)
    for view in (base[::2], np.asfortranarray(base), base[:, ::-1], base.T.copy().T):
        view = view.copy() if not view.flags.c_contiguous and view is base else view
        ro = np.array(view)
        ro.flags.writeable = False
        want = _native.pack_signs(np.ascontiguousarray(view), 1)
        np.testing.assert_array_equal(_native.pack_signs(view, 2), want)
        np.testing.assert_array_equal(_native.pack_signs(ro, 2), want)
    p = _native.pack_signs(base, 1)
    want = _native.binary_gemm(p, p[:7], 70, 1)
    np.testing.assert_array_equal(_native.binary_gemm(np.asfortranarray(p), p[:7][::-1][::-1],
                                                      70, 2), want)


def test_empty_inputs():
    assert _native.pack_signs(np.zeros((0, 5), np.float32), 1).shape == (0, 1)
    assert _native.pack_signs(np.zeros((3, 0), np.float32), 1).shape == (3, 0)
    assert _native.unpack_signs(np.zeros((0, 1), np.uint64), 5, 1).shape == (0, 5)
    assert _native.binary_gemm(np.zeros((0, 1), np.uint64), np.zeros((4, 1), np.uint64), 3,
                               1).shape == (0, 4)
    assert _native.binary_gemm(np.zeros((2, 0), np.uint64), np.zeros((4, 0), np.uint64), 0,
                               1).tolist() == [[0] * 4] * 2
    assert _native.select_k_rows(np.zeros((0, 4), np.float32), 2, 1).shape == (0, 2)
    assert _native.l2_knn3(np.zeros((0, 4, 3), np.float32), 2, 1).shape == (0, 4, 2)


# ----------------------------------------------------------------------------- dispatch


def test_dispatch_names_and_call_counts():
    f = K.cpu_features()
    assert set(f["levels"]) <= set(f["compiled_levels"]) <= {"scalar", "avx2", "avx512", "neon"}
    assert f["arch"] in ("x86_64", "aarch64", "other")
    with pytest.raises(ValueError, match="unknown dispatch level 'sse9'"):
        K.set_dispatch("sse9")
    missing = [lvl for lvl in ("avx2", "avx512", "neon") if lvl not in f["levels"]]
    for name in missing:
        with pytest.raises(ValueError, match="is not supported by this (CPU|build)"):
            K.set_dispatch(name)
    for lvl in f["levels"]:
        before = _native.dispatch_calls()[lvl]
        with K.dispatch(lvl):
            K.pack_signs(np.ones((2, 3), np.float32))
        assert _native.dispatch_calls()[lvl] == before + 1


@pytest.mark.spawns
def test_bingnn_dispatch_environment_variable():
    f = K.cpu_features()
    for lvl in f["levels"]:
        res = run_python("import bingnn.engine.kernels as K; print(K.get_dispatch())",
                         BINGNN_DISPATCH=lvl.upper())
        assert res.returncode == 0 and res.stdout.strip() == lvl, res.stderr
    res = run_python("import bingnn.engine", BINGNN_DISPATCH="avx9")
    assert res.returncode != 0
    assert "ImportError: BINGNN_DISPATCH=avx9: unknown dispatch level 'avx9'" in res.stderr
    # The engine must not fall back to the numpy reference behind a bad setting.
    missing = [lvl for lvl in ("avx2", "avx512", "neon") if lvl not in f["levels"]]
    for lvl in missing:
        res = run_python("import bingnn.engine", BINGNN_DISPATCH=lvl)
        assert res.returncode != 0
        assert f"BINGNN_DISPATCH={lvl}: dispatch level '{lvl}' is not supported" in res.stderr


# ----------------------------------------------------------------------------- thread pool


def test_pool_is_persistent_and_every_index_runs_once():
    _native._parallel_check(64, 3)
    workers = _native._pool_workers()
    assert workers >= 2  # 3 threads = the caller + 2 pool workers
    helped = 0
    for _ in range(20):
        threads, once = _native._parallel_check(97, 3)
        assert once
        helped = max(helped, threads)
    assert _native._pool_workers() == workers  # no thread created per call
    assert helped >= 2  # the workers did take part
    threads, once = _native._parallel_check(5, 1)
    assert once and threads == 1  # num_threads = 1: the caller alone


def test_pool_propagates_a_worker_exception_and_keeps_working():
    for at in (0, 50, 99):
        with pytest.raises(RuntimeError, match=f"chunk failed at index {at}"):
            _native._parallel_check(100, 4, 1, at)
    threads, once = _native._parallel_check(100, 4)
    assert once and 1 <= threads <= 4


def test_concurrent_callers_share_the_pool():
    import threading

    rng = np.random.default_rng(3)
    a = _native.pack_signs(rng.standard_normal((300, 200)).astype(np.float32), 1)
    want = _native.binary_gemm(a, a, 200, 1)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            for _ in range(5):
                np.testing.assert_array_equal(_native.binary_gemm(a, a, 200, 3), want)
        except BaseException as e:  # noqa: BLE001 - re-raised in the main thread
            errors.append(e)

    threads = [threading.Thread(target=call) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_builds_its_own_pool():
    a = packed(200, 130)
    want = _native.binary_gemm(a, a, 130, 4)  # the parent's pool has workers now
    pid = os.fork()
    if pid == 0:  # child: the parent's workers do not exist here
        ok = False
        try:
            ok = bool((_native.binary_gemm(a, a, 130, 4) == want).all())
        finally:
            os._exit(0 if ok else 1)
    deadline = time.monotonic() + 120
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            pytest.fail("the forked child hung in a kernel call")
        time.sleep(0.05)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


@pytest.mark.spawns
def test_thread_creation_failure_falls_back_to_fewer_threads():
    code = (
        "import numpy as np, bingnn._native as n\n"
        "n._set_spawn_limit(1)\n"
        "t, once = n._parallel_check(64, 8)\n"
        "x = n.pack_signs(np.ones((300, 70), np.float32), 8)\n"
        "assert once and n._pool_workers() == 1 and t <= 2, (t, n._pool_workers())\n"
        "print('ok')\n"
    )
    res = run_python(code)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr


@pytest.mark.spawns
def test_default_thread_count_honours_omp_num_threads_and_affinity():
    code = ("import bingnn._native as n; f = n.cpu_features(); "
            "print(f['default_threads'], f['threads_source'])")
    res = run_python(code, OMP_NUM_THREADS="3")
    assert res.stdout.split() == ["3", "OMP_NUM_THREADS"], res.stderr
    res = run_python(code, OMP_NUM_THREADS="5,2")  # nested-level list: the first level counts
    assert res.stdout.split() == ["5", "OMP_NUM_THREADS"], res.stderr
    if hasattr(os, "sched_setaffinity"):
        cpu = sorted(os.sched_getaffinity(0))[0]
        res = run_python(f"import os; os.sched_setaffinity(0, {{{cpu}}}); " + code,
                         OMP_NUM_THREADS=None)
        assert res.stdout.split()[0] == "1", res.stderr
        assert res.stdout.split()[1] in ("affinity", "cgroup")


def test_cgroup_quota_parser(tmp_path: Path):
    def write(rel: str, text: str) -> None:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)

    root = str(tmp_path)
    # cgroup v2: the smallest quota on the way up, rounded up.
    write("a/b/cpu.max", "150000 100000\n")
    assert _native._cgroup_cpu_limit(root, "0::/a/b\n") == 2
    write("a/cpu.max", "100000 100000\n")
    assert _native._cgroup_cpu_limit(root, "0::/a/b\n") == 1
    write("a/cpu.max", "max 100000\n")
    write("a/b/cpu.max", "max 100000\n")
    assert _native._cgroup_cpu_limit(root, "0::/a/b\n") == 0
    write("cpu.max", "400000 100000\n")  # a path the container cannot see: the mount root
    assert _native._cgroup_cpu_limit(root, "0::/elsewhere\n") == 4
    # cgroup v1 (cpu,cpuacct mount), quota -1 = none.
    write("cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    write("cpu,cpuacct/cpu.cfs_quota_us", "-1\n")
    write("cpu,cpuacct/x/cpu.cfs_period_us", "100000\n")
    write("cpu,cpuacct/x/cpu.cfs_quota_us", "250000\n")
    text = "5:memory:/x\n4:cpu,cpuacct:/x\n"
    assert _native._cgroup_cpu_limit(root, text) == 3
    assert _native._cgroup_cpu_limit(root, "4:cpuacct:/x\n") == 0  # no cpu controller
    assert _native._cgroup_cpu_limit(root, "garbage\n\n1\n") == 0


def unaligned(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of `a` at an odd byte offset (numpy keeps such views as they are)."""
    buf = np.zeros(a.nbytes + 1, np.uint8)
    view = buf[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert view.flags.c_contiguous and not view.flags.aligned
    return view


def test_misaligned_views_are_refused_natively_and_copied_by_the_face():
    x = np.random.default_rng(4).standard_normal((5, 70)).astype(np.float32)
    with pytest.raises(ValueError, match="x is not aligned to its element size"):
        _native.pack_signs(unaligned(x), 1)
    p = _native.pack_signs(x, 1)
    with pytest.raises(ValueError, match="b is not aligned"):
        _native.binary_gemm(p, unaligned(p), 70, 1)
    with pytest.raises(ValueError, match="d is not aligned"):
        _native.select_k_rows(unaligned(x), 2, 1)
    np.testing.assert_array_equal(K.pack_signs(unaligned(x)), p)
    np.testing.assert_array_equal(K.binary_gemm(unaligned(p), p, 70),
                                  _native.binary_gemm(p, p, 70, 1))
