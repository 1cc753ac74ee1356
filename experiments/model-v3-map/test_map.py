"""Checks of this experiment's scripts (the map's rows and costs, the rule's pick, the
ensemble, the out-of-fold cache): `python -m pytest experiments/model-v3-map`. Not part
of the package's suite: the package's threshold search is tested in tests/measure."""

import importlib.util
import math
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent / "model_selection_report.py"


def _script(name: str):
    """A sibling script of SCRIPT as a module, registered under its name (the scripts
    import each other by name)."""
    import sys

    spec = importlib.util.spec_from_file_location(name, SCRIPT.with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return sys.modules.setdefault(name, module)


@pytest.fixture(scope="module")
def selection():
    return _script("model_selection_report")


def test_an_oof_cache_without_a_flag_feature_is_measured_again(selection, tmp_path, monkeypatch):
    from fetalhc.io.files import write_csv

    cache = tmp_path / "oof.csv"
    old = [{"fold": 0, "filename": "a.png", "hc_abs_diff_mm": 1.0, "ellipse_iou": 0.98}]
    write_csv(cache, old)
    measured = []

    class Result:
        rows = [{"filename": "a.png", **{k: 1.0 for k in selection.QUALITY_FEATURES}}]
        skipped: list = []

    monkeypatch.setattr(selection, "select_records", lambda *a: ([], []))
    monkeypatch.setattr(selection, "evaluation_rows", lambda m, r: measured.append(m) or Result)
    rows = selection.pooled_oof_rows(cache, tmp_path, tmp_path, lambda k: k)
    assert measured == [0, 1, 2] and len(rows) == 3  # each fold's model, measured anew
    assert "unsupported_arc_deg" in rows[0]
    # the cache now holds every feature: read back, nothing measured
    assert len(selection.pooled_oof_rows(cache, tmp_path, tmp_path, None)) == 3
    assert measured == [0, 1, 2]


# ---------------------------------------------------------------- model v3's map
@pytest.fixture(scope="module")
def v3_map(selection):  # the script imports model_selection_report by name
    return _script("model_v3_report")


def test_map_rows_keep_their_cached_names_and_the_relocating_ones_are_their_own(v3_map):
    combos = v3_map.combos_of("half_256", [192], [192], relocate=0.3)
    names = [v3_map.combo_name("half_256", c, 0.1) for c in combos]
    assert names == [
        "half_256-locate256-margin0.1",
        "half_256-locate192-margin0.1",
        "half_256-locate192-crop192-margin0.1",
        "half_256-locate192-relocate0.3-margin0.1",
        "half_256-locate192-relocate0.3-crop192-margin0.1",
        "half_256-onepass256",
        "half_256-locate256-margin0.1-int8",
        "half_256-onepass256-int8",
    ]
    assert v3_map.combos_of("half_256", [192], [192], relocate=0.0) == [
        c for c in combos if not c.relocate
    ]


def test_a_first_pass_run_again_adds_its_share_of_the_pass_cost(v3_map):
    cost = {
        ("half", 192, 256, "fp32"): {"gflop": "4.0", "end_to_end_ms": "57.0"},
        ("half", 0, 256, "fp32"): {"gflop": "2.0", "end_to_end_ms": "47.0", "network_ms": "16"},
    }
    combo = v3_map.Combo(192, 256, relocate=0.3)
    c = v3_map.cost_of(cost, "half", combo, 256, again=0.05)
    assert c["end_to_end_ms"] == pytest.approx(57.0 + 0.05 * 16)
    assert c["gflop"] == pytest.approx(4.0 + 0.05 * 2.0)
    assert v3_map.cost_of(cost, "half", combo, 256)["end_to_end_ms"] == 57.0  # as measured
    assert v3_map.cost_of(cost, "full", combo, 256) == {}  # not in the cost table


def test_the_rule_picks_the_fastest_row_within_a_twentieth_of_a_millimetre(v3_map):
    def r(adf, ms):
        return {"adf_mm": adf, "ms": ms}

    table = [r(1.92, 78.0), r(1.93, 57.0), r(1.942, 49.0), r(1.975, 40.0), r(1.89, math.nan)]
    best, pick = v3_map.rule_pick(table)
    assert best["adf_mm"] == 1.89  # the most accurate, even without a measured cost
    assert pick == r(1.93, 57.0)  # 1.942 and 1.975 are more than 0.05 mm from 1.89
    best, pick = v3_map.rule_pick(table[:4])
    assert pick == r(1.942, 49.0)  # within 0.05 of 1.92; 1.975 is not


# ---------------------------------------------------------------- the ensemble check
@pytest.fixture(scope="module")
def v3_ensemble(v3_map):  # the script imports model_v3_report by name
    return _script("model_v3_ensemble")


def test_an_ensemble_averages_its_members_pass_by_pass(v3_ensemble):
    import numpy as np

    from fetalhc.inference.ensemble import MeanOfModels
    from fetalhc.inference.measurer import HeadMeasurer
    from fetalhc.inference.segmenter import Prediction
    from fetalhc.measure.ellipse import Ellipse, draw_filled

    class Member:  # a stand-in network: one fixed disc per pass
        batch_size, checkpoint, config, flip_tta = 4, Path("member"), {}, False

        def __init__(self, fine: Ellipse, coarse: Ellipse) -> None:
            self.fine, self.coarse = fine, coarse

        def predict(self, images):
            shape = images[0].shape[:2]
            disc = lambda e: draw_filled(e, shape).astype(np.float32)  # noqa: E731
            return [Prediction(disc(self.fine), np.zeros((8, 8)), disc(self.coarse))] * len(images)

    small, large = Ellipse(100, 80, 40, 30, 0.0), Ellipse(100, 80, 44, 33, 0.0)
    ens = MeanOfModels([Member(small, small), Member(large, small)])
    (p,) = ens.predict([np.zeros((160, 200), np.uint8)])
    # inside both discs 1, in the ring only the larger covers 0.5, outside 0
    assert p.probability[80, 100] == 1.0 and p.probability[80, 142] == 0.5
    assert p.probability[80, 190] == 0.0 and p.coarse_probability[80, 142] == 0.0
    # the majority decides the outline: the ring is head where two of three members see it
    image = np.random.default_rng(0).integers(0, 255, (160, 200)).astype(np.uint8)
    for members, semi_major in (([small, small, large], 40), ([small, large, large], 44)):
        ens = MeanOfModels([Member(e, small) for e in members])
        result = HeadMeasurer.from_segmenter(ens).measure(image, 0.2)
        assert max(result.ellipse_px.a, result.ellipse_px.b) == pytest.approx(semi_major, abs=0.5)
    member = v3_ensemble.parse_member("half_256:192r+256")
    assert member[0] == "half_256" and (member[1].locate, member[1].crop) == (192, 256)
    assert member[1].relocate == pytest.approx(0.3)
    assert v3_ensemble.parse_member("quarter_256:256+192")[1].relocate == 0.0
