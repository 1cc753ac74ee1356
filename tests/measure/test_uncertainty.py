"""Calibrated intervals: the conformal quantile's exact finite-sample level, coverage on
exchangeable data, the config round trip, and what a result carries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fetalhc.measure.biometry import biometry, hadlock_ga_weeks
from fetalhc.measure.ellipse import Ellipse
from fetalhc.measure.quality import MAX_HC_HALFWIDTH_MM, QualityThresholds, flag_reasons
from fetalhc.measure.uncertainty import (
    IntervalCalibration,
    MeasureInterval,
    calibrate,
    conformal_quantiles,
    cross_fitted_half_widths,
)

pytest.importorskip("crepes")


@pytest.mark.parametrize(("n", "level"), [(19, 0.95), (39, 0.95), (99, 0.9), (9, 0.8)])
def test_quantile_is_the_textbook_finite_sample_order_statistic(n, level):
    # |error| / sigma of 1..n in shuffled order: the ceil((n + 1) * level)-th smallest
    values = np.random.default_rng(n).permutation(np.arange(1.0, n + 1))
    (q,) = conformal_quantiles(values, np.zeros(n, int), 1, level)
    assert q == math.ceil(round((n + 1) * level, 9))


def test_too_few_rows_for_the_level_give_an_unbounded_interval():
    (q,) = conformal_quantiles(np.arange(1.0, 10.0), np.zeros(9, int), 1, 0.95)
    assert q == math.inf


def test_each_bin_has_its_own_quantile():
    values = np.r_[np.arange(1.0, 20.0), 10 * np.arange(1.0, 20.0)]
    bins = np.r_[np.zeros(19, int), np.ones(19, int)]
    assert conformal_quantiles(values, bins, 2, 0.95) == (19.0, 190.0)


def test_coverage_on_exchangeable_data_is_at_least_the_level_and_at_most_one_row_more():
    # heteroscedastic errors whose scale grows with HC: calibrate on 200, score fresh draws
    rng = np.random.default_rng(0)
    covered = []
    for _ in range(200):
        hc = rng.uniform(60, 340, 400)
        err = rng.standard_normal(400) * (0.5 + hc / 80)
        x = hc[:, None]
        c = calibrate(x[:200], hc[:200], {"hc_mm": err[:200]}, 0.9, features=("hc_mm",))
        halves = np.array([np.diff(c.interval("hc_mm", 0.0, {"hc_mm": v}))[0] / 2 for v in hc])
        covered.append(np.mean(np.abs(err[200:]) <= halves[200:]))
    mean = float(np.mean(covered))
    # three bins of about 67 rows: each at least 0.9, at most 0.9 + 1 / 68
    assert 0.9 - 0.005 <= mean <= 0.9 + 1 / 68 + 0.005


def test_cross_fitted_widths_come_from_the_other_folds_only():
    rng = np.random.default_rng(1)
    hc = rng.uniform(100, 300, 300)
    err = rng.standard_normal(300)
    folds = np.repeat([0, 1, 2], 100)
    before = cross_fitted_half_widths(hc[:, None], hc, err, folds, [0.95])
    err2 = err.copy()
    err2[folds == 0] *= 50  # fold 0's own errors must not move fold 0's widths
    after = cross_fitted_half_widths(hc[:, None], hc, err2, folds, [0.95])
    assert np.allclose(before[folds == 0], after[folds == 0])
    assert not np.allclose(before[folds == 1], after[folds == 1])


def _calibration(q: float = 2.0) -> IntervalCalibration:
    m = MeasureInterval((0.0, 0.0), (q, 2 * q))  # sigma 1: half-width q below 150 mm, 2q above
    return IntervalCalibration(0.95, ("pass_distance_mm",), (150.0,), {"hc_mm": m}, 10, "test")


def test_a_calibration_survives_config_json_and_refuses_malformed_ones():
    c = _calibration()
    again = IntervalCalibration.from_dict(c.to_dict())
    assert again.interval("hc_mm", 100.0, {"hc_mm": 100.0, "pass_distance_mm": 0.3}) == (98, 102)
    assert again.interval("hc_mm", 200.0, {"hc_mm": 200.0, "pass_distance_mm": 0.3}) == (196, 204)
    # a missing feature or measure: no interval, never a made-up one
    assert again.interval("hc_mm", 200.0, {"hc_mm": 200.0}) is None
    assert again.interval("bpd_mm", 50.0, {"hc_mm": 200.0, "pass_distance_mm": 0.3}) is None
    broken = c.to_dict()
    broken["measures"]["hc_mm"]["quantiles"] = [1.0]
    with pytest.raises(ValueError, match="bins"):
        IntervalCalibration.from_dict(broken)
    with pytest.raises(ValueError, match="missing"):
        IntervalCalibration.from_dict({"level": 0.95})


def test_ga_and_centile_ranges_are_the_formulas_at_the_interval_ends():
    e = Ellipse(0, 0, 30.0, 25.0, 0.0)  # HC about 173 mm
    b = biometry(e, ga_given_weeks=20.0, hc_range_mm=(165.0, 181.0))
    low, high = b.ga_hadlock_range_weeks
    assert low == pytest.approx(hadlock_ga_weeks(165.0)) and high == pytest.approx(
        hadlock_ga_weeks(181.0)
    )
    assert low < b.ga_hadlock_weeks < high
    zl, zh = b.hc_zscore_range
    cl, ch = b.hc_centile_range
    assert zl < b.hc_zscore < zh and cl < b.hc_centile < ch
    # an end outside Hadlock's 14-42 weeks: no GA range rather than half of one
    assert biometry(e, None, (60.0, 181.0)).ga_hadlock_range_weeks is None


def test_an_interval_wider_than_the_limit_flags_the_head_with_its_reason():
    t = QualityThresholds()
    assert flag_reasons({"hc_halfwidth_mm": MAX_HC_HALFWIDTH_MM}, t) == []
    (reason,) = flag_reasons({"hc_halfwidth_mm": MAX_HC_HALFWIDTH_MM + 1}, t)
    assert "uncertain" in reason and f"{MAX_HC_HALFWIDTH_MM + 1:.0f} mm" in reason


def test_a_result_carries_its_interval_and_rows_without_hc_carry_none():
    from fetalhc.inference.measurer import result_from_measurement
    from fetalhc.measure.ellipse import draw_filled
    from fetalhc.measure.postprocess import measure

    head = Ellipse(cx=250.0, cy=200.0, a=170.0, b=130.0, angle=0.3)  # HC about 190 mm at 0.2
    m = measure(draw_filled(head, (400, 520)).astype(np.float32))
    c = _calibration(q=1.0)
    c = IntervalCalibration(0.95, ("hc_mm",), (150.0,), {"hc_mm": c.measures["hc_mm"]}, 10)
    ok = result_from_measurement("a.png", m, 0.2, intervals=c)
    low, high = ok.hc_interval_mm
    assert high - ok.hc_mm == pytest.approx(ok.hc_mm - low)
    row = ok.as_row()
    assert row["hc_low_mm"] == pytest.approx(low) and row["ga_low_weeks"] != ""
    # a tiny quantile but a wide head: the flag follows the interval
    wide = IntervalCalibration(
        0.95, ("hc_mm",), (150.0,), {"hc_mm": MeasureInterval((math.log(20.0), 0.0), (1, 1))}
    )
    flagged = result_from_measurement("a.png", m, 0.2, intervals=wide)
    assert flagged.quality == "check" and any("uncertain" in r for r in flagged.quality_reasons)
    no_size = result_from_measurement("a.png", m, None, intervals=c)
    assert no_size.intervals == {}
    assert all(no_size.as_row()[k] == "" for k in ("hc_low_mm", "hc_high_mm", "ga_low_weeks"))
