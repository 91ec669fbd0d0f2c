#!/usr/bin/env bash
# The checks that need a CUDA device, as one script for a GPU machine: build and install
# bingnn into that machine's Python (no downloads: its PyTorch, PyG, numpy stay), run the CUDA
# tests (tests/test_cuda.py) and the recipe wall-time benchmark (fp32 and bf16, 1 and 8
# processes). Usage: scripts/gpu_check.sh OUT_DIR; logs and walltime.json land in OUT_DIR.
set -u
out=${1:?usage: scripts/gpu_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 NPY_NUM_BUILD_JOBS=${NPY_NUM_BUILD_JOBS:-16}
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
"$py" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
if ! "$py" -m pip install -q --no-build-isolation --no-deps -e . >"$out/install.log" 2>&1; then
    tail -40 "$out/install.log"
    exit 1
fi
status=0
"$py" -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tee "$out/test_cuda.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
timeout "${WALLTIME_LIMIT:-330}" "$py" benchmarks/bench_recipe_walltime.py --device cuda --bf16 \
    --processes 1,8 --out "$out/walltime.json" 2>&1 | tee "$out/walltime.log"
[ "${PIPESTATUS[0]}" = 0 ] || status=1
exit $status
