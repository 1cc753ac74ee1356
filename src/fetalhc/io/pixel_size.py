"""A pixel size and where it came from, decided before a head is measured.

A DICOM header's ultrasound regions may give each view of a split screen its own spacing:
then the region that holds the located head decides (`PixelSize.for_head`), before any mm
are computed. Everything else (an argument, a CSV row, a form field, PixelSpacing) is one
number for the whole image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from enum import Enum

import numpy as np

from fetalhc.errors import FetalHCError

NOT_IN_ONE_REGION = "the head is not inside one ultrasound region; give the pixel size"


class PixelSizeSource(str, Enum):
    """Where a pixel size came from."""

    GIVEN = "given"  # an argument, --pixel-size, a pixel CSV row, a form field
    ULTRASOUND_REGION = "ultrasound region"  # SequenceOfUltrasoundRegions' PhysicalDeltaX/Y
    PIXEL_SPACING = "PixelSpacing"
    IMAGER_PIXEL_SPACING = "ImagerPixelSpacing"
    NONE = "none"

    def __str__(self) -> str:
        return self.value

    @property
    def from_header(self) -> bool:
        return self not in (PixelSizeSource.GIVEN, PixelSizeSource.NONE)


@dataclass(frozen=True)
class Region:
    """An ultrasound region (SequenceOfUltrasoundRegions): its pixel box and, when its
    units are cm and both deltas are numbers, its PhysicalDeltaX/Y in mm (`delta_mm`)."""

    x0: float
    y0: float
    x1: float
    y1: float
    delta_mm: tuple[float, float] | None

    @property
    def spacing_mm(self) -> float | None:
        """mm per pixel, or None: no physical spacing, or unequal along x and y."""
        if self.delta_mm is None:
            return None
        dx, dy = self.delta_mm
        return dx if math.isfinite(dx) and dx > 0 and math.isclose(dx, dy, rel_tol=0.02) else None

    def contains(self, points: np.ndarray) -> bool:
        """Whether every (x, y) point lies in the box."""
        p = np.asarray(points, float)
        x_in = (p[:, 0] >= self.x0) & (p[:, 0] <= self.x1)
        return bool(np.all(x_in & (p[:, 1] >= self.y0) & (p[:, 1] <= self.y1)))


@dataclass(frozen=True)
class PixelSize:
    """mm per pixel (None: unknown), its source, and — from a DICOM header with ultrasound
    regions that carry a spacing — those regions, one of which will decide once the head
    is located. `note`: why there is none (unequal spacing, the head in no region)."""

    mm: float | None
    source: PixelSizeSource = PixelSizeSource.GIVEN
    regions: tuple[Region, ...] = ()
    note: str = ""

    @classmethod
    def of(cls, value: PixelSize | float | int | Decimal | str | None) -> PixelSize:
        """A pixel size as callers give it: a PixelSize, or a number of mm (a float, an
        int, a Decimal, a numeric string; None: unknown). Anything else is refused:
        measuring with a wrong type is a caller's bug."""
        if isinstance(value, PixelSize):
            return value
        if value is None:
            return cls(None, PixelSizeSource.NONE)
        if isinstance(value, bool) or not isinstance(
            value, float | int | Decimal | str | np.number
        ):
            raise FetalHCError(
                f"pixel size {value!r}: expected a number of mm, not {type(value).__name__}"
            )
        try:
            return cls(float(value))
        except (ValueError, ArithmeticError):
            raise FetalHCError(f"pixel size {value!r}: not a number of mm") from None

    def for_head(self, corners: np.ndarray | None) -> PixelSize:
        """The pixel size a head whose bounding box has these corners is measured in: with
        regions, the spacing of the first region that holds all of it (none, with the
        reason, when no single region does); otherwise this one."""
        if corners is None or not self.regions:
            return self
        for region in self.regions:
            if region.contains(corners):
                return PixelSize(region.spacing_mm, PixelSizeSource.ULTRASOUND_REGION)
        return PixelSize(None, self.source, note=NOT_IN_ONE_REGION)

    @property
    def unusable(self) -> bool:
        """A value that is not a number (a CSV cell such as 'abc')."""
        return self.mm is not None and math.isnan(self.mm)
