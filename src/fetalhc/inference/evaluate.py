"""`fetalhc evaluate`: per-image metrics at original resolution, HC in mm, paper metrics."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from fetalhc.data.hc18 import Record, load_labelled, reference_ellipse
from fetalhc.data.split import part_files, read_split
from fetalhc.errors import FetalHCError
from fetalhc.inference.measurer import QUALITY_FEATURES, HeadMeasurer
from fetalhc.inference.segmenter import Segmenter
from fetalhc.io.files import write_csv, write_json, write_png, write_text
from fetalhc.io.images import read_gray
from fetalhc.measure import metrics
from fetalhc.measure.biometry import diameters_mm, hadlock_ga_weeks
from fetalhc.measure.ellipse import Ellipse, draw_filled, hc_mm
from fetalhc.measure.overlay import overlay

log = logging.getLogger(__name__)

# The ranges HC18 results are usually broken down by (trimesters, roughly).
HC_RANGES = (
    (0, 100, "< 100 mm"),
    (100, 200, "100–200 mm"),
    (200, 300, "200–300 mm"),
    (300, math.inf, "> 300 mm"),
)
SUMMARY_KEYS = (
    "pixel_accuracy",
    "dice",
    "iou",
    "hd_mm",
    "assd_mm",
    "hc_abs_diff_mm",
    "hc_diff_mm",
    "paper_pixel_accuracy",
    "paper_dice",
    "paper_iou",
    "ellipse_dice",
    "ellipse_hd_mm",
)


# The biometry columns of an evaluation row.
EVALUATED_BIOMETRY = (
    "ofd_mm",
    "bpd_mm",
    "cephalic_index",
    "ga_intergrowth_weeks",
    # the model's calibrated intervals, scored against the references
    "hc_low_mm",
    "hc_high_mm",
    "ofd_low_mm",
    "ofd_high_mm",
    "bpd_low_mm",
    "bpd_high_mm",
)


@dataclass
class EvalOptions:
    part: str = "test"
    worst: int = 10
    threshold: float = 0.5


def image_metrics(pred: np.ndarray, ref: np.ndarray, pixel_size_mm: float) -> dict[str, float]:
    """Overlap and surface metrics of one image at original resolution (mm)."""
    spacing = (pixel_size_mm, pixel_size_mm)
    hd, asd = metrics.hausdorff_and_assd(pred, ref, spacing)
    return {
        "pixel_accuracy": metrics.pixel_accuracy(pred, ref),
        "dice": metrics.dice(pred, ref),
        "iou": metrics.iou(pred, ref),
        "hd_mm": hd,
        "assd_mm": asd,
    }


def challenge_metrics(
    pred: Ellipse | None, ref: Ellipse, shape: tuple[int, int], pixel_size_mm: float
) -> dict[str, float]:
    """The HC18 challenge's overlap metrics: the submitted ellipse against the reference
    ellipse, both filled (its DF and ADF are `hc_diff_mm` and `hc_abs_diff_mm`)."""
    if pred is None:
        return {"ellipse_dice": 0.0, "ellipse_hd_mm": math.nan}
    a, b = draw_filled(pred, shape), draw_filled(ref, shape)
    hd, _ = metrics.hausdorff_and_assd(a, b, (pixel_size_mm, pixel_size_mm))
    return {"ellipse_dice": metrics.dice(a, b), "ellipse_hd_mm": hd}


def paper_metrics(logits_small: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """The paper's metrics at model resolution: thresholded output vs resized reference."""
    h, w = logits_small.shape
    ref_small = cv2.resize(ref.astype(np.float32), (w, h), interpolation=cv2.INTER_AREA) >= 0.5
    pred_small = logits_small > 0
    return {
        "paper_pixel_accuracy": metrics.pixel_accuracy(pred_small, ref_small),
        "paper_dice": metrics.dice(pred_small, ref_small),
        "paper_iou": metrics.iou(pred_small, ref_small),
    }


@dataclass
class EvaluationRows:
    """What `evaluation_rows` returns: one row per evaluated image, the skipped inputs
    (each with its reason) and what the overlays of the worst images need."""

    rows: list[dict]
    skipped: list[str]
    ellipses: dict[str, tuple[Path, object, object]]
    seconds: float


def evaluation_rows(
    measurer: HeadMeasurer,
    records: list[Record],
    threshold: float = 0.5,
    skipped: list[str] | None = None,
) -> EvaluationRows:
    """Measure labelled images through the one segment-and-measure path and score each
    against its reference (nothing is written)."""
    rows: list[dict] = []
    skipped = list(skipped or [])
    ellipses: dict[str, tuple[Path, object, object]] = {}
    t0 = time.perf_counter()
    results = measurer.measure_many(
        [r.image_path for r in records],
        [r.pixel_size_mm for r in records],
        [r.filename for r in records],
        threshold=threshold,
        keep_logits=True,
    )
    by_name = {r.filename: r for r in records}
    for result in tqdm(results, total=len(records), desc="evaluate", unit="img", disable=None):
        rec = by_name[result.filename]
        if result.logits is None:
            skipped.append(f"{rec.filename}: {result.status_text}")
            log.warning("skipped %s: %s", rec.filename, result.status_text)
            continue
        try:
            outline = read_gray(rec.annotation_path)
            ref_ellipse = reference_ellipse(outline)
            if ref_ellipse is None:
                raise ValueError("annotation holds no ellipse")
            ref = draw_filled(ref_ellipse, outline.shape[:2])
        except ValueError as exc:  # a bad annotation: report it, go on with the rest
            skipped.append(f"{rec.filename}: annotation: {exc}")
            log.warning("skipped %s: annotation: %s", rec.filename, exc)
            continue
        ref_hc = rec.hc_mm if rec.hc_mm else hc_mm(ref_ellipse, rec.pixel_size_mm)
        measured = result.record()
        pred_hc = measured["hc_mm"]
        row = {"filename": rec.filename, "subject": rec.subject, "pixel_size_mm": rec.pixel_size_mm}
        row.update(image_metrics(result.mask, ref, rec.pixel_size_mm))
        row.update(paper_metrics(result.logits, ref))
        row.update(challenge_metrics(result.ellipse_px, ref_ellipse, ref.shape, rec.pixel_size_mm))
        row.update(
            {
                "hc_mm": pred_hc,
                "ref_hc_mm": ref_hc,
                "hc_diff_mm": pred_hc - ref_hc,
                "hc_abs_diff_mm": abs(pred_hc - ref_hc),
                "ga_weeks": measured["ga_weeks"],
                "ref_ga_weeks": hadlock_ga_weeks(ref_hc, extrapolate=True),
            }
        )
        row.update({k: measured[k] for k in (*QUALITY_FEATURES, "quality", "status")})
        row.update({k: measured[k] for k in EVALUATED_BIOMETRY})
        row["ref_ofd_mm"], row["ref_bpd_mm"] = diameters_mm(ref_ellipse.scaled(rec.pixel_size_mm))
        rows.append(row)
        ellipses[rec.filename] = (rec.image_path, result.ellipse_px, ref_ellipse)
    return EvaluationRows(rows, skipped, ellipses, time.perf_counter() - t0)


def evaluate_records(
    measurer: HeadMeasurer,
    records: list[Record],
    out: Path,
    options: EvalOptions,
    skipped: list[str] | None = None,
) -> dict:
    """Evaluate and write per_image.csv, summary.json, summary.md and worst overlays."""
    found = evaluation_rows(measurer, records, options.threshold, skipped)
    if not found.rows:
        raise FetalHCError("no image could be evaluated")
    return _write_outputs(
        found.rows, found.ellipses, out, options, measurer.segmenter, found.skipped, found.seconds
    )


def _write_outputs(
    rows,
    cache,
    out: Path,
    options: EvalOptions,
    segmenter: Segmenter,
    skipped: list[str],
    network_seconds: float,
) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "per_image.csv", rows)
    summary: dict = {
        # relative: a committed evaluation holds no absolute path of the machine it ran on
        "checkpoint": os.path.relpath(segmenter.checkpoint.resolve(), out.resolve()),
        "backend": segmenter.backend,
        "images": len(rows),
        "part": options.part,
        "skipped": skipped,
        "no_head": sum(r["status"] != "ok" for r in rows),
        "network_seconds": network_seconds,
        "metrics": {k: metrics.summarise(r[k] for r in rows) for k in SUMMARY_KEYS},
    }
    summary["by_hc_range"] = {
        label: metrics.summarise(r["hc_abs_diff_mm"] for r in rows if lo <= r["ref_hc_mm"] < hi)
        for lo, hi, label in HC_RANGES
    }
    summary["quality_flag"] = flag_report(rows)
    worst = sorted(
        (r for r in rows if np.isfinite(r["hc_abs_diff_mm"])), key=lambda r: -r["hc_abs_diff_mm"]
    )[: options.worst]
    worst += [r for r in rows if not np.isfinite(r["hc_abs_diff_mm"])]
    for r in worst:
        image_path, ellipse, ref_ellipse = cache[r["filename"]]
        image = read_gray(image_path)  # re-read: only the worst images are kept for overlays
        text = [
            f"HC {r['hc_mm']:.1f} mm (ref {r['ref_hc_mm']:.1f})",
            f"Dice {r['dice']:.3f}  quality {r['quality']}",
        ]
        write_png(
            out / "worst" / f"{Path(r['filename']).stem}_overlay.png",
            overlay(image, ellipse, text, reference=ref_ellipse, flagged=r["quality"] != "ok"),
        )
    summary["worst"] = [
        {k: r[k] for k in ("filename", "hc_mm", "ref_hc_mm", "hc_abs_diff_mm", "dice", "quality")}
        for r in worst
    ]
    write_json(out / "summary.json", summary)
    write_text(out / "summary.md", summary_markdown(summary))
    return summary


def flag_report(rows: list[dict], thresholds_mm: tuple[float, ...] = (5.0, 10.0)) -> dict:
    """How well the quality flag catches large HC errors: for each threshold, how many
    images are off by more (no head counts as off) and how many of those are flagged."""
    flagged = [r for r in rows if r["quality"] != "ok"]
    ok_rows = [r for r in rows if r["quality"] == "ok"]
    catches = []
    for mm in thresholds_mm:
        bad = [r for r in rows if not (r["hc_abs_diff_mm"] <= mm)]
        caught = [r for r in bad if r["quality"] != "ok"]
        catches.append({"error_over_mm": mm, "images": len(bad), "caught": len(caught)})
    return {
        "flagged": len(flagged),
        "flagged_pct": 100 * len(flagged) / len(rows) if rows else math.nan,
        "catches": catches,
        "hc_abs_diff_mm_unflagged": metrics.summarise(r["hc_abs_diff_mm"] for r in ok_rows),
    }


def _fmt(s: dict) -> str:
    return f"{s['mean']:.3f} ± {s['sd']:.3f} (median {s['median']:.3f}, p95 {s['p95']:.3f})"


def summary_markdown(summary: dict) -> str:
    m = summary["metrics"]
    lines = [
        f"# Evaluation: {summary['images']} images ({summary['part']})",
        "",
        f"Checkpoint `{summary['checkpoint']}`, backend {summary['backend']}; "
        f"no head found in {summary['no_head']} image(s).",
        "",
        "## At original resolution (mean ± SD, median, 95th percentile)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    names = {
        "pixel_accuracy": "pixel accuracy",
        "dice": "Dice",
        "iou": "IoU",
        "hd_mm": "Hausdorff (mm)",
        "assd_mm": "ASSD (mm)",
        "hc_abs_diff_mm": "HC absolute difference (mm)",
        "hc_diff_mm": "HC difference (mm)",
    }
    lines += [f"| {label} | {_fmt(m[key])} |" for key, label in names.items()]
    lines += [
        "",
        "## The HC18 challenge's metrics (fitted ellipse against reference ellipse)",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ellipse Dice | {_fmt(m['ellipse_dice'])} |",
        f"| ellipse Hausdorff (mm) | {_fmt(m['ellipse_hd_mm'])} |",
        f"| ADF: absolute HC difference (mm) | {_fmt(m['hc_abs_diff_mm'])} |",
        f"| DF: HC difference (mm) | {_fmt(m['hc_diff_mm'])} |",
    ]
    lines += [
        "",
        "## The paper's metrics (model resolution, as the paper computed them)",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    for key, label in (
        ("paper_pixel_accuracy", "pixel accuracy"),
        ("paper_dice", "Dice"),
        ("paper_iou", "foreground IoU (the paper's mIoU)"),
    ):
        lines.append(f"| {label} | {_fmt(m[key])} |")
    lines += [
        "",
        "## HC absolute difference by reference HC",
        "",
        "| HC range | n | mean (mm) | median | p95 |",
        "|---|---|---|---|---|",
    ]
    for label, s in summary["by_hc_range"].items():
        lines.append(
            f"| {label} | {s['n']} | {s['mean']:.2f} | {s['median']:.2f} | {s['p95']:.2f} |"
        )
    q = summary["quality_flag"]
    lines += [
        "",
        "## Quality flag",
        "",
        f"{q['flagged']} images flagged `check` ({q['flagged_pct']:.1f} %). Caught: "
        + "; ".join(
            f"{c['caught']} of the {c['images']} with an HC error over {c['error_over_mm']:g} mm"
            for c in q["catches"]
        )
        + f". HC absolute difference of unflagged images: "
        f"{_fmt(q['hc_abs_diff_mm_unflagged'])} mm.",
        "",
        "## Worst images (overlays in `worst/`; green/orange: prediction, blue: reference)",
        "",
        "| image | HC (mm) | reference (mm) | |diff| (mm) | Dice | quality |",
        "|---|---|---|---|---|---|",
    ]
    for r in summary["worst"]:
        lines.append(
            f"| {r['filename']} | {r['hc_mm']:.1f} | {r['ref_hc_mm']:.1f} | "
            f"{r['hc_abs_diff_mm']:.1f} | {r['dice']:.3f} | {r['quality']} |"
        )
    return "\n".join(lines) + "\n"


def select_records(
    data: str | Path, split: str | Path | None, part: str
) -> tuple[list[Record], list[str]]:
    """The labelled images of a split part, and each split entry that is not in `data`
    (named, so that every entry is accounted for)."""
    records = load_labelled(data)
    skipped: list[str] = []
    if split is not None:
        wanted = set(part_files(read_split(split), part))
        for name in sorted(wanted - {r.filename for r in records}):
            log.warning("skipped %s: in the split but not a labelled image of %s", name, data)
            skipped.append(
                f"{name}: in the split but not in {data} (image, CSV row or annotation missing)"
            )
        records = [r for r in records if r.filename in wanted]
    if not records:
        raise FetalHCError(f"no labelled images to evaluate (part {part!r})")
    return records, skipped


def evaluate(
    checkpoint: Path,
    data: Path,
    split: Path | None,
    out: Path,
    options: EvalOptions,
    backend: str = "auto",
    threads: int = 0,
    batch_size: int = 8,
    flip_tta: bool = False,
    average: Sequence[Path] = (),
) -> dict:
    records, skipped = select_records(data, split, options.part)
    measurer = HeadMeasurer(
        checkpoint,
        backend=backend,
        threads=threads,
        batch_size=batch_size,
        flip_tta=flip_tta,
        average=average,
    )
    return evaluate_records(measurer, records, out, options, skipped)
