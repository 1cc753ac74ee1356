"""Segmentation and measurement metrics, pure functions on binary masks.

Overlap metrics follow the paper (pixel accuracy, Dice, foreground IoU). Surface metrics
are computed in millimetres with a per-axis spacing (row, column) as MONAI's
HausdorffDistanceMetric and SurfaceDistanceMetric do (symmetric, 100th percentile, boundary
= mask minus its erosion): each boundary pixel's distance to the nearest boundary pixel of
the other mask, found with SciPy's k-d tree. That is the value a Euclidean distance
transform of the other boundary gives at the pixel, for a few thousand boundary points
instead of every pixel of the window (tested against all pairwise distances).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import cv2
import numpy as np
from scipy.spatial import cKDTree


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


def surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float] = (1.0, 1.0)
) -> tuple[np.ndarray, np.ndarray]:
    """Distances (in spacing units) from pred's boundary to ref's, and from ref's to pred's."""
    p, r = _bool(pred), _bool(ref)
    # Only the window holding both masks, 2 pixels beyond them where the image allows: a
    # window edge that is not the image's edge then touches background only.
    x, y, w, h = cv2.boundingRect((p | r).astype(np.uint8))
    if w == 0:
        return np.array([]), np.array([])
    y0, x0 = max(y - 2, 0), max(x - 2, 0)
    window = (slice(y0, y + h + 2), slice(x0, x + w + 2))
    bp, br = boundary(p[window]), boundary(r[window])
    if not bp.any() or not br.any():
        return np.array([]), np.array([])
    scale = np.asarray(spacing, np.float64)
    points_p = np.argwhere(bp) * scale  # window coordinates: distances do not change
    points_r = np.argwhere(br) * scale
    to_ref = cKDTree(points_r).query(points_p)[0]
    to_pred = cKDTree(points_p).query(points_r)[0]
    return to_ref, to_pred


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
