"""Out-of-fold evaluation of the cross-validated recipe, inference variants side by side,
and the quality flag's thresholds chosen by cross-validation.

    python experiments/model-v3-map/model_selection_report.py [--data ../shared/hc18] [--threads 2]

Reads results/model-selection/runs/fold{0,1,2}/last.safetensors (the last epoch: no epoch
is picked on the images it is scored on) and split.fold{k}.csv; writes, in
results/model-selection/: oof/<variant>.csv (one row per out-of-fold image, resumable),
candidates.csv (every variant's figures), flag.csv (the flag's cross-validated catch
rates), quality.json (the thresholds chosen on all out-of-fold images) and summary.md.
Nothing here looks at the test part.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import mannwhitneyu

from fetalhc.inference.evaluate import evaluation_rows, select_records
from fetalhc.inference.measurer import QUALITY_FEATURES, HeadMeasurer
from fetalhc.inference.segmenter import Prediction, Segmenter
from fetalhc.io.files import write_csv
from fetalhc.measure import flag_search
from fetalhc.measure.flag_search import (
    catch_figures,
    flag_figures,
    plain_thresholds,
)
from fetalhc.measure.flag_search import described as _plain
from fetalhc.measure.quality import RULES

ROOT = Path("results/model-selection")
FOLDS = 3
HC_RANGES = ((0, 100), (100, 200), (200, 300), (300, 1000))
# Flag at most 12 % of images: the goal is 10 %, its bar 15 %; 12 % in
# cross-validation leaves room for a new set's share to come out higher.
FLAG_SHARE = 0.12


class FirstPassOnly:
    """The two-pass model's whole-image pass alone (the one-pass baseline)."""

    def __init__(self, segmenter: Segmenter) -> None:
        self.segmenter, self.batch_size = segmenter, segmenter.batch_size
        self.checkpoint, self.config = segmenter.checkpoint, segmenter.config

    def predict(self, images):
        return [
            Prediction(p.coarse_probability, p.logits_small, None)
            for p in self.segmenter.predict(images)
        ]


def variant_measurer(variant: str, checkpoint: Path, threads: int) -> HeadMeasurer:
    # e.g. two-pass-margin0.1: another margin around pass 1's head
    margin = float(variant.split("margin")[1].split("-")[0]) if "margin" in variant else None
    seg = Segmenter(
        checkpoint, backend="torch", threads=threads, flip_tta="tta" in variant, head_crop=margin
    )
    # score with the features only (no flag): its thresholds are chosen later
    if variant.startswith("one-pass"):
        return HeadMeasurer.from_segmenter(FirstPassOnly(seg), quality={})
    return HeadMeasurer.from_segmenter(seg, quality={})


def oof_rows(variant: str, data: Path, threads: int) -> list[dict]:
    return pooled_oof_rows(
        ROOT / "oof" / f"{variant}.csv",
        ROOT,
        data,
        lambda k: variant_measurer(
            variant, ROOT / "runs" / f"fold{k}" / "last.safetensors", threads
        ),
    )


def pooled_oof_rows(path: Path, root: Path, data: Path, measurer_of) -> list[dict]:
    """Each fold's model (`measurer_of(k)`) on its own validation part (root's
    split.fold{k}.csv), pooled; cached in `path` (read back if it exists and holds every
    feature the flag is decided on; a cache from before a feature was added is measured
    again)."""
    if path.is_file():
        with open(path, newline="") as f:
            cached = [{k: _num(v) for k, v in row.items()} for row in csv.DictReader(f)]
        if not cached or all(name in cached[0] for name in QUALITY_FEATURES):
            return cached
        print(f"{path.name}: cached before a flag feature was added; measuring again")
    rows = []
    for k in range(FOLDS):
        records, _ = select_records(data, root / f"split.fold{k}.csv", "val")
        result = evaluation_rows(measurer_of(k), records)
        for row in result.rows:
            rows.append({"fold": k, **row})
        for reason in result.skipped:  # an image with no head counts as a failure
            rows.append({"fold": k, "filename": reason.split(":")[0], "status": "no_head"})
    write_csv(path, rows)
    return rows


def _num(v: str):
    try:
        return float(v)
    except ValueError:
        return v


def figures(rows: list[dict]) -> dict:
    adf = np.array([r.get("hc_abs_diff_mm", math.nan) for r in rows], dtype=float)
    failed = ~np.isfinite(adf)
    adf_f = adf[~failed]
    out = {
        "images": len(rows),
        "no_head": int(failed.sum()),
        "adf_mm": adf_f.mean(),
        "adf_median_mm": np.median(adf_f),
        "adf_sd_mm": adf_f.std(ddof=1),
        "df_mm": np.nanmean([r["hc_diff_mm"] for r in rows if "hc_diff_mm" in r]),
        "ellipse_dice_pct": 100 * np.nanmean([r.get("ellipse_dice", 0.0) for r in rows]),
        "ellipse_hd_mm": np.nanmean([r.get("ellipse_hd_mm", math.nan) for r in rows]),
        "mask_dice_pct": 100 * np.nanmean([r.get("dice", 0.0) for r in rows]),
        "over_5mm": int((adf_f > 5).sum() + failed.sum()),
        "over_10mm": int((adf_f > 10).sum() + failed.sum()),
    }
    ref = np.array([r.get("ref_hc_mm", math.nan) for r in rows], dtype=float)
    for lo, hi in HC_RANGES:
        sel = (ref >= lo) & (ref < hi) & ~failed
        out[f"adf_hc_{lo}_{hi}_mm"] = adf[sel].mean() if sel.any() else math.nan
        out[f"n_hc_{lo}_{hi}"] = int(sel.sum())
    return out


def choose_thresholds(rows: list[dict], share: float = FLAG_SHARE) -> dict:
    return flag_search.choose_thresholds(rows, share)


def held_out_flags(rows: list[dict], share: float = FLAG_SHARE) -> list[tuple]:
    return flag_search.held_out_flags(rows, share)


def feature_aucs(rows: list[dict]) -> list[dict]:
    """How well each flag feature alone ranks the large errors above the rest: the area
    under the ROC curve (Mann-Whitney U / (n_pos n_neg); 0.5 = chance)."""
    adf = np.array([r.get("hc_abs_diff_mm", math.nan) for r in rows], dtype=float)
    found = np.isfinite(adf)
    out = []
    for rule in RULES:
        key = rule.feature
        v = np.array([r.get(key, math.nan) for r in rows], dtype=float)[found]
        v = -v if rule.below else v  # higher = more suspicious
        v = np.where(np.isfinite(v), v, np.nanmin(v) if np.isfinite(v).any() else 0.0)
        row = {"feature": key}
        for mm in (5.0, 7.5):
            pos = adf[found] > mm
            u = mannwhitneyu(v[pos], v[~pos]).statistic if pos.any() and (~pos).any() else math.nan
            row[f"auc_over_{mm:g}mm"] = u / (pos.sum() * (~pos).sum()) if pos.any() else math.nan
        out.append(row)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/hc18"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--variants",
        default="two-pass,one-pass,two-pass-tta,two-pass-margin0.1,two-pass-margin0.05",
        help="inference variants to score out of fold; the flag is chosen for the best",
    )
    args = parser.parse_args()
    variants = args.variants.split(",")
    table = []
    all_rows = {}
    for v in variants:
        all_rows[v] = oof_rows(v, args.data, args.threads)
        table.append({"variant": v, **figures(all_rows[v])})
    write_csv(ROOT / "candidates.csv", table)

    chosen_variant = min(table, key=lambda r: r["adf_mm"])["variant"]
    rows = all_rows[chosen_variant]
    # Cross-validated flag: thresholds chosen on two folds, scored on the third.
    flag_rows, pooled = [], []
    for k, t, held, flags in held_out_flags(rows):
        flag_rows.append({"held_out_fold": k, **t, **catch_figures(held, flags)})
        pooled.extend(zip(held, flags, strict=True))
    final = choose_thresholds(rows)
    flag_rows.append(
        {"held_out_fold": "all (chosen on all folds)", **final, **flag_figures(rows, final)}
    )
    write_csv(ROOT / "flag.csv", flag_rows)
    aucs = feature_aucs(rows)
    write_csv(ROOT / "flag_features.csv", aucs)
    (ROOT / "quality.json").write_text(json.dumps(plain_thresholds(final), indent=2) + "\n")
    fig = catch_figures([r for r, _ in pooled], np.array([f for _, f in pooled]))
    cv = {"flagged_pct": fig["flagged_pct"]}
    for over in ("10mm", "7_5mm", "5mm"):
        cv[f"caught_{over}"] = f"{fig[f'caught_{over}']}/{fig[f'over_{over}']}"
    lines = [
        "# Model selection: out-of-fold figures",
        "",
        f"Recipe: `scripts/model_selection.sh`; 3 group-aware folds over the {len(rows)} "
        "train+val images (test part never used); each fold's last epoch.",
        "",
        "| variant | images | ADF mm (median, SD) | DF mm | ellipse Dice % | ellipse HD mm "
        "| >5 mm | >10 mm | ADF by ref HC <100 / 100-200 / 200-300 / >300 mm |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        ranges = " / ".join(
            f"{r[f'adf_hc_{lo}_{hi}_mm']:.2f} (n {r[f'n_hc_{lo}_{hi}']})" for lo, hi in HC_RANGES
        )
        lines.append(
            f"| {r['variant']} | {r['images']} | {r['adf_mm']:.2f} ({r['adf_median_mm']:.2f}, "
            f"{r['adf_sd_mm']:.2f}) | {r['df_mm']:+.2f} | {r['ellipse_dice_pct']:.2f} | "
            f"{r['ellipse_hd_mm']:.2f} | {r['over_5mm']} | {r['over_10mm']} | {ranges} |"
        )
    lines += [
        "",
        f"Quality flag ({chosen_variant}), thresholds chosen on two folds and scored on the "
        f"third, pooled: {cv['flagged_pct']:.1f} % flagged, errors > 10 mm caught "
        f"{cv['caught_10mm']}, > 7.5 mm {cv['caught_7_5mm']}, > 5 mm {cv['caught_5mm']} "
        "(per fold: flag.csv). Thresholds chosen on all folds (quality.json, stored with "
        f"the model): {_plain(final)}.",
        "",
        "Each feature alone (area under the ROC curve for errors over 5 / 7.5 mm; 0.5 = "
        "chance; flag_features.csv): "
        + ", ".join(
            f"{a['feature']} {a['auc_over_5mm']:.2f} / {a['auc_over_7.5mm']:.2f}" for a in aucs
        )
        + ".",
        "",
    ]
    (ROOT / "summary.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
