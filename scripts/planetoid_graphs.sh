#!/usr/bin/env bash
# The Planetoid table of docs/results.md: Cora and CiteSeer, seeds 0-9, float GCN/GraphSAGE
# (stage 0 of each cascade), fully binary BinGCN/BinSAGE from scratch (train-node, the
# planetoid recipe's settings) and distilled (stages 1-3 of distill-node), one torch thread.
#
#   bash scripts/planetoid_graphs.sh [PLANETOID_RAW] [OUT] [DATASETS]
#
# Defaults: ../shared/data/planetoid, runs/planetoid, "cora citeseer" (two instances, one per
# data set, may run side by side: they write different run folders). Each command resumes where it stopped
# when run again; `python scripts/larger_graphs_table.py OUT cora:Cora citeseer:CiteSeer`
# prints the summary table, `bingnn report OUT/<run>` a run's per-stage table.
set -euo pipefail
# The whole script is one compound command, read before it runs: these runs take hours, and
# bash reads a plain script as it goes, so editing it meanwhile would corrupt the run.
{
RAW=${1:-../shared/data/planetoid}
OUT=${2:-runs/planetoid}
read -r -a DATASETS <<< "${3:-cora citeseer}"
export OMP_NUM_THREADS=1
COMMON=(--raw-dir "$RAW" --root "$OUT/data" --seeds 10 --threads 1 --no-progress)
# shellcheck source=scripts/node_runs.sh
source "$(dirname "$0")/node_runs.sh"
for ds in "${DATASETS[@]}"; do
  for model in bingcn binsage; do
    run "$ds-$model-distill" bingnn distill-node --dataset "$ds" --model "$model" "${COMMON[@]}" \
      --out "$OUT/$ds-$model-distill"
    run "$ds-$model-scratch" bingnn train-node --dataset "$ds" --model "$model" "${COMMON[@]}" \
      --out "$OUT/$ds-$model-scratch"
  done
done
exit
}
