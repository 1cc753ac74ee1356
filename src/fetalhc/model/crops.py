"""Square crops of an image and the affine maps between a crop and its image.

Two-pass ("head crop") models see square crops: the whole image letterboxed into a square
(to find the head), then a square around the head (to outline it). A first-trimester head
is ~40 px across in a 320x224 resize of the whole image but fills the second crop, which
is where single-pass models leak. The same functions cut the crops in training and in
inference, so the network sees the same resampling in both.

Coordinates are OpenCV's: pixel (i, j) has its centre at x = j, y = i.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# Logit written outside a crop when it is mapped back onto its image (probability ~ 0).
OUTSIDE_LOGIT = -30.0


@dataclass(frozen=True)
class Square:
    """A square region of an image: centre and side, in image pixels (may extend past the
    image; the outside reads as black)."""

    cx: float
    cy: float
    side: float


def whole_image(shape_hw: tuple[int, int]) -> Square:
    """The square that letterboxes the whole image."""
    h, w = shape_hw[:2]
    return Square((w - 1) / 2, (h - 1) / 2, float(max(w, h)))


def box_of(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """(x0, y0, x1, y1) pixel-edge bounding box of a mask's non-zero pixels, or None."""
    x, y, w, h = cv2.boundingRect(np.asarray(mask, np.uint8))  # non-zero pixels' box
    if w == 0 or h == 0:
        return None
    return x - 0.5, y - 0.5, x + w - 0.5, y + h - 0.5


def around_box(box: tuple[float, float, float, float], margin: float) -> Square:
    """The square centred on a box whose side is the box's longer side plus `margin` of it
    on each side."""
    x0, y0, x1, y1 = box
    side = max(x1 - x0, y1 - y0) * (1 + 2 * margin)
    return Square((x0 + x1) / 2, (y0 + y1) / 2, float(max(side, 8.0)))


def crop_matrix(
    square: Square,
    out: int,
    angle_deg: float = 0.0,
    hflip: bool = False,
    vflip: bool = False,
) -> np.ndarray:
    """2x3 affine map from image coordinates to the coordinates of an `out` x `out` crop
    (rotated by `angle_deg` about its centre, then mirrored)."""
    scale = out / square.side
    c = (out - 1) / 2
    t = np.radians(angle_deg)
    rot = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) * scale
    flip = np.diag([-1.0 if hflip else 1.0, -1.0 if vflip else 1.0])
    linear = flip @ rot
    offset = np.array([c, c]) - linear @ np.array([square.cx, square.cy])
    return np.hstack([linear, offset[:, None]])


def cut(
    image: np.ndarray,
    matrix: np.ndarray,
    out: int,
    interpolation: int = cv2.INTER_LINEAR,
) -> np.ndarray:
    """The `out` x `out` crop of `image` under `matrix` (from `crop_matrix`).

    A crop that shrinks the image is first area-resized to (about) the crop's scale, so it
    is anti-aliased like `cv2.resize(..., INTER_AREA)`; the warp then only rotates and
    shifts."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    source = image
    m = matrix.astype(np.float64)
    if scale < 0.9:
        h, w = image.shape[:2]
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        source = cv2.resize(image, (sw, sh), interpolation=cv2.INTER_AREA)
        kx, ky = sw / w, sh / h
        # image x = (x_small + 0.5) / kx - 0.5, likewise y
        to_image = np.array([[1 / kx, 0, 0.5 / kx - 0.5], [0, 1 / ky, 0.5 / ky - 0.5], [0, 0, 1]])
        m = m @ to_image
    return cv2.warpAffine(
        source,
        m,
        (out, out),
        flags=interpolation,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def crop_window(
    matrix: np.ndarray,
    shape_hw: tuple[int, int],
    rect: tuple[int, int, int, int],
    margin: int = 2,
) -> tuple[slice, slice]:
    """The image pixels that a crop's pixels `rect` (x, y, width, height, as from
    `cv2.boundingRect`) cover under `matrix`, `margin` image pixels beyond, clipped to the
    image: where that part of the crop lands when mapped back (an empty window if none)."""
    h, w = shape_hw[:2]
    x, y, rw, rh = rect
    xs, ys = (x - 0.5, x + rw - 0.5), (y - 0.5, y + rh - 0.5)  # pixel edges
    corners = np.array([[cx, cy] for cx in xs for cy in ys])
    back = cv2.invertAffineTransform(matrix.astype(np.float64))
    xy = corners @ back[:, :2].T + back[:, 2]
    x0 = min(max(int(np.floor(xy[:, 0].min())) - margin, 0), w)
    x1 = max(min(int(np.ceil(xy[:, 0].max())) + 1 + margin, w), x0)
    y0 = min(max(int(np.floor(xy[:, 1].min())) - margin, 0), h)
    y1 = max(min(int(np.ceil(xy[:, 1].max())) + 1 + margin, h), y0)
    return slice(y0, y1), slice(x0, x1)


def uncrop_logits(
    logits: np.ndarray,
    matrix: np.ndarray,
    shape_hw: tuple[int, int],
    window: tuple[slice, slice] | None = None,
) -> np.ndarray:
    """Map a crop's logits back onto its image (bilinear); outside the crop: `OUTSIDE_LOGIT`.
    With `window` (step-1 slices of the image), only that part of the image is computed."""
    h, w = shape_hw[:2]
    m = matrix.astype(np.float64)
    if window is not None:
        y0, x0 = window[0].start, window[1].start
        h, w = window[0].stop - y0, window[1].stop - x0
        if h <= 0 or w <= 0:
            return np.full((max(h, 0), max(w, 0)), OUTSIDE_LOGIT, np.float32)
        m = m.copy()
        m[:, 2] += m[:, 0] * x0 + m[:, 1] * y0  # window pixel (x, y) is image (x0 + x, y0 + y)
    return cv2.warpAffine(
        logits.astype(np.float32),
        m,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=OUTSIDE_LOGIT,
    )
