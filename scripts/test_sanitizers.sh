#!/usr/bin/env bash
# Build bingnn._native with AddressSanitizer + UndefinedBehaviorSanitizer and run the native
# kernel, bindings, fuzz and engine parity tests against it. Any finding stops the run with a
# report and a non-zero exit (UBSan is built with -fno-sanitize-recover, ASan aborts on error).
#
#   bash scripts/test_sanitizers.sh     # about 5 minutes on 2 cores
#
# Needs the system C++ compiler (GCC; its libasan/libubsan come with it), python3 with
# pybind11 and the README's install. Python itself is not instrumented: libasan is preloaded
# (LD_PRELOAD) so it comes first, with libstdc++ (ASan's exception interceptor needs the real
# __cxa_throw at start-up, and python itself does not load libstdc++), and leak detection is off (the interpreter keeps memory until
# exit by design, which LeakSanitizer would report).
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
WORK=$(mktemp -d /tmp/bingnn-san.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
T0=$SECONDS
say() { printf '[sanitizers %4ds] %s\n' $((SECONDS - T0)) "$*"; }

CXX=${CXX:-g++}
FLAGS=$(python3 -c "import runpy; print(' '.join(f for f in runpy.run_path('setup.py', run_name='flags')['COMPILE_ARGS'] if not f.startswith('-O')))")
SAN="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g -O1"
PYBIND=$(python3 -c "import pybind11; print(pybind11.get_include())")
PYINC=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
SUFFIX=$(python3 -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")

say "building bingnn._native with $SAN"
mkdir -p "$WORK/obj" "$WORK/stage"
export CXX FLAGS SAN PYBIND PYINC WORK
ls csrc/*.cpp | xargs -P "$(nproc)" -I{} sh -c '$CXX $FLAGS $SAN -std=c++17 -fPIC \
    -fvisibility=hidden -Icsrc -I"$PYBIND" -I"$PYINC" -c {} -o "$WORK/obj/$(basename {} .cpp).o"'
cp -r src/bingnn "$WORK/stage/"
find "$WORK/stage" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
$CXX $SAN -shared -o "$WORK/stage/bingnn/_native$SUFFIX" "$WORK"/obj/*.o

ASAN_LIB=$($CXX -print-file-name=libasan.so)
STDCXX_LIB=$($CXX -print-file-name=libstdc++.so)
[ -f "$ASAN_LIB" ] || { echo "libasan.so not found for $CXX" >&2; exit 1; }
say "running the native tests under ASan + UBSan"
# The sanitizer reports go to a log (and stderr) that is checked afterwards as well: a report
# from a subprocess or a worker thread must fail the run too.
LOG=$WORK/san
status=0
env LD_PRELOAD="$ASAN_LIB $STDCXX_LIB" PYTHONPATH="$WORK/stage" OMP_NUM_THREADS=2 \
    ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:log_path=$LOG" \
    UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$LOG" \
    python3 -m pytest -q -p no:cacheprovider -m "not slow and not install" \
    tests/test_engine_kernels.py tests/test_native_bindings.py tests/test_engine_fuzz.py \
    tests/test_engine_float_kernels.py tests/test_engine_kernels_torch.py \
    tests/test_engine_parity.py tests/test_engine_graph_kernels.py \
    tests/test_engine_node_parity.py tests/test_model_file_fuzz.py \
    tests/test_engine_shortcut.py tests/test_nn_pm1_matmul.py tests/test_nn_train_kernels.py \
    tests/test_distill_lsp_pairs.py \
    || status=$?
if ls "$LOG".* >/dev/null 2>&1; then
    cat "$LOG".*
    echo "FAIL: sanitizer reports above" >&2
    exit 1
fi
[ "$status" = 0 ] || { echo "FAIL: the tests failed (exit $status)" >&2; exit "$status"; }
say "no sanitizer findings ($((SECONDS - T0)) s)"
