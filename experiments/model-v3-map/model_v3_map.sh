#!/usr/bin/env bash
# Model v3's accuracy-cost map (issue 24), the training half: the bundled model's recipe
# with a narrower decoder and/or another crop size, cross-validated with 3 group-aware
# folds over all 799 labelled images (their out-of-fold figures are the map's accuracy;
# the cost half is benchmarks/cost_map.py). Resumable: re-running continues every run
# from its last finished epoch; finished runs are skipped.
#   experiments/model-v3-map/model_v3_map.sh [VARIANT ...]      (from the repository root)
# A variant is WIDTH_SIDE, WIDTH one of full half quarter, SIDE the square crop side
# (default: full_256 half_256 quarter_256, the width axis first). Two runs at a time, one
# CPU thread each (2-core machine); about 50 min of one core per run at 256x256.
set -euo pipefail
DATA=${DATA:-../shared/hc18}
WEIGHTS=${WEIGHTS:-../shared/weights/mobilenet_v2_imagenet.pth}
OUT=results/model-v3
VARIANTS=${*:-full_256 half_256 quarter_256}
declare -A CHANNELS=([full]=256,128,64,32,16 [half]=128,64,32,16,8 [quarter]=64,32,16,16,8)
export TQDM_DISABLE=1
[ -f "$OUT/split.fold2.csv" ] ||
  fetalhc data split "$DATA" --out "$OUT/split.csv" --folds 3 --val 0 --test 0
run() {  # variant fold
  local width=${1%_*} side=${1#*_} folder="$OUT/runs/$1_fold$2"
  if [ -f "$folder/history.csv" ] && [ "$(tail -n +2 "$folder/history.csv" | wc -l)" -ge 25 ]; then
    return 0
  fi
  fetalhc train --data "$DATA" --split "$OUT/split.fold$2.csv" --out "$folder" \
    --strategy full --encoder-weights "$WEIGHTS" --loss bce+dice --lr 3e-4 \
    --lr-schedule cosine --augment strong --head-crop 0.2 --image-size "${side}x${side}" \
    --decoder-channels "${CHANNELS[$width]}" --epochs 25 --threads 1 --resume
}
jobs=()
for v in $VARIANTS; do for k in 0 1 2; do jobs+=("$v $k"); done; done
worker() {  # every other job, from $1
  local i
  for ((i = $1; i < ${#jobs[@]}; i += 2)); do
    # shellcheck disable=SC2086
    run ${jobs[$i]}
  done
}
worker 0 & worker 1 & wait
