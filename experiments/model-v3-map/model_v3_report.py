"""Model v3's accuracy-cost map: out-of-fold figures of each trained variant beside its cost.

    python experiments/model-v3-map/model_v3_report.py [--data ../shared/hc18] [--root results/model-v3]

For every variant of `experiments/model-v3-map/model_v3_map.sh` whose three fold runs are finished
(WIDTH_SIDE: decoder width, second-pass side), each fold's last epoch measures its own
validation part (no epoch is picked on the images it is scored on), once with the first pass
at the model's side and once at each smaller `--locate-sides` (the same weights: the
locating pass only has to find the head), and with the close-up at each of `--crop-sides`
(the same weights shown the head at another scale; a model trained at that side is its own
variant); and one pass (the first pass alone) and int8 (each fold's model quantised,
calibrated on its own training images), both at the model's side. The pooled out-of-fold
rows (cached in ROOT/oof/, resumable) give ADF, ellipse Dice and Hausdorff and the errors
over 10 mm, with the figures and the flag search of `experiments/model-v3-map/model_selection_report.py`; the
cost comes from `results/cost-map/two_pass.csv` (FLOPs counted, ms composed of measured
parts). Each row's quality flag is chosen on
its own out-of-fold rows (at most 10 % flagged, the most large errors caught first). Writes
ROOT/map.csv, ROOT/map.md and ROOT/map.png (ADF against ms). Nothing here looks at a test
part.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import model_selection_report as selection  # noqa: E402 - the sibling script's figures
import numpy as np  # noqa: E402

from fetalhc.data.hc18 import load_mask  # noqa: E402
from fetalhc.inference.evaluate import select_records  # noqa: E402
from fetalhc.inference.measurer import HeadMeasurer  # noqa: E402
from fetalhc.inference.segmenter import RELOCATE_BELOW, Segmenter  # noqa: E402
from fetalhc.io.files import write_csv, write_json  # noqa: E402
from fetalhc.io.images import read_gray  # noqa: E402
from fetalhc.measure import flag_search  # noqa: E402
from fetalhc.model.crops import around_box, box_of, crop_matrix, cut  # noqa: E402
from fetalhc.model.export import export_onnx, quantize_int8  # noqa: E402

FOLDS = selection.FOLDS  # the folds pooled_oof_rows walks
EPOCHS = 25
FLAG_SHARE = 0.10  # issue 24: at most 10 % of the images flagged
CALIBRATION = 32  # training images an int8 fold model is calibrated on (each twice)


def held_out_flag(rows: list[dict]) -> dict:
    """The flag chosen on two folds and scored on the third, pooled over the three."""
    parts = selection.held_out_flags(rows, FLAG_SHARE)
    held = [r for _, _, fold_rows, _ in parts for r in fold_rows]
    return flag_search.catch_figures(held, np.concatenate([flags for *_, flags in parts]))


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
    root: Path,
    variant: str,
    combo: Combo,
    margin: float,
    data: Path,
    threads: int,
) -> list[dict]:
    """Pooled out-of-fold rows of a variant's fold models with the first pass at
    `combo.locate` and the close-up at `combo.crop`, `margin` around the head (ONNX
    Runtime, as deployed); `combo.crop` 0: one pass, no close-up; int8: each fold's
    model quantised (`int8_model`)."""

    made: list[Segmenter] = []

    def measurer_of(k: int) -> HeadMeasurer:
        made.append(fold_segmenter(root, variant, combo, margin, data, threads, k))
        return HeadMeasurer.from_segmenter(made[-1], quality={})  # features; flag later

    name = combo_name(variant, combo, margin)
    rows = selection.pooled_oof_rows(root / "oof" / f"{name}.csv", root, data, measurer_of)
    again = root / "oof" / f"{name}.located_again.json"
    if made and combo.relocate:  # run now, not read back: how often the first pass ran twice
        counted = sum(s.located_again for s in made)
        write_json(again, {"images": len(rows), "located_again": counted})
    return rows


def fold_segmenter(
    root: Path, variant: str, combo: Combo, margin: float, data: Path, threads: int, k: int
) -> Segmenter:
    """Fold k's model of `variant` as the map's row `combo` runs it (ONNX Runtime, as
    deployed), giving the flag's features only (its thresholds are chosen later)."""
    run = root / "runs" / f"{variant}_fold{k}"
    checkpoint = run / "last.safetensors"
    if combo.precision == "int8":
        checkpoint = int8_model(run, root / f"split.fold{k}.csv", data, margin)
    segmenter = Segmenter(
        checkpoint,
        backend="onnx",
        threads=threads,
        locate_side=combo.locate,  # int8 rows: the graph's own side
        crop_side=combo.crop or None,
        close_up=bool(combo.crop),
        relocate_below=combo.relocate,
        head_crop=margin,
    )
    return segmenter


def located_again_share(root: Path, name: str) -> float:
    """The share of a row's images whose first pass ran again (0 where it never does)."""
    path = root / "oof" / f"{name}.located_again.json"
    if not path.is_file():
        return 0.0 if "-relocate" not in name else float("nan")
    counts = json.loads(path.read_text())
    return counts["located_again"] / counts["images"]


def int8_model(run: Path, split: Path, data: Path, margin: float) -> Path:
    """The fold model exported and quantised to int8 (kept in the run's folder), calibrated
    on CALIBRATION images of the fold's own training part: each whole and as the close-up
    around its annotated head, the two inputs a two-pass model sees."""
    target = run / "last_int8.onnx"
    if target.is_file():
        return target
    records, _ = select_records(data, split, "train")
    side = int(run.name.split("_")[1])
    images = []
    for record in records[:: max(1, len(records) // CALIBRATION)][:CALIBRATION]:
        image = read_gray(record.image_path)
        box = box_of(load_mask(record))
        images.append(image)
        if box is not None:
            images.append(cut(image, crop_matrix(around_box(box, margin), side), side))
    fp32 = run / "last.onnx"
    export_onnx(run / "last.safetensors", fp32, verify=True, check_images=images[:4])
    quantize_int8(fp32, target, images)
    return target


class Combo(NamedTuple):
    """One row of the map for a variant: first pass side, close-up side (0: one pass);
    `relocate`: a smaller first pass's small finds located again at the model's side
    below this share of the image (0: only heads it did not find, the map's first rows)."""

    locate: int
    crop: int
    precision: str = "fp32"
    relocate: float = 0.0


def combo_name(variant: str, combo: Combo, margin: float) -> str:
    """How one row's files are named (oof/, quality/): the close-up's side only where it is
    not the side the variant was trained at."""
    trained = int(variant.split("_")[1])
    int8 = "-int8" if combo.precision == "int8" else ""
    if not combo.crop:
        return f"{variant}-onepass{combo.locate}{int8}"
    crop = f"-crop{combo.crop}" if combo.crop != trained else ""
    again = f"-relocate{combo.relocate:g}" if combo.relocate else ""
    return f"{variant}-locate{combo.locate}{again}{crop}-margin{margin:g}{int8}"


def combos_of(
    variant: str, locate_sides: list[int], crop_sides: list[int], relocate: float = 0.0
) -> list[Combo]:
    """The map's rows for a variant: two passes at its side and with each smaller first
    pass, each other close-up side, one pass at its side; int8 at its side, two passes and
    one (an int8 graph is exported for one input size); with `relocate`, each row with a
    smaller first pass once more with its small finds located again."""
    side = int(variant.split("_")[1])
    smaller = [s for s in locate_sides if s < side]
    combos = [Combo(locate, side) for locate in [side, *smaller]]
    for crop in (c for c in crop_sides if c != side):
        combos += [Combo(crop, crop), *(Combo(lo, crop) for lo in smaller if lo < crop)]
    if relocate:
        combos += [c._replace(relocate=relocate) for c in combos if c.locate < side]
    return [*combos, Combo(side, 0), Combo(side, side, "int8"), Combo(side, 0, "int8")]


def costs(path: Path) -> dict[tuple[str, int, int, str], dict]:
    """Measured cost rows by (width, first pass, second pass, precision); one pass is
    first pass 0 there."""
    if not path.is_file():
        return {}
    with open(path, newline="") as f:
        return {
            (r["width"], int(r["first_pass"]), int(r["second_pass"]), r["precision"]): r
            for r in csv.DictReader(f)
        }


def cost_of(cost: dict, width: str, combo: Combo, side: int, again: float = 0.0) -> dict:
    """GFLOP and ms of a row, as floats ({} where the cost table lacks it); a first pass
    that runs again at the model's `side` on a share `again` of the images adds that share
    of the pass's own cost (the cost table's one pass at `side`: the same network on the
    whole image)."""
    if not combo.crop:  # one pass: the cost table's first pass 0, the pass at that side
        row = cost.get((width, 0, combo.locate, combo.precision), {})
    else:
        row = cost.get((width, combo.locate, combo.crop, combo.precision), {})
    if not row:
        return {}
    out = {"gflop": float(row["gflop"]), "end_to_end_ms": float(row["end_to_end_ms"])}
    if combo.crop and again:
        extra = cost.get((width, 0, side, combo.precision), {})
        out["gflop"] += again * float(extra.get("gflop", "nan"))
        out["end_to_end_ms"] += again * float(extra.get("network_ms", "nan"))
    return out


RULE_MM = 0.05  # issue 24: the fastest model within this of the most accurate


def rule_pick(table: list[dict]) -> tuple[dict, dict]:
    """The most accurate row and the fastest within RULE_MM mm of it (rows without a
    measured cost are not picked)."""
    best = min(table, key=lambda r: r["adf_mm"])
    near = [r for r in table if r["adf_mm"] <= best["adf_mm"] + RULE_MM and np.isfinite(r["ms"])]
    return best, min(near, key=lambda r: r["ms"]) if near else best


def describe(row: dict) -> str:
    passes = (
        f"{first_pass_label(row)} + {row['second_pass']}"
        if row["second_pass"]
        else (f"{row['first_pass']}, one pass")
    )
    return f"{row['width']} width, {passes}, {row['precision']}"


def first_pass_label(row: dict) -> str:
    """The map's first-pass cell: its side, and where small finds ran again, how often."""
    if not row["relocate"]:
        return str(row["first_pass"])
    return (
        f"{row['first_pass']}, again at {row['trained_side']} under "
        f"{row['relocate']:g} ({row['located_again_pct']:.1f} %)"
    )


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
    parser.add_argument(
        "--relocate",
        type=float,
        default=RELOCATE_BELOW,
        help="rows with a smaller first pass once more with its finds under this share of the "
        "image located again at the model's side (0: none; default: the Segmenter's)",
    )
    parser.add_argument("--variants", default="", help="only these variants (comma-separated)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=EPOCHS, help="a finished run's epochs")
    args = parser.parse_args()
    cost = costs(args.costs)
    table = []
    locate_sides = [int(s) for s in args.locate_sides.split(",") if s]
    crop_sides = [int(c) for c in args.crop_sides.split(",") if c]
    only = {v for v in args.variants.split(",") if v}
    for variant in variants(args.root, args.epochs):
        if only and variant not in only:
            continue
        width, side = variant.split("_")[0], int(variant.split("_")[1])
        for combo in combos_of(variant, locate_sides, crop_sides, args.relocate):
            rows = oof_rows(args.root, variant, combo, args.margin, args.data, args.threads)
            figures = selection.figures(rows)
            chosen = selection.choose_thresholds(rows, FLAG_SHARE)
            flag = flag_search.flag_figures(rows, chosen)
            held = held_out_flag(rows)
            name = combo_name(variant, combo, args.margin)
            write_json(args.root / "quality" / f"{name}.json", flag_search.plain_thresholds(chosen))
            again = located_again_share(args.root, name)
            c = cost_of(cost, width, combo, side, again)
            table.append(
                {
                    "variant": variant,
                    "width": width,
                    "trained_side": side,
                    "first_pass": combo.locate,
                    "second_pass": combo.crop,
                    "precision": combo.precision,
                    "relocate": combo.relocate,
                    "located_again_pct": 100 * again,
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
                    "gflop": c.get("gflop", float("nan")),
                    "ms": c.get("end_to_end_ms", float("nan")),
                }
            )
            print(
                f"{name}: ADF {figures['adf_mm']:.2f} mm, "
                f"ellipse Dice {figures['ellipse_dice_pct']:.2f} %"
            )
    if not table:
        print(f"no variant with {FOLDS} finished folds in {args.root}/runs yet")
        return 1
    write_csv(args.root / "map.csv", table)
    best, pick = rule_pick(table)
    lines = [
        "# Model v3: accuracy against cost, out of fold",
        "",
        f"`experiments/model-v3-map/model_v3_report.py`: {FOLDS} group-aware folds over the 799 labelled "
        "images, each fold's last epoch on its own validation part, pooled; cost from "
        f"`{args.costs}` (ms composed of measured parts); the close-up's margin "
        f"{args.margin:g}. Flag: chosen on each row's own out-of-fold rows (at most 10 % "
        "flagged; its thresholds in quality/), and, held out, chosen on two folds and "
        "scored on the third; 'caught' counts errors over 10 mm (no head counts as one). "
        "'again at': a smaller first pass whose head spans less than that share of the "
        "image's longer side runs again at the model's side (share of images; its cost "
        "added to the ms, 'r' in the figure).",
        "",
        "| decoder | trained at | first pass | second pass | precision | images | ADF mm | "
        "ellipse Dice % | ellipse HD mm | > 10 mm | flagged % | caught | unflagged ADF | "
        "held-out flag: flagged %, caught | GFLOP | ms |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['width']} | {r['trained_side']} | {first_pass_label(r)} | "
            f"{r['second_pass'] or '(one pass)'} | {r['precision']} | {r['images']} | "
            f"{r['adf_mm']:.2f} | {r['ellipse_dice_pct']:.2f} | {r['ellipse_hd_mm']:.2f} | "
            f"{r['over_10mm']} | {r['flagged_pct']:.1f} | {r['caught_10mm']} | "
            f"{r['unflagged_adf_mm']:.2f} | {r['held_out_flagged_pct']:.1f}, "
            f"{r['held_out_caught_10mm']} | {r['gflop']:.2f} | {r['ms']:.0f} |"
            for r in table
        ],
        "",
        f"Issue 24's rule, the fastest row within {RULE_MM:g} mm of the most accurate "
        f"({describe(best)}, {best['adf_mm']:.3f} mm): **{describe(pick)}**, "
        f"{pick['adf_mm']:.3f} mm, {pick['ms']:.0f} ms (ringed in the figure).",
        "",
        "![ADF against ms](map.png)",
        "",
    ]
    (args.root / "map.md").write_text("\n".join(lines))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = {"full": "C0", "half": "C1", "quarter": "C2"}
    for r in table:
        ax.scatter(
            r["ms"],
            r["adf_mm"],
            color=colours.get(r["width"], "C3"),
            marker="s" if r["precision"] == "int8" else "o",
        )
        ax.annotate(
            f"{r['width']} {r['first_pass']}"
            + ("r" if r["relocate"] else "")
            + (f"+{r['second_pass']}" if r["second_pass"] else "")
            + (" int8" if r["precision"] == "int8" else ""),
            (r["ms"], r["adf_mm"]),
            fontsize=7,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.axhline(best["adf_mm"] + RULE_MM, color="grey", linestyle="--", linewidth=0.8)
    ax.scatter(pick["ms"], pick["adf_mm"], s=160, facecolors="none", edgecolors="black")
    ax.set_xlabel("end-to-end ms per image (composed of measured parts)")
    ax.set_ylabel("out-of-fold ADF (mm)")
    ax.set_title("Model v3: accuracy against cost (squares: int8)")
    fig.tight_layout()
    fig.savefig(args.root / "map.png", dpi=120)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
