"""The quality flag is defined once: the measurer's flag, the rows' flag and the threshold
search's flag agree."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fetalhc.measure import flag_search
from fetalhc.measure.quality import (
    RULES,
    QualityThresholds,
    flag_reasons,
    flagged_rows,
    is_flagged,
    rule_trips,
    untuned_flags,
)


def test_each_rule_trips_on_its_side_and_never_on_a_missing_value():
    t = QualityThresholds(
        min_ellipse_iou=0.9,
        max_edge_probability=0.3,
        max_pass_disagreement=0.05,
        max_hc_mm=300.0,
        max_pass_distance_mm=1.0,
        max_unsupported_arc_deg=100.0,
    )
    calm = dict(ellipse_iou=0.95, edge_probability=0.1, pass_disagreement=0.01, hc_mm=200.0)
    calm.update(pass_distance_mm=0.5, cephalic_index=80.0, unsupported_arc_deg=20.0)
    assert flag_reasons(calm, t) == []
    for rule in RULES:
        limit = getattr(t, rule.threshold)
        bad = {**calm, rule.feature: limit * (0.9 if rule.below else 1.1)}
        assert len(flag_reasons(bad, t)) == 1, rule
        assert flag_reasons({**calm, rule.feature: math.nan}, t) == []
    assert "cephalic index 110" in flag_reasons({**calm, "cephalic_index": 110.0}, t)[0]


def test_rows_flag_as_the_measurer_did(sample):
    """Measured rows of the bundled model, with thresholds that flag some of them: the row
    rule (used by evaluate's catch figures and the selection script) gives the same."""
    from fetalhc.data.hc18 import load_labelled
    from fetalhc.inference.measurer import HeadMeasurer

    records = load_labelled(sample)
    table = {"min_ellipse_iou": 0.985, "max_edge_probability": 0.2, "max_hc_mm": 250.0}
    measurer = HeadMeasurer(backend="torch", quality=table)
    results = list(
        measurer.measure_many([r.image_path for r in records], [r.pixel_size_mm for r in records])
    )
    rows = [r.as_row() for r in results if r.ok]
    shipped = np.array([row["quality"] == "check" for row in rows])
    assert 0 < shipped.sum() < len(rows)  # the check means something: some flagged, not all
    t = QualityThresholds.from_dict(table)
    np.testing.assert_array_equal(flagged_rows(rows, t), shipped)
    scored = [{**row, "hc_abs_diff_mm": 1.0} for row in rows]
    np.testing.assert_array_equal(flag_search.flagged(scored, table), shipped)


def test_the_search_combines_the_same_rules():
    rows = [
        {"ellipse_iou": 0.95, "edge_probability": 0.1, "hc_mm": 200.0, "cephalic_index": 80.0},
        {"ellipse_iou": 0.80, "edge_probability": 0.1, "hc_mm": 200.0, "cephalic_index": 80.0},
        {"ellipse_iou": 0.95, "edge_probability": 0.5, "hc_mm": 320.0, "cephalic_index": 80.0},
        {"ellipse_iou": 0.95, "edge_probability": 0.1, "hc_mm": "", "cephalic_index": 120.0},
    ]
    t = QualityThresholds(min_ellipse_iou=0.9, max_edge_probability=0.3, max_hc_mm=300.0)
    combined = untuned_flags(rows).copy()
    for rule in RULES:
        combined |= rule_trips(rows, rule.threshold, getattr(t, rule.threshold))
    np.testing.assert_array_equal(combined, [False, True, True, True])
    np.testing.assert_array_equal(combined, [is_flagged(r, t) for r in rows])


@pytest.mark.parametrize("value", ["", None, "n/a"])
def test_text_cells_count_as_missing(value):
    assert not is_flagged({"ellipse_iou": value}, QualityThresholds(min_ellipse_iou=0.99))


def test_inside_outside_difference_on_known_images():
    from fetalhc.measure.ellipse import Ellipse
    from fetalhc.measure.quality import inside_outside_difference

    e = Ellipse(cx=200, cy=150, a=80, b=60, angle=0.4)
    rng = np.random.default_rng(0)
    same = rng.integers(0, 256, (300, 400)).astype(np.uint8)
    assert inside_outside_difference(same, e) < 0.03  # one texture everywhere
    yy, xx = np.mgrid[0:300, 0:400]
    c, s = math.cos(e.angle), math.sin(e.angle)
    r = np.hypot(((xx - 200) * c + (yy - 150) * s) / 80, (-(xx - 200) * s + (yy - 150) * c) / 60)
    split = np.where(r < 1.0, 40, 200).astype(np.uint8)  # dark inside, bright outside
    assert inside_outside_difference(split, e) == pytest.approx(1.0)
    # half of the outside darker: the CDFs differ by that half exactly
    half = np.where((r < 1.0) | (xx < 200), 40, 200).astype(np.uint8)
    assert inside_outside_difference(half, e) == pytest.approx(0.5, abs=0.02)
    # a head almost all outside the image, or no ellipse: no value, never a flag
    assert math.isnan(inside_outside_difference(same, Ellipse(-75, 150, 80, 60, 0.0)))
    assert math.isnan(inside_outside_difference(same, None))
    assert flag_reasons({"inside_outside": math.nan}, QualityThresholds()) == []
    assert flag_reasons({"inside_outside": 0.01}, QualityThresholds())


def _brute_longest_run(flags) -> int:
    """Independent of the function under test: scan the sequence twice over."""
    n, best, run = len(flags), 0, 0
    for value in list(flags) * 2:
        run = run + 1 if value else 0
        best = max(best, min(run, n))
    return best


def test_longest_circular_run_against_a_brute_force_scan():
    from fetalhc.measure.quality import longest_circular_run

    rng = np.random.default_rng(3)
    cases = [np.zeros(12, bool), np.ones(12, bool), np.array([1, 1, 0, 0, 0, 1, 1, 1], bool)]
    cases += [rng.random(rng.integers(1, 40)) < p for p in (0.2, 0.5, 0.9) for _ in range(30)]
    for flags in cases:
        assert longest_circular_run(flags) == _brute_longest_run(flags), flags
    assert longest_circular_run(np.array([1, 1, 0, 0, 0, 1, 1, 1], bool)) == 5  # wraps around


def _skull_picture(
    arcs_deg: list[tuple[float, float]], shape=(400, 500), ramp=False, inset_px: int = 0
):
    """A bright skull 15 px thick (1.5 mm at 0.1 mm per pixel) on a mid-grey background,
    drawn only along the given parametric arcs of ELLIPSE, `inset_px` inside it."""
    import cv2

    h, w = shape
    img = np.full(shape, 70, np.uint8)
    if ramp:  # a smooth gradient and no skull: nothing bright to follow
        img = np.tile(np.linspace(40, 120, w).astype(np.uint8), (h, 1))
    e = ELLIPSE
    for start, end in arcs_deg:  # cv2's arcs are parametric angles too
        centre, axes = (round(e.cx), round(e.cy)), (round(e.a) - inset_px, round(e.b) - inset_px)
        cv2.ellipse(img, centre, axes, math.degrees(e.angle), start, end, 230, 15)
    return img


ELLIPSE = None


@pytest.fixture(autouse=False)
def skull_ellipse():
    from fetalhc.measure.ellipse import Ellipse

    global ELLIPSE
    ELLIPSE = Ellipse(cx=250.0, cy=200.0, a=170.0, b=130.0, angle=0.3)
    return ELLIPSE


def test_unsupported_arc_is_the_longest_stretch_without_a_skull(skull_ellipse):
    from fetalhc.measure.quality import unsupported_arc_deg

    e, px = skull_ellipse, 0.1
    assert unsupported_arc_deg(_skull_picture([(0, 360)]), e, px) == 0.0
    # two gaps, 40 and 100 degrees: the longer counts (less what the skull's rounded ends
    # and the 2-degree sampling cover)
    two_gaps = _skull_picture([(0, 130), (170, 260)])
    assert 88.0 <= unsupported_arc_deg(two_gaps, e, px) <= 100.0
    # a smooth gradient is no skull: all of the outline is unsupported
    assert unsupported_arc_deg(_skull_picture([], ramp=True), e, px) == 360.0
    # the search reaches 2.5 mm from the outline: a skull drawn 20 px inside it (its outer
    # side 12.5 px inside) is found at 0.1 mm per pixel (25 px), not at 0.3 (8 px)
    inset = _skull_picture([(0, 360)], inset_px=20)
    assert unsupported_arc_deg(inset, e, 0.1) == 0.0
    assert unsupported_arc_deg(inset, e, 0.3) == 360.0


def test_an_outline_leaving_the_image_has_no_skull_there(skull_ellipse):
    from fetalhc.measure.ellipse import Ellipse
    from fetalhc.measure.quality import unsupported_arc_deg

    full = _skull_picture([(0, 360)])
    # the same skull, its right third cut off by the image's edge
    cut = np.ascontiguousarray(full[:, :330])
    arc = unsupported_arc_deg(cut, skull_ellipse, 0.1)
    assert 90.0 <= arc <= 200.0
    assert math.isnan(unsupported_arc_deg(full, None, 0.1))
    assert math.isnan(unsupported_arc_deg(full, skull_ellipse, None))
    assert math.isnan(unsupported_arc_deg(full, Ellipse(250, 200, 0.0, 10.0, 0.0), 0.1))


def test_unsupported_arc_rule_is_off_unless_a_model_sets_it():
    assert flag_reasons({"unsupported_arc_deg": 360.0}, QualityThresholds()) == []
    t = QualityThresholds.from_dict({"max_unsupported_arc_deg": 100})
    (reason,) = flag_reasons({"unsupported_arc_deg": 120.0}, t)
    assert "120 degrees" in reason and "no skull edge" in reason
    assert flag_reasons({"unsupported_arc_deg": 100.0}, t) == []


def test_the_arc_is_measured_in_the_pixel_size_the_head_is_measured_in(skull_ellipse):
    from fetalhc.inference.measurer import result_from_measurement
    from fetalhc.measure.ellipse import draw_filled
    from fetalhc.measure.postprocess import measure

    image = _skull_picture([(0, 360)], inset_px=20)  # see the test above
    m = measure(draw_filled(skull_ellipse, image.shape).astype(np.float32))
    t = QualityThresholds(max_unsupported_arc_deg=100.0)
    result = result_from_measurement("a.png", m, 0.1, thresholds=t, image=image)
    assert result.unsupported_arc_deg <= 10.0 and result.quality == "ok"
    assert result.as_row()["unsupported_arc_deg"] == pytest.approx(result.unsupported_arc_deg)
    unsized = result_from_measurement("a.png", m, None, thresholds=t, image=image)
    assert math.isnan(unsized.unsupported_arc_deg) and unsized.status == "no_pixel_size"
    # the skull 20 px inside is 6 mm at 0.3 mm a pixel: too far to support the outline
    coarser = result_from_measurement("a.png", m, 0.3, thresholds=t, image=image)
    assert coarser.unsupported_arc_deg == 360.0 and coarser.quality == "check"
    assert any("360 degrees" in r for r in coarser.quality_reasons)
    # without the image (a caller measuring a mask alone) the feature is unknown, no flag
    blind = result_from_measurement("a.png", m, 0.1, thresholds=t)
    assert math.isnan(blind.unsupported_arc_deg) and blind.quality == "ok"


def test_a_head_cut_off_by_the_image_edge_is_flagged():
    import math as m

    from fetalhc.measure.ellipse import Ellipse
    from fetalhc.measure.quality import MAX_OUTLINE_OUTSIDE, outline_outside

    inside = Ellipse(100.0, 100.0, 60.0, 40.0, 0.3)
    assert outline_outside(inside, (200, 200)) == 0.0
    half = Ellipse(200.0, 100.0, 40.0, 40.0, 0.0)  # a circle centred on the right edge
    assert outline_outside(half, (200, 200)) == pytest.approx(0.5, abs=0.01)
    assert m.isnan(outline_outside(None, (200, 200)))
    assert flag_reasons({"outline_outside": MAX_OUTLINE_OUTSIDE}, QualityThresholds()) == []
    (reason,) = flag_reasons({"outline_outside": 0.3}, QualityThresholds())
    assert "30 % of the head's outline lies outside the image" in reason


def test_the_measurer_flags_a_head_the_image_cuts_off(sample):
    from fetalhc.data.hc18 import load_labelled, reference_ellipse
    from fetalhc.inference.measurer import HeadMeasurer
    from fetalhc.io.images import read_gray

    record = next(r for r in load_labelled(sample) if r.filename == "216_HC.png")
    gray = read_gray(record.image_path)
    head = reference_ellipse(read_gray(record.annotation_path))
    c, s = np.cos(head.angle), np.sin(head.angle)
    half_width = np.hypot(head.a * c, head.b * s)
    cut = gray[:, : int(head.cx + 0.4 * half_width)]  # 30 % of the head's width gone
    result = HeadMeasurer(backend="torch").measure(cut, record.pixel_size_mm)
    assert result.outline_outside > 0.2 and result.quality == "check"
    assert any("outside the image" in r for r in result.quality_reasons)
