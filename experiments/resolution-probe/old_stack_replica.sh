#!/usr/bin/env bash
# Do the notebooks' 2023 library versions explain the rows that learn slower than the
# paper's? Replays the independent loop (experiments/resolution-probe/notebook_replica.py) with
# segmentation-models-pytorch 0.3.3 and albumentations 1.3.1 — mid-2023, what the notebooks'
# `pip install` got (Rotate then reflected the border instead of filling it with 0) — in a
# virtual environment of its own that reuses this machine's PyTorch (the pip cap keeps
# torch at 2.14.1, so the 2023 PyTorch/CUDA stays untested). Needs fetalhc installed (its
# weight reader) and PyPI. Writes results/resolution-probe/replica_2023stack_*.txt.
#   experiments/resolution-probe/old_stack_replica.sh [HC18_DIR] [WEIGHTS] [VENV]
set -euo pipefail
DATA=${1:-../shared/hc18}
WEIGHTS=${2:-../shared/weights/mobilenet_v2_imagenet.pth}
VENV=${3:-/tmp/fetalhc-2023-stack}
OUT=results/resolution-probe
if [ ! -x "$VENV/bin/python" ]; then
  python -m venv --system-site-packages "$VENV"
  "$VENV/bin/python" -m pip install -q "segmentation-models-pytorch==0.3.3" "albumentations==1.3.1"
fi
replica() {  # name, options
  "$VENV/bin/python" -W ignore experiments/resolution-probe/notebook_replica.py --data "$DATA" --weights "$WEIGHTS" \
    "${@:2}" > "$OUT/replica_2023stack_$1.txt"
}
replica encoder-random --row encoder-random
replica encoder --row encoder
replica d0 --row d0
replica encoder_val-augmented --row encoder --val-augmented
python experiments/resolution-probe/resolution_probe_report.py
