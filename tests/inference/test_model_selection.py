"""The quality flag's threshold search of scripts/model_selection_report.py."""

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "model_selection_report.py"


@pytest.fixture(scope="module")
def selection():
    spec = importlib.util.spec_from_file_location("model_selection_report", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def row(err, iou=0.98, edge=0.15, dis=0.005, hc=180.0, dist=0.2):
    return {
        "hc_abs_diff_mm": err,
        "ellipse_iou": iou,
        "edge_probability": edge,
        "pass_disagreement": dis,
        "hc_mm": hc,
        "pass_distance_mm": dist,
    }


def test_the_search_finds_the_feature_that_separates_the_errors(selection):
    rows = [row(1.0) for _ in range(95)]
    rows += [row(12.0, dis=0.09), row(15.0, dis=0.08), row(6.0, dis=0.06)]  # passes disagree
    rows += [row(1.5, hc=320.0), row(1.2, hc=330.0)]  # large but correct heads
    t = selection.choose_thresholds(rows)
    fig = selection.flag_figures(rows, t)
    assert fig["caught_10mm"] == 2 and fig["caught_5mm"] == 3
    assert fig["flagged_pct"] == 3.0  # only the three errors: no threshold on HC needed
    assert t["max_pass_disagreement"] < 0.06 and math.isinf(t["max_hc_mm"])
    assert math.isinf(t["max_pass_distance_mm"])


def test_the_search_uses_the_outline_distance_where_hc_agrees(selection):
    # the passes agree on HC but their outlines lie apart (a shifted outline)
    rows = [row(1.0) for _ in range(96)]
    rows += [row(11.0, dist=1.4), row(8.0, dist=1.1), row(6.0, dist=0.9)]
    rows += [row(0.8, dist=0.45)]
    t = selection.choose_thresholds(rows)
    fig = selection.flag_figures(rows, t)
    assert (fig["caught_10mm"], fig["caught_7_5mm"], fig["caught_5mm"]) == (1, 2, 3)
    assert fig["flagged_pct"] == 3.0 and 0.45 <= t["max_pass_distance_mm"] < 0.9
    assert math.isinf(t["max_pass_disagreement"])


def test_the_search_respects_the_share_flagged(selection):
    # errors indistinguishable from the rest by every feature: nothing beats not flagging
    rows = [row(1.0) for _ in range(90)] + [row(12.0) for _ in range(10)]
    t = selection.choose_thresholds(rows)
    assert selection.flag_figures(rows, t)["flagged_pct"] <= 100 * selection.FLAG_SHARE


def test_no_head_is_always_flagged_and_counts_as_an_error(selection):
    rows = [row(1.0) for _ in range(9)] + [{"hc_abs_diff_mm": math.nan}]
    fig = selection.flag_figures(rows, selection.NO_FLAG)
    assert fig["flagged_pct"] == 10.0 and fig["caught_10mm"] == 1
