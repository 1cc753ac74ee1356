"""`fetalhc corrections import`: fill a corrections folder from files — an HC18-layout
folder (images, `_Annotation.png` outlines, the pixel-size CSV), or images with an ellipse
CSV in the columns `predict` writes (a clinic runs `predict`, fixes rows, imports)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from fetalhc.data.corrections import store_correction
from fetalhc.data.hc18 import load_labelled, read_pixel_csv, reference_ellipse
from fetalhc.errors import FetalHCError
from fetalhc.io.images import read_gray
from fetalhc.measure.ellipse import Ellipse

HC18_COLUMNS = ("center_x_mm", "center_y_mm", "semi_axes_a_mm", "semi_axes_b_mm", "angle_rad")


def import_corrections(
    source: Path, out: Path, ellipses: Path | None = None, pixel_csv: Path | None = None
) -> dict:
    """Store every usable labelled image of `source` in `out`; one bad row is its own
    problem line, the rest are stored."""
    stored, problems = 0, []
    if ellipses is None:
        for rec in load_labelled(source):
            try:
                gray = read_gray(rec.image_path)
                final = reference_ellipse(read_gray(rec.annotation_path))
                if final is None:
                    raise FetalHCError("the outline holds no ellipse")
                store_correction(
                    out, gray, final, rec.pixel_size_mm, source="hc18-import", name=rec.filename
                )
                stored += 1
            except (FetalHCError, ValueError, OSError) as exc:
                problems.append(f"{rec.filename}: {exc}")
    else:
        if pixel_csv is None:
            raise FetalHCError("--ellipses needs --pixel-csv (the ellipses are in mm)")
        sizes = read_pixel_csv(pixel_csv)
        try:
            with open(ellipses, newline="") as f:
                rows = list(csv.DictReader(f))
        except (OSError, csv.Error, UnicodeDecodeError) as exc:
            raise FetalHCError(f"{ellipses}: cannot read ({exc})") from None
        if not rows or not {"filename", *HC18_COLUMNS} <= set(rows[0]):
            raise FetalHCError(
                f"{ellipses}: expected the columns filename, {', '.join(HC18_COLUMNS)}"
            )
        for row in rows:
            name = row["filename"]
            try:
                size = float(sizes[name]["pixel_size"]) if name in sizes else math.nan
                values = [float(row[k]) for k in HC18_COLUMNS]
                if not math.isfinite(size) or size <= 0:
                    raise FetalHCError("no pixel size in --pixel-csv")
                cx, cy, a, b, angle = values
                final = Ellipse(cx / size, cy / size, a / size, b / size, angle)
                gray = read_gray(source / name)
                store_correction(out, gray, final, size, source="csv-import", name=name)
                stored += 1
            except (FetalHCError, ValueError, OSError, KeyError) as exc:
                problems.append(f"{name}: {exc}")
    return {"stored": stored, "skipped": len(problems), "problems": problems}
