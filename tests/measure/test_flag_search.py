"""The quality flag's threshold search (fetalhc.measure.flag_search, `fetalhc tune-flag`)."""

import json
import math

from fetalhc.measure import flag_search
from tests.conftest import run_cli


def row(err, iou=0.98, edge=0.15, dis=0.005, hc=180.0, dist=0.2, arc=20.0):
    return {
        "hc_abs_diff_mm": err,
        "ellipse_iou": iou,
        "edge_probability": edge,
        "pass_disagreement": dis,
        "hc_mm": hc,
        "pass_distance_mm": dist,
        "unsupported_arc_deg": arc,
    }


def test_the_search_finds_the_feature_that_separates_the_errors():
    rows = [row(1.0) for _ in range(95)]
    rows += [row(12.0, dis=0.09), row(15.0, dis=0.08), row(6.0, dis=0.06)]  # passes disagree
    rows += [row(1.5, hc=320.0), row(1.2, hc=330.0)]  # large but correct heads
    t = flag_search.choose_thresholds(rows)
    fig = flag_search.flag_figures(rows, t)
    assert fig["caught_10mm"] == 2 and fig["caught_5mm"] == 3
    assert fig["flagged_pct"] == 3.0  # only the three errors: no threshold on HC needed
    assert t["max_pass_disagreement"] < 0.06 and math.isinf(t["max_hc_mm"])
    assert math.isinf(t["max_pass_distance_mm"])


def test_the_search_uses_the_outline_distance_where_hc_agrees():
    # the passes agree on HC but their outlines lie apart (a shifted outline)
    rows = [row(1.0) for _ in range(96)]
    rows += [row(11.0, dist=1.4), row(8.0, dist=1.1), row(6.0, dist=0.9)]
    rows += [row(0.8, dist=0.45)]
    t = flag_search.choose_thresholds(rows)
    fig = flag_search.flag_figures(rows, t)
    assert (fig["caught_10mm"], fig["caught_7_5mm"], fig["caught_5mm"]) == (1, 2, 3)
    assert fig["flagged_pct"] == 3.0 and 0.45 <= t["max_pass_distance_mm"] < 0.9
    assert math.isinf(t["max_pass_disagreement"])


def test_the_search_uses_the_unsupported_arc_where_nothing_else_sees_the_error():
    # an outline bridging a wall the image does not show, every other feature calm
    rows = [row(1.0) for _ in range(95)] + [row(1.0, arc=90.0) for _ in range(2)]
    rows += [row(11.0, arc=130.0), row(12.0, dis=0.09), row(6.0, dist=1.2)]
    t = flag_search.choose_thresholds(rows)
    fig = flag_search.flag_figures(rows, t)
    assert fig["caught_10mm"] == 2 and fig["caught_5mm"] == 3 and fig["flagged_pct"] == 3.0
    assert 90.0 <= t["max_unsupported_arc_deg"] < 130.0


def test_the_search_respects_the_share_flagged():
    # errors indistinguishable from the rest by every feature: nothing beats not flagging
    rows = [row(1.0) for _ in range(90)] + [row(12.0) for _ in range(10)]
    t = flag_search.choose_thresholds(rows)
    assert flag_search.flag_figures(rows, t)["flagged_pct"] <= 100 * flag_search.FLAG_SHARE


def test_no_head_is_always_flagged_and_counts_as_an_error():
    rows = [row(1.0) for _ in range(9)] + [{"hc_abs_diff_mm": math.nan}]
    fig = flag_search.flag_figures(rows, flag_search.NO_FLAG)
    assert fig["flagged_pct"] == 10.0 and fig["caught_10mm"] == 1


def test_held_out_thresholds_come_from_the_other_folds():
    rows = [{**row(1.0), "fold": i % 3} for i in range(90)]
    rows += [{**row(12.0, dis=0.09), "fold": k} for k in range(3)]
    parts = flag_search.held_out_flags(rows)
    assert [k for k, *_ in parts] == [0, 1, 2]
    for _, t, held, flags in parts:
        assert len(held) == 31 and flags.sum() == 1 and t["max_pass_disagreement"] < 0.09


def test_tune_flag_writes_the_thresholds_into_the_model_config(tmp_path):
    import csv

    rows = [{**row(1.0), "fold": i % 3} for i in range(95)]
    rows += [{**row(12.0 + k, dis=0.09), "fold": k % 3} for k in range(5)]
    with open(tmp_path / "oof.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["fold", "ref_hc_mm", *rows[0]])
        w.writeheader()
        w.writerows([{**r, "ref_hc_mm": 180.0} for r in rows])
    (tmp_path / "config.json").write_text(json.dumps({"model": {"x": 1}}))
    r = run_cli("tune-flag", tmp_path / "oof.csv", "--model", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "5 of 5 caught" in r.stdout and "held out" in r.stdout
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model"] == {"x": 1}
    assert config["quality"]["max_pass_disagreement"] < 0.09
    assert config["quality"]["max_hc_mm"] is None  # off: stored as null
    bad = run_cli("tune-flag", tmp_path / "config.json")
    assert bad.returncode == 2 and "out-of-fold rows" in bad.stderr
