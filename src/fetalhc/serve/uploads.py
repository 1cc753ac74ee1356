"""What a request brings: an upload decoded (image, cine loop or DICOM) and its form
fields checked, or an ApiError with the HTTP status and a message."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from fetalhc.errors import (
    EmptyImage,
    ImageTooLarge,
    NotAnImage,
    UnreadableImage,
)
from fetalhc.io.dicom import is_dicom, read_dicom
from fetalhc.io.images import decode_gray
from fetalhc.io.pixel_size import PixelSize
from fetalhc.measure.quality import plausible_pixel_size

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


HTTP_STATUS = {ImageTooLarge: 413, NotAnImage: 415, EmptyImage: 415}
NOT_READABLE = "not an image fetalhc can read (PNG, JPEG, BMP, TIFF or DICOM)"


@dataclass
class Upload:
    """A decoded upload: its frames (one, or a cine loop's), its header's pixel size (with
    the ultrasound regions that decide it where the head lies), its DICOM header."""

    frames: list[np.ndarray]
    pixel_size: PixelSize
    dataset: object = None  # a DICOM upload's header (for its SR)

    @property
    def image(self) -> np.ndarray:
        return self.frames[0]


def decode_upload(data: bytes, max_pixels: int) -> Upload:
    """Bytes of a PNG/JPEG/16-bit PNG/DICOM (a cine loop too) -> frames, header pixel size."""
    if is_dicom(data):
        try:
            dcm = read_dicom(data, cine=True)
        except UnreadableImage as exc:
            code = 413 if isinstance(exc, ImageTooLarge) else 422
            raise ApiError(code, f"DICOM: {exc}") from None
        upload = Upload(dcm.frames, dcm.pixel_size, dcm.dataset)
    else:
        try:
            image = decode_gray(np.frombuffer(data, np.uint8), limit=max_pixels)
        except (ImageTooLarge, NotAnImage, EmptyImage) as exc:
            message = str(exc) if isinstance(exc, ImageTooLarge) else NOT_READABLE
            raise ApiError(HTTP_STATUS[type(exc)], message) from None
        except UnreadableImage as exc:
            raise ApiError(422, f"unusable image: {exc}") from None
        upload = Upload([image], PixelSize.of(None))
    shape = upload.image.shape
    if shape[0] * shape[1] > max_pixels:
        raise ApiError(413, f"image too large ({shape[1]}x{shape[0]} pixels)")
    return upload


def parse_pixel_size(text: str | None) -> float | None:
    if text is None or str(text).strip() == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ApiError(422, f"pixel_size_mm {text!r} is not a number") from None
    why = plausible_pixel_size(value)
    if why:
        raise ApiError(422, f"pixel_size_mm: {why}")
    return value
