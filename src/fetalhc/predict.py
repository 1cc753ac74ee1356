"""`fetalhc predict`: HC18 submission rows, masks and overlays for images or a folder."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from .data import is_annotation, parse_positive, read_pixel_csv
from .errors import FetalHCError
from .fileio import atomic_path, read_gray, write_png
from .inference import Segmenter, upsample_probability
from .overlay import overlay
from .postprocess import measure

COLUMNS = [
    "filename",
    "center_x_mm",
    "center_y_mm",
    "semi_axes_a_mm",
    "semi_axes_b_mm",
    "angle_rad",
    "hc_mm",
    "ga_weeks",
    "quality",
    "ellipse_iou",
    "confidence",
    "edge_probability",
    "status",
]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass
class PredictOptions:
    pixel_size: float | None = None
    pixel_csv: Path | None = None
    masks: bool = True
    overlays: bool = True


def collect_images(inputs: list[Path]) -> list[Path]:
    """Images named on the command line or inside named folders (annotations left out)."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found += sorted(
                p
                for p in item.iterdir()
                if p.suffix.lower() in IMAGE_SUFFIXES and not is_annotation(p)
            )
        elif item.exists():
            found.append(item)
        else:
            raise FetalHCError(f"{item}: no such file or folder")
    if not found:
        raise FetalHCError("no images found in " + ", ".join(map(str, inputs)))
    return found


def pixel_sizes(paths: list[Path], options: PredictOptions) -> dict[str, float | None]:
    if options.pixel_csv is None and options.pixel_size is None:
        raise FetalHCError("give --pixel-size MM or --pixel-csv CSV (HC is reported in mm)")
    if options.pixel_size is not None and not options.pixel_size > 0:
        raise FetalHCError("--pixel-size must be a positive number of mm per pixel")
    rows = read_pixel_csv(options.pixel_csv) if options.pixel_csv else {}
    out: dict[str, float | None] = {}
    for p in paths:
        if p.name in rows:
            out[p.name] = parse_positive(rows[p.name]["pixel_size"])
        else:
            out[p.name] = options.pixel_size
    return out


def _empty_row(name: str, status: str) -> dict:
    row = {c: "" for c in COLUMNS}
    row.update(filename=name, status=status, quality="no_head")
    return row


def predict(
    paths: list[Path],
    sizes: dict[str, float | None],
    segmenter: Segmenter,
    out: Path,
    options: PredictOptions,
) -> int:
    """Write OUT/predictions.csv (+ masks, overlays); return how many images failed."""
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for start in tqdm(range(0, len(paths), segmenter.batch_size), desc="predict", unit="batch"):
        batch, images = [], []
        for p in paths[start : start + segmenter.batch_size]:
            if sizes[p.name] is None:
                rows.append(_empty_row(p.name, "no_pixel_size"))
                continue
            try:
                images.append(read_gray(p))
                batch.append(p)
            except ValueError as exc:
                rows.append(_empty_row(p.name, f"unreadable: {exc}"))
        if not batch:
            continue
        logits = segmenter.logits_model_size(images)
        for p, image, lg in zip(batch, images, logits, strict=True):
            rows.append(_measure_one(p, image, lg, sizes[p.name], out, options))
    rows.sort(key=lambda r: r["filename"])
    with atomic_path(out / "predictions.csv") as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return sum(r["status"] != "ok" for r in rows)


def _measure_one(
    path: Path, image, logits, pixel_mm: float, out: Path, options: PredictOptions
) -> dict:
    m = measure(upsample_probability(logits, image.shape[:2]))
    if options.masks:
        write_png(out / "masks" / f"{path.stem}_mask.png", m.mask * 255)
    if m.ellipse is None:
        if options.overlays:
            write_png(
                out / "overlays" / f"{path.stem}_overlay.png",
                overlay(image, None, ["no head found"]),
            )
        return _empty_row(path.name, "no_head")
    hc, ga = m.hc_mm(pixel_mm), m.ga_weeks(pixel_mm)
    row = {"filename": path.name, **m.ellipse.scaled(pixel_mm).as_hc18()}
    row.update(
        hc_mm=hc,
        ga_weeks=ga,
        quality=m.quality,
        ellipse_iou=m.ellipse_iou,
        confidence=m.confidence,
        edge_probability=m.edge_probability,
        status="ok",
    )
    if options.overlays:
        lines = [f"HC {hc:.1f} mm", f"GA {ga:.1f} weeks (Hadlock)"]
        if m.quality != "ok":
            lines.append("check: measurement may be unreliable")
        write_png(
            out / "overlays" / f"{path.stem}_overlay.png",
            overlay(image, m.ellipse, lines, flagged=m.quality != "ok"),
        )
    return {
        k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()
    }
