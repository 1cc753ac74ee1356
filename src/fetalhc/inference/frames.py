"""A cine loop's frames: which are measured, and the one its measurement is taken from."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from fetalhc.inference.result import HeadMeasurement
from fetalhc.io.dicom import cine_frames
from fetalhc.measure.quality import loop_spread


def frame_plan(count: int, name: str) -> list[tuple[int | None, str]]:
    """(frame number, row name) of each frame measured: one image is itself (None, name);
    a cine loop's frames are `name#k` for the frames `cine_frames` picks."""
    if count == 1:
        return [(None, name)]
    return [(k, f"{name}#{k}") for k in cine_frames(count)]


def settle_frames(
    results: list[HeadMeasurement], plan: list[tuple[int | None, str]]
) -> FramesMeasurement:
    """The measured frames of `plan`, numbered, and the one chosen (a single image:
    itself); a loop whose frames disagree has its chosen frame flagged (`loop_spread`)."""
    results = [replace(r, frame=k) for r, (k, _) in zip(results, plan, strict=True)]
    if len(plan) == 1:
        return FramesMeasurement(results, 0)
    chosen = choose_frame(results)
    if chosen is None:  # no frame holds a head: the first speaks for the loop, as a failed
        return FramesMeasurement(results, 0)  # single image's row does
    why = loop_spread([r.hc_mm for r in results if r.ok])
    if why:
        lead = results[chosen]
        results[chosen] = replace(
            lead, quality="check", quality_reasons=[*lead.quality_reasons, why]
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
