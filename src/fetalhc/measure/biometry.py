"""Clinical outputs beside HC: diameters, cephalic index, gestational age by two formulas,
and the HC z-score and centile for a known gestational age. Pure functions.

Sources (equations as published; each used only inside its validity range — outside it a
function returns None rather than extrapolating):

- Hadlock FP, Deter RL, Harrist RB, Park SK. Estimating fetal age: computer-assisted
  analysis of multiple fetal growth parameters. Radiology 1984;152:497-501.
  GA (weeks) = 8.96 + 0.540 HC + 0.0003 HC^3, HC in cm; derived on fetuses of 14-42 weeks.
- Papageorghiou AT, Kemp B, Stones W et al. Ultrasound-based gestational-age estimation in
  late pregnancy (INTERGROWTH-21st). Ultrasound Obstet Gynecol 2016;48:719-726.
  ln GA (days) = 0.05970 (ln HC)^2 + 0.000000006409 HC^3 + 3.3258, HC in mm; for scans at
  14+0 to 25+6 weeks (98-181 days).
- Papageorghiou AT, Ohuma EO, Altman DG et al. International standards for fetal growth
  based on serial ultrasound measurements: the Fetal Growth Longitudinal Study of the
  INTERGROWTH-21st Project. Lancet 2014;384:869-879. HC-for-GA, GA in weeks, 14-40 weeks:
  mean = -28.2849 + 1.69267 GA^2 - 0.397485 GA^2 ln GA;
  SD = 1.98735 + 0.0136772 GA^3 - 0.00726264 GA^3 ln GA + 0.000976253 GA^3 (ln GA)^2.
- Cephalic index: Hadlock FP, Deter RL, Carpenter RJ, Park SK. Estimating fetal age: effect
  of head shape on BPD. AJR 1981;137:83-85 — mean 78.3, SD 4.4; normal range (±2 SD)
  about 70-86.

The WHO fetal growth charts (Kiserud et al. 2017) are left out: their quantile-regression
coefficients could not be sourced with the tools at hand.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass, field

from scipy.stats import norm

from fetalhc.errors import FetalHCError
from fetalhc.measure.ellipse import Ellipse, hc_mm

HADLOCK_RANGE_WEEKS = (14.0, 42.0)
INTERGROWTH_DATING_RANGE_DAYS = (98.0, 181.0)
INTERGROWTH_STANDARD_RANGE_WEEKS = (14.0, 40.0)
CEPHALIC_INDEX_NORMAL = (70.0, 86.0)
INTERGROWTH_CHART = "INTERGROWTH-21st fetal HC-for-GA (Papageorghiou 2014)"


def diameters_mm(ellipse_mm: Ellipse) -> tuple[float, float]:
    """(OFD, BPD): the fitted HC ellipse's long and short diameters in mm. These run along
    the ellipse's axes through the middle of the skull outline — not the outer-to-outer or
    outer-to-inner calliper placements of clinical conventions."""
    long, short = sorted((abs(ellipse_mm.a), abs(ellipse_mm.b)), reverse=True)
    return 2 * long, 2 * short


def cephalic_index(bpd_mm: float, ofd_mm: float) -> float:
    return 100.0 * bpd_mm / ofd_mm if ofd_mm > 0 else math.nan


def head_shape_note(ci: float) -> str:
    """'' for a normal cephalic index, else what it means for reading HC."""
    low, high = CEPHALIC_INDEX_NORMAL
    if not math.isfinite(ci) or low <= ci <= high:
        return ""
    kind = "dolichocephaly" if ci < low else "brachycephaly"
    return f"cephalic index {ci:.1f} outside {low:g}-{high:g} ({kind}): prefer HC to BPD for dating"


def hadlock_ga_weeks(hc_mm: float, extrapolate: bool = False) -> float | None:
    """Gestational age (weeks) from head circumference, Hadlock et al. 1984 (HC in cm):
    8.96 + 0.540 HC + 0.0003 HC^3. None outside the 14-42 weeks it was derived on, unless
    `extrapolate` (a reference HC's GA in an evaluation, say)."""
    if not (math.isfinite(hc_mm) and hc_mm > 0):
        return None
    hc_cm = float(hc_mm) / 10.0
    weeks = 8.96 + 0.540 * hc_cm + 0.0003 * hc_cm**3
    low, high = HADLOCK_RANGE_WEEKS
    return weeks if extrapolate or low <= weeks <= high else None


def ga_intergrowth_days(hc: float) -> float | None:
    """INTERGROWTH-21st dating from HC alone (Papageorghiou 2016); None outside 14+0-25+6."""
    if not (math.isfinite(hc) and hc > 0):
        return None
    days = math.exp(0.05970 * math.log(hc) ** 2 + 0.000000006409 * hc**3 + 3.3258)
    low, high = INTERGROWTH_DATING_RANGE_DAYS
    return days if low <= days <= high else None


def intergrowth_hc_mean_sd(ga_weeks: float) -> tuple[float, float] | None:
    """Mean and SD (mm) of HC at `ga_weeks` in the INTERGROWTH-21st standard (14-40 wk)."""
    low, high = INTERGROWTH_STANDARD_RANGE_WEEKS
    if not (math.isfinite(ga_weeks) and low <= ga_weeks <= high):
        return None
    g, lg = ga_weeks, math.log(ga_weeks)
    mean = -28.2849 + 1.69267 * g**2 - 0.397485 * g**2 * lg
    sd = 1.98735 + 0.0136772 * g**3 - 0.00726264 * g**3 * lg + 0.000976253 * g**3 * lg**2
    return mean, sd


def intergrowth_hc_centile_value(centile: float, ga_weeks: float) -> float | None:
    """HC (mm) at a centile (0-100) for `ga_weeks`: the published chart's curves."""
    stats = intergrowth_hc_mean_sd(ga_weeks)
    if stats is None:
        return None
    return stats[0] + float(norm.ppf(centile / 100.0)) * stats[1]


def hc_zscore(hc: float, ga_weeks: float) -> float | None:
    stats = intergrowth_hc_mean_sd(ga_weeks)
    if stats is None or not math.isfinite(hc):
        return None
    return (hc - stats[0]) / stats[1]


def parse_ga(text: str) -> float:
    """'20+3' (weeks+days), '20w3d' or '20.4' -> weeks."""
    value = str(text).strip().lower()
    m = re.fullmatch(r"(\d{1,2})\s*(?:\+|w)\s*(\d)\s*d?", value)
    if m:
        weeks, days = int(m.group(1)), int(m.group(2))
    else:
        try:
            total = float(value)
        except ValueError:
            raise FetalHCError(
                f"gestational age {text!r}: expected weeks+days, e.g. 20+3"
            ) from None
        if not math.isfinite(total):
            raise FetalHCError(f"gestational age {text!r} is not a number")
        weeks, days = int(total), round((total - int(total)) * 7)
    if not (0 <= days <= 6 and 4 <= weeks + days / 7 <= 45):
        raise FetalHCError(f"gestational age {text!r}: expected 4+0 to 45+0 weeks+days")
    return weeks + days / 7


def ga_from_dates(exam: str, dating: str) -> float:
    """GA in weeks at the exam from the first day of the last menstrual period (or an
    equivalent dating date), both as YYYY-MM-DD."""
    try:
        exam_date, dating_date = dt.date.fromisoformat(exam), dt.date.fromisoformat(dating)
    except ValueError:
        raise FetalHCError(f"dates must be YYYY-MM-DD, got {exam!r} and {dating!r}") from None
    weeks = (exam_date - dating_date).days / 7
    if not 4 <= weeks <= 45:
        raise FetalHCError(f"{dating} to {exam} is {weeks:.1f} weeks: not a pregnancy's GA")
    return weeks


def weeks_days(weeks: float | None) -> str:
    if weeks is None or not math.isfinite(weeks):
        return ""
    total = int(round(weeks * 7))
    return f"{total // 7}+{total % 7}"


@dataclass
class Biometry:
    """What a sonographer reads beside HC. None: not computable or outside a formula's
    validity range (the reason is in `notes`)."""

    hc_mm: float
    ofd_mm: float
    bpd_mm: float
    cephalic_index: float
    ga_hadlock_weeks: float | None
    ga_intergrowth_weeks: float | None
    ga_given_weeks: float | None = None
    hc_zscore: float | None = None
    hc_centile: float | None = None
    chart: str = ""
    notes: list[str] = field(default_factory=list)
    # what HC's calibrated interval (low, high) gives: GA (Hadlock) and, with a given GA,
    # z-score and centile at its ends; None without an interval or outside a formula's range
    ga_hadlock_range_weeks: tuple[float, float] | None = None
    hc_zscore_range: tuple[float, float] | None = None
    hc_centile_range: tuple[float, float] | None = None


def biometry(
    ellipse_mm: Ellipse,
    ga_given_weeks: float | None = None,
    hc_range_mm: tuple[float, float] | None = None,
) -> Biometry:
    """All clinical outputs of one fitted HC ellipse (in mm); with HC's interval
    `hc_range_mm`, the GA, z-score and centile ranges it implies (each formula is
    increasing in HC, so the range's ends are the formula at the interval's ends)."""
    hc = hc_mm(ellipse_mm, 1.0)
    ofd, bpd = diameters_mm(ellipse_mm)
    ci = cephalic_index(bpd, ofd)
    notes = []
    shape = head_shape_note(ci)
    if shape:
        notes.append(shape)
    hadlock = hadlock_ga_weeks(hc)
    if hadlock is None:
        notes.append(f"Hadlock GA not given: HC {hc:.0f} mm is outside its 14-42 weeks")
    ig_days = ga_intergrowth_days(hc)
    if ig_days is None:
        notes.append(
            f"INTERGROWTH-21st GA not given: HC {hc:.0f} mm is outside its 14+0-25+6 weeks"
        )
    result = Biometry(
        hc, ofd, bpd, ci, hadlock, ig_days / 7 if ig_days is not None else None, ga_given_weeks
    )
    if ga_given_weeks is not None:
        z = hc_zscore(hc, ga_given_weeks)
        if z is None:
            notes.append(
                f"no HC centile: GA {weeks_days(ga_given_weeks)} is outside the chart's 14-40 weeks"
            )
        else:
            result.hc_zscore, result.hc_centile = z, 100.0 * float(norm.cdf(z))
            result.chart = INTERGROWTH_CHART
    if hc_range_mm is not None:
        low, high = (hadlock_ga_weeks(v) for v in hc_range_mm)
        if low is not None and high is not None:  # both ends inside Hadlock's 14-42 weeks
            result.ga_hadlock_range_weeks = (low, high)
        if result.hc_zscore is not None:
            zs = tuple(hc_zscore(v, ga_given_weeks) for v in hc_range_mm)
            result.hc_zscore_range = zs
            result.hc_centile_range = tuple(100.0 * float(norm.cdf(z)) for z in zs)
    result.notes = notes
    return result
