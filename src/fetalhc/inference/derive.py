"""A mask's fit made a result, once (`result_from_measurement`): the pixel size
resolved where the head lies, mm, plausibility, intervals, and the quality flag decided
on every feature known."""

from __future__ import annotations

import math

import numpy as np

from fetalhc.errors import Status
from fetalhc.inference.result import HeadMeasurement
from fetalhc.io.pixel_size import PixelSize
from fetalhc.measure.biometry import biometry
from fetalhc.measure.ellipse import Ellipse, hc_mm
from fetalhc.measure.postprocess import MaskFit
from fetalhc.measure.quality import (
    QualityThresholds,
    flag_reasons,
    grey_levels,
    inside_outside_difference,
    outline_outside,
    plausible_hc,
    plausible_pixel_size,
    unsupported_arc_deg,
)
from fetalhc.measure.uncertainty import IntervalCalibration


def image_features(gray: np.ndarray, ellipse: Ellipse | None) -> dict[str, float]:
    """The flag's features measured on the image itself, around the fitted head."""
    return {
        "grey_levels": grey_levels(gray),
        "inside_outside": inside_outside_difference(gray, ellipse),
        "outline_outside": outline_outside(ellipse, gray.shape),
    }


def result_from_measurement(
    name: str,
    m: MaskFit,
    pixel_size: PixelSize | float | None,
    ga_given_weeks: float | None = None,
    thresholds: QualityThresholds = QualityThresholds(),  # noqa: B008 - frozen, immutable
    image_features: dict[str, float] | None = None,
    image: np.ndarray | None = None,
    intervals: IntervalCalibration | None = None,
    offset_mm: float = 0.0,
) -> HeadMeasurement:
    """Turn a mask's fit into HC/GA in mm, in this order: the pixel size resolved
    for where the head lies (a DICOM region's, `PixelSize.for_head`), every number checked
    for plausibility, a calibrated interval on HC, BPD and OFD (`intervals`, the model's;
    none without), and the quality flag (fetalhc.measure.quality) decided once, on every
    feature known. `offset_mm`: a clinic's calliper convention (`fetalhc adapt`): the
    fitted ellipse moved outward (inward if negative) by that many mm before anything is
    measured on it. `image_features`: what was measured on the image itself (see
    `image_features`); `image`: the 8-bit grey input, for what needs the pixel size too
    (the skull under the outline)."""
    seen = {
        "grey_levels": math.nan,
        "inside_outside": math.nan,
        "outline_outside": math.nan,
        **(image_features or {}),
    }
    ellipse = m.ellipse
    pixel = PixelSize.of(pixel_size).for_head(ellipse.box_corners() if ellipse else None)
    result = HeadMeasurement(
        filename=name,
        status=Status.OK,
        pixel_size_mm=pixel.mm,
        pixel_size_source=pixel.source,
        ellipse_px=ellipse,
        ellipse_iou=m.ellipse_iou,
        confidence=m.confidence,
        edge_probability=m.edge_probability,
        pass_disagreement=m.pass_disagreement,
        grey_levels=seen["grey_levels"],
        inside_outside=seen["inside_outside"],
        outline_outside=seen["outline_outside"],
        second_head_ratio=m.second_head_ratio,
        mask=m.mask,
        image=image,
    )
    if ellipse is None:
        result.status = Status.NO_HEAD
        return result
    mm_features: dict[str, float] = {}
    implausible: list[str] = []
    if pixel.mm is None:
        result.status, result.detail = Status.NO_PIXEL_SIZE, pixel.note
    elif why := plausible_pixel_size(pixel.mm):
        result.status, result.detail = Status.IMPLAUSIBLE_PIXEL_SIZE, why
    else:
        ellipse = _hc(result, m, pixel.mm, image, offset_mm)
        if why := plausible_hc(result.hc_mm):
            result.status, result.detail = Status.IMPLAUSIBLE_HC, why
            implausible.append(why)
        else:
            mm_features = _biometry(result, ellipse, pixel.mm, ga_given_weeks, intervals)
    features = {**result.quality_features(), **mm_features}
    result.quality_reasons = [*flag_reasons(features, thresholds), *implausible]
    result.quality = "check" if result.quality_reasons else "ok"
    return result


def _hc(
    result: HeadMeasurement,
    m: MaskFit,
    pixel_size_mm: float,
    image: np.ndarray | None,
    offset_mm: float,
) -> Ellipse:
    """Fill the result's HC and the mm features measured on the fit (the passes'
    distance, the unsupported arc); return the ellipse HC was measured on (moved by the
    clinic's offset)."""
    ellipse = m.ellipse
    if offset_mm:
        ellipse = ellipse.grown(offset_mm / pixel_size_mm)
        result.ellipse_px = ellipse
    result.hc_mm = hc_mm(ellipse, pixel_size_mm)
    result.pass_distance_mm = m.pass_distance_px * pixel_size_mm
    if image is not None:
        levels = result.grey_levels if math.isfinite(result.grey_levels) else None
        result.unsupported_arc_deg = unsupported_arc_deg(image, m.ellipse, pixel_size_mm, levels)
    return ellipse


def _biometry(
    result: HeadMeasurement,
    ellipse: Ellipse,
    pixel_size_mm: float,
    ga_given_weeks: float | None,
    intervals: IntervalCalibration | None,
) -> dict[str, float]:
    """Fill a plausible HC's biometry, GA and intervals; return the flag's features that
    need them beyond the result's own."""
    features = {
        **result.quality_features(),
        "hc_mm": result.hc_mm,
        "pixel_size_mm": pixel_size_mm,
    }
    hc_range = intervals.interval("hc_mm", result.hc_mm, features) if intervals else None
    result.biometry = biometry(ellipse.scaled(pixel_size_mm), ga_given_weeks, hc_range)
    hadlock = result.biometry.ga_hadlock_weeks
    result.ga_weeks = hadlock if hadlock is not None else math.nan
    extra = {"hc_mm": result.hc_mm, "pixel_size_mm": pixel_size_mm}
    if hc_range is not None:
        result.interval_level = intervals.level
        result.interval_note = intervals.note
        result.intervals["hc_mm"] = hc_range
        for key in ("bpd_mm", "ofd_mm"):
            pair = intervals.interval(key, getattr(result.biometry, key), features)
            if pair is not None:
                result.intervals[key] = pair
        extra["hc_halfwidth_mm"] = (hc_range[1] - hc_range[0]) / 2
    extra["cephalic_index"] = result.biometry.cephalic_index
    return extra
