"""A "second clinic" made from HC18's labelled images: another scanner's look and another
calliper convention, written in the HC18 layout (images, `_Annotation.png` outlines, the
pixel-size and HC CSV) so that `fetalhc adapt` and `fetalhc corrections import` take it.

    python experiments/second-clinic/make_clinic.py [--data ../shared/hc18]
        [--out experiments/second-clinic/data/clinic] [--n 200] [--inward-mm 1.5] [--seed 0]
    python experiments/second-clinic/make_clinic.py --unchanged --out .../data/hc18-copy

The look (seeded): a fan-shaped sector (black outside, the head inside it), coarser
speckle (multiplicative noise, blurred), a flatter grey curve (gamma 0.7, 0.75x + 30) and
another size (x 0.8, so the pixel size grows by 1/0.8). The convention: the reference
ellipse moved inward by `--inward-mm` (semi-axes shortened), as a clinic that places the
callipers on the skull's inner border would draw it; its HC is the CSV's reference.
`--unchanged`: the same images and outlines as HC18 has them (adapting should change
little there). The images are HC18's (CC BY 4.0); the folder is not committed.
"""

from __future__ import annotations

import argparse
import csv
import math
from pathlib import Path

import cv2
import numpy as np

from fetalhc.data.hc18 import load_labelled, reference_ellipse
from fetalhc.io.images import read_gray
from fetalhc.measure.ellipse import Ellipse, hc_mm

SCALE = 0.8


def look(gray: np.ndarray, e: Ellipse, rng: np.random.Generator) -> tuple[np.ndarray, Ellipse]:
    """The image as the other scanner shows it, and the ellipse in its pixels."""
    h, w = gray.shape
    size = (round(w * SCALE), round(h * SCALE))
    img = cv2.resize(gray, size, interpolation=cv2.INTER_AREA).astype(np.float32) / 255
    e = Ellipse(e.cx * SCALE, e.cy * SCALE, e.a * SCALE, e.b * SCALE, e.angle)
    speckle = cv2.GaussianBlur(rng.gamma(4.0, 0.25, img.shape).astype(np.float32), (0, 0), 1.6)
    img = np.clip(img * speckle, 0, 1) ** 0.7
    img = img * 0.75 + 30 / 255
    # the sector: apex above the image's top centre, wide enough for the whole head
    hh, ww = img.shape
    apex = np.array([ww / 2, -0.15 * hh])
    pts = cv2.ellipse2Poly(
        (int(e.cx), int(e.cy)), (int(e.a), int(e.b)), int(math.degrees(e.angle)), 0, 360, 10
    )
    angles = np.degrees(np.arctan2(pts[:, 0] - apex[0], pts[:, 1] - apex[1]))
    half = max(38.0, float(np.abs(angles).max()) + 4.0)
    yy, xx = np.mgrid[0:hh, 0:ww]
    theta = np.degrees(np.arctan2(xx - apex[0], yy - apex[1]))
    radius = np.hypot(xx - apex[0], yy - apex[1])
    inside = (np.abs(theta) <= half) & (radius >= 0.2 * hh)
    img = np.where(inside, img, 0.0)
    return np.clip(img * 255, 0, 255).astype(np.uint8), e


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/hc18"))
    parser.add_argument("--out", type=Path, default=Path("experiments/second-clinic/data/clinic"))
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--inward-mm", type=float, default=1.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--unchanged", action="store_true")
    args = parser.parse_args()
    records = load_labelled(args.data)
    rng = np.random.default_rng(args.seed)
    chosen = sorted(rng.choice(len(records), size=min(args.n, len(records)), replace=False))
    folder = args.out / "training_set"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in chosen:
        rec = records[i]
        gray = read_gray(rec.image_path)
        e = reference_ellipse(read_gray(rec.annotation_path))
        size = rec.pixel_size_mm
        if not args.unchanged:
            gray, e = look(gray, e, np.random.default_rng([args.seed, i]))
            size = size / SCALE
            inward = args.inward_mm / size
            e = Ellipse(e.cx, e.cy, e.a - inward, e.b - inward, e.angle)
        outline = np.zeros_like(gray)
        cv2.ellipse(
            outline,
            ((e.cx, e.cy), (2 * e.a, 2 * e.b), math.degrees(e.angle)),
            255,
            2,
        )
        cv2.imwrite(str(folder / rec.filename), gray)
        cv2.imwrite(str(folder / rec.filename.replace(".png", "_Annotation.png")), outline)
        rows.append([rec.filename, f"{size:.10g}", f"{hc_mm(e, size):.2f}"])
    with open(args.out / "training_set_pixel_size_and_HC.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", "pixel size(mm)", "head circumference (mm)"])
        w.writerows(rows)
    print(f"{args.out}: {len(rows)} labelled images")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
