"""The one segment-and-measure path: image in, ellipse, HC and GA in mm out.

`HeadMeasurer` is loaded once (like nnU-Net's predictor) and used by the Python API,
`fetalhc predict`, `fetalhc evaluate` and the web service::

    import fetalhc
    measurer = fetalhc.HeadMeasurer()                  # the bundled model
    result = measurer.measure("001_HC.png", pixel_size_mm=0.12)
    result.hc_mm, result.ga_weeks, result.quality
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path

import numpy as np

from fetalhc import __version__
from fetalhc.errors import FetalHCError, Status, parse_status, status_text
from fetalhc.inference.segmenter import Segmenter, default_checkpoint
from fetalhc.io.dicom import cine_frames, read_dicom
from fetalhc.io.dicom_results import (
    ReportContent,
    secondary_capture,
    segmentation,
    structured_report,
)
from fetalhc.io.images import read_gray
from fetalhc.io.pixels import to_gray_uint8
from fetalhc.measure.biometry import Biometry, biometry, weeks_days
from fetalhc.measure.ellipse import Ellipse, hc_mm
from fetalhc.measure.overlay import overlay
from fetalhc.measure.postprocess import Measurement, measure
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
from fetalhc.model.checkpoint import resolve_checkpoint

log = logging.getLogger(__name__)
ImageLike = str | os.PathLike | np.ndarray
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
ROW_COLUMNS = (
    "filename",
    *HC18_KEYS,
    "hc_mm",
    "hc_low_mm",
    "hc_high_mm",
    "ga_weeks",
    "ga_low_weeks",
    "ga_high_weeks",
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
    "hc_mm",
    "hc_low_mm",
    "hc_high_mm",
    "ga_weeks",
    "ga_low_weeks",
    "ga_high_weeks",
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
    derived_from: Derivation | None = field(default=None, repr=False)

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

    @property
    def interval_note(self) -> str:
        """How the intervals were made, in words ('' without intervals)."""
        if not self.intervals or self.derived_from is None or self.derived_from.intervals is None:
            return ""
        c = self.derived_from.intervals
        return f"{100 * c.level:g} % interval: {c.method}; calibrated on {c.data}"

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
    def with_pixel_size(self, pixel_size_mm: float | None) -> HeadMeasurement:
        """The same segmentation in mm of another pixel size (every check made again)."""
        if self.derived_from is None:
            raise FetalHCError(f"{self.filename}: no segmentation to re-measure")
        d = self.derived_from
        again = result_from_measurement(
            self.filename,
            d.measurement,
            pixel_size_mm,
            d.ga_given_weeks,
            d.thresholds,
            d.image_features,
            self.image,
            d.intervals,
            d.offset_mm,
        )
        again.image, again.logits, again.frame = self.image, self.logits, self.frame
        return again

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


@dataclass(frozen=True)
class Derivation:
    """What a result's mm figures were derived from (to express them in another pixel
    size, e.g. a DICOM region's)."""

    measurement: Measurement
    ga_given_weeks: float | None
    thresholds: QualityThresholds
    image_features: dict[str, float]
    intervals: IntervalCalibration | None = None
    offset_mm: float = 0.0


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


def frame_plan(count: int, name: str) -> list[tuple[int | None, str]]:
    """(frame number, row name) of each frame measured: one image is itself (None, name);
    a cine loop's frames are `name#k` for the frames `cine_frames` picks."""
    if count == 1:
        return [(None, name)]
    return [(k, f"{name}#{k}") for k in cine_frames(count)]


# A cine loop whose measured frames' HC differ by more than this ratio holds different
# planes (or heads): its chosen frame is flagged with the spread.
MAX_LOOP_SPREAD = 1.2


def settle_frames(
    results: list[HeadMeasurement], plan: list[tuple[int | None, str]], regions: Sequence = ()
) -> FramesMeasurement:
    """The measured frames of `plan`, numbered, each checked against the DICOM regions
    (`in_its_region`), and the one chosen (a single image: itself)."""
    for result, (k, _) in zip(results, plan, strict=True):
        result.frame = k
    results = [in_its_region(r, regions) for r in results]
    if len(plan) == 1:
        return FramesMeasurement(results, 0)
    chosen = choose_frame(results)
    if chosen is None:  # no frame holds a head: the first speaks for the loop, as a failed
        return FramesMeasurement(results, 0)  # single image's row does
    spread = [r.hc_mm for r in results if r.ok]
    if min(spread) > 0 and max(spread) / min(spread) > MAX_LOOP_SPREAD:
        lead = results[chosen]
        lead.quality = "check"
        lead.quality_reasons.append(
            f"the loop's frames measure HC from {min(spread):.0f} to {max(spread):.0f} mm "
            f"({100 * (max(spread) / min(spread) - 1):.0f} % apart): check that the chosen "
            "frame shows the head in its standard plane"
        )
    return FramesMeasurement(results, chosen)


@dataclass
class FramesMeasurement:
    """Every measured frame of an image or cine loop, and the one its measurement is taken
    from (`chosen`: the best measured frame; the first when no frame holds a head, so that
    every file has one row marked chosen)."""

    frames: list[HeadMeasurement]
    chosen_index: int | None
    dataset: object = field(default=None, repr=False)  # a DICOM source's header

    @property
    def chosen(self) -> HeadMeasurement | None:
        return self.frames[self.chosen_index] if self.chosen_index is not None else None


def in_its_region(result: HeadMeasurement, regions: Sequence) -> HeadMeasurement:
    """A DICOM result whose pixel size came from the header's ultrasound regions, checked
    against the region that holds the head: all of the fitted ellipse must lie in one
    region with a physical spacing, and its mm are that region's (a split screen or dual
    view has several). A head in no single such region gets no HC, with the reason."""
    if result.ellipse_px is None or not any(r.spacing_mm for r in regions):
        return result
    e = result.ellipse_px
    box = np.array(
        [
            [e.cx + sx * _half_width(e, 0), e.cy + sy * _half_width(e, 1)]
            for sx in (-1, 1)
            for sy in (-1, 1)
        ]
    )
    holding = [r for r in regions if r.spacing_mm and r.contains(box)]
    if not holding:
        out = result.with_pixel_size(None)
        out.detail = "the head is not inside one ultrasound region; give the pixel size"
        return out
    spacing = holding[0].spacing_mm
    if result.pixel_size_mm is not None and math.isclose(
        result.pixel_size_mm, spacing, rel_tol=1e-9
    ):
        return result
    return result.with_pixel_size(spacing)


def _half_width(e: Ellipse, axis: int) -> float:
    """Half the extent of an ellipse along x (axis 0) or y (axis 1)."""
    c, s = math.cos(e.angle), math.sin(e.angle)
    if axis == 0:
        return math.hypot(e.a * c, e.b * s)
    return math.hypot(e.a * s, e.b * c)


def choose_frame(results: Sequence[HeadMeasurement]) -> int | None:
    """The index of the frame a cine loop's measurement is taken from: among the measured
    ones (status `ok`), the unflagged first, then the fewest reasons, the passes' closest
    outlines, the most elliptical mask, the surest network. None if no frame is measured:
    a blank or off-plane frame is never chosen over one with a head."""

    def key(i: int) -> tuple:
        r = results[i]
        distance = r.pass_distance_mm if math.isfinite(r.pass_distance_mm) else 0.0
        return (
            r.quality == "ok",
            -len(r.quality_reasons),
            -distance,
            np.nan_to_num(r.ellipse_iou),
            np.nan_to_num(r.confidence),
        )

    measured = [i for i, r in enumerate(results) if r.ok]
    return max(measured, key=key) if measured else None


def image_features(gray: np.ndarray, ellipse: Ellipse | None) -> dict[str, float]:
    """The flag's features measured on the image itself, around the fitted head."""
    return {
        "grey_levels": grey_levels(gray),
        "inside_outside": inside_outside_difference(gray, ellipse),
        "outline_outside": outline_outside(ellipse, gray.shape),
    }


def _round(value: float | None) -> float | str:
    if value is None or not isinstance(value, float | int) or not math.isfinite(value):
        return ""
    return round(float(value), 6)


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


class HeadMeasurer:
    """A model loaded once: segment fetal heads and measure them.

    checkpoint: a run's `best.safetensors` (with its config.json), a run or model folder
    (`fetalhc bundle`), an exported `.onnx`, or None for the bundled model. backend:
    auto | torch | onnx. flip_tta averages the prediction with that of the mirrored image.
    locate_side: a two-pass model's first pass at another square side (a multiple of 32;
    it only has to find the head). quality: the flag's thresholds instead of the model's
    own (config.json "quality"; names as `QualityThresholds`).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        backend: str = "auto",
        threads: int = 0,
        batch_size: int = 8,
        flip_tta: bool = False,
        locate_side: int | None = None,
        quality: dict | None = None,
    ) -> None:
        if checkpoint is not None and Path(checkpoint).is_dir():  # a run or model folder
            checkpoint = resolve_checkpoint(checkpoint, None)
        self.segmenter = Segmenter(
            checkpoint if checkpoint is not None else default_checkpoint(),
            backend=backend,
            threads=threads,
            batch_size=batch_size,
            flip_tta=flip_tta,
            locate_side=locate_side,
        )
        self.intervals = self._intervals()
        self.offset_mm = self._offset_mm()
        self.quality = quality

    @classmethod
    def from_segmenter(cls, segmenter) -> HeadMeasurer:
        """Wrap any object with a Segmenter's `predict(images)` and `batch_size` (an
        ensemble, a test double)."""
        measurer = cls.__new__(cls)
        measurer.segmenter = segmenter
        measurer.intervals = measurer._intervals()
        measurer.offset_mm = measurer._offset_mm()
        measurer.quality = None
        return measurer

    def _offset_mm(self) -> float:
        """An adapted model's calliper convention (config.json "adaptation"), 0 without;
        a model its gate did not promote is said so once, at load."""
        config = getattr(self.segmenter, "config", None)
        adaptation = config.get("adaptation") if isinstance(config, dict) else None
        if not isinstance(adaptation, dict):
            return 0.0
        if adaptation.get("promoted") is False:
            log.warning(
                "fetalhc: WARNING: %s was not promoted by its gate (%s)",
                self.model_name,
                adaptation.get("reason", "no reason recorded"),
            )
        offset = adaptation.get("offset_mm", 0.0)
        if isinstance(offset, bool) or not isinstance(offset, int | float) or abs(offset) > 10:
            raise FetalHCError(f"{self.model_name}: config.json: offset_mm {offset!r}")
        return float(offset)

    def _intervals(self) -> IntervalCalibration | None:
        """The model's interval calibration (config.json "intervals"), if it has one."""
        config = getattr(self.segmenter, "config", None)
        section = config.get("intervals") if isinstance(config, dict) else None
        if not section:
            return None
        try:
            return IntervalCalibration.from_dict(section)
        except ValueError as exc:
            raise FetalHCError(f"{self.model_name}: config.json: {exc}") from None

    @property
    def thresholds(self) -> QualityThresholds:
        """The quality flag's thresholds: the model's own (config.json) or the defaults."""
        try:
            if self.quality is not None:
                return QualityThresholds.from_dict(self.quality)
            return QualityThresholds.from_dict(
                getattr(self.segmenter, "quality_thresholds", None) or {}
            )
        except ValueError as exc:
            raise FetalHCError(f"{self.model_name}: config.json: {exc}") from None

    @property
    def batch_size(self) -> int:
        return self.segmenter.batch_size

    @property
    def model_name(self) -> str:
        return self.segmenter.checkpoint.name

    def probabilities(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Head probability maps at each image's own size (8-bit grey images in)."""
        return self.segmenter.probabilities(images)

    def measure(
        self,
        image: ImageLike,
        pixel_size_mm: float | None = None,
        name: str | None = None,
        ga_weeks: float | None = None,
    ) -> HeadMeasurement:
        """Measure one image (a path or an array: grey or colour, 8/16-bit).

        An image that cannot be read or holds no head gives a result whose `status` says
        why; a bad argument raises FetalHCError."""
        names = [name] if name else None
        return next(iter(self.measure_many([image], [pixel_size_mm], names, ga_weeks=ga_weeks)))

    def measure_many(
        self,
        images: Iterable[ImageLike],
        pixel_sizes_mm: Iterable[float | None] | float | None = None,
        names: Iterable[str] | None = None,
        threshold: float = 0.5,
        keep_logits: bool = False,
        ga_weeks: float | Iterable[float | None] | None = None,
    ) -> Iterator[HeadMeasurement]:
        """Measure many images, batch by batch, yielding one result per image in order.
        One bad image gives its own status; the others are measured. `ga_weeks`: one known
        gestational age for all, or one per image (None where unknown)."""
        images = list(images)
        if pixel_sizes_mm is None or isinstance(pixel_sizes_mm, float | int | str | Decimal):
            sizes = [pixel_sizes_mm] * len(images)
        else:
            sizes = list(pixel_sizes_mm)
        sizes = [as_pixel_size(v) for v in sizes]
        if len(sizes) != len(images):
            raise FetalHCError(f"{len(images)} images but {len(sizes)} pixel sizes")
        if ga_weeks is None or isinstance(ga_weeks, int | float):
            gas = [ga_weeks] * len(images)
        else:
            gas = list(ga_weeks)
        if len(gas) != len(images):
            raise FetalHCError(f"{len(images)} images but {len(gas)} gestational ages")
        labels = (
            list(names) if names is not None else [_name_of(im, i) for i, im in enumerate(images)]
        )
        for start in range(0, len(images), self.batch_size):
            chunk = range(start, min(start + self.batch_size, len(images)))
            yield from self._measure_batch(
                [images[i] for i in chunk],
                [sizes[i] for i in chunk],
                [labels[i] for i in chunk],
                threshold,
                keep_logits,
                [gas[i] for i in chunk],
            )

    def measure_frames(
        self,
        frames: Sequence[np.ndarray],
        pixel_size_mm: float | None,
        name: str,
        ga_weeks: float | None = None,
        regions: Sequence = (),
    ) -> FramesMeasurement:
        """A cine loop (or one image, as a list of one frame): its frames measured (every
        frame up to CINE_MAX_FRAMES, else a stride), named `<name>#<frame>`, and the one
        chosen by quality (`choose_frame`)."""
        plan = frame_plan(len(frames), name)
        results = self.measure_many(
            [frames[(k or 1) - 1] for k, _ in plan],
            [pixel_size_mm] * len(plan),
            [label for _, label in plan],
            ga_weeks=ga_weeks,
        )
        return settle_frames(list(results), plan, regions)

    def measure_dicom(
        self, path: str | os.PathLike, pixel_size_mm: float | None = None, ga_weeks=None
    ) -> FramesMeasurement:
        """A DICOM image or cine loop from a file; the pixel size from its header unless
        given. Its header is kept in `.dataset` for `to_dicom_sr` and friends."""
        dcm = read_dicom(path, cine=True)
        size = pixel_size_mm if pixel_size_mm is not None else dcm.pixel_size_mm
        # the header's regions decide the mm unless the caller gave the pixel size
        regions = dcm.regions if pixel_size_mm is None else ()
        measured = self.measure_frames(dcm.frames, size, Path(path).name, ga_weeks, regions)
        measured.dataset = dcm.dataset
        return measured

    def _measure_batch(
        self,
        images: list[ImageLike],
        sizes: list[float | None],
        names: list[str],
        threshold: float = 0.5,
        keep_logits: bool = False,
        gas: list[float | None] | None = None,
    ) -> list[HeadMeasurement]:
        results: list[HeadMeasurement | None] = [None] * len(images)
        gas = gas if gas is not None else [None] * len(images)
        decoded: list[tuple[int, np.ndarray]] = []
        for i, image in enumerate(images):
            try:
                gray = _as_gray(image)
            except Exception as exc:  # noqa: BLE001 - any library's refusal is this image's row
                if not isinstance(exc, ValueError):
                    exc = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1][:160]}"
                results[i] = HeadMeasurement(names[i], Status.UNREADABLE, str(exc))
                continue
            if int(gray.max()) - int(gray.min()) < BLANK_RANGE:
                # Nothing to measure, and a network shown an empty frame may still "see"
                # a head (the two-pass model does, in black or white frames).
                results[i] = HeadMeasurement(
                    names[i],
                    Status.NO_HEAD,
                    quality_reasons=["the image is blank (almost uniform grey)"],
                    mask=np.zeros(gray.shape, np.uint8),
                    image=gray,
                )
                continue
            decoded.append((i, gray))
        if decoded:
            try:
                predictions = self.segmenter.predict([im for _, im in decoded])
            except Exception as exc:  # noqa: BLE001 - a model/input mismatch of any kind
                predictions = None
                error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                for i, _ in decoded:
                    results[i] = HeadMeasurement(names[i], Status.ERROR, error)
            if predictions is not None:
                thresholds = self.thresholds
                for (i, image), p in zip(decoded, predictions, strict=True):
                    m = measure(
                        p.probability_map, threshold, coarse=p.coarse_map, thresholds=thresholds
                    )
                    seen = image_features(image, m.ellipse)
                    result = result_from_measurement(
                        names[i],
                        m,
                        sizes[i],
                        gas[i],
                        thresholds,
                        seen,
                        image,
                        self.intervals,
                        self.offset_mm,
                    )
                    result.derived_from = Derivation(
                        m, gas[i], thresholds, seen, self.intervals, self.offset_mm
                    )
                    result.image = image
                    if keep_logits:
                        result.logits = p.logits_small
                    results[i] = result
        return [r for r in results if r is not None]


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


def _name_of(image: ImageLike, index: int) -> str:
    return Path(image).name if not isinstance(image, np.ndarray) else f"image_{index}"


def _as_gray(image: ImageLike) -> np.ndarray:
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3) or image.size == 0:
            raise ValueError(f"expected a 2D image array, got shape {image.shape}")
        return to_gray_uint8(image)
    return read_gray(image)  # PNG, JPEG, ... or DICOM


def measure_image(
    image: ImageLike,
    pixel_size_mm: float | None = None,
    checkpoint: str | None = None,
    ga_weeks: float | None = None,
) -> HeadMeasurement:
    """One call: load the (bundled) model and measure one image. Use `HeadMeasurer` to
    measure many images without reloading the model."""
    return HeadMeasurer(checkpoint).measure(image, pixel_size_mm, ga_weeks=ga_weeks)
