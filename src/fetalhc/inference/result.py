"""A measured head: the result type, its row's columns, its DICOM results and its
overlay picture. Made by `fetalhc.inference.derive`; read by every writer."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from fetalhc import __version__
from fetalhc.errors import FetalHCError, Status, parse_status, status_text
from fetalhc.io.dicom_results import (
    ReportContent,
    secondary_capture,
    segmentation,
    structured_report,
)
from fetalhc.io.pixel_size import PixelSizeSource
from fetalhc.measure.biometry import Biometry, weeks_days
from fetalhc.measure.ellipse import Ellipse
from fetalhc.measure.overlay import overlay

# The numbers the quality flag is decided on, in the order of predict's CSV columns.
QUALITY_FEATURES = (
    "ellipse_iou",
    "confidence",
    "edge_probability",
    "pass_disagreement",
    "pass_distance_mm",
    "grey_levels",
    "second_head_ratio",
    "inside_outside",
    "unsupported_arc_deg",
    "outline_outside",
)
HC18_KEYS = ("center_x_mm", "center_y_mm", "semi_axes_a_mm", "semi_axes_b_mm", "angle_rad")
BIOMETRY_KEYS = (
    "ofd_mm",
    "bpd_mm",
    "cephalic_index",
    "ga_intergrowth_weeks",
    "ga_given_weeks",
    "hc_zscore",
    "hc_centile",
)
# Each measure's calibrated interval (fetalhc.measure.uncertainty), and what is derived
# from HC's: the GA (Hadlock) and, where a GA is given, the z-score and centile at the
# interval's ends (all monotone in HC).
RANGE_KEYS = (
    "ofd_low_mm",
    "ofd_high_mm",
    "bpd_low_mm",
    "bpd_high_mm",
    "hc_zscore_low",
    "hc_zscore_high",
    "hc_centile_low",
    "hc_centile_high",
)
# The columns of a result's row, in order: HC18 submission columns first, then HC, GA,
# the flag, the status and the clinical outputs (`HeadMeasurement.record` fills them).
HC_GA_KEYS = ("hc_mm", "hc_low_mm", "hc_high_mm", "ga_weeks", "ga_low_weeks", "ga_high_weeks")
ROW_COLUMNS = (
    "filename",
    *HC18_KEYS,
    *HC_GA_KEYS,
    "quality",
    *QUALITY_FEATURES,
    "status",
    *BIOMETRY_KEYS,
    *RANGE_KEYS,
    "growth_chart",
    "notes",
)
# Columns left empty in a row whose status is not `ok`.
MM_KEYS = {
    *HC18_KEYS,
    *HC_GA_KEYS,
    *BIOMETRY_KEYS,
    *RANGE_KEYS,
    "growth_chart",
}
# Grey levels: an image whose values span less than this holds nothing to measure.
BLANK_RANGE = 16


@dataclass
class HeadMeasurement:
    """The result for one image. `status` is `ok` only when HC is a trustworthy number of
    millimetres; every other status says why there is no (or no plausible) HC."""

    filename: str
    status: Status
    detail: str = ""  # what follows the status: why it is implausible, unreadable, ...
    pixel_size_mm: float | None = None
    pixel_size_source: PixelSizeSource = PixelSizeSource.NONE  # where the mm per pixel came from
    ellipse_px: Ellipse | None = None
    hc_mm: float = math.nan
    ga_weeks: float = math.nan
    quality: str = "no_head"  # ok | check | no_head
    quality_reasons: list[str] = field(default_factory=list)
    ellipse_iou: float = math.nan
    confidence: float = math.nan
    edge_probability: float = math.nan
    pass_disagreement: float = math.nan
    pass_distance_mm: float = math.nan  # two-pass models: the passes' outlines, mean distance
    grey_levels: float = math.nan  # grey levels the image spans (1st-99th percentile)
    # grey values inside the outline against just outside it (KS distance; quality.py)
    inside_outside: float = math.nan
    second_head_ratio: float = math.nan  # the next largest head-like region / the measured
    # the longest arc of the outline with no skull edge under it (degrees; quality.py)
    unsupported_arc_deg: float = math.nan
    # the share of the fitted outline outside the image (a head cut off; quality.py)
    outline_outside: float = math.nan
    mask: np.ndarray | None = field(default=None, repr=False)  # uint8 0/1, original size
    biometry: Biometry | None = None  # OFD, BPD, cephalic index, GA by two formulas, centile
    image: np.ndarray | None = field(default=None, repr=False)  # the 8-bit grey input
    logits: np.ndarray | None = field(default=None, repr=False)  # at model size (keep_logits)
    frame: int | None = None  # a cine loop's frame (1-based) this result measures
    # calibrated intervals: "hc_mm" / "bpd_mm" / "ofd_mm" -> (low, high) in mm
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    interval_level: float = math.nan  # their coverage (0.95), NaN without a calibration
    interval_note: str = ""  # how they were made, in words ('' without intervals)

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):  # "implausible_hc: ..." as written in rows
            status, detail = parse_status(self.status)
            self.status, self.detail = status, self.detail or detail

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def status_text(self) -> str:
        """The status as CSV rows and JSON carry it: `implausible_hc: HC 12 mm is ...`."""
        return status_text(self.status, self.detail)

    @property
    def hc_interval_mm(self) -> tuple[float, float] | None:
        return self.intervals.get("hc_mm")

    def quality_features(self) -> dict[str, float]:
        return {name: getattr(self, name) for name in QUALITY_FEATURES}

    @property
    def ellipse_mm(self) -> Ellipse | None:
        if self.ellipse_px is None or self.pixel_size_mm is None:
            return None
        return self.ellipse_px.scaled(self.pixel_size_mm)

    def record(self) -> dict[str, float | str]:
        """The result as one flat record, every number as measured (NaN where there is
        none): the CSV row, the evaluation row and the service's numbers come from it."""
        mm = self.ellipse_mm
        hc18 = mm.as_hc18() if mm is not None else {}
        b = self.biometry
        record: dict[str, float | str] = {"filename": self.filename}
        record.update({key: hc18.get(key, math.nan) for key in HC18_KEYS})
        hc_low, hc_high = self.intervals.get("hc_mm", (math.nan, math.nan))
        ga_range = b.ga_hadlock_range_weeks if b is not None else None
        record.update(
            hc_mm=self.hc_mm,
            hc_low_mm=hc_low,
            hc_high_mm=hc_high,
            ga_weeks=self.ga_weeks,
            ga_low_weeks=ga_range[0] if ga_range else math.nan,
            ga_high_weeks=ga_range[1] if ga_range else math.nan,
            quality=self.quality,
            **self.quality_features(),
            status=self.status_text,
        )
        for key in BIOMETRY_KEYS:
            value = getattr(b, key, None) if b is not None else None
            record[key] = math.nan if value is None else value
        for key in ("ofd", "bpd"):
            low, high = self.intervals.get(f"{key}_mm", (math.nan, math.nan))
            record[f"{key}_low_mm"], record[f"{key}_high_mm"] = low, high
        for key, pair in (
            ("hc_zscore", b.hc_zscore_range if b is not None else None),
            ("hc_centile", b.hc_centile_range if b is not None else None),
        ):
            record[f"{key}_low"], record[f"{key}_high"] = pair or (math.nan, math.nan)
        record["growth_chart"] = b.chart if b is not None else ""
        record["notes"] = "; ".join([*self.quality_reasons, *(b.notes if b else [])])
        return record

    # ------------------------------------------------------------ DICOM results
    def report_content(self, model: str = "") -> ReportContent:
        """What an SR says about this result (a measured head: status `ok`)."""
        if not self.ok or self.ellipse_px is None or self.biometry is None:
            raise FetalHCError(f"{self.filename}: no measured head to report ({self.status_text})")
        e = self.ellipse_px
        return ReportContent(
            hc_mm=float(self.hc_mm),
            bpd_mm=float(self.biometry.bpd_mm),
            ofd_mm=float(self.biometry.ofd_mm),
            ga_weeks=self.ga_weeks if math.isfinite(self.ga_weeks) else None,
            ellipse_px=(e.cx, e.cy, e.a, e.b, e.angle),
            quality=self.quality,
            reasons=list(self.quality_reasons),
            frame=self.frame,
            version=__version__,
            model=model,
            intervals=dict(self.intervals),
            interval_method=self.interval_note,
        )

    def to_dicom_sr(self, source, model: str = ""):
        """A Comprehensive SR of this measurement in `source`'s study (a pydicom Dataset:
        the measured DICOM image's header), referencing it (and the frame, for a cine)."""
        return structured_report(source, self.report_content(model))

    def to_dicom_seg(self, source, model: str = ""):
        """A binary DICOM Segmentation of the head on `source`'s geometry."""
        if self.mask is None:
            raise FetalHCError(f"{self.filename}: no mask to store")
        return segmentation(source, self.mask, self.frame, self.report_content(model))

    def to_dicom_sc(self, source, model: str = ""):
        """The overlay picture as a Secondary Capture in `source`'s study."""
        return secondary_capture(source, overlay_picture(self), self.report_content(model))

    def as_row(self) -> dict:
        """The CSV row: HC18 submission columns first, then HC, GA and the flag; numbers in
        mm only where the status is `ok` (never a wrong number beside a measured one)."""
        row = {}
        for key, value in self.record().items():
            if key in MM_KEYS and not self.ok:
                value = ""
            row[key] = value if isinstance(value, str) else _round(value)
        return row


def overlay_picture(result: HeadMeasurement) -> np.ndarray:
    """The image with the fitted ellipse, HC and GA drawn in (flagged ones marked)."""
    if result.ellipse_px is None:
        return overlay(result.image, None, ["no head found"])
    lines = []
    if result.ok:
        lines = [f"HC {result.hc_mm:.1f} mm"]
        if math.isfinite(result.ga_weeks):
            lines.append(f"GA {weeks_days(result.ga_weeks)} weeks (Hadlock)")
    else:
        lines = [result.status.value]
    if result.quality != "ok":
        lines.append("check: measurement may be unreliable")
    return overlay(result.image, result.ellipse_px, lines, flagged=result.quality != "ok")


def _round(value: float | None) -> float | str:
    if value is None or not isinstance(value, float | int) or not math.isfinite(value):
        return ""
    return round(float(value), 6)
