"""A map over an image that is only computed in a window of it.

A two-pass model's close-up covers a part of the image, and the whole-image pass finds the
head in a part of it: mapping their logits back, taking the sigmoid and the connected
components over the whole image did work on pixels whose value is known (the constant
outside a crop) or cannot matter (far below any threshold). `WindowedMap` keeps the values
inside a window and the constant for the rest; `full()` gives the whole map when someone
asks for it (a probability-map output, the paper's metrics).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Window = tuple[slice, slice]  # rows, columns; step 1, within the image


@dataclass(frozen=True)
class WindowedMap:
    """`values` over `window` of an image of `shape` (rows, columns); `outside` elsewhere."""

    values: np.ndarray
    window: Window
    shape: tuple[int, int]
    outside: float = 0.0

    @classmethod
    def whole(cls, values: np.ndarray) -> WindowedMap:
        """A map computed everywhere (its window is the whole image)."""
        h, w = values.shape[:2]
        return cls(values, (slice(0, h), slice(0, w)), (h, w))

    @property
    def offset(self) -> tuple[int, int]:
        """(row, column) of the window's first pixel in the image."""
        return self.window[0].start, self.window[1].start

    def full(self) -> np.ndarray:
        """The map at the image's size."""
        if self.values.shape[:2] == self.shape:
            return self.values
        out = np.full(self.shape, self.outside, self.values.dtype)
        out[self.window] = self.values
        return out

    def paste(self, inside: np.ndarray, fill: int = 0) -> np.ndarray:
        """An image-size array with `inside` (the window's size) in the window, `fill`
        elsewhere: a mask made on the window, back at the image's size."""
        if inside.shape[:2] == self.shape:
            return inside
        out = np.full(self.shape, fill, inside.dtype)
        out[self.window] = inside
        return out

    def read(self, box: Window) -> np.ndarray:
        """The map's values over `box` (step-1 slices of the image), the outside filled in."""
        (r0, r1), (c0, c1) = _bounds(box[0], self.shape[0]), _bounds(box[1], self.shape[1])
        (wr0, wr1), (wc0, wc1) = (
            _bounds(self.window[0], self.shape[0]),
            _bounds(self.window[1], self.shape[1]),
        )
        if (wr0, wr1, wc0, wc1) == (0, self.shape[0], 0, self.shape[1]):
            return self.values[r0:r1, c0:c1]
        out = np.full((r1 - r0, c1 - c0), self.outside, self.values.dtype)
        ir0, ir1, ic0, ic1 = max(r0, wr0), min(r1, wr1), max(c0, wc0), min(c1, wc1)
        if ir0 < ir1 and ic0 < ic1:
            out[ir0 - r0 : ir1 - r0, ic0 - c0 : ic1 - c0] = self.values[
                ir0 - wr0 : ir1 - wr0, ic0 - wc0 : ic1 - wc0
            ]
        return out


def as_windowed(values: np.ndarray | WindowedMap) -> WindowedMap:
    return values if isinstance(values, WindowedMap) else WindowedMap.whole(np.asarray(values))


def _bounds(s: slice, n: int) -> tuple[int, int]:
    start, stop, step = s.indices(n)
    if step != 1:
        raise ValueError("windows are step-1 slices")
    return start, max(start, stop)
