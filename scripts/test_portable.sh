#!/usr/bin/env bash
# Build the portable extension (BINGNN_PORTABLE_ONLY=1: the scalar path alone, no SIMD code)
# through setup.py, check that it is what was built, and run the native and engine tests on it.
#
#   bash scripts/test_portable.sh       # about 3 minutes on 2 cores
set -euo pipefail
cd "$(dirname "$0")/.."
WORK=$(mktemp -d /tmp/bingnn-portable.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
T0=$SECONDS

BINGNN_PORTABLE_ONLY=1 python3 setup.py -q build_ext --build-lib "$WORK/lib" \
    --build-temp "$WORK/tmp" >/dev/null
cp -r src/bingnn "$WORK/lib/bingnn.src"
find "$WORK/lib/bingnn.src" \( -name '*.so' -o -name __pycache__ \) -prune -exec rm -rf {} +
cp "$WORK"/lib/bingnn/_native*.so "$WORK/lib/bingnn.src/"
mkdir -p "$WORK/stage" && mv "$WORK/lib/bingnn.src" "$WORK/stage/bingnn"

export PYTHONPATH=$WORK/stage
python3 -c "
import bingnn.engine.kernels as K
f = K.cpu_features()
assert f['portable_only'] and f['compiled_levels'] == ['scalar'] == f['levels'], f
print('portable build:', f['arch'], 'levels', f['compiled_levels'])
"
python3 -m pytest -q -p no:cacheprovider -m "not slow and not install" tests/test_engine_kernels.py \
    tests/test_native_bindings.py tests/test_engine_fuzz.py tests/test_engine_float_kernels.py \
    tests/test_engine_kernels_torch.py tests/test_engine_parity.py \
    tests/test_engine_graph_kernels.py tests/test_engine_node_parity.py \
    tests/test_engine_shortcut.py tests/test_nn_pm1_matmul.py tests/test_distill_lsp_pairs.py
echo "[portable] passed in $((SECONDS - T0)) s"
