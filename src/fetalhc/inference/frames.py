"""A cine loop's frames: which are measured, each checked against the DICOM regions,
and the one its measurement is taken from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fetalhc.inference.derive import in_pixel_size
from fetalhc.inference.result import HeadMeasurement
from fetalhc.io.dicom import cine_frames
from fetalhc.measure.ellipse import Ellipse


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
        out = in_pixel_size(result, None)
        out.detail = "the head is not inside one ultrasound region; give the pixel size"
        return out
    spacing = holding[0].spacing_mm
    if result.pixel_size_mm is not None and math.isclose(
        result.pixel_size_mm, spacing, rel_tol=1e-9
    ):
        return result
    return in_pixel_size(result, spacing)


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
