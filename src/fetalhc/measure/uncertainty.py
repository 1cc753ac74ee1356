"""A calibrated interval on every HC, BPD and OFD: normalised split conformal prediction,
Mondrian by head size.

The error of a measurement grows with the head and with how much the model's two passes
disagree, so one interval width for all images would be too wide for small heads and too
narrow for large ones. Each measure's interval is therefore

    value +/- q[bin] * sigma,   log sigma = c0 + c1 * hc_mm + c2 * pass_distance_mm

where `sigma` (the difficulty) is fitted by least squares to log(|error| + ERROR_FLOOR_MM)
on the calibration rows, `bin` is the HC tercile of the calibration rows the measured head
falls in, and `q[bin]` is that bin's conformal quantile of |error| / sigma at the level
(crepes' `ConformalRegressor` with `sigmas` and `bins`: the finite-sample
ceil((n + 1) * level)-th smallest). Choosing these features and bins out of fold is in
`fetalhc calibrate`'s report (results/model-v3/intervals).

Applying a calibration is pure arithmetic on what `config.json` holds (no crepes at
inference); calibrating needs crepes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

LEVEL = 0.95
# The difficulty's inputs, as named in a result's row: the head's size and the two passes'
# outline distance (chosen out of fold, results/model-v3/intervals/README.md).
DIFFICULTY_FEATURES = ("hc_mm", "pass_distance_mm")
# |error| below this (mm) counts as this much when the difficulty is fitted: log(0) aside,
# sub-0.3 mm differences are within one pixel of HC18's outlines.
ERROR_FLOOR_MM = 0.3
HC_BINS = 3  # Mondrian bins: terciles of the calibration rows' HC
MEASURES = ("hc_mm", "bpd_mm", "ofd_mm")
METHOD = (
    "normalised split conformal (crepes ConformalRegressor), Mondrian by HC tercile, "
    "difficulty log-linear in HC and the passes' outline distance"
)


@dataclass(frozen=True)
class MeasureInterval:
    """One measure's calibration: the difficulty's coefficients and each bin's quantile."""

    coef: tuple[float, ...]  # intercept, then one per feature
    quantiles: tuple[float, ...]  # per HC bin: |error| / sigma at the level
    n_per_bin: tuple[int, ...] = ()

    def sigma(self, x: Sequence[float]) -> float:
        return math.exp(self.coef[0] + sum(c * v for c, v in zip(self.coef[1:], x, strict=True)))


@dataclass(frozen=True)
class IntervalCalibration:
    """Where a model's intervals come from (config.json "intervals")."""

    level: float
    features: tuple[str, ...]
    hc_bin_edges_mm: tuple[float, ...]  # the bins' inner edges, ascending
    measures: dict[str, MeasureInterval]
    n: int = 0
    data: str = ""  # what it was calibrated on, in words
    method: str = METHOD
    extra: dict = field(default_factory=dict, compare=False)  # e.g. recalibration notes

    def bin_of(self, hc_mm: float) -> int:
        return int(np.searchsorted(np.asarray(self.hc_bin_edges_mm), hc_mm, side="right"))

    @property
    def note(self) -> str:
        """How the intervals are made, in words (the SR's and the page's note)."""
        return f"{100 * self.level:g} % interval: {self.method}; calibrated on {self.data}"

    def interval(
        self, measure: str, value: float, features: Mapping[str, float]
    ) -> tuple[float, float] | None:
        """(low, high) for `value` of `measure`, or None where it has no calibration or a
        difficulty feature (or HC) is not a finite number."""
        calib = self.measures.get(measure)
        x = [features.get(name, math.nan) for name in self.features]
        hc = features.get("hc_mm", math.nan)
        if calib is None or not all(math.isfinite(v) for v in [*x, hc, value]):
            return None
        half = calib.quantiles[self.bin_of(hc)] * calib.sigma(x)
        if not math.isfinite(half):
            return None
        return value - half, value + half

    def to_dict(self) -> dict:
        return {
            "level": self.level,
            "method": self.method,
            "data": self.data,
            "n": self.n,
            "features": list(self.features),
            "hc_bin_edges_mm": list(self.hc_bin_edges_mm),
            "measures": {
                name: {
                    "coef": list(m.coef),
                    "quantiles": list(m.quantiles),
                    "n_per_bin": list(m.n_per_bin),
                }
                for name, m in self.measures.items()
            },
            **self.extra,
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> IntervalCalibration:
        """A calibration from config.json; ValueError with the reason if it is malformed."""
        try:
            features = tuple(str(f) for f in d["features"])
            edges = tuple(float(e) for e in d["hc_bin_edges_mm"])
            measures = {}
            for name, m in d["measures"].items():
                coef = tuple(float(c) for c in m["coef"])
                quantiles = tuple(float(q) for q in m["quantiles"])
                if len(coef) != len(features) + 1 or len(quantiles) != len(edges) + 1:
                    raise ValueError(f"{name}: {len(coef)} coefficients, {len(quantiles)} bins")
                if any(q < 0 or math.isnan(q) for q in quantiles):
                    raise ValueError(f"{name}: a quantile is negative or not a number")
                measures[name] = MeasureInterval(coef, quantiles, tuple(m.get("n_per_bin", ())))
            level = float(d["level"])
        except (KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"intervals: missing or malformed {exc}") from None
        if not 0 < level < 1 or list(edges) != sorted(edges):
            raise ValueError("intervals: level must lie in (0, 1) and bin edges ascend")
        known = {"level", "method", "data", "n", "features", "hc_bin_edges_mm", "measures"}
        return cls(
            level,
            features,
            edges,
            measures,
            int(d.get("n", 0)),
            str(d.get("data", "")),
            str(d.get("method", METHOD)),
            {k: v for k, v in d.items() if k not in known},
        )


# ---------------------------------------------------------------- calibrating
def fit_difficulty(x: np.ndarray, abs_error: np.ndarray) -> tuple[float, ...]:
    """Least-squares coefficients of log(|error| + ERROR_FLOOR_MM) on the features `x`
    (rows x features): a difficulty of few parameters, so that fitting it on the same
    rows as the quantile costs almost nothing in coverage (checked out of fold)."""
    design = np.column_stack([np.ones(len(x)), x])
    coef, *_ = np.linalg.lstsq(design, np.log(abs_error + ERROR_FLOOR_MM), rcond=None)
    return tuple(float(c) for c in coef)


def sigmas(coef: Sequence[float], x: np.ndarray) -> np.ndarray:
    return np.exp(coef[0] + x @ np.asarray(coef[1:]))


def conformal_quantiles(
    normalised: np.ndarray, bins: np.ndarray, n_bins: int, level: float
) -> tuple[float, ...]:
    """Each bin's conformal quantile of `normalised` (|error| / sigma) at `level`, by crepes
    (inf where a bin has too few rows for the level)."""
    import warnings

    from crepes import ConformalRegressor  # imports scikit-learn: only where calibrating

    regressor = ConformalRegressor().fit(normalised, sigmas=np.ones(len(normalised)), bins=bins)
    probe = np.arange(n_bins)
    with warnings.catch_warnings():  # a too-small bin gives inf, said by the caller
        warnings.simplefilter("ignore", UserWarning)
        # crepes takes the int((1 - level) * (n + 1))-th largest in floating point, and
        # 1 - 0.9 = 0.0999...: at an exact boundary one row too far. A 1e-9 nudge gives
        # the textbook ceil((n + 1) * level)-th smallest (tested).
        bounds = regressor.predict_int(
            np.zeros(n_bins), sigmas=np.ones(n_bins), bins=probe, confidence=level - 1e-9
        )
    return tuple(float(b) for b in bounds[:, 1])


def calibrate(
    x: np.ndarray,
    hc_mm: np.ndarray,
    errors: Mapping[str, np.ndarray],
    level: float = LEVEL,
    features: Sequence[str] = DIFFICULTY_FEATURES,
    n_bins: int = HC_BINS,
    data: str = "",
) -> IntervalCalibration:
    """Calibrate intervals on rows with features `x` (rows x features, in `features`'
    order), measured HC `hc_mm` and each measure's signed error (measured - reference).
    Rows with a non-finite feature or error are left out of that measure."""
    edges = tuple(float(e) for e in np.quantile(hc_mm, np.arange(1, n_bins) / n_bins))
    bins = np.searchsorted(np.asarray(edges), hc_mm, side="right")
    measures = {}
    for name, error in errors.items():
        use = np.isfinite(error) & np.isfinite(x).all(axis=1) & np.isfinite(hc_mm)
        coef = fit_difficulty(x[use], np.abs(error[use]))
        normalised = np.abs(error[use]) / sigmas(coef, x[use])
        quantiles = conformal_quantiles(normalised, bins[use], n_bins, level)
        counts = tuple(int((bins[use] == b).sum()) for b in range(n_bins))
        measures[name] = MeasureInterval(coef, quantiles, counts)
    return IntervalCalibration(level, tuple(features), edges, measures, len(hc_mm), data)


def cross_fitted_half_widths(
    x: np.ndarray,
    hc_mm: np.ndarray,
    error: np.ndarray,
    folds: np.ndarray,
    levels: Sequence[float],
    n_bins: int = HC_BINS,
) -> np.ndarray:
    """Half-widths (rows x levels) of one measure's intervals, each fold's rows scored by a
    calibration made on the other folds alone (difficulty, bins and quantiles)."""
    out = np.full((len(hc_mm), len(levels)), np.nan)
    for fold in np.unique(folds):
        cal, test = folds != fold, folds == fold
        for j, level in enumerate(levels):
            c = calibrate(x[cal], hc_mm[cal], {"m": error[cal]}, level, n_bins=n_bins)
            m = c.measures["m"]
            bins = np.searchsorted(np.asarray(c.hc_bin_edges_mm), hc_mm[test], side="right")
            out[test, j] = np.asarray(m.quantiles)[bins] * sigmas(m.coef, x[test])
    return out
