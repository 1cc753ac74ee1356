#!/usr/bin/env bash
# Does image size explain the study's rows that learn slower than the paper's? The paper
# logged its validation BCE per batch (FT_Methods_for_Fetal_Head_Segmentation/loss/); this
# trains the study's encoder and d0 cells (paper BatchNorm, [0, 1] input, batch 10, Adam
# 1e-4, BCE, seed 0, the study's split) for EPOCHS epochs at 160x128, 320x256 and the
# paper's 512x512 (and the encoder at 160x128 in fp32 instead of bf16), so the first
# epochs' validation BCE can be put beside the paper's. Then the independent loop
# (experiments/resolution-probe/notebook_replica.py) and the summary (experiments/resolution-probe/resolution_probe_report.py).
#   experiments/resolution-probe/resolution_probe.sh [HC18_DIR] [WEIGHTS] [EPOCHS]     (resumable)
set -euo pipefail
DATA=${1:-../shared/hc18}
WEIGHTS=${2:-../shared/weights/mobilenet_v2_imagenet.pth}
EPOCHS=${3:-2}
OUT=results/resolution-probe
export TQDM_DISABLE=1
run() {  # strategy size [name suffix, extra train options]
  fetalhc train --data "$DATA" --split results/study-paper/split.csv --out "$OUT/$1_$2${3:-}" \
    --strategy "$1" --encoder-weights "$WEIGHTS" --epochs "$EPOCHS" --batch 10 --lr 1e-4 \
    --loss bce --bn-mode paper --normalization unit --seed 0 --image-size "$2" \
    --threads 1 --resume "${@:4}"
}
(run encoder 160x128; run encoder 320x256; run encoder 512x512) &
(run d0 160x128; run d0 320x256; run d0 512x512; run encoder 160x128 _fp32 --precision fp32) &
wait
replica() {  # name, options
  python experiments/resolution-probe/notebook_replica.py --data "$DATA" --weights "$WEIGHTS" "${@:2}" > "$OUT/replica_$1.txt"
}
replica encoder --row encoder
replica encoder_head --row encoder --train-head
replica d0 --row d0
replica encoder-random --row encoder-random
python experiments/resolution-probe/resolution_probe_report.py
