"""What subject overlap between training and test is worth: the per-image study's cells
(results/study-per-image) scored on the test images whose subject has images in training
and on the others, beside the subject-split study's cells of the same rows.

    python experiments/subject-overlap/subject_overlap_report.py   # -> results/study-per-image/summary.md

Dice is the paper's (model resolution), per image, from each cell's eval-test/per_image.csv.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from fetalhc.data.hc18 import subject_of
from fetalhc.data.split import read_split

PER_IMAGE = Path("results/study-per-image")
BY_SUBJECT = Path("results/study-paper")


def per_image_dice(cell: Path) -> dict[str, float]:
    with open(cell / "eval-test" / "per_image.csv", newline="") as f:
        return {r["filename"]: float(r["paper_dice"]) for r in csv.DictReader(f)}


def cells(study: Path, strategy: str) -> list[Path]:
    """Finished full-data, paper-BN, plain cells of a strategy at 160x128."""
    out = []
    for done in sorted((study / "runs").glob(f"{strategy}_f100_s*_160x128/cell.json")):
        record = json.loads(done.read_text())
        if record["cell"].get("bn_mode") or record["cell"].get("skip_rescale"):
            continue
        out.append(done.parent)
    return out


def main() -> None:
    split = read_split(PER_IMAGE / "split.csv")
    trained = {subject_of(n) for n, part in split.items() if part in ("train", "val")}
    lines = [
        "# What subject overlap is worth",
        "",
        "The faithful study's recipe (paper BN, [0, 1] input, 20 epochs, 160x128, Adam 1e-4, "
        "BCE, batch 10, `../shared/weights`) trained on a **per-image** split of the same 799 "
        "images with the subject split's part sizes (558 / 81 / 160; "
        "`fetalhc data split --per-image --like results/study-paper/split.csv`, seed 0), as the paper's notebooks split. Test Dice "
        "(the paper's, model resolution), per image, averaged. 'Seen' test images have "
        "their subject among the training or validation images; 2 cores of an AMD EPYC.",
        "",
        "| row | split | seed | test images | Dice, all | Dice, subject seen (n) "
        "| Dice, subject unseen (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for strategy in ("decoder",):
        for cell in cells(PER_IMAGE, strategy):
            dice = per_image_dice(cell)
            seen = [v for n, v in dice.items() if subject_of(n) in trained]
            unseen = [v for n, v in dice.items() if subject_of(n) not in trained]
            seed = cell.name.split("_")[2]
            everything = 100 * np.mean(list(dice.values()))
            lines.append(
                f"| {strategy} | per image | {seed} | {len(dice)} | {everything:.2f} "
                f"| {100 * np.mean(seen):.2f} ({len(seen)}) | {100 * np.mean(unseen):.2f} "
                f"({len(unseen)}) |"
            )
        for cell in cells(BY_SUBJECT, strategy):
            dice = per_image_dice(cell)
            seed = cell.name.split("_")[2]
            lines.append(
                f"| {strategy} | by subject (the study) | {seed} | {len(dice)} "
                f"| {100 * np.mean(list(dice.values())):.2f} | – (0) | "
                f"{100 * np.mean(list(dice.values())):.2f} ({len(dice)}) |"
            )
    lines += [
        "",
        "The two splits' test parts hold different images, so compare within the per-image "
        "rows (seen against unseen) first; the subject-split rows show the level without "
        "any overlap.",
        "",
    ]
    (PER_IMAGE / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
