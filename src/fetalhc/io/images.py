"""Reading images safely: PNG/JPEG/... and DICOM to 8-bit grey, size-checked first."""

from __future__ import annotations

import io
import os
from pathlib import Path

import cv2
import numpy as np

from fetalhc.errors import (
    EmptyImage,
    ImageTooLarge,
    NotAnImage,
    UnreadableImage,
    UnsupportedImage,
)
from fetalhc.io.dicom import is_dicom, read_dicom
from fetalhc.io.pixels import max_image_pixels, to_gray_uint8

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# OpenCV refuses images with a side over 2^15 or so; no ultrasound frame comes near this
MAX_SIDE = 32_767


def image_size(data: np.ndarray) -> tuple[int, int] | None:
    """(width, height) from an encoded image's header without decoding it (None if the
    format is not recognised)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data.tobytes())) as im:
            return im.size
    except Image.DecompressionBombError as exc:  # a header declaring > 178 MP: too large
        raise ImageTooLarge(f"image too large (its header declares {exc})") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an image as 8-bit grey; raise UnreadableImage (a ValueError) with a short
    reason if it cannot be decoded, ImageTooLarge if it is over `max_image_pixels()`."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise UnreadableImage(f"cannot read file ({exc.strerror})") from None
    if data.size == 0:
        raise EmptyImage("empty file")
    if is_dicom(data[:132].tobytes()):  # DICOM Part 10: the pixel data need pydicom
        return read_dicom(data.tobytes()).image
    return decode_gray(data)


def decode_gray(data: np.ndarray, limit: int | None = None) -> np.ndarray:
    """Decode an encoded image (bytes as uint8 array) to 8-bit grey; see `read_gray`. The
    size its header declares is checked against `limit` (default `max_image_pixels()`)
    before anything is decoded."""
    if data[:8].tobytes() == _PNG_SIGNATURE and b"IEND" not in data[-12:].tobytes():
        # Checked here because libpng would print its own error for a truncated file.
        raise UnreadableImage("truncated PNG (no IEND chunk)")
    limit = max_image_pixels() if limit is None else limit
    size = image_size(data)
    if size is not None and size[0] * size[1] > limit:
        raise ImageTooLarge(f"image too large ({size[0]}x{size[1]} pixels; limit {limit:,})")
    if size is not None and max(size) > MAX_SIDE:
        raise UnsupportedImage(f"image of {size[0]}x{size[1]} pixels: a side over {MAX_SIDE:,}")
    # ANYDEPTH keeps 16-bit values (IMREAD_GRAYSCALE would shift them to 8 bits); EXIF
    # orientation is applied as with a plain read.
    try:
        image = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    except cv2.error as exc:  # OpenCV refuses some images outright (sizes, modes)
        first = str(exc).strip().splitlines()[-1][:120]
        raise UnsupportedImage(f"OpenCV cannot decode this image ({first})") from None
    if image is None or image.size == 0:
        raise NotAnImage("not a decodable image (corrupt or truncated)")
    if image.shape[0] * image.shape[1] > limit:
        raise ImageTooLarge(f"image too large ({image.shape[1]}x{image.shape[0]} pixels)")
    return to_gray_uint8(image)
