import math

import cv2
import numpy as np
import pytest
from scipy.special import ellipe

from fetalhc.measure.ellipse import (
    Ellipse,
    draw_filled,
    fit_mask,
    fit_outline,
    hc_mm,
    ramanujan_perimeter,
)


def exact_perimeter(a: float, b: float) -> float:
    """Independent reference: the complete elliptic integral of the second kind."""
    a, b = max(a, b), min(a, b)
    return 4 * a * ellipe(1 - (b / a) ** 2)


@pytest.mark.parametrize("a,b", [(100, 100), (120, 80), (300, 150), (50, 10)])
def test_ramanujan_matches_elliptic_integral(a, b):
    assert ramanujan_perimeter(a, b) == pytest.approx(exact_perimeter(a, b), rel=1e-6)


@pytest.mark.parametrize(
    "e",
    [
        Ellipse(400, 270, 180, 130, 0.3),
        Ellipse(390, 260, 60, 45, 1.2),
        Ellipse(410, 280, 250, 200, -0.7),
    ],
)
def test_fit_filled_mask_recovers_perimeter(e):
    mask = draw_filled(e, (540, 800))
    fitted = fit_mask(mask)
    assert fitted is not None
    assert fitted.perimeter == pytest.approx(e.perimeter, rel=1e-3)
    assert (fitted.cx, fitted.cy) == pytest.approx((e.cx, e.cy), abs=0.3)


def test_fit_outline_through_middle_of_line():
    e = Ellipse(400, 270, 200, 150, 0.4)
    outline = np.zeros((540, 800), np.uint8)
    cv2.ellipse(outline, ((e.cx, e.cy), (2 * e.a, 2 * e.b), math.degrees(e.angle)), 255, 3)
    fitted = fit_outline(outline)
    assert fitted.perimeter == pytest.approx(e.perimeter, rel=1e-3)


def test_head_cut_by_image_border_is_measured_by_visible_part():
    e = Ellipse(400, 120, 250, 180, 0.0)  # top ~60 px outside the image
    mask = draw_filled(e, (540, 800))
    assert mask[0].any()
    with_border = fit_mask(mask, exclude_border=False)
    fitted = fit_mask(mask)
    assert fitted.perimeter == pytest.approx(e.perimeter, rel=2e-3)
    assert abs(with_border.perimeter - e.perimeter) > 5 * abs(fitted.perimeter - e.perimeter)


def test_mm_conversion_and_hc18_fields():
    e = Ellipse(100, 50, 20, 10, 0.5).scaled(0.2)
    assert e.as_hc18() == pytest.approx(
        {
            "center_x_mm": 20,
            "center_y_mm": 10,
            "semi_axes_a_mm": 4,
            "semi_axes_b_mm": 2,
            "angle_rad": 0.5,
        }
    )
    assert hc_mm(Ellipse(0, 0, 100, 100, 0), 0.1) == pytest.approx(2 * math.pi * 10)


def test_hadlock():
    # 8.96 + 0.540*HC + 0.0003*HC^3 with HC in cm
    from fetalhc.measure.biometry import hadlock_ga_weeks

    assert hadlock_ga_weeks(175.0) == pytest.approx(8.96 + 0.54 * 17.5 + 0.0003 * 17.5**3)
    assert hadlock_ga_weeks(100) < hadlock_ga_weeks(200) < hadlock_ga_weeks(300)
    assert hadlock_ga_weeks(40) is None and hadlock_ga_weeks(40, extrapolate=True) < 14


def test_degenerate_input_gives_none():
    assert fit_mask(np.zeros((50, 50), np.uint8)) is None
    line = np.zeros((50, 50), np.uint8)
    line[10, 5:40] = 1
    assert fit_outline(line) is None
