#!/usr/bin/env bash
# Build bingnn._native for ARM64 (AArch64, NEON) on an x86-64 Debian machine and test it under
# qemu-user: the numpy-only kernel, bindings and fuzz tests at every level the emulated CPU has
# (scalar and neon), the dispatch override, and a golden check of the real-valued kernels and
# of whole BF1/BF2/RF models against this machine's engine and PyTorch (scripts/arm64_golden.py).
#
#   bash scripts/test_arm64.sh          # 2.5-4.5 min on 2 cores (+1-2 min the first time)
#
# Needs: Debian 12 (bookworm) or a derivative with apt, root for the one-time install of
# g++-aarch64-linux-gnu and qemu-user-static (done here when missing), python3 with pybind11,
# numpy, torch and the bingnn checkout's dependencies (the README's install). ARM64 Python 3.11,
# numpy, pytest and hypothesis come from Debian's arm64 packages, unpacked (not installed) into
# a private root, $BINGNN_ARM64_CACHE (default ~/.cache/bingnn-arm64), reused by later runs.
# Files of one run go to a temporary folder, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
CACHE=${BINGNN_ARM64_CACHE:-$HOME/.cache/bingnn-arm64}
ROOT=$CACHE/root
WORK=$(mktemp -d /tmp/bingnn-arm64.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
T0=$SECONDS
say() { printf '[arm64 %4ds] %s\n' $((SECONDS - T0)) "$*"; }

# ---------------------------------------------------------------- 1. cross toolchain and qemu
QEMU=$(command -v qemu-aarch64-static || command -v qemu-aarch64 || true)
if ! command -v aarch64-linux-gnu-g++ >/dev/null || [ -z "$QEMU" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "need g++-aarch64-linux-gnu and qemu-user-static: run as root or install them" >&2
        exit 1
    fi
    say "installing g++-aarch64-linux-gnu and qemu-user-static"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        g++-aarch64-linux-gnu qemu-user-static >/dev/null
    QEMU=$(command -v qemu-aarch64-static)
fi

# ---------------------------------------------------------------- 2. the arm64 Python root
# Debian arm64 packages (bookworm: Python 3.11.2, numpy 1.24.2, pytest 7.2, hypothesis 6.67).
PKGS_ARM64="libc6 libgcc-s1 libstdc++6 libpython3.11-minimal libpython3.11-stdlib
    python3.11-minimal libpython3.11-dev libexpat1 zlib1g libffi8 libssl3 libbz2-1.0 liblzma5
    libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libuuid1 libcrypt1 libdb5.3 libnsl2
    libtirpc3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
    python3-numpy libblas3 liblapack3 libgfortran5"
PKGS_ALL="python3-pytest python3-attr python3-more-itertools python3-pkg-resources
    python3-pluggy python3-py python3-iniconfig python3-packaging python3-hypothesis
    python3-dateutil python3-six python3-sortedcontainers"
STAMP="$ROOT/.bingnn-root-$(echo $PKGS_ARM64 $PKGS_ALL | md5sum | cut -c1-12)"
if [ ! -f "$STAMP" ]; then
    say "unpacking Debian arm64 Python, numpy, pytest and hypothesis into $ROOT"
    if ! dpkg --print-foreign-architectures | grep -qx arm64; then
        [ "$(id -u)" = 0 ] || { echo "need root to add the arm64 package architecture" >&2; exit 1; }
        dpkg --add-architecture arm64
        apt-get update -qq
    fi
    if ! apt-cache show python3-numpy:arm64 >/dev/null 2>&1; then apt-get update -qq; fi
    rm -rf "$ROOT" "$CACHE/debs"
    mkdir -p "$ROOT" "$CACHE/debs"
    (cd "$CACHE/debs" && apt-get download -qq $(for p in $PKGS_ARM64; do echo "$p:arm64"; done) \
        $PKGS_ALL 2>&1 | grep -v "^W: Download is performed unsandboxed" || true)
    for deb in "$CACHE"/debs/*.deb; do dpkg-deb -x "$deb" "$ROOT"; done
    # What the packages' install scripts would do: the BLAS/LAPACK alternatives.
    ln -sf blas/libblas.so.3 "$ROOT/usr/lib/aarch64-linux-gnu/libblas.so.3"
    ln -sf lapack/liblapack.so.3 "$ROOT/usr/lib/aarch64-linux-gnu/liblapack.so.3"
    rm -rf "$CACHE/debs"
    touch "$STAMP"
fi
PY_ARM64=$ROOT/usr/bin/python3.11
run_arm64() {
    env -u PYTHONDONTWRITEBYTECODE -u PYTHONHOME PYTHONPATH="$WORK/stage" \
        PYTHONPYCACHEPREFIX="$CACHE/pycache" OMP_NUM_THREADS=2 \
        "$QEMU" -L "$ROOT" "$PY_ARM64" -s "$@"
}

# ---------------------------------------------------------------- 3. cross-compile
say "cross-compiling bingnn._native for aarch64"
FLAGS=$(python3 -c "import runpy; print(' '.join(runpy.run_path('setup.py', run_name='flags')['COMPILE_ARGS']))")
PYBIND=$(python3 -c "import pybind11; print(pybind11.get_include())")
mkdir -p "$WORK/obj" "$WORK/stage"
export FLAGS PYBIND ROOT WORK
ls csrc/*.cpp | xargs -P "$(nproc)" -I{} sh -c 'aarch64-linux-gnu-g++ $FLAGS -std=c++17 -fPIC \
    -fvisibility=hidden -Wall -Werror -Wno-unused-variable -Icsrc -I"$PYBIND" \
    -I"$ROOT/usr/include/python3.11" -I"$ROOT/usr/include" -c {} -o "$WORK/obj/$(basename {} .cpp).o"'
cp -r src/bingnn "$WORK/stage/"
find "$WORK/stage" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
SO=$WORK/stage/bingnn/_native.cpython-311-aarch64-linux-gnu.so
aarch64-linux-gnu-g++ -shared -o "$SO" "$WORK"/obj/*.o

# -ffp-contract=off: the compiler fuses no a * b + c by itself. The only fused multiply-adds in
# the real-valued kernels are the explicit std::fma calls, which AArch64 compiles to fmadd; the
# same file built without the flag contracts more (the squared norm, the distance), so the
# count below is a real check of the flag.
count_fmadd() { aarch64-linux-gnu-objdump -d "$1" | grep -cE '\sfn?m(add|sub)\s' || true; }
aarch64-linux-gnu-g++ -O3 -std=c++17 -fPIC -Icsrc -c csrc/engine_float.cpp -o "$WORK/contract.o"
WITH=$(count_fmadd "$WORK/obj/engine_float.o")
WITHOUT=$(count_fmadd "$WORK/contract.o")
say "engine_float.o: $WITH fused multiply-adds with $FLAGS, $WITHOUT with GCC's default contraction"
if ! [ "$WITH" -lt "$WITHOUT" ]; then
    echo "FAIL: -ffp-contract=off did not reduce the fused multiply-adds" >&2
    exit 1
fi

# ---------------------------------------------------------------- 4. golden data (this machine)
say "golden inputs and outputs from the x86-64 engine and PyTorch"
PYTHONPATH="$REPO/src" OMP_NUM_THREADS=1 python3 scripts/arm64_golden.py make "$WORK/golden.npz"

# ---------------------------------------------------------------- 5. run under qemu
say "ARM64: cpu features and the BINGNN_DISPATCH override"
run_arm64 -c "
import bingnn.engine.kernels as K
f = K.cpu_features()
print('  ', {k: f[k] for k in ('arch', 'levels', 'best', 'default_threads')})
assert f['arch'] == 'aarch64' and f['levels'] == ['scalar', 'neon'] and f['best'] == 'neon', f
"
[ "$(BINGNN_DISPATCH=scalar run_arm64 -c 'import bingnn.engine.kernels as K; print(K.get_dispatch())')" = scalar ]
if BINGNN_DISPATCH=avx512 run_arm64 -c "import bingnn.engine" 2>"$WORK/err"; then
    echo "FAIL: BINGNN_DISPATCH=avx512 was accepted on ARM64" >&2; exit 1
fi
grep -q "BINGNN_DISPATCH=avx512: dispatch level 'avx512' is not supported" "$WORK/err"

say "ARM64: golden check (kernels and whole models, every level, and the numpy backend)"
run_arm64 scripts/arm64_golden.py check "$WORK/golden.npz"

say "ARM64: pytest (kernels, graph kernels, bindings, fuzz; scalar and neon)"
run_arm64 -m pytest -q -p no:cacheprovider -m "not slow and not install and not spawns" \
    tests/test_engine_kernels.py tests/test_engine_graph_kernels.py \
    tests/test_native_bindings.py tests/test_engine_fuzz.py

say "ARM64 checks passed in $((SECONDS - T0)) s"
