"""DICOM input: the image as 8-bit grey and its pixel size in mm, from the header.

Pixel size, in order: the ultrasound region's `PhysicalDeltaX/Y` (cm, units code 3) in
`SequenceOfUltrasoundRegions` — the region that holds the image centre, else the first with
a physical spacing — then `PixelSpacing` (mm), then `ImagerPixelSpacing` (mm).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fetalhc.errors import (
    ImageTooLarge,
    NotAnImage,
    UnreadableImage,
    UnsupportedImage,
    escaped,
    one_line,
)
from fetalhc.io.pixel_size import PixelSize, PixelSizeSource, Region
from fetalhc.io.pixels import max_image_pixels, to_gray_uint8

CM_UNITS = 3  # DICOM PhysicalUnits code for centimetres
DICOM_SUFFIXES = {".dcm", ".dicom"}


# A cine loop's decoded frames may hold at most this many times the single-image limit.
MAX_CINE_FACTOR = 20
# A cine loop is measured on at most this many frames: every frame up to 64, else every
# k-th (k = ceil(frames / 64)), the first always. Only those frames are decoded, one by
# one: a small file that claims 900 large frames costs 64 of them, not 900.
CINE_MAX_FRAMES = 64


def cine_frames(count: int, limit: int = CINE_MAX_FRAMES) -> list[int]:
    """The 1-based frames of a cine loop that are measured (see CINE_MAX_FRAMES)."""
    step = max(1, math.ceil(count / limit))
    return list(range(1, count + 1, step))


class SampledFrames(Sequence):
    """A cine loop's frames as a sequence of its full length, holding only the frames
    `cine_frames` picks (uint8 grey); asking for another one is a caller's bug."""

    def __init__(self, count: int, decoded: dict[int, np.ndarray]) -> None:
        self._count, self._decoded = count, decoded

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._count)) if i in self._decoded]
        if index < 0:
            index += self._count
        if index in self._decoded:
            return self._decoded[index]
        if 0 <= index < self._count:
            raise IndexError(f"frame {index + 1} was not decoded (see cine_frames)")
        raise IndexError(index)

    def __iter__(self):
        return (self._decoded[i] for i in sorted(self._decoded))


@dataclass
class DicomImage:
    image: np.ndarray  # uint8 grey (a cine loop: its first frame)
    # the header's pixel size: its source, and the ultrasound regions that decide once
    # the head is located (`PixelSize.for_head`)
    pixel_size: PixelSize
    # every frame, uint8 grey (a cine loop: only the frames `cine_frames` picks are held)
    frames: Sequence[np.ndarray] = field(default_factory=list)
    dataset: Any = field(default=None, repr=False)  # the header, pixel data left out

    @property
    def is_cine(self) -> bool:
        return len(self.frames) > 1


def is_dicom(data: bytes) -> bool:
    """The DICOM Part 10 preamble: 128 bytes, then 'DICM'."""
    return len(data) >= 132 and data[128:132] == b"DICM"


def quiet_pydicom() -> None:
    """No value-validation messages from pydicom while reading: they quote the value (a
    birth date written `1990-01-01`) into the logs. Invalid values are fetalhc's to
    handle (`fetalhc.io.dicom_header`), and it says so without patient data."""
    from pydicom import config

    config.settings.reading_validation_mode = config.IGNORE


def read_dicom(source: str | Path | bytes, cine: bool = False) -> DicomImage:
    """Decode a DICOM image (a cine loop with `cine`, every frame); UnreadableImage (a
    ValueError) with a short reason otherwise."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    quiet_pydicom()

    try:
        if isinstance(source, bytes | bytearray):
            ds = pydicom.dcmread(io.BytesIO(source))
        else:
            ds = pydicom.dcmread(str(source))
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError) as exc:
        raise UnreadableImage(f"not a readable DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise NotAnImage("DICOM file without an image (no PixelData)")
    frames = _count(ds, "NumberOfFrames", 1)
    if frames > 1 and not cine:
        raise UnsupportedImage(
            f"multi-frame DICOM ({frames} frames): export the frozen frame as a single image"
        )
    rows, cols = _count(ds, "Rows", 0), _count(ds, "Columns", 0)
    if rows < 1 or cols < 1 or frames < 1:
        raise UnreadableImage(f"DICOM header: {cols}x{rows} pixels, {frames} frames")
    limit = max_image_pixels()
    if rows * cols > limit:
        raise ImageTooLarge(f"image too large ({cols}x{rows} pixels; limit {limit:,})")
    if rows * cols * frames > MAX_CINE_FACTOR * limit:
        raise ImageTooLarge(
            f"cine loop too large ({frames} frames of {cols}x{rows} pixels; "
            f"limit {MAX_CINE_FACTOR * limit:,} pixels in all)"
        )
    interpretation = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    wanted = cine_frames(frames) if frames > 1 else [1]
    decoded = {
        k - 1: _decode_frame(ds, k - 1 if frames > 1 else None, interpretation) for k in wanted
    }
    first = decoded[0]
    size = dicom_pixel_size(ds, first.shape)
    del ds.PixelData  # the header stays for DICOM outputs; the pixels are in `frames`
    gray_frames = SampledFrames(frames, decoded) if frames > 1 else [first]
    return DicomImage(first, size, gray_frames, ds)


def _count(ds, keyword: str, default: int) -> int:
    """A header's count (Rows, Columns, NumberOfFrames), or UnreadableImage saying which
    value is not one (a text in an IS/US element)."""
    try:
        value = getattr(ds, keyword, default)
        return int(value if value not in (None, "") else default)
    except (TypeError, ValueError, OverflowError):
        shown = escaped(ds.get(keyword, ""), 40)
        raise UnreadableImage(f"DICOM {keyword} {shown!r} is not a number") from None


def _decode_frame(ds, index: int | None, interpretation: str) -> np.ndarray:
    """One frame as uint8 grey. pydicom hands colour back as RGB whatever it was stored as
    (YBR_FULL_422 JPEG included: converting it again would halve its grey levels)."""
    from pydicom.pixels import pixel_array

    try:
        pixels = np.asarray(pixel_array(ds, index=index, as_rgb=True))
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for codecs
        syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        name = getattr(syntax, "name", str(syntax))
        reason = one_line(exc, 120)
        raise UnsupportedImage(
            f"cannot decode the DICOM pixel data (transfer syntax {name}: {reason})"
        ) from None
    if pixels.ndim == 3 and pixels.shape[-1] == 3:
        pixels = pixels[..., ::-1]  # RGB -> BGR for OpenCV's conversion
    gray = to_gray_uint8(pixels)
    if interpretation == "MONOCHROME1":  # 0 is white
        gray = 255 - gray
    return gray


def ultrasound_regions(ds, shape: tuple[int, int]) -> list[Region]:
    """Every ultrasound region of a header, in order (a split screen has several), read
    once: what both the whole image's pixel size and the head's region are chosen from."""
    h, w = shape
    out = []
    for region in getattr(ds, "SequenceOfUltrasoundRegions", None) or []:
        units = (
            getattr(region, "PhysicalUnitsXDirection", CM_UNITS),
            getattr(region, "PhysicalUnitsYDirection", CM_UNITS),
        )
        try:
            delta = (abs(float(region.PhysicalDeltaX)) * 10, abs(float(region.PhysicalDeltaY)) * 10)
        except (AttributeError, TypeError, ValueError):
            delta = None
        out.append(
            Region(
                float(getattr(region, "RegionLocationMinX0", 0)),
                float(getattr(region, "RegionLocationMinY0", 0)),
                float(getattr(region, "RegionLocationMaxX1", w - 1)),
                float(getattr(region, "RegionLocationMaxY1", h - 1)),
                delta if units == (CM_UNITS, CM_UNITS) else None,
            )
        )
    return out


def dicom_pixel_size(ds, shape: tuple[int, int]) -> PixelSize:
    """The header's pixel size (see the module's order), with its ultrasound regions when
    any carries a spacing: the region that holds the head decides once it is located."""
    regions = ultrasound_regions(ds, shape)
    for_image = _region_pixel_size(regions, shape)
    if for_image is not None:
        if not for_image.mm:
            return for_image
        return replace(for_image, regions=tuple(r for r in regions if r.spacing_mm))
    for key, source in (
        ("PixelSpacing", PixelSizeSource.PIXEL_SPACING),
        ("ImagerPixelSpacing", PixelSizeSource.IMAGER_PIXEL_SPACING),
    ):
        spacing = getattr(ds, key, None)
        if spacing is not None and len(spacing) == 2:
            try:
                row, col = float(spacing[0]), float(spacing[1])
            except (TypeError, ValueError):
                continue
            if math.isfinite(row) and row > 0 and math.isclose(row, col, rel_tol=0.02):
                return PixelSize(col, source)
    return PixelSize(None, PixelSizeSource.NONE)


def _region_pixel_size(regions: list[Region], shape: tuple[int, int]) -> PixelSize | None:
    """The ultrasound regions' spacing for the whole image (among the regions with a
    physical delta, the one that holds the image centre, else the first); for unequal
    spacing, none with the reason; None without such a region."""
    h, w = shape
    physical = [r for r in regions if r.delta_mm is not None]
    if not physical:
        return None
    centre = np.array([[w / 2, h / 2]])
    chosen = next((r for r in physical if r.contains(centre)), physical[0])
    if chosen.spacing_mm:
        return PixelSize(chosen.spacing_mm, PixelSizeSource.ULTRASOUND_REGION)
    dx, dy = chosen.delta_mm
    if math.isfinite(dx) and dx > 0:
        # anisotropic pixels cannot be measured with one pixel size
        note = f"ultrasound region has unequal spacing ({dx:g} x {dy:g} mm)"
        return PixelSize(None, PixelSizeSource.NONE, note=note)
    return None
