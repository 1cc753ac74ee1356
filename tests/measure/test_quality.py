"""The quality flag is defined once: the measurer's flag, the rows' flag and the threshold
search's flag agree."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from fetalhc.measure.quality import (
    RULES,
    QualityThresholds,
    flag_reasons,
    flagged_rows,
    is_flagged,
    rule_trips,
    untuned_flags,
)

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_selection_report.py"


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
    measurer = HeadMeasurer(backend="torch")
    table = {"min_ellipse_iou": 0.985, "max_edge_probability": 0.2, "max_hc_mm": 250.0}
    measurer.segmenter.quality_thresholds = table
    results = list(
        measurer.measure_many([r.image_path for r in records], [r.pixel_size_mm for r in records])
    )
    rows = [r.as_row() for r in results if r.ok]
    shipped = np.array([row["quality"] == "check" for row in rows])
    assert 0 < shipped.sum() < len(rows)  # the check means something: some flagged, not all
    t = QualityThresholds.from_dict(table)
    np.testing.assert_array_equal(flagged_rows(rows, t), shipped)
    spec = importlib.util.spec_from_file_location("model_selection_report", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    scored = [{**row, "hc_abs_diff_mm": 1.0} for row in rows]
    np.testing.assert_array_equal(script.flagged(scored, table), shipped)


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
