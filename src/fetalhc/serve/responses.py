"""A result as the API answers it (JSON), computed from the result, never written back."""

from __future__ import annotations

import base64
import logging
import math

import cv2
import numpy as np

from fetalhc import __version__
from fetalhc.inference.measurer import (
    QUALITY_FEATURES,
    HeadMeasurement,
)
from fetalhc.io.pixel_size import PixelSizeSource
from fetalhc.measure.biometry import weeks_days
from fetalhc.serve.uploads import ApiError

log = logging.getLogger(__name__)


STATUS_MESSAGES = {
    "ok": "measured",
    "no_head": "no fetal head was found in this image",
    "no_pixel_size": "give the pixel size (mm per pixel) or calibrate on the depth scale "
    "to get HC in mm",
}


def png_base64(image: np.ndarray) -> str:
    ok, encoded = cv2.imencode(".png", image)
    if not ok:
        raise ApiError(500, "cannot encode PNG")
    return base64.b64encode(encoded.tobytes()).decode()


def size_source(result: HeadMeasurement) -> str:
    """Where the pixel size came from, as the JSON says it: form, dicom: <attribute>, none."""
    source = result.pixel_size_source
    if source is PixelSizeSource.GIVEN:
        return "form"
    return f"dicom: {source}" if source.from_header else "none"


def result_json(
    result: HeadMeasurement, image: np.ndarray, with_mask: bool, with_image: bool
) -> dict:
    e = result.ellipse_px
    b = result.biometry
    measured = result.record()
    body = {
        "filename": result.filename,
        "status": result.status_text,
        "message": STATUS_MESSAGES.get(result.status_text, result.status_text),
        "pixel_size_mm": _finite(result.pixel_size_mm),
        "pixel_size_source": size_source(result),
        "image_size": {"width": int(image.shape[1]), "height": int(image.shape[0])},
        "ellipse_px": None
        if e is None
        else {"cx": e.cx, "cy": e.cy, "a": e.a, "b": e.b, "angle_rad": e.angle},
        "ellipse_mm": result.ellipse_mm.as_hc18() if result.ellipse_mm is not None else None,
        "hc_mm": _finite(measured["hc_mm"]),
        # the calibrated 95 % interval and what it gives (None without one: no HC, or a
        # model without a calibration)
        "hc_interval_mm": _pair(measured, "hc_low_mm", "hc_high_mm"),
        "interval_level": _finite(result.interval_level),
        "interval_method": result.interval_note,
        "ga_weeks": _finite(measured["ga_weeks"]),
        "ga_weeks_days": weeks_days(_finite(measured["ga_weeks"])),
        "ga_range_weeks": _pair(measured, "ga_low_weeks", "ga_high_weeks"),
        "quality": result.quality,
        "quality_reasons": result.quality_reasons,
        # the numbers the flag is decided on, as in predict's CSV (None: not measured)
        "quality_features": {k: _finite(measured[k]) for k in QUALITY_FEATURES},
        "biometry": None
        if b is None
        else {
            "ofd_mm": b.ofd_mm,
            "ofd_interval_mm": _pair(measured, "ofd_low_mm", "ofd_high_mm"),
            "bpd_mm": b.bpd_mm,
            "bpd_interval_mm": _pair(measured, "bpd_low_mm", "bpd_high_mm"),
            "cephalic_index": b.cephalic_index,
            "ga_hadlock_weeks": b.ga_hadlock_weeks,
            "ga_intergrowth_weeks": b.ga_intergrowth_weeks,
            "ga_given_weeks": b.ga_given_weeks,
            "hc_zscore": b.hc_zscore,
            "hc_zscore_range": _pair(measured, "hc_zscore_low", "hc_zscore_high"),
            "hc_centile": b.hc_centile,
            "hc_centile_range": _pair(measured, "hc_centile_low", "hc_centile_high"),
            "growth_chart": b.chart,
            "notes": b.notes,
        },
        "model_version": __version__,
    }
    if with_mask and result.mask is not None:
        body["mask_png_base64"] = png_base64((result.mask * 255).astype(np.uint8))
    if with_image:
        body["image_png_base64"] = png_base64(image)
    return body


def _pair(record: dict, low: str, high: str) -> list[float] | None:
    ends = [_finite(record[low]), _finite(record[high])]
    return ends if None not in ends else None


def _finite(value: float | None) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None
