"""Does an ensemble pay (issue 24, item 3)? The map's fold models of several decoder widths,
their probabilities averaged, scored out of fold on the map's folds.

    python experiments/model-v3-map/model_v3_ensemble.py [--data ../shared/hc18] [--root results/model-v3]
        [--ensembles full_256:192r+256,half_256:192r+256,quarter_256:192r+192 ...]

An ensemble is members `variant:first+second` ("192r": a 192 first pass whose small finds
run again at the variant's side, as in the map); each member runs as in the map (ONNX
Runtime, margin 0.1, its own first pass) and the ensemble's probability is the members'
mean in each pass, so its flag sees the averaged passes. Its cost is composed from the
map's cost table: the members' network times added, one post-processing. Writes
oof/ensemble-<name>.csv (resumable), quality/ensemble-<name>.json and ensemble.md beside
the map (results/model-v3/).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from model_v3_report import (
    FLAG_SHARE,
    RULE_MM,
    Combo,
    combo_name,
    cost_of,
    costs,
    fold_segmenter,
    held_out_flag,
    located_again_share,
    selection,
)

from fetalhc.inference.ensemble import MeanOfModels
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.segmenter import RELOCATE_BELOW
from fetalhc.io.files import write_json, write_text
from fetalhc.measure import flag_search

MARGIN = 0.1
DEFAULT_ENSEMBLES = (
    "full_256:192r+256,half_256:192r+256,quarter_256:192r+192",
    "half_256:192r+256,quarter_256:192r+192",
)


def parse_member(text: str) -> tuple[str, Combo]:
    """`half_256:192r+256` -> the variant and the map's row it runs as."""
    variant, passes = text.split(":")
    first, second = passes.split("+")
    relocate = RELOCATE_BELOW if first.endswith("r") else 0.0
    return variant, Combo(int(first.rstrip("r")), int(second), "fp32", relocate)


def member_cost(cost: dict, root: Path, variant: str, combo: Combo) -> tuple[float, float, float]:
    """GFLOP, network ms and post-processing ms of one member as the map composes them
    (`cost_of`, the re-run's share included)."""
    width, side = variant.split("_")[0], int(variant.split("_")[1])
    again = located_again_share(root, combo_name(variant, combo, MARGIN)) if combo.relocate else 0
    composed = cost_of(cost, width, combo, side, again)
    row = cost[(width, combo.locate, combo.crop, combo.precision)]
    post = float(row["end_to_end_ms"]) - float(row["network_ms"])
    return composed["gflop"], composed["end_to_end_ms"] - post, post


def map_rows(root: Path) -> dict[str, dict]:
    with open(root / "map.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {}
    for r in rows:
        combo = Combo(
            int(r["first_pass"]),
            int(r["second_pass"]),
            r["precision"],
            float(r["relocate"]),
        )
        out[combo_name(r["variant"], combo, MARGIN)] = r
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/hc18"))
    parser.add_argument("--root", type=Path, default=Path("results/model-v3"))
    parser.add_argument("--costs", type=Path, default=Path("results/cost-map/two_pass.csv"))
    parser.add_argument("--ensembles", nargs="+", default=list(DEFAULT_ENSEMBLES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    cost = costs(args.costs)
    singles = map_rows(args.root)
    best_single = min(singles.values(), key=lambda r: float(r["adf_mm"]))
    lines = [
        "# Model v3: does an ensemble pay?",
        "",
        "`experiments/model-v3-map/model_v3_ensemble.py`: the map's fold models of several decoder widths, "
        "their probabilities averaged in each pass, scored out of fold on the map's 3 folds "
        "(799 images); each member as in the map (ONNX Runtime, margin 0.1, its own first "
        "pass). Cost composed from `results/cost-map/`: the members' network times added, "
        "one post-processing. Flag: chosen on the ensemble's own out-of-fold rows (at most "
        f"{100 * FLAG_SHARE:.0f} %), held out: on two folds, scored on the third.",
        "",
        "| ensemble | ADF mm | ellipse Dice % | ellipse HD mm | > 10 mm | flagged %, caught | "
        "held out | GFLOP | ms (composed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    results = []
    for spec in args.ensembles:
        members = [parse_member(m) for m in spec.split(",")]
        name = "ensemble-" + "-".join(
            f"{v.split('_')[0]}{c.locate}{'r' if c.relocate else ''}+{c.crop}" for v, c in members
        )

        def measurer_of(k: int, members=members) -> HeadMeasurer:
            parts = [
                fold_segmenter(args.root, v, c, MARGIN, args.data, args.threads, k)
                for v, c in members
            ]
            return HeadMeasurer.from_segmenter(MeanOfModels(parts), quality={})

        rows = selection.pooled_oof_rows(
            args.root / "oof" / f"{name}.csv", args.root, args.data, measurer_of
        )
        figures = selection.figures(rows)
        chosen = selection.choose_thresholds(rows, FLAG_SHARE)
        flag = flag_search.flag_figures(rows, chosen)
        held = held_out_flag(rows)
        write_json(args.root / "quality" / f"{name}.json", flag_search.plain_thresholds(chosen))
        parts = [member_cost(cost, args.root, v, c) for v, c in members]
        gflop = sum(p[0] for p in parts)
        ms = sum(p[1] for p in parts) + max(p[2] for p in parts)
        results.append((name, figures["adf_mm"], ms))
        lines.append(
            f"| {spec} | {figures['adf_mm']:.3f} | {figures['ellipse_dice_pct']:.2f} | "
            f"{figures['ellipse_hd_mm']:.2f} | {figures['over_10mm']} | "
            f"{flag['flagged_pct']:.1f}, {flag['caught_10mm']} of {flag['over_10mm']} | "
            f"{held['flagged_pct']:.1f}, {held['caught_10mm']} | {gflop:.2f} | {ms:.0f} |"
        )
        print(f"{name}: ADF {figures['adf_mm']:.3f} mm, {ms:.0f} ms composed")
    best_adf = min([float(best_single["adf_mm"]), *(adf for _, adf, _ in results)])
    lines += [
        "",
        f"The map's most accurate single model: {best_single['variant']}, first pass "
        f"{best_single['first_pass']}, close-up {best_single['second_pass']}: "
        f"{float(best_single['adf_mm']):.3f} mm, {float(best_single['ms']):.0f} ms composed. "
        f"With the ensembles the most accurate is {best_adf:.3f} mm; the rows within "
        f"{RULE_MM} mm of it: "
        + ", ".join(
            [
                f"{n} ({float(r['adf_mm']):.3f} mm, {float(r['ms']):.0f} ms)"
                for n, r in singles.items()
                if float(r["adf_mm"]) <= best_adf + RULE_MM
            ]
            + [
                f"{n} ({adf:.3f} mm, {ms:.0f} ms)"
                for n, adf, ms in results
                if adf <= best_adf + RULE_MM
            ]
        )
        + ".",
    ]
    write_text(args.root / "ensemble.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
