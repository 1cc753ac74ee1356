"""Overlay pictures: the image, the fitted ellipse, HC and GA written on it."""

from __future__ import annotations

import math

import cv2
import numpy as np

from fetalhc.measure.ellipse import Ellipse


def draw_ellipse(
    canvas: np.ndarray, e: Ellipse, colour: tuple[int, int, int], width: int = 2
) -> None:
    cv2.ellipse(
        canvas,
        ((e.cx, e.cy), (2 * e.a, 2 * e.b), math.degrees(e.angle)),
        colour,
        width,
        lineType=cv2.LINE_AA,
    )


def overlay(
    image: np.ndarray,
    ellipse: Ellipse | None,
    lines: list[str],
    reference: Ellipse | None = None,
    flagged: bool = False,
) -> np.ndarray:
    canvas = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if reference is not None:
        draw_ellipse(canvas, reference, (255, 200, 0), 1)  # reference: light blue
    if ellipse is not None:
        draw_ellipse(canvas, ellipse, (0, 165, 255) if flagged else (0, 220, 0), 2)
    for i, text in enumerate(lines):
        y = 24 + 22 * i
        cv2.putText(canvas, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(
            canvas, text, (10, y), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA
        )
    return canvas
