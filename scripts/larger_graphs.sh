#!/usr/bin/env bash
# The "Larger real graphs" table of docs/results.md: Facebook Page-Page and Actor, seeds 0-9,
# float GCN/GraphSAGE (stage 0 of each cascade), fully binary BinGCN/BinSAGE from scratch
# (train-node) and distilled (stage 3 of distill-node), one torch thread.
#
#   bash scripts/larger_graphs.sh [SHARED_DATA] [OUT] [ONLY]
#
# Defaults: ../shared/data, runs/larger, every run; ONLY, a regular expression, keeps the runs
# whose name matches it (e.g. '^actor-' runs the Actor part alone).
# Each command resumes where it stopped when run again. Then `bingnn report OUT/<run>` renders
# a run's table.
set -euo pipefail
# The whole script is one compound command, read before it runs: these runs take hours, and
# bash reads a plain script as it goes, so editing it meanwhile would corrupt the run.
{
DATA=${1:-../shared/data}
OUT=${2:-runs/larger}
ONLY=${3:-}
export OMP_NUM_THREADS=1
COMMON=(--root "$OUT/data" --seeds 10 --threads 1 --no-progress)

# shellcheck source=scripts/node_runs.sh
source "$(dirname "$0")/node_runs.sh"

run fb-bingcn-distill bingnn distill-node --dataset facebook --model bingcn \
  --raw-dir "$DATA/facebook" "${COMMON[@]}" --out "$OUT/fb-bingcn-distill"
run fb-binsage-distill bingnn distill-node --dataset facebook --model binsage \
  --raw-dir "$DATA/facebook" "${COMMON[@]}" --out "$OUT/fb-binsage-distill"
# BinSAGE whose hidden aggregation is a majority vote of the neighbours' signs (the engine's
# fast path; not trained from scratch)
run fb-binsage-signs-distill bingnn distill-node --dataset facebook --model binsage \
  --sign-messages --raw-dir "$DATA/facebook" "${COMMON[@]}" --out "$OUT/fb-binsage-signs-distill"
# from scratch: as many epochs as stage 3 of the cascade (the recipe's [stage3] epochs)
run fb-bingcn-scratch bingnn train-node --dataset facebook --model bingcn --epochs 50 \
  --raw-dir "$DATA/facebook" "${COMMON[@]}" --out "$OUT/fb-bingcn-scratch"
run fb-binsage-scratch bingnn train-node --dataset facebook --model binsage --epochs 50 \
  --raw-dir "$DATA/facebook" "${COMMON[@]}" --out "$OUT/fb-binsage-scratch"
run actor-binsage-distill bingnn distill-node --dataset actor --model binsage \
  --raw-dir "$DATA/actor" "${COMMON[@]}" --out "$OUT/actor-binsage-distill"
run actor-bingcn-distill bingnn distill-node --dataset actor --model bingcn \
  --raw-dir "$DATA/actor" "${COMMON[@]}" --out "$OUT/actor-bingcn-distill"
run actor-binsage-scratch bingnn train-node --dataset actor --model binsage --epochs 100 \
  --raw-dir "$DATA/actor" "${COMMON[@]}" --out "$OUT/actor-binsage-scratch"
run actor-bingcn-scratch bingnn train-node --dataset actor --model bingcn --epochs 100 \
  --raw-dir "$DATA/actor" "${COMMON[@]}" --out "$OUT/actor-bingcn-scratch"
# the float rows are stage 0 of the cascades; train-node trains the same model (same recipe
# settings, same seed): check it on seed 0 of each data set
for ds in facebook actor; do
  run "$ds-gcn-seed0" bingnn train-node --dataset "$ds" --model gcn --raw-dir "$DATA/$ds" \
    --root "$OUT/data" --seeds 1 --threads 1 --no-progress --out "$OUT/$ds-gcn-seed0"
done
exit
}
