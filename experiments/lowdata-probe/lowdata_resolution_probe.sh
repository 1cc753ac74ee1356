#!/usr/bin/env bash
# Does the pretrained decoder's head start with little data last longer at a larger image
# size? At 160x128 with 79 training images the study's scratch U-Net overtakes the decoder
# from epoch 5-6 on (the paper, at 512x512, has it 3.3 Dice points below after 20 epochs).
# This trains the study's 79-image cells (paper BatchNorm, [0, 1] input, batch 10, Adam
# 1e-4, BCE, seed 0, the study's split) at SIZE and evaluates each on the study's test
# part, so they can be put beside the 160x128 cells, epoch by epoch. One cell of the scratch
# U-Net at 512x512 costs 3-4 h of one core here; 320x256 (4x the pixels) about 1 h.
#   experiments/lowdata-probe/lowdata_resolution_probe.sh [SIZE] [ROWS...]   (resumable; rows: decoder scratch-unet)
set -euo pipefail
SIZE=${1:-320x256}
shift || true
ROWS=${*:-decoder scratch-unet}
DATA=${DATA:-../shared/hc18}
WEIGHTS=${WEIGHTS:-../shared/weights/mobilenet_v2_imagenet.pth}
OUT=results/lowdata-probe
export TQDM_DISABLE=1
for row in $ROWS; do
  fetalhc train --data "$DATA" --split results/study-paper/split.csv \
    --out "$OUT/${row}_n079_s0_$SIZE" --strategy "$row" --encoder-weights "$WEIGHTS" \
    --train-images 79 --epochs 20 --batch 10 --lr 1e-4 --loss bce --bn-mode paper \
    --normalization unit --seed 0 --image-size "$SIZE" --threads 1 --resume
  # test Dice at the best checkpoint, as the study's cells (model resolution, torch)
  fetalhc evaluate "$OUT/${row}_n079_s0_$SIZE" --data "$DATA" \
    --split results/study-paper/split.csv --part test --backend torch --threads 1
done
python experiments/lowdata-probe/lowdata_probe_report.py
