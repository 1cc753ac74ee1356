"""Where the flag's fixed (untuned) image rules stand on real heads and on non-heads.

`fetalhc.measure.quality` has rules no threshold search tunes: the grey levels an image
spans (MIN_GREY_LEVELS) and how different the inside of the outline is from its
surroundings (MIN_INSIDE_OUTSIDE). This measures both on every labelled HC18 image with
its reference ellipse (so the figures do not depend on a model), and measures synthetic
non-heads — elliptical rings drawn on speckle, a range of ring strengths, widths, sizes and
speckle grain — with the bundled model, to show each rule's margin on both sides.

    python experiments/quality-fixed-rules/quality_fixed_rules.py [--data ../shared/hc18] [--out DIR]
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import cv2
import numpy as np

from fetalhc.data.hc18 import load_labelled, reference_ellipse
from fetalhc.io.files import atomic_path
from fetalhc.measure.quality import (
    MIN_GREY_LEVELS,
    MIN_INSIDE_OUTSIDE,
    grey_levels,
    inside_outside_difference,
)


def ring_on_speckle(
    rng: np.random.Generator,
    strength: float,
    width: int,
    grain: float,
    axes: tuple[int, int],
    angle: float,
) -> np.ndarray:
    """An 800x540 frame of smoothed Rayleigh speckle with an elliptical bright ring."""
    speckle = cv2.GaussianBlur(rng.rayleigh(60, (540, 800)), (0, 0), grain)
    ring = np.zeros((540, 800), np.float64)
    centre = (int(rng.integers(300, 500)), int(rng.integers(220, 320)))
    cv2.ellipse(ring, centre, axes, angle, 0, 360, 1.0, width)
    ring = cv2.GaussianBlur(ring, (0, 0), 2)
    return np.clip(speckle + strength * ring, 0, 255).astype(np.uint8)


def summary_line(values: np.ndarray) -> str:
    p = np.percentile(values, [0, 1, 5, 50, 95, 100])
    return ", ".join(f"{v:.3g}" for v in p)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/hc18"))
    parser.add_argument("--out", type=Path, default=Path("results/quality-fixed-rules"))
    parser.add_argument("--rings", type=int, default=24)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    rows = []
    for record in load_labelled(args.data):
        gray = cv2.imread(str(record.image_path), cv2.IMREAD_GRAYSCALE)
        outline = cv2.imread(str(record.annotation_path), cv2.IMREAD_GRAYSCALE)
        ellipse = reference_ellipse(outline)
        rows.append(
            {
                "filename": record.filename,
                "grey_levels": grey_levels(gray),
                "inside_outside": inside_outside_difference(gray, ellipse),
            }
        )

    from fetalhc.inference.measurer import HeadMeasurer  # the model only for the non-heads

    measurer = HeadMeasurer(threads=2)
    rng = np.random.default_rng(0)
    rings = []
    for k in range(args.rings):
        strength, width = float(rng.uniform(50, 200)), int(rng.integers(3, 14))
        grain = float(rng.uniform(0.8, 3.0))
        a = int(rng.integers(110, 220))
        axes, angle = (a, int(a * rng.uniform(0.7, 0.95))), float(rng.uniform(0, 180))
        image = ring_on_speckle(rng, strength, width, grain, axes, angle)
        result = measurer.measure(image, pixel_size_mm=0.15, name=f"ring_{k:02d}")
        rings.append(
            {
                "filename": f"ring_{k:02d}",
                "strength": round(strength, 1),
                "width": width,
                "grain": round(grain, 2),
                "status": result.status_text,
                "quality": result.quality,
                "grey_levels": result.grey_levels,
                "inside_outside": result.inside_outside,
            }
        )

    for name, table in (("hc18_reference.csv", rows), ("rings_on_speckle.csv", rings)):
        with atomic_path(args.out / name) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(
                {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in table
            )

    levels = np.array([r["grey_levels"] for r in rows])
    inside = np.array([r["inside_outside"] for r in rows])
    inside = inside[np.isfinite(inside)]
    ring_io = np.array([r["inside_outside"] for r in rings], float)
    measured = [r for r in rings if r["status"] == "ok"]
    ring_ok = sum(r["quality"] == "ok" for r in measured)
    lines = [
        "# The flag's fixed image rules: real heads against non-heads",
        "",
        "Made by `experiments/quality-fixed-rules/quality_fixed_rules.py`: every labelled HC18 image (`../shared/hc18`,",
        f"{len(rows)} images) with its reference ellipse, and {len(rings)} elliptical rings on",
        "speckle (seeded; strength, width, size, angle and speckle grain drawn at random)",
        "measured by the bundled model. Percentiles 0 / 1 / 5 / 50 / 95 / 100.",
        "",
        "| feature | rule | HC18 labelled images | tripped on HC18 |",
        "|---|---|---|---|",
        f"| grey levels | < {MIN_GREY_LEVELS:g} | {summary_line(levels)} | "
        f"{int((levels < MIN_GREY_LEVELS).sum())} |",
        f"| inside vs outside (KS) | < {MIN_INSIDE_OUTSIDE:g} | {summary_line(inside)} | "
        f"{int((inside < MIN_INSIDE_OUTSIDE).sum())} of {inside.size} |",
        "",
        f"Rings on speckle: the model found a head in {len(measured)} of {len(rings)}; "
        f"inside vs outside {summary_line(ring_io[np.isfinite(ring_io)])}; "
        f"**{ring_ok} of {len(measured)} measured rings left `ok`**.",
        "",
    ]
    with atomic_path(args.out / "summary.md") as tmp:
        Path(tmp).write_text("\n".join(lines))
    print("\n".join(lines))
    return 0 if not math.isnan(float(np.nanmin(inside))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
