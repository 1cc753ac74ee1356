"""From a probability map to a clean head mask, its ellipse and a measurement-quality flag."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage

from .ellipse import Ellipse, draw_filled, fit_mask, hadlock_ga_weeks, hc_mm
from .metrics import iou

# Thresholds of the quality flag, chosen on the validation part (see README).
MIN_ELLIPSE_IOU = 0.97
MIN_CONFIDENCE = 0.90


@dataclass
class Measurement:
    mask: np.ndarray  # uint8 0/1, original size
    ellipse: Ellipse | None  # pixels
    status: str  # ok | no_head
    ellipse_iou: float = float("nan")  # agreement of the mask with its own fitted ellipse
    confidence: float = float("nan")  # mean probability inside the mask
    quality: str = "no_head"  # ok | check | no_head

    def hc_mm(self, pixel_size_mm: float) -> float:
        return hc_mm(self.ellipse, pixel_size_mm) if self.ellipse is not None else float("nan")

    def ga_weeks(self, pixel_size_mm: float) -> float:
        hc = self.hc_mm(pixel_size_mm)
        return hadlock_ga_weeks(hc) if np.isfinite(hc) else float("nan")


def clean_mask(binary: np.ndarray) -> np.ndarray:
    """Largest connected component with its holes filled (0/1 uint8)."""
    m = (np.asarray(binary) > 0).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
    if n <= 1:
        return np.zeros_like(m)
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    return ndimage.binary_fill_holes(labels == largest).astype(np.uint8)


def measure(prob: np.ndarray, threshold: float = 0.5, min_area_px: int = 100) -> Measurement:
    """Threshold, clean, fit; flag the measurement for review when the mask is not
    ellipse-like or the network was unsure."""
    mask = clean_mask(prob >= threshold)
    if int(mask.sum()) < min_area_px:
        return Measurement(mask, None, "no_head")
    ellipse = fit_mask(mask)
    if ellipse is None:
        return Measurement(mask, None, "no_head")
    agreement = iou(mask, draw_filled(ellipse, mask.shape))
    confidence = float(prob[mask > 0].mean())
    quality = "ok" if agreement >= MIN_ELLIPSE_IOU and confidence >= MIN_CONFIDENCE else "check"
    return Measurement(mask, ellipse, "ok", agreement, confidence, quality)
