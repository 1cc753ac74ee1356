"""The measurement's quality: plausible ranges and the `check` flag's thresholds.

NumPy, OpenCV and the ellipse's geometry only (no torch). The flag's rules are defined here once;
`predict`, `evaluate`, `serve` and the model-selection script's threshold search all use
them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np

from fetalhc.measure.ellipse import Ellipse, radius_squared

# Physically plausible ranges: a value outside them is a wrong unit or column, not a head.
PIXEL_SIZE_RANGE_MM = (0.01, 2.0)  # HC18: 0.05-0.29 mm per pixel
HC_RANGE_MM = (40.0, 450.0)  # about 10 weeks to beyond term, macrocephaly included


def plausible_pixel_size(value: float | None) -> str:
    """'' if `value` is a plausible pixel size in mm, else why not."""
    low, high = PIXEL_SIZE_RANGE_MM
    if value is None or not math.isfinite(value) or value <= 0:
        return "pixel size is not a positive number"
    if not low <= value <= high:
        return f"pixel size {value:g} mm is outside the plausible {low:g}-{high:g} mm"
    return ""


def plausible_hc(value: float) -> str:
    low, high = HC_RANGE_MM
    if not math.isfinite(value):
        return "HC is not a finite number"
    if not low <= value <= high:
        return f"HC {value:.1f} mm is outside the plausible {low:g}-{high:g} mm"
    return ""


@dataclass(frozen=True)
class QualityThresholds:
    """When a measurement is flagged `check`: the mask departs from its own ellipse, the
    network still sees head just outside the fitted edge, or (two-pass models) the two
    passes disagree on the circumference. A model's config.json may carry its own values
    (chosen on out-of-fold predictions, see MODEL_CARD.md); these defaults are those of
    the first bundled model, chosen on its validation part."""

    min_ellipse_iou: float = 0.96
    max_edge_probability: float = 0.25
    max_pass_disagreement: float = math.inf  # |HC pass 2 - HC pass 1| / HC pass 2
    # Mean distance (mm) between the two passes' head outlines: unlike the HC difference it
    # does not cancel when one side grows and the other shrinks (checked where the pixel
    # size is known: inference.measurer.result_from_measurement applies every rule).
    max_pass_distance_mm: float = math.inf
    # Heads larger than this (mm) are flagged: the error in mm grows with the head, and
    # third-trimester skulls are often faint or cut off (checked where HC is known).
    max_hc_mm: float = math.inf
    # The longest arc of the outline (degrees) with no skull edge under it: there the
    # ellipse is extrapolated, not seen (checked where the pixel size is known).
    max_unsupported_arc_deg: float = math.inf

    @classmethod
    def from_dict(cls, d: dict) -> QualityThresholds:
        known = {f.name for f in fields(cls)}
        values = {}
        for key, value in d.items():
            if key not in known:
                continue
            if value is None:  # that check is off
                values[key] = 0.0 if key.startswith("min_") else math.inf
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"quality threshold {key!r} must be a number, got {value!r}")
            values[key] = float(value)
        return cls(**values)


# ---------------------------------------------------------------- the flag's rules
# A measured head whose cephalic index (BPD/OFD x 100) lies outside this range is more
# likely a segmentation error than a head shape: a fixed rule, not tuned per model.
CEPHALIC_INDEX_IMPLAUSIBLE = (60.0, 100.0)
# An image whose grey values (1st to 99th percentile) span fewer levels than this is too
# flat to place a skull edge reliably (HC18's 799 labelled images: 83 levels at the least).
MIN_GREY_LEVELS = 48.0
# A second head-like region of at least this share of the measured head's area: twins, or
# a head seen twice (a dual view); only the larger one is measured. (80 HC18 training
# images, one head each: 0.30 at most, all but one under 0.03.)
MAX_SECOND_HEAD = 0.5
# How different the grey values inside the fitted outline are from those just outside it
# (Kolmogorov-Smirnov distance of the two histograms). A skull holds brain, and fluid or
# tissue lies around it: on HC18's 799 labelled images, with their reference ellipses, the
# distance is 0.069 at the least and 0.31 at the median; elliptical rings drawn on speckle,
# the same texture on both sides, give 0.005-0.034 (results/quality-fixed-rules): the
# threshold lies between the two.
MIN_INSIDE_OUTSIDE = 0.05
# The regions compared, in radii of the fitted ellipse: inside, and a band outside; the
# skull itself (0.8-1.2) belongs to neither.
INSIDE_RADIUS = 0.8
OUTSIDE_BAND = (1.2, 1.6)
# Fewer pixels than this in either region (a head cut off by the image's edge): no value.
MIN_REGION_PIXELS = 100  # of the pixels sampled (every other one in each direction)
# The skull under the outline (`unsupported_arc_deg`): at each of OUTLINE_SAMPLES points of
# the fitted ellipse, the grey profile along its normal, 4 mm either side. A skull edge is
# there when the brightest point within SKULL_SEARCH_MM of the outline stands above the
# darker side's background (3-4 mm away, SKULL_BACKGROUND_MM) by SKULL_EDGE_CONTRAST of the
# image's grey span. Sizes in mm: a skull is 1-4 mm thick at any head size. Explored on the
# bundled model's out-of-fold outlines (results/model-v3/notes.md): search 2.0-2.5 mm and
# contrast 0.2-0.3 behave alike; at 3 mm tissue beside the skull counts as an edge.
OUTLINE_SAMPLES = 180  # every 2 degrees of the ellipse's parametric angle
SKULL_SEARCH_MM = 2.5
SKULL_BACKGROUND_MM = (3.0, 4.0)
SKULL_EDGE_CONTRAST = 0.25
PROFILE_STEP_MM = 0.25
# A head whose calibrated 95 % HC interval (fetalhc.measure.uncertainty) is wider than
# +/- this (mm) is flagged: mid-pregnancy HC grows about 11-12 mm a week, so beyond it the
# interval spans more than +/- 1 week of GA, the precision HC dating is used for. A fixed
# rule, not tuned per model: 6 of the bundled model's 799 out-of-fold heads exceed it
# (cross-fitted), all flagged by its other rules too (results/model-v3/intervals).
MAX_HC_HALFWIDTH_MM = 12.0
# A fitted outline more than this share of which lies outside the image is a head cut off
# by the image's edge: its HC is extrapolated there (the skull profiles of the arc rule
# cannot see beyond the image either). HC18's 799 reference outlines: 3 leave the image
# at all, the most by 0.11 (2, 5 and 11 % of the outline); a fixed rule.
MAX_OUTLINE_OUTSIDE = 0.1
# The numbers the flag is decided on, as named in predict's and evaluate's rows.
FEATURES = (
    "ellipse_iou",
    "edge_probability",
    "pass_disagreement",
    "hc_mm",
    "pass_distance_mm",
    "cephalic_index",
    "grey_levels",
    "second_head_ratio",
    "inside_outside",
    "unsupported_arc_deg",
    "hc_halfwidth_mm",
    "outline_outside",
)


@dataclass(frozen=True)
class Rule:
    """One check of the flag: `feature` trips it when below (`min_`) or above (`max_`) the
    threshold named `threshold`; a missing (NaN) value never trips it."""

    threshold: str  # a QualityThresholds field
    feature: str  # a name in FEATURES

    @property
    def below(self) -> bool:
        return self.threshold.startswith("min_")

    def trips(self, value: float, limit: float) -> bool:
        if value is None or not math.isfinite(value):
            return False
        return value < limit if self.below else value > limit

    def reason(self, value: float, limit: float) -> str:
        return _REASONS[self.threshold](value, limit)


_REASONS = {
    "min_ellipse_iou": lambda v, t: (
        f"the head outline is not elliptical (agreement {v:.2f} < {t:.2f})"
    ),
    "max_edge_probability": lambda v, t: (
        "the model still sees head just outside the fitted ellipse (the skull edge may "
        "be faint or the mask may be cut short)"
    ),
    "max_pass_disagreement": lambda v, t: (
        f"the whole-image and close-up passes disagree on HC by {100 * v:.0f} %"
    ),
    "max_hc_mm": lambda v, t: (
        f"a large head (HC over {t:.0f} mm): this model's errors are "
        "largest there; check the outline against the skull"
    ),
    "max_pass_distance_mm": lambda v, t: (
        f"the whole-image and close-up passes' outlines lie {v:.1f} mm "
        "apart on average: the skull edge is ambiguous"
    ),
    "max_unsupported_arc_deg": lambda v, t: (
        f"{v:.0f} degrees of the outline run where the image shows no skull edge: the "
        "ellipse is extrapolated there; check it against the skull"
    ),
}
# In the order their reasons are listed.
RULES = tuple(
    Rule(name, feature)
    for name, feature in (
        ("min_ellipse_iou", "ellipse_iou"),
        ("max_edge_probability", "edge_probability"),
        ("max_pass_disagreement", "pass_disagreement"),
        ("max_hc_mm", "hc_mm"),
        ("max_pass_distance_mm", "pass_distance_mm"),
        ("max_unsupported_arc_deg", "unsupported_arc_deg"),
    )
)


def cephalic_index_reason(ci: float) -> str:
    low, high = CEPHALIC_INDEX_IMPLAUSIBLE
    if ci is None or not math.isfinite(ci) or low <= ci <= high:
        return ""
    return f"cephalic index {ci:.0f} is implausible for a head"


def contrast_reason(levels: float) -> str:
    if levels is None or not math.isfinite(levels) or levels >= MIN_GREY_LEVELS:
        return ""
    return (
        f"the image spans only {levels:.0f} grey levels: too little contrast to place the "
        "skull edge reliably"
    )


def outline_samples(ellipse: Ellipse, n: int) -> tuple[np.ndarray, ...]:
    """(x, y, cos t, sin t) at `n` evenly spaced parametric angles t of the ellipse's
    outline (the skull profiles and the share outside the image sample it alike)."""
    t = np.linspace(0.0, 2.0 * math.pi, n, endpoint=False)
    cos_t, sin_t = np.cos(t), np.sin(t)
    c, s = math.cos(ellipse.angle), math.sin(ellipse.angle)
    a, b = max(ellipse.a, 1e-9), max(ellipse.b, 1e-9)
    x = ellipse.cx + a * cos_t * c - b * sin_t * s
    y = ellipse.cy + a * cos_t * s + b * sin_t * c
    return x, y, cos_t, sin_t


def outline_outside(ellipse: Ellipse | None, shape_hw: tuple[int, int]) -> float:
    """The share of the ellipse's outline (by parametric angle, every degree) that lies
    outside an image of `shape_hw`; NaN without an ellipse."""
    if ellipse is None:
        return math.nan
    h, w = shape_hw[:2]
    x, y, _, _ = outline_samples(ellipse, 360)
    return float(np.mean((x < -0.5) | (x > w - 0.5) | (y < -0.5) | (y > h - 0.5)))


def outside_reason(share: float) -> str:
    if share is None or not math.isfinite(share) or share <= MAX_OUTLINE_OUTSIDE:
        return ""
    return (
        f"{100 * share:.0f} % of the head's outline lies outside the image: the head is cut "
        "off and its HC extrapolated there"
    )


def interval_reason(half_width_mm: float) -> str:
    if half_width_mm is None or not math.isfinite(half_width_mm):
        return ""
    if half_width_mm <= MAX_HC_HALFWIDTH_MM:
        return ""
    return f"the measurement is uncertain: HC +/- {half_width_mm:.0f} mm (95 % interval)"


def grey_levels(gray: np.ndarray) -> float:
    """How many grey levels an 8-bit image spans, 1st to 99th percentile."""
    counts = np.cumsum(np.bincount(np.asarray(gray, np.uint8).ravel(), minlength=256))
    total = counts[-1]
    low = int(np.searchsorted(counts, 0.01 * total))
    high = int(np.searchsorted(counts, 0.99 * total))
    return float(high - low)


def second_head_reason(ratio: float) -> str:
    if ratio is None or not math.isfinite(ratio) or ratio < MAX_SECOND_HEAD:
        return ""
    return (
        f"a second head-like region ({100 * ratio:.0f} % of the measured head's area): twins "
        "or a second view? Only the larger one is measured"
    )


def inside_outside_difference(gray: np.ndarray, ellipse: Ellipse | None) -> float:
    """Kolmogorov-Smirnov distance between the grey values inside `ellipse` (radius <
    INSIDE_RADIUS) and in a band just outside it (OUTSIDE_BAND); NaN without an ellipse or
    with too few pixels on either side."""
    if ellipse is None or min(ellipse.a, ellipse.b) <= 0:
        return math.nan
    gray = np.asarray(gray, np.uint8)
    # every other pixel in each direction: tens of thousands of values still, a quarter of
    # the work
    r2, window = radius_squared(ellipse, gray.shape[:2], OUTSIDE_BAND[1], step=2)
    box = gray[window]
    inside = box[r2 < INSIDE_RADIUS**2]
    outside = box[(r2 > OUTSIDE_BAND[0] ** 2) & (r2 < OUTSIDE_BAND[1] ** 2)]
    if min(inside.size, outside.size) < MIN_REGION_PIXELS:
        return math.nan
    cdf_in = np.cumsum(np.bincount(inside, minlength=256)) / inside.size
    cdf_out = np.cumsum(np.bincount(outside, minlength=256)) / outside.size
    return float(np.abs(cdf_in - cdf_out).max())


def skull_edge_support(
    gray: np.ndarray, ellipse: Ellipse, pixel_size_mm: float, levels: float | None = None
) -> np.ndarray:
    """For each of OUTLINE_SAMPLES points of `ellipse` (pixels of `gray`), whether a skull
    edge lies under it (see SKULL_EDGE_CONTRAST); a point whose profile leaves the image
    has none. `levels`: the image's `grey_levels`, if known already."""
    gray = np.asarray(gray, np.uint8)
    h, w = gray.shape[:2]
    x, y, cos_t, sin_t = outline_samples(ellipse, OUTLINE_SAMPLES)
    c, s = math.cos(ellipse.angle), math.sin(ellipse.angle)
    a, b = max(ellipse.a, 1e-9), max(ellipse.b, 1e-9)
    # the outward normal: the gradient of u² + v²
    nx, ny = cos_t / a * c - sin_t / b * s, cos_t / a * s + sin_t / b * c
    norm = np.hypot(nx, ny)
    nx, ny = nx / norm, ny / norm
    far = SKULL_BACKGROUND_MM[1]
    offsets_mm = np.arange(-far, far + PROFILE_STEP_MM / 2, PROFILE_STEP_MM)
    offsets = offsets_mm / pixel_size_mm
    px = (x[:, None] + nx[:, None] * offsets[None, :]).astype(np.float32)
    py = (y[:, None] + ny[:, None] * offsets[None, :]).astype(np.float32)
    inside_image = ((px >= 0) & (px <= w - 1) & (py >= 0) & (py <= h - 1)).all(axis=1)
    # only the window the profiles cross, with the blur's reach around it
    x0, x1 = max(int(px.min()) - 4, 0), min(int(np.ceil(px.max())) + 5, w)
    y0, y1 = max(int(py.min()) - 4, 0), min(int(np.ceil(py.max())) + 5, h)
    if x0 >= x1 or y0 >= y1:  # the outline lies wholly off the image
        return np.zeros(OUTLINE_SAMPLES, bool)
    # speckle smoothed a little, so that one bright pixel is not an edge (in 8 bits: a
    # seventh of the float blur's time, half a grey level off)
    smooth = cv2.GaussianBlur(gray[y0:y1, x0:x1], (0, 0), 1.0).astype(np.float32)
    profiles = cv2.remap(
        smooth, px - x0, py - y0, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    near = np.abs(offsets_mm) <= SKULL_SEARCH_MM
    inner = offsets_mm <= -SKULL_BACKGROUND_MM[0]
    outer = offsets_mm >= SKULL_BACKGROUND_MM[0]
    background = np.minimum(profiles[:, inner].mean(axis=1), profiles[:, outer].mean(axis=1))
    ridge = profiles[:, near].max(axis=1) - background
    span = max(grey_levels(gray) if levels is None else levels, 1.0)
    return inside_image & (ridge >= SKULL_EDGE_CONTRAST * span)


def longest_circular_run(flags: np.ndarray) -> int:
    """The longest run of True in a circular sequence (all of it if all are True)."""
    flags = np.asarray(flags, bool)
    if flags.all():
        return int(flags.size)
    if not flags.any():
        return 0
    # start just after a False, so that no run wraps around the end
    start = int(np.argmin(flags)) + 1
    rolled = np.roll(flags, -start)
    edges = np.diff(np.concatenate([[0], rolled.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    return int((ends - starts).max())


def unsupported_arc_deg(
    gray: np.ndarray,
    ellipse: Ellipse | None,
    pixel_size_mm: float | None,
    levels: float | None = None,
) -> float:
    """The longest arc of the fitted outline, in degrees of its parametric angle, with no
    skull edge under it (`skull_edge_support`): where the network's outline bridges a
    faint or missing wall (lateral walls parallel to the beam, a head cut off by the
    image's edge) the ellipse is extrapolated and its size a guess. NaN without an ellipse
    or a pixel size."""
    if ellipse is None or min(ellipse.a, ellipse.b) <= 0:
        return math.nan
    if pixel_size_mm is None or not math.isfinite(pixel_size_mm) or pixel_size_mm <= 0:
        return math.nan
    supported = skull_edge_support(gray, ellipse, pixel_size_mm, levels)
    return longest_circular_run(~supported) * 360.0 / OUTLINE_SAMPLES


def inside_outside_reason(distance: float) -> str:
    if distance is None or not math.isfinite(distance) or distance >= MIN_INSIDE_OUTSIDE:
        return ""
    return (
        f"inside the outline looks like its surroundings (difference {distance:.2f} < "
        f"{MIN_INSIDE_OUTSIDE:.2f}): an elliptical shape, not a head?"
    )


UNTUNED = (
    ("cephalic_index", cephalic_index_reason),
    ("grey_levels", contrast_reason),
    ("second_head_ratio", second_head_reason),
    ("inside_outside", inside_outside_reason),
    ("hc_halfwidth_mm", interval_reason),
    ("outline_outside", outside_reason),
)


def flag_reasons(features: dict[str, float], thresholds: QualityThresholds) -> list[str]:
    """Why a measurement is flagged `check` ([] if it is not): every rule, in order, on
    the features known (a missing one never trips its rule)."""
    reasons = []
    for rule in RULES:
        value = features.get(rule.feature, math.nan)
        limit = getattr(thresholds, rule.threshold)
        if rule.trips(value, limit):
            reasons.append(rule.reason(value, limit))
    for feature, reason_of in UNTUNED:
        reason = reason_of(features.get(feature, math.nan))
        if reason:
            reasons.append(reason)
    return reasons


# A cine loop whose measured frames' HC differ by more than this ratio holds different
# planes (or heads): its chosen frame is flagged with the spread.
MAX_LOOP_SPREAD = 1.2


def loop_spread(hcs_mm: list[float]) -> str:
    """Why a cine loop's chosen frame is flagged for its frames' spread of HC ('' if it
    is not): frames more than MAX_LOOP_SPREAD apart show other planes or heads."""
    if not hcs_mm or min(hcs_mm) <= 0 or max(hcs_mm) / min(hcs_mm) <= MAX_LOOP_SPREAD:
        return ""
    low, high = min(hcs_mm), max(hcs_mm)
    return (
        f"the loop's frames measure HC from {low:.0f} to {high:.0f} mm "
        f"({100 * (high / low - 1):.0f} % apart): check that the chosen "
        "frame shows the head in its standard plane"
    )


def is_flagged(row: dict, thresholds: QualityThresholds) -> bool:
    """Whether a measured row (predict's or evaluate's columns) is flagged: the same rules
    as `flag_reasons`, read from the row's columns (text cells such as '' count as missing)."""
    return bool(flag_reasons({k: cell_number(row.get(k)) for k in FEATURES}, thresholds))


def cell_number(value) -> float:
    """A row's cell as a number: NaN for text such as '' (a missing feature)."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def rule_trips(rows: list[dict], threshold: str, limit: float) -> np.ndarray:
    """For each row, whether the rule named `threshold` trips at `limit` (the threshold
    search combines these; `Rule.trips` decides, as for a single measurement)."""
    rule = next(r for r in RULES if r.threshold == threshold)
    return np.array([rule.trips(cell_number(r.get(rule.feature)), limit) for r in rows], bool)


def untuned_flags(rows: list[dict]) -> np.ndarray:
    """The rules no threshold search changes (cephalic index, contrast), for each row."""
    return np.array(
        [any(reason_of(cell_number(r.get(f))) for f, reason_of in UNTUNED) for r in rows], bool
    )


def flagged_rows(rows: list[dict], thresholds: QualityThresholds) -> np.ndarray:
    """`is_flagged` for each row."""
    return np.array([is_flagged(r, thresholds) for r in rows], bool)
