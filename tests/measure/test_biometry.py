"""Clinical outputs against published values."""

from __future__ import annotations

import math

import pytest

from fetalhc.errors import FetalHCError
from fetalhc.measure.biometry import (
    INTERGROWTH_CHART,
    biometry,
    cephalic_index,
    diameters_mm,
    ga_from_dates,
    ga_intergrowth_days,
    hadlock_ga_weeks,
    hc_zscore,
    intergrowth_hc_centile_value,
    parse_ga,
    weeks_days,
)
from fetalhc.measure.ellipse import Ellipse, hc_mm

# INTERGROWTH-21st fetal head circumference centiles (mm) at 14..40 weeks, as printed in
# the project's published table (GROW_Fetal-ct_hc_Table), here from a public transcription
# of it. Printed to 0.1 mm.
WEEKS = list(range(14, 41))
# fmt: off
PUBLISHED = {
    3: [87.1, 99.3, 111.1, 123.0, 134.9, 146.8, 158.5, 170.1, 181.4, 192.6, 203.5, 214.1,
        224.3, 234.1, 243.6, 252.5, 261.0, 268.9, 276.3, 283.0, 289.1, 294.5, 299.2, 303.1,
        306.1, 308.3, 309.6],
    5: [88.7, 100.6, 112.6, 124.6, 136.6, 148.5, 160.2, 171.9, 183.3, 194.5, 205.5, 216.0,
        226.3, 236.2, 245.7, 254.7, 263.2, 271.1, 278.5, 285.2, 291.5, 296.9, 301.7, 305.7,
        308.9, 311.2, 312.7],
    10: [90.7, 102.8, 114.8, 127.0, 139.1, 151.1, 163.0, 174.7, 186.2, 197.5, 208.6, 219.1,
         229.5, 239.4, 248.9, 258.0, 266.5, 274.6, 282.1, 288.9, 295.2, 300.8, 305.6, 309.8,
         313.1, 315.7, 317.4],
    50: [97.9, 110.4, 122.9, 135.4, 147.9, 160.3, 172.5, 184.5, 196.3, 207.8, 219.1, 230.0,
         240.5, 250.7, 260.4, 269.6, 278.4, 286.6, 294.4, 301.5, 308.1, 314.1, 319.4, 324.1,
         328.1, 331.4, 333.9],
}
# fmt: on
# Three cells of the transcription disagree with the published equations by more than the
# printed precision allows (0.14-0.28 mm, every neighbour agrees): taken as transcription
# slips, listed here rather than hidden by a looser tolerance.
TRANSCRIPTION_SLIPS = {(3, 14), (5, 33), (10, 24)}


def test_intergrowth_median_reproduces_the_published_table():
    for week, value in zip(WEEKS, PUBLISHED[50], strict=True):
        assert intergrowth_hc_centile_value(50, week) == pytest.approx(value, abs=0.06), week


@pytest.mark.parametrize("centile", [3, 5, 10])
def test_intergrowth_centiles_reproduce_the_published_table(centile):
    for week, value in zip(WEEKS, PUBLISHED[centile], strict=True):
        if (centile, week) in TRANSCRIPTION_SLIPS:
            continue
        got = intergrowth_hc_centile_value(centile, week)
        assert got == pytest.approx(value, abs=0.1), (centile, week)


def test_zscore_and_centile_at_a_known_ga():
    hc = intergrowth_hc_centile_value(10, 20.0)
    assert hc_zscore(hc, 20.0) == pytest.approx(-1.2816, abs=1e-4)
    result = biometry(Ellipse(0, 0, hc / (2 * math.pi), hc / (2 * math.pi), 0), 20.0)
    assert result.hc_centile == pytest.approx(10, abs=0.01)
    assert result.chart == INTERGROWTH_CHART
    outside = biometry(Ellipse(0, 0, 30, 25, 0), 41.0)
    assert outside.hc_centile is None and any("14-40 weeks" in n for n in outside.notes)


def test_ga_formulas_give_no_value_outside_their_range():
    assert hadlock_ga_weeks(50) is None  # about 11.7 weeks: below Hadlock's 14
    assert hadlock_ga_weeks(175) == pytest.approx(8.96 + 0.54 * 17.5 + 0.0003 * 17.5**3)
    assert ga_intergrowth_days(50) is None
    assert ga_intergrowth_days(320) is None  # third trimester: outside 14+0-25+6
    # the dating equation and the growth standard describe the same fetuses: the
    # standard's median HC at 20 weeks dates to about 20 weeks
    days = ga_intergrowth_days(intergrowth_hc_centile_value(50, 20))
    assert 19 * 7 <= days <= 21 * 7


def test_diameters_and_cephalic_index():
    e = Ellipse(10, 10, 40, 50, 0.3)  # semi-axes in mm: OFD is the long diameter
    ofd, bpd = diameters_mm(e)
    assert (ofd, bpd) == (100, 80)
    assert cephalic_index(bpd, ofd) == 80
    round_head = biometry(Ellipse(0, 0, 50, 46, 0))
    assert round_head.cephalic_index == pytest.approx(92)
    assert any("brachycephaly" in n for n in round_head.notes)
    assert not any("cephalic" in n for n in biometry(Ellipse(0, 0, 50, 39, 0)).notes)
    assert round_head.hc_mm == pytest.approx(hc_mm(Ellipse(0, 0, 50, 46, 0), 1.0))


@pytest.mark.parametrize(
    "text,weeks",
    [("20+3", 20 + 3 / 7), ("20w3d", 20 + 3 / 7), ("34+0", 34.0), ("20.5", 20 + 4 / 7)],
)
def test_parse_ga(text, weeks):
    assert parse_ga(text) == pytest.approx(weeks)
    assert weeks_days(parse_ga("20+3")) == "20+3"


@pytest.mark.parametrize("bad", ["20+9", "abc", "nan", "60+0", "-3", ""])
def test_parse_ga_refuses_nonsense(bad):
    with pytest.raises(FetalHCError):
        parse_ga(bad)


def test_ga_from_dates():
    assert ga_from_dates("2026-06-01", "2026-01-12") == pytest.approx(140 / 7)
    with pytest.raises(FetalHCError):
        ga_from_dates("2026-01-01", "2026-06-01")
    with pytest.raises(FetalHCError):
        ga_from_dates("yesterday", "2026-06-01")
