"""Pixel values and the image-size limit shared by every image reader (NumPy/OpenCV only)."""

from __future__ import annotations

import os

import cv2
import numpy as np

from fetalhc.errors import UnsupportedImage

DEFAULT_MAX_PIXELS = 50_000_000


def max_image_pixels() -> int:
    """Largest image decoded (pixels): beyond it an image gets a clear status instead of an
    out-of-memory death. 50 MP is 8x the largest ultrasound frames in common use;
    `FETALHC_MAX_PIXELS` sets another limit (read at each call, not frozen at import)."""
    try:
        return int(os.environ.get("FETALHC_MAX_PIXELS", DEFAULT_MAX_PIXELS))
    except ValueError:
        return DEFAULT_MAX_PIXELS


def to_gray_uint8(image: np.ndarray) -> np.ndarray:
    """Any decoded image (grey, BGR, BGRA; 8/16-bit or float) -> 8-bit grey.

    Images stored with more than 8 bits are scaled by their real value range (0 .. max),
    so a 16-bit PNG whose values use 12 bits reads as the same picture as its 8-bit copy."""
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.size == 0 or (image.ndim == 3 and image.shape[2] == 0):
        raise UnsupportedImage(f"not a 2D image (array of shape {image.shape})")
    if not (np.issubdtype(image.dtype, np.integer) or np.issubdtype(image.dtype, np.floating)):
        raise UnsupportedImage(f"pixel values of type {image.dtype} are not numbers")
    if image.ndim == 3 and image.shape[2] in (3, 4):
        # OpenCV converts colour only for uint8/uint16/float32: other types (float64,
        # int32/64, uint32 — a 32-bit RGB DICOM, a NumPy array) are weighted here
        if image.dtype in (np.uint8, np.uint16, np.float32):
            code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_BGR2GRAY
            image = cv2.cvtColor(image, code)
        else:
            b, g, r = (image[..., i].astype(np.float64) for i in range(3))
            image = 0.114 * b + 0.587 * g + 0.299 * r  # OpenCV's BGR2GRAY weights
    elif image.ndim == 3:
        image = image[..., 0]
    if image.dtype == np.uint8:
        return image
    values = image.astype(np.float64)
    if not np.isfinite(values).all():
        raise UnsupportedImage("image holds non-finite values")
    low, high = min(float(values.min()), 0.0), float(values.max())
    if high <= low:
        return np.zeros(image.shape, np.uint8)
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)
