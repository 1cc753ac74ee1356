"""From a probability map to a clean head mask, its ellipse and a measurement-quality flag."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from .ellipse import Ellipse, draw_filled, fit_mask, hc_mm
from .metrics import iou

# Thresholds of the quality flag, chosen on the validation part of the bundled model's
# split (see MODEL_CARD.md): a measurement is flagged `check` when the mask departs from
# its own ellipse, or when the network still sees head just outside the fitted edge.
MIN_ELLIPSE_IOU = 0.96
MAX_EDGE_PROBABILITY = 0.25
EDGE_RING = 0.06  # the ring outside the ellipse: up to 6 % beyond each semi-axis


@dataclass
class Measurement:
    mask: np.ndarray  # uint8 0/1, original size
    ellipse: Ellipse | None  # pixels
    status: str  # ok | no_head
    ellipse_iou: float = float("nan")  # agreement of the mask with its own fitted ellipse
    confidence: float = float("nan")  # mean probability inside the mask
    edge_probability: float = float("nan")  # mean probability in a ring just outside
    quality: str = "no_head"  # ok | check | no_head
    reasons: list[str] = field(default_factory=list)  # plain-language reasons for `check`

    def hc_mm(self, pixel_size_mm: float) -> float:
        return hc_mm(self.ellipse, pixel_size_mm) if self.ellipse is not None else float("nan")


def clean_mask(binary: np.ndarray) -> np.ndarray:
    """Largest connected component with its holes filled (0/1 uint8)."""
    m = (np.asarray(binary) > 0).astype(np.uint8)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.zeros_like(m)
    if not contours:
        return out
    # Filling the outer contour of the largest component keeps it and fills its holes.
    largest = max(contours, key=lambda c: (cv2.contourArea(c), len(c)))
    cv2.drawContours(out, [largest], -1, 1, thickness=cv2.FILLED)
    return out


def measure(prob: np.ndarray, threshold: float = 0.5, min_area_px: int = 100) -> Measurement:
    """Threshold, clean, fit; flag the measurement for review when the mask is not
    ellipse-like or the network was unsure."""
    mask = clean_mask(prob >= threshold)
    if int(mask.sum()) < min_area_px:
        return Measurement(mask, None, "no_head")
    ellipse = fit_mask(mask)
    if ellipse is None:
        return Measurement(mask, None, "no_head")
    inside = draw_filled(ellipse, mask.shape).astype(bool)
    agreement = iou(mask, inside)
    confidence = float(prob[mask > 0].mean())
    grown = Ellipse(
        ellipse.cx,
        ellipse.cy,
        ellipse.a * (1 + EDGE_RING),
        ellipse.b * (1 + EDGE_RING),
        ellipse.angle,
    )
    ring = draw_filled(grown, mask.shape).astype(bool) & ~inside
    edge = float(prob[ring].mean()) if ring.any() else 0.0
    reasons = []
    if agreement < MIN_ELLIPSE_IOU:
        reasons.append(
            f"the head outline is not elliptical (agreement {agreement:.2f} < {MIN_ELLIPSE_IOU})"
        )
    if edge > MAX_EDGE_PROBABILITY:
        reasons.append(
            "the model still sees head just outside the fitted ellipse (the skull edge may "
            "be faint or the mask may be cut short)"
        )
    quality = "check" if reasons else "ok"
    return Measurement(mask, ellipse, "ok", agreement, confidence, edge, quality, reasons)
