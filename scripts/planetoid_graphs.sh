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
RAW=${1:-../shared/data/planetoid}
OUT=${2:-runs/planetoid}
read -r -a DATASETS <<< "${3:-cora citeseer}"
export OMP_NUM_THREADS=1
COMMON=(--raw-dir "$RAW" --root "$OUT/data" --seeds 10 --threads 1 --no-progress)
mkdir -p "$OUT"
for ds in "${DATASETS[@]}"; do
  for model in bingcn binsage; do
    for cmd in distill-node train-node; do
      name=$ds-$model-$([[ $cmd == distill-node ]] && echo distill || echo scratch)
      t0=$SECONDS
      echo "$ bingnn $cmd --dataset $ds --model $model ${COMMON[*]} --out $OUT/$name" \
        > "$OUT/$name.log"
      bingnn "$cmd" --dataset "$ds" --model "$model" "${COMMON[@]}" --out "$OUT/$name" \
        >> "$OUT/$name.log" 2>&1
      echo "$name $((SECONDS - t0))s" >> "$OUT/times.log"
    done
  done
done
