"""From a probability map to a clean head mask, its ellipse and the features the quality
flag is decided on (in `fetalhc.inference.derive`, once every feature is known)."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fetalhc.measure.ellipse import Ellipse, fit_mask, hc_mm, radius_squared
from fetalhc.measure.maps import WindowedMap, as_windowed
from fetalhc.measure.metrics import assd

EDGE_RING = 0.06  # the ring outside the ellipse: up to 6 % beyond each semi-axis
# The passes' outline distance is computed on masks at most this many pixels a side: exact
# distance transforms of a 50-megapixel image would take gigabytes, for a sub-pixel gain.
OUTLINE_DISTANCE_MAX_SIDE = 2048


@dataclass
class MaskFit:
    """A probability map made a mask and fitted: the geometry and the network's features
    the result (`fetalhc.inference.derive`, `HeadMeasurement`) is made of; no ellipse: no
    head."""

    mask: np.ndarray  # uint8 0/1, original size
    ellipse: Ellipse | None  # pixels
    ellipse_iou: float = float("nan")  # agreement of the mask with its own fitted ellipse
    confidence: float = float("nan")  # mean probability inside the mask
    edge_probability: float = float("nan")  # mean probability in a ring just outside
    pass_disagreement: float = float("nan")  # two-pass models: relative HC difference
    pass_distance_px: float = float("nan")  # two-pass models: mean outline distance (ASSD)
    second_head_ratio: float = float("nan")  # the next largest head-like region / this one

    def hc_mm(self, pixel_size_mm: float) -> float:
        return hc_mm(self.ellipse, pixel_size_mm) if self.ellipse is not None else float("nan")


def clean_mask(binary: np.ndarray) -> np.ndarray:
    """Largest connected component with its holes filled (0/1 uint8)."""
    return largest_component(binary)[0]


def largest_component(binary: np.ndarray) -> tuple[np.ndarray, float]:
    """The largest connected component with its holes filled (0/1 uint8), and the area of
    the next largest as a share of it (0 if there is none): a second head, twins."""
    m = (np.asarray(binary) > 0).astype(np.uint8)
    if m.size == 0:  # an empty window
        return m, 0.0
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    out = np.zeros_like(m)
    if not contours:
        return out, 0.0
    # Filling the outer contour of the largest component keeps it and fills its holes.
    ranked = sorted(contours, key=lambda c: (cv2.contourArea(c), len(c)), reverse=True)
    cv2.drawContours(out, [ranked[0]], -1, 1, thickness=cv2.FILLED)
    first = cv2.contourArea(ranked[0])
    second = cv2.contourArea(ranked[1]) if len(ranked) > 1 else 0.0
    return out, float(second / first) if first > 0 else 0.0


def outline_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean symmetric distance (pixels of `a`) between the outlines of two 0/1 masks of the
    same shape, on copies shrunk to OUTLINE_DISTANCE_MAX_SIDE when larger."""
    scale = max(a.shape) / OUTLINE_DISTANCE_MAX_SIDE
    if scale <= 1:
        return assd(a, b)
    size = (round(a.shape[1] / scale), round(a.shape[0] / scale))

    def shrink(m: np.ndarray) -> np.ndarray:
        return cv2.resize(np.asarray(m, np.uint8), size, interpolation=cv2.INTER_NEAREST)

    return assd(shrink(a), shrink(b)) * scale


def measure(
    prob: np.ndarray | WindowedMap,
    threshold: float = 0.5,
    min_area_px: int = 100,
    coarse: np.ndarray | WindowedMap | None = None,
    other_view: np.ndarray | WindowedMap | None = None,
) -> MaskFit:
    """Threshold, clean, fit; measure how ellipse-like the mask is, how sure the network
    was and (given the first pass's probability `coarse`) how far the two passes lie
    apart. `other_view`: the probability on the other view of a side-by-side image (its
    own pixels, same scale), whose head counts as a second head. A map held in a window
    (`WindowedMap`) is thresholded there only: its outside must lie below `threshold`."""
    prob = as_windowed(prob)
    inside_window, second = largest_component(prob.values >= threshold)
    mask = prob.paste(inside_window)
    if coarse is not None:  # the whole-image pass sees a second head the close-up may crop
        coarse = as_windowed(coarse)
        first_inside, first_second = largest_component(coarse.values >= threshold)
        first_mask = coarse.paste(first_inside)
        second = max(second, first_second)
    if int(mask.sum()) < min_area_px:
        return MaskFit(mask, None)
    if other_view is not None:  # a head in the other view: a second head, as its share
        other = largest_component(as_windowed(other_view).values >= threshold)[0]
        second = max(second, float(other.sum()) / float(mask.sum()))
    ellipse = fit_mask(mask)
    if ellipse is None:
        return MaskFit(mask, None)
    # One map of the ellipse's radius serves its inside (the IoU) and the ring beyond it.
    r2, box = radius_squared(ellipse, mask.shape, 1 + EDGE_RING)
    inside = r2 <= 1.0
    in_box = mask[box] > 0
    overlap = int((in_box & inside).sum())
    union = int(mask.sum()) + int(inside.sum()) - overlap
    agreement = overlap / union if union else 1.0
    confidence = float(prob.values[inside_window > 0].mean())
    ring = (r2 <= (1 + EDGE_RING) ** 2) & ~inside
    edge = float(prob.read(box)[ring].mean()) if ring.any() else 0.0
    disagreement = distance = float("nan")
    if coarse is not None:
        first = fit_mask(first_mask)
        perimeter = hc_mm(ellipse, 1.0)
        disagreement = abs(perimeter - hc_mm(first, 1.0)) / perimeter if first else 1.0
        # No first-pass head: as far apart as the image is wide.
        distance = float(max(mask.shape))
        if first_mask.any():
            distance = outline_distance(mask, first_mask)
    return MaskFit(
        mask,
        ellipse,
        ellipse_iou=agreement,
        confidence=confidence,
        edge_probability=edge,
        pass_disagreement=disagreement,
        pass_distance_px=distance,
        second_head_ratio=second,
    )
