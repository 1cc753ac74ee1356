"""Segmentation and measurement metrics, pure functions on binary masks.

Overlap metrics follow the paper (pixel accuracy, Dice, foreground IoU). Surface metrics
are computed in millimetres with a per-axis spacing (row, column), from Euclidean distance
transforms (SciPy) of each mask's boundary, as MONAI's HausdorffDistanceMetric and
SurfaceDistanceMetric do (symmetric, 100th percentile, boundary = mask minus its erosion).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np
from scipy import ndimage


def _bool(mask: np.ndarray) -> np.ndarray:
    return np.asarray(mask) > 0


def pixel_accuracy(pred: np.ndarray, ref: np.ndarray) -> float:
    p, r = _bool(pred), _bool(ref)
    return float((p == r).mean())


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of the foreground; 1 when both masks are empty."""
    p, r = _bool(pred), _bool(ref)
    total = int(p.sum()) + int(r.sum())
    return 1.0 if total == 0 else 2.0 * int((p & r).sum()) / total


def iou(pred: np.ndarray, ref: np.ndarray) -> float:
    """Foreground IoU (what the paper reports as mIoU); 1 when both masks are empty."""
    p, r = _bool(pred), _bool(ref)
    union = int((p | r).sum())
    return 1.0 if union == 0 else int((p & r).sum()) / union


_CROSS = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], np.uint8)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of the mask that touch the background (4-neighbourhood), image edge excluded."""
    m = (np.asarray(mask) > 0).astype(np.uint8)
    # OpenCV's default erosion border counts outside pixels as foreground, like
    # scipy's border_value=1: a mask running off the image has no boundary on the edge.
    return (m - cv2.erode(m, _CROSS)).astype(bool)


def _crop(*masks: np.ndarray, margin: int = 2) -> tuple[slice, slice]:
    """Bounding box of all masks: distances between their boundaries stay inside it."""
    union = np.zeros_like(masks[0], dtype=bool)
    for m in masks:
        union |= m
    rows, cols = np.nonzero(union)
    h, w = union.shape
    return (
        slice(max(rows.min() - margin, 0), min(rows.max() + margin + 1, h)),
        slice(max(cols.min() - margin, 0), min(cols.max() + margin + 1, w)),
    )


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (in spacing units) from pred's boundary to ref's, and from ref's to pred's."""
    bp, br = boundary(pred), boundary(ref)
    if not bp.any() or not br.any():
        return np.array([]), np.array([])
    window = _crop(bp, br)
    bp, br = bp[window], br[window]
    to_ref = ndimage.distance_transform_edt(~br, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~bp, sampling=spacing)
    return to_ref[bp], to_pred[br]


def hausdorff_and_assd(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)
) -> tuple[float, float]:
    """Both surface metrics from one pair of distance transforms; NaN if a mask is empty."""
    a, b = surface_distances(pred, ref, spacing)
    if a.size == 0:
        return math.nan, math.nan
    return float(max(a.max(), b.max())), float((a.sum() + b.sum()) / (a.size + b.size))


def hausdorff(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)
) -> float:
    """Symmetric Hausdorff distance; NaN when either mask is empty."""
    return hausdorff_and_assd(pred, ref, spacing)[0]


def assd(pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)) -> float:
    """Average symmetric surface distance; NaN when either mask is empty."""
    return hausdorff_and_assd(pred, ref, spacing)[1]


def summarise(values: Iterable[float]) -> dict[str, float | int]:
    """Mean, SD, median and 95th percentile of the finite values (and how many were not)."""
    v = np.asarray([x for x in values if x is not None], dtype=float)
    finite = v[np.isfinite(v)]
    if finite.size == 0:
        return {
            "n": 0,
            "n_missing": int(v.size),
            "mean": math.nan,
            "sd": math.nan,
            "median": math.nan,
            "p95": math.nan,
        }
    return {
        "n": int(finite.size),
        "n_missing": int(v.size - finite.size),
        "mean": float(finite.mean()),
        "sd": float(finite.std(ddof=1)) if finite.size > 1 else 0.0,
        "median": float(np.median(finite)),
        "p95": float(np.percentile(finite, 95)),
    }
