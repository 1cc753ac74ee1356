"""Metrics at original resolution for 200 images, without the network (target < 10 s).

For each labelled image: the reference mask, a "prediction" made from it (shifted and
dilated, so boundaries differ), then what `fetalhc evaluate` computes per image: cleaning,
ellipse fit, quality flag, pixel accuracy, Dice, IoU, Hausdorff and ASSD in mm, HC and GA.
Masks are built before the clock starts.

    python benchmarks/metrics_speed.py [--data ../shared/hc18] [--n 200]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import cv2
import numpy as np

from fetalhc.data.hc18 import load_labelled, load_mask
from fetalhc.inference.evaluate import image_metrics
from fetalhc.measure.postprocess import measure
from fetalhc.sample import sample_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path("../shared/hc18")
    parser.add_argument("--data", type=Path, default=default if default.is_dir() else sample_dir())
    parser.add_argument("--n", type=int, default=200)
    args = parser.parse_args()
    records = load_labelled(args.data)
    records = (records * (args.n // len(records) + 1))[: args.n]
    refs = [load_mask(r) for r in records]
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7))
    preds = []
    for ref in refs:
        shifted = np.roll(ref, (3, -4), axis=(0, 1))
        preds.append(cv2.dilate(shifted, kernel).astype(np.float32))
    t0 = time.perf_counter()
    hcs = []
    for rec, ref, pred in zip(records, refs, preds, strict=True):
        m = measure(pred)
        image_metrics(m.mask, ref, rec.pixel_size_mm)
        hcs.append(m.hc_mm(rec.pixel_size_mm))
    seconds = time.perf_counter() - t0
    print(
        f"machine: {platform.processor() or platform.machine()}; {len(records)} images at "
        f"original resolution: {seconds:.2f} s ({1000 * seconds / len(records):.1f} ms/image; "
        f"target < 10 s)"
    )


if __name__ == "__main__":
    main()
