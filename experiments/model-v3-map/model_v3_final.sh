#!/usr/bin/env bash
# Model v3's final model (issue 24): the chosen variant of experiments/model-v3-map/model_v3_map.sh (WIDTH_SIDE)
# trained on all 799 labelled images with the same recipe, last epoch kept (its figures are
# the variant's out-of-fold ones: experiments/model-v3-map/model_v3_report.py). Resumable: re-running
# continues from the last finished epoch.
#   experiments/model-v3-map/model_v3_final.sh VARIANT [THREADS]      (from the repository root)
# then bundle it:
#   fetalhc bundle results/model-v3/runs/final_VARIANT/last.safetensors --out MODEL_DIR \
#     --oof results/model-v3/oof/NAME.csv --head-crop 0.1 --locate-side SIDE --crop-side SIDE
set -euo pipefail
VARIANT=${1:?usage: experiments/model-v3-map/model_v3_final.sh WIDTH_SIDE [THREADS]}
THREADS=${2:-2}
DATA=${DATA:-../shared/hc18}
WEIGHTS=${WEIGHTS:-../shared/weights/mobilenet_v2_imagenet.pth}
OUT=results/model-v3
declare -A CHANNELS=([full]=256,128,64,32,16 [half]=128,64,32,16,8 [quarter]=64,32,16,16,8)
width=${VARIANT%_*} side=${VARIANT#*_}
[ -n "${CHANNELS[$width]:-}" ] || { echo "unknown width in $VARIANT" >&2; exit 2; }
export TQDM_DISABLE=1
[ -f "$OUT/split.all.csv" ] || fetalhc data split "$DATA" --out "$OUT/split.all.csv" --val 0 --test 0
fetalhc train --data "$DATA" --split "$OUT/split.all.csv" --out "$OUT/runs/final_$VARIANT" \
  --train-parts train --val-part '' \
  --strategy full --encoder-weights "$WEIGHTS" --loss bce+dice --lr 3e-4 \
  --lr-schedule cosine --augment strong --head-crop 0.2 --image-size "${side}x${side}" \
  --decoder-channels "${CHANNELS[$width]}" --epochs 25 --threads "$THREADS" --resume
