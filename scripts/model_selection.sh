#!/usr/bin/env bash
# The bundled model's recipe, cross-validated, then trained on train+val (test held out).
# Resumable: re-running continues every run from its last finished epoch.
#   scripts/model_selection.sh [HC18_DIR] [WEIGHTS]      (from the repository root)
# Two runs at a time, one CPU thread each (2-core machine); outputs in results/model-selection.
set -euo pipefail
DATA=${1:-../shared/hc18}
WEIGHTS=${2:-../shared/weights/mobilenet_v2_imagenet.pth}
OUT=results/model-selection
RECIPE=(--strategy full --encoder-weights "$WEIGHTS" --loss bce+dice --lr 3e-4
        --lr-schedule cosine --augment strong --head-crop 0.2 --image-size 256x256
        --epochs 25 --threads 1 --resume)
export TQDM_DISABLE=1
fetalhc data split "$DATA" --out "$OUT/split.csv" --folds 3
fold() { fetalhc train --data "$DATA" --split "$OUT/split.fold$1.csv" --out "$OUT/runs/fold$1" "${RECIPE[@]}"; }
final() { fetalhc train --data "$DATA" --split "$OUT/split.csv" --out "$OUT/runs/final" \
          --train-parts train,val --val-part '' "${RECIPE[@]}"; }
(fold 0; fold 2) & (fold 1; final) & wait
