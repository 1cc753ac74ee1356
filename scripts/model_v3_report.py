"""Model v3's accuracy-cost map: out-of-fold figures of each trained variant beside its cost.

    python scripts/model_v3_report.py [--data ../shared/hc18] [--root results/model-v3]

For every variant of `scripts/model_v3_map.sh` whose three fold runs are finished
(WIDTH_SIDE: decoder width, second-pass side), each fold's last epoch measures its own
validation part (no epoch is picked on the images it is scored on), once with the first pass
at the model's side and once at each smaller `--locate-sides` (the same weights: the
locating pass only has to find the head), and with the close-up at each of `--crop-sides`
(the same weights shown the head at another scale; a model trained at that side is its own
variant). The pooled out-of-fold rows (cached in ROOT/oof/, resumable) give ADF, ellipse
Dice and Hausdorff and the errors over 10 mm, with the figures and the flag search of
`scripts/model_selection_report.py`; the cost comes from `results/cost-map/two_pass.csv`
(FLOPs counted, ms composed of measured parts, fp32). Each row's quality flag is chosen on
its own out-of-fold rows (at most 10 % flagged, the most large errors caught first). Writes
ROOT/map.csv, ROOT/map.md and ROOT/map.png (ADF against ms). Nothing here looks at a test
part.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_selection_report as selection  # noqa: E402 - the sibling script's figures
import numpy as np  # noqa: E402

from fetalhc.inference.measurer import HeadMeasurer  # noqa: E402
from fetalhc.inference.segmenter import Segmenter  # noqa: E402
from fetalhc.io.files import write_csv, write_json  # noqa: E402

FOLDS = selection.FOLDS  # the folds pooled_oof_rows walks
EPOCHS = 25
FLAG_SHARE = 0.10  # issue 24: at most 10 % of the images flagged


def held_out_flag(rows: list[dict]) -> dict:
    """The flag chosen on two folds and scored on the third, pooled over the three."""
    parts = selection.held_out_flags(rows, FLAG_SHARE)
    held = [r for _, _, fold_rows, _ in parts for r in fold_rows]
    return selection.catch_figures(held, np.concatenate([flags for *_, flags in parts]))


def finished(run: Path, epochs: int = EPOCHS) -> bool:
    history = run / "history.csv"
    if not (run / "last.safetensors").is_file() or not history.is_file():
        return False
    with open(history, newline="") as f:
        return sum(1 for _ in csv.DictReader(f)) >= epochs


def variants(root: Path, epochs: int = EPOCHS) -> list[str]:
    names = sorted({p.name.rsplit("_fold", 1)[0] for p in (root / "runs").glob("*_fold*")})
    return [
        v
        for v in names
        if all(finished(root / "runs" / f"{v}_fold{k}", epochs) for k in range(FOLDS))
    ]


def oof_rows(
    root: Path, variant: str, locate: int, crop: int, margin: float, data: Path, threads: int
) -> list[dict]:
    """Pooled out-of-fold rows of a variant's fold models with the first pass at `locate`
    and the close-up at `crop`, `margin` around the head (ONNX Runtime, as deployed)."""

    def measurer_of(k: int) -> HeadMeasurer:
        segmenter = Segmenter(
            root / "runs" / f"{variant}_fold{k}" / "last.safetensors",
            backend="onnx",
            threads=threads,
            locate_side=locate,
            crop_side=crop,
        )
        segmenter.quality_thresholds = {}  # features only; the flag is chosen later
        segmenter.head_crop = margin
        return HeadMeasurer.from_segmenter(segmenter)

    name = combo_name(variant, locate, crop, margin)
    return selection.pooled_oof_rows(root / "oof" / f"{name}.csv", root, data, measurer_of)


def combo_name(variant: str, locate: int, crop: int, margin: float) -> str:
    """How one row's files are named (oof/, quality/): the close-up's side only where it is
    not the side the variant was trained at."""
    trained = int(variant.split("_")[1])
    return (
        f"{variant}-locate{locate}"
        + (f"-crop{crop}" if crop != trained else "")
        + f"-margin{margin:g}"
    )


def costs(path: Path) -> dict[tuple[str, int, int], dict]:
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {
            (r["width"], int(r["first_pass"]), int(r["second_pass"])): r
            for r in csv.DictReader(f)
            if r["precision"] == "fp32"
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/hc18"))
    parser.add_argument("--root", type=Path, default=Path("results/model-v3"))
    parser.add_argument("--costs", type=Path, default=Path("results/cost-map/two_pass.csv"))
    parser.add_argument("--locate-sides", default="160,192")
    parser.add_argument(
        "--margin",
        type=float,
        default=0.1,
        help="the close-up's margin around the head (0.1: chosen out of fold for the bundled "
        "model, results/model-selection)",
    )
    parser.add_argument(
        "--crop-sides", default="192", help="close-up sides to try with the same weights"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="a finished run's epochs")
    args = parser.parse_args()
    cost = costs(args.costs)
    table = []
    for variant in variants(args.root, args.epochs):
        width, side = variant.split("_")[0], int(variant.split("_")[1])
        smaller = [int(s) for s in args.locate_sides.split(",") if int(s) < side]
        combos = [(locate, side) for locate in [side, *smaller]]
        for crop in (int(c) for c in args.crop_sides.split(",") if c and int(c) != side):
            combos += [(crop, crop), *((lo, crop) for lo in smaller if lo < crop)]
        for locate, crop in combos:
            rows = oof_rows(args.root, variant, locate, crop, args.margin, args.data, args.threads)
            figures = selection.figures(rows)
            chosen = selection.choose_thresholds(rows, FLAG_SHARE)
            flag = selection.flag_figures(rows, chosen)
            held = held_out_flag(rows)
            name = combo_name(variant, locate, crop, args.margin)
            write_json(args.root / "quality" / f"{name}.json", selection.plain_thresholds(chosen))
            c = cost.get((width, locate, crop), {})
            table.append(
                {
                    "variant": variant,
                    "width": width,
                    "trained_side": side,
                    "first_pass": locate,
                    "second_pass": crop,
                    "images": figures["images"],
                    "adf_mm": figures["adf_mm"],
                    "ellipse_dice_pct": figures["ellipse_dice_pct"],
                    "ellipse_hd_mm": figures["ellipse_hd_mm"],
                    "over_10mm": figures["over_10mm"],
                    "flagged_pct": flag["flagged_pct"],
                    "caught_10mm": flag["caught_10mm"],
                    "unflagged_adf_mm": flag["unflagged_adf_mm"],
                    "held_out_flagged_pct": held["flagged_pct"],
                    "held_out_caught_10mm": held["caught_10mm"],
                    "gflop": float(c["gflop"]) if c else float("nan"),
                    "ms": float(c["end_to_end_ms"]) if c else float("nan"),
                }
            )
            print(
                f"{variant} locate {locate} crop {crop}: ADF {figures['adf_mm']:.2f} mm, "
                f"ellipse Dice {figures['ellipse_dice_pct']:.2f} %"
            )
    if not table:
        print(f"no variant with {FOLDS} finished folds in {args.root}/runs yet")
        return 1
    write_csv(args.root / "map.csv", table)
    lines = [
        "# Model v3: accuracy against cost, out of fold",
        "",
        f"`scripts/model_v3_report.py`: {FOLDS} group-aware folds over the 799 labelled "
        "images, each fold's last epoch on its own validation part, pooled; cost from "
        f"`{args.costs}` (fp32, ms composed of measured parts); the close-up's margin "
        f"{args.margin:g}. Flag: chosen on each row's own out-of-fold rows (at most 10 % "
        "flagged; its thresholds in quality/), and, held out, chosen on two folds and "
        "scored on the third; 'caught' counts errors over 10 mm (no head counts as one).",
        "",
        "| decoder | trained at | first pass | second pass | images | ADF mm | "
        "ellipse Dice % | ellipse HD mm | > 10 mm | flagged % | caught | unflagged ADF | "
        "held-out flag: flagged %, caught | GFLOP | ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['width']} | {r['trained_side']} | {r['first_pass']} | {r['second_pass']} | "
            f"{r['images']} | "
            f"{r['adf_mm']:.2f} | {r['ellipse_dice_pct']:.2f} | {r['ellipse_hd_mm']:.2f} | "
            f"{r['over_10mm']} | {r['flagged_pct']:.1f} | {r['caught_10mm']} | "
            f"{r['unflagged_adf_mm']:.2f} | {r['held_out_flagged_pct']:.1f}, "
            f"{r['held_out_caught_10mm']} | {r['gflop']:.2f} | {r['ms']:.0f} |"
            for r in table
        ],
        "",
        "![ADF against ms](map.png)",
        "",
    ]
    (args.root / "map.md").write_text("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in table:
        ax.scatter(r["ms"], r["adf_mm"], color="C0")
        ax.annotate(
            f"{r['width']} {r['first_pass']}+{r['second_pass']}",
            (r["ms"], r["adf_mm"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xlabel("end-to-end ms per image (fp32, composed)")
    ax.set_ylabel("out-of-fold ADF (mm)")
    ax.set_title("Model v3: accuracy against cost")
    fig.tight_layout()
    fig.savefig(args.root / "map.png", dpi=120)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
