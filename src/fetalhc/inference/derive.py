"""A mask measurement made a result: mm, plausibility, intervals and the flag, decided
once (`result_from_measurement`); and the same segmentation in another pixel size."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np

from fetalhc.errors import FetalHCError, Status
from fetalhc.inference.result import HeadMeasurement
from fetalhc.measure.biometry import biometry
from fetalhc.measure.ellipse import Ellipse, hc_mm
from fetalhc.measure.postprocess import Measurement
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
    m: Measurement,
    pixel_size_mm: float | None,
    ga_given_weeks: float | None = None,
    thresholds: QualityThresholds = QualityThresholds(),  # noqa: B008 - frozen, immutable
    image_features: dict[str, float] | None = None,
    image: np.ndarray | None = None,
    intervals: IntervalCalibration | None = None,
    offset_mm: float = 0.0,
) -> HeadMeasurement:
    """Turn a mask measurement into HC/GA in mm, checking every number for plausibility,
    putting a calibrated interval on HC, BPD and OFD (`intervals`, the model's; none
    without) and deciding the quality flag (fetalhc.measure.quality) on everything known.
    `offset_mm`: a clinic's calliper convention (`fetalhc adapt`): the fitted ellipse moved
    outward (inward if negative) by that many mm before anything is measured on it.
    `image_features`: what was measured on the image itself (`grey_levels`,
    `inside_outside`; see `image_features`); `image`: the 8-bit grey input, for what needs
    the pixel size too (the skull under the outline)."""
    seen = {
        "grey_levels": math.nan,
        "inside_outside": math.nan,
        "outline_outside": math.nan,
        **(image_features or {}),
    }
    result = HeadMeasurement(
        filename=name,
        status=Status.OK,
        pixel_size_mm=pixel_size_mm,
        ellipse_px=m.ellipse,
        quality=m.quality,
        quality_reasons=list(m.reasons),
        ellipse_iou=m.ellipse_iou,
        confidence=m.confidence,
        edge_probability=m.edge_probability,
        pass_disagreement=m.pass_disagreement,
        grey_levels=seen["grey_levels"],
        inside_outside=seen["inside_outside"],
        outline_outside=seen["outline_outside"],
        second_head_ratio=m.second_head_ratio,
        mask=m.mask,
    )
    # the rules that need no mm (contrast, a second head, not a head) flag every head
    # found, even one that gets no HC
    early = flag_reasons({**seen, "second_head_ratio": m.second_head_ratio}, thresholds)
    if early and m.ellipse is not None:
        result.quality, result.quality_reasons = "check", [*result.quality_reasons, *early]
    if m.ellipse is None:
        result.status = Status.NO_HEAD
        return result
    if pixel_size_mm is None:
        result.status = Status.NO_PIXEL_SIZE
        return result
    why = plausible_pixel_size(pixel_size_mm)
    if why:
        result.status, result.detail = Status.IMPLAUSIBLE_PIXEL_SIZE, why
        return result
    ellipse = m.ellipse
    if offset_mm:
        ellipse = m.ellipse.grown(offset_mm / pixel_size_mm)
        result.ellipse_px = ellipse
        result.hc_mm = hc_mm(ellipse, pixel_size_mm)
    else:
        result.hc_mm = m.hc_mm(pixel_size_mm)
    result.pass_distance_mm = m.pass_distance_px * pixel_size_mm
    if image is not None:
        levels = seen["grey_levels"] if math.isfinite(seen["grey_levels"]) else None
        result.unsupported_arc_deg = unsupported_arc_deg(image, m.ellipse, pixel_size_mm, levels)
    why = plausible_hc(result.hc_mm)
    if why:
        result.status, result.detail = Status.IMPLAUSIBLE_HC, why
        result.quality = "check"
        result.quality_reasons.append(why)
        return result
    features = {**result.quality_features(), "hc_mm": result.hc_mm}
    features["pixel_size_mm"] = pixel_size_mm
    hc_range = intervals.interval("hc_mm", result.hc_mm, features) if intervals else None
    result.biometry = biometry(ellipse.scaled(pixel_size_mm), ga_given_weeks, hc_range)
    hadlock = result.biometry.ga_hadlock_weeks
    result.ga_weeks = hadlock if hadlock is not None else math.nan
    if hc_range is not None:
        result.interval_level = intervals.level
        result.intervals["hc_mm"] = hc_range
        for key in ("bpd_mm", "ofd_mm"):
            pair = intervals.interval(key, getattr(result.biometry, key), features)
            if pair is not None:
                result.intervals[key] = pair
        features["hc_halfwidth_mm"] = (hc_range[1] - hc_range[0]) / 2
    features["cephalic_index"] = result.biometry.cephalic_index
    result.quality_reasons = flag_reasons(features, thresholds)
    result.quality = "check" if result.quality_reasons else "ok"
    return result


def in_pixel_size(result: HeadMeasurement, pixel_size_mm: float | None) -> HeadMeasurement:
    """The same segmentation in mm of another pixel size (every check made again): a DICOM
    region's, once the head is located."""
    if result.derived_from is None:
        raise FetalHCError(f"{result.filename}: no segmentation to re-measure")
    d = result.derived_from
    again = result_from_measurement(
        result.filename,
        d.measurement,
        pixel_size_mm,
        d.ga_given_weeks,
        d.thresholds,
        d.image_features,
        result.image,
        d.intervals,
        d.offset_mm,
    )
    again.image, again.logits, again.frame = result.image, result.logits, result.frame
    again.derived_from = d
    return again


def as_pixel_size(value) -> float | None:
    """A pixel size as given (a float, an int, a Decimal, a numeric string) as a float; None
    stays None. Anything else is refused: measuring with a wrong type is a caller's bug."""
    if value is None or (isinstance(value, float) and not isinstance(value, bool)):
        return value
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str | np.number):
        raise FetalHCError(
            f"pixel size {value!r}: expected a number of mm, not {type(value).__name__}"
        )
    try:
        return float(value)
    except (ValueError, ArithmeticError):
        raise FetalHCError(f"pixel size {value!r}: not a number of mm") from None
