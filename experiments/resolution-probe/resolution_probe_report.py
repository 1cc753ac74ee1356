"""Why do some rows of the study learn so much slower than the paper's? Puts the first
epochs' validation BCE of `experiments/resolution-probe/resolution_probe.sh` (fetalhc, three image sizes) and
`experiments/resolution-probe/notebook_replica.py` (an independent loop) beside the paper's own logged
validation BCE, and the study's 20-epoch cells beside the paper's 20 epochs.

    python experiments/resolution-probe/resolution_probe_report.py      # writes results/resolution-probe/summary.md
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

PROBE = Path("results/resolution-probe")
STUDY = Path("results/study-paper/runs")
# The paper's validation BCE, mean of the 20 batches of each epoch (epochs 1, 2 and 20),
# from the authors' public logs FT_Methods_for_Fetal_Head_Segmentation/loss/
# val_loss_global_<trainable params>.txt, 512x512, their weights and software; the number
# in the file name is the trainable-parameter count (222m = 2.22 M = the encoder). Several
# files exist for some counts (runs of the same row, or the random-encoder row, which
# has the same count): all are listed.
PAPER_VAL_BCE = {
    "encoder": [
        ("222m", 0.482, 0.414, 0.230),
        ("222m (1)", 0.513, 0.446, 0.298),
        ("222m_2", 0.418, 0.370, 0.221),
    ],
    "d0": [("376m", 0.571, 0.543, 0.481), ("376m (1)", 0.449, 0.401, 0.320)],
    "d01": [("424m", 0.398, 0.344, 0.267)],
    "d012": [("436m", 0.345, 0.294, 0.201), ("436m_1", 0.385, 0.340, 0.279)],
    "d234": [("0164m", 0.429, 0.383, 0.248), ("0164m (1)", 0.440, 0.377, 0.253)],
    "d4": [("000698m", 0.716, 0.684, 0.579)],
    "decoder": [("44m", 0.216, 0.147, 0.060), ("44m_2", 0.194, 0.151, 0.087)],
}


def history(run: Path) -> list[float]:
    with open(run / "history.csv", newline="") as f:
        return [float(r["val_loss"]) for r in csv.DictReader(f)]


def paper_cell(row: str, epoch_index: int) -> str:
    return ", ".join(f"{v[epoch_index]:.3f}" for v in PAPER_VAL_BCE.get(row, []))


def main() -> None:
    lines = [
        "# Why some rows learn slower than the paper's: measured",
        "",
        "Validation BCE (lower is better; 0.69 is a model that has learnt nothing). The "
        "paper's: the mean over each epoch's 20 validation batches in its public logs "
        "(one value per logged run). Ours: the study's validation part (81 images) after "
        "each epoch; seed 0; paper BatchNorm, [0, 1] input, batch 10, Adam 1e-4, BCE. An "
        "epoch here is 56 batches (559 training images), the paper's 80 (799): our epoch 2 "
        "has seen more images than the paper's epoch 1.",
        "",
        "## 1. Image size: the study's size, 4x its pixels, and the paper's 512x512",
        "",
        "(bf16 autocast, as the study; `160x128_fp32`: the same run in fp32.)",
        "",
        "| row | size | ours, epoch 1 | ours, epoch 2 | paper, epoch 1 | paper, epoch 2 |",
        "|---|---|---|---|---|---|",
    ]
    for row in ("encoder", "d0"):
        for size in ("160x128", "160x128_fp32", "320x256", "512x512"):
            run = PROBE / f"{row}_{size}"
            if not (run / "history.csv").is_file():
                continue
            v = history(run)
            lines.append(
                f"| {row} | {size} | {v[0]:.3f} | {v[1]:.3f} | {paper_cell(row, 1)} | "
                f"{paper_cell(row, 2)} |"
            )
    lines += [
        "",
        "## 2. Not fetalhc's training code: an independent loop written from the notebooks",
        "",
        "`experiments/resolution-probe/notebook_replica.py` (smp, albumentations and plain PyTorch only; 160x128). "
        "Software: the project's environment (smp 0.6, albumentations 2.0), or the notebooks' "
        "mid-2023 versions (`experiments/resolution-probe/old_stack_replica.sh`: smp 0.3.3, albumentations 1.3.1, "
        "whose Rotate reflects the border; PyTorch stays 2.14.1). `val augmented`: validation "
        "images rotated and flipped as the notebooks' were (their validation split came from "
        "a dataset built with the training transform).",
        "",
        "| run | software | epoch 1 | epoch 2 |",
        "|---|---|---|---|",
    ]
    for path in sorted(PROBE.glob("replica_*.txt")):
        text = path.read_text()
        found = re.findall(r"epoch (\d+) train_bce \S+ val_bce (\S+)", text)
        head = text.splitlines()[0] if text else path.stem
        run, _, software = head.partition("; ")  # runs before versions were printed: no ';'
        software = software.split(", torch")[0] or "project's environment"
        if found:
            lines.append(f"| {run} | {software} | " + " | ".join(v for _, v in found[:2]) + " |")
    lines += [
        "",
        "## 3. The study's 20-epoch cells (160x128) beside the paper's 20 epochs",
        "",
        "| row | ours, epoch 1 (seeds 0, 1, 2) | ours, epoch 20 | paper, epoch 1 | "
        "paper, epoch 20 |",
        "|---|---|---|---|---|",
    ]
    for row in PAPER_VAL_BCE:
        runs = [STUDY / f"{row}_f100_s{s}_160x128" for s in range(3)]
        vals = [history(r) for r in runs if (r / "history.csv").is_file()]
        if not vals:
            continue
        first = ", ".join(f"{v[0]:.3f}" for v in vals)
        last = ", ".join(f"{v[-1]:.3f}" for v in vals)
        lines.append(f"| {row} | {first} | {last} | {paper_cell(row, 1)} | {paper_cell(row, 3)} |")
    lines.append("")
    (PROBE / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
