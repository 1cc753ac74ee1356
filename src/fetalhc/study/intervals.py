"""A model's calibrated intervals from its out-of-fold rows (`fetalhc calibrate`): which
difficulty to use, chosen out of fold; the calibration written into the model's
config.json; and the report that shows whether the intervals hold — coverage and width
cross-fitted (calibrated on the other folds, scored on each), by head size, trimester and
flag status, and at levels from 50 to 99 %.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError
from fetalhc.io.files import atomic_path, read_json, write_csv, write_json, write_text
from fetalhc.measure.biometry import diameters_mm, hadlock_ga_weeks
from fetalhc.measure.quality import MAX_HC_HALFWIDTH_MM, QualityThresholds, flagged_rows
from fetalhc.measure.uncertainty import (
    HC_BINS,
    LEVEL,
    calibrate,
    cross_fitted_half_widths,
)
from fetalhc.study.oof import read_oof_rows

# The difficulties tried (features of a result's row) and Mondrian bins by HC tercile or
# none: few, each with a reason (the head's size; the passes' disagreement; the pixel's
# size in mm, a pixel of outline error being worth more mm on coarse images; the network
# seeing head beyond the fitted edge).
CANDIDATES = (
    (("hc_mm",), 1),
    (("hc_mm",), HC_BINS),
    (("hc_mm", "pass_distance_mm"), 1),
    (("hc_mm", "pass_distance_mm"), HC_BINS),
    (("hc_mm", "pass_distance_mm", "pixel_size_mm"), HC_BINS),
    (("hc_mm", "pass_distance_mm", "edge_probability"), HC_BINS),
)
# A candidate qualifies when its cross-fitted coverage lies within this of the level and
# each HC tercile's is at least MIN_TERCILE_COVERAGE; the narrowest (median) qualifying
# one is chosen.
COVERAGE_TOLERANCE = 0.01
MIN_TERCILE_COVERAGE = 0.94
RELIABILITY_LEVELS = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.975, 0.99)
MEASURE_REFERENCES = {"hc_mm": "ref_hc_mm", "bpd_mm": "ref_bpd_mm", "ofd_mm": "ref_ofd_mm"}


@dataclass
class OutOfFoldRows:
    """The columns of `evaluate`'s out-of-fold rows that calibrating needs, as arrays."""

    filenames: list[str]
    folds: np.ndarray
    columns: dict[str, np.ndarray]  # numeric columns by name (NaN where empty)
    quality: np.ndarray
    rows: list[dict]  # as read

    def flagged(self, thresholds: dict | None) -> np.ndarray:
        """Each row's flag: by the model's thresholds where given (the rows' `quality`
        column holds the flag of whatever thresholds they were evaluated with)."""
        if thresholds is None:
            return self.quality != "ok"
        return flagged_rows(self.rows, QualityThresholds.from_dict(thresholds))

    def x(self, features) -> np.ndarray:
        missing = [f for f in features if f not in self.columns]
        if missing:
            raise FetalHCError(f"the rows have no column {', '.join(missing)}")
        return np.column_stack([self.columns[f] for f in features])

    def error(self, measure: str) -> np.ndarray | None:
        ref = self.columns.get(MEASURE_REFERENCES[measure])
        if ref is None or measure not in self.columns:
            return None
        return self.columns[measure] - ref


def read_rows(path: Path, data: Path | None = None) -> OutOfFoldRows:
    """Out-of-fold rows with a measured HC. Rows without reference diameters get them from
    the HC18-layout folder `data` (its annotations' ellipses)."""
    rows = [
        r
        for r in read_oof_rows(path)
        if str(r.get("status", "ok")).startswith("ok") and r["hc_mm"] > 0
    ]
    if not rows:
        raise FetalHCError(f"{path}: no row with a measured HC")
    if data is not None and "ref_bpd_mm" not in rows[0]:
        references = reference_diameters(data)
        for r in rows:
            r["ref_ofd_mm"], r["ref_bpd_mm"] = references.get(r["filename"], (math.nan, math.nan))
    names = [k for k, v in rows[0].items() if isinstance(v, float)]
    columns = {k: np.array([r.get(k, math.nan) for r in rows], float) for k in names}
    return OutOfFoldRows(
        [r["filename"] for r in rows],
        np.array([r["fold"] for r in rows]),
        columns,
        np.array([r.get("quality", "") for r in rows]),
        rows,
    )


def reference_diameters(data: Path) -> dict[str, tuple[float, float]]:
    """(OFD, BPD) in mm of each labelled image's reference ellipse (its annotation), the
    way `biometry` measures a fitted one."""
    from fetalhc.data.hc18 import load_labelled, reference_ellipse
    from fetalhc.io.images import read_gray

    out = {}
    for rec in load_labelled(data):
        ellipse = reference_ellipse(read_gray(rec.annotation_path))
        if ellipse is not None and rec.pixel_size_mm:
            out[rec.filename] = diameters_mm(ellipse.scaled(rec.pixel_size_mm))
    return out


# ---------------------------------------------------------------- choosing and scoring
def tercile_of(hc: np.ndarray) -> np.ndarray:
    return np.searchsorted(np.quantile(hc, [1 / 3, 2 / 3]), hc, side="right")


def trimester_of(hc: np.ndarray) -> np.ndarray:
    """0, 1, 2 for the first (< 14 weeks), second (14-27+6) and third trimester, by the
    Hadlock GA of the measured HC."""
    ga = np.array([hadlock_ga_weeks(v, extrapolate=True) or math.nan for v in hc])
    return np.searchsorted([14.0, 28.0], ga, side="right")


def score_candidates(rows: OutOfFoldRows, level: float = LEVEL) -> list[dict]:
    """Each candidate difficulty's cross-fitted coverage and median half-width for HC."""
    hc, error = rows.columns["hc_mm"], rows.error("hc_mm")
    terciles = tercile_of(hc)
    table = []
    for features, n_bins in CANDIDATES:
        if any(f not in rows.columns for f in features):
            continue
        x = rows.x(features)
        half = cross_fitted_half_widths(x, hc, error, rows.folds, [level], n_bins)[:, 0]
        covered = np.abs(error) <= half
        table.append(
            {
                "features": features,
                "bins": n_bins,
                "coverage": float(covered.mean()),
                "min_tercile_coverage": float(min(covered[terciles == t].mean() for t in range(3))),
                "median_half_width_mm": float(np.median(half)),
            }
        )
    return table


def choose(table: list[dict], level: float = LEVEL) -> dict:
    """The narrowest candidate that covers as promised (see COVERAGE_TOLERANCE); the best
    covering one when none does."""
    good = [
        c
        for c in table
        if abs(c["coverage"] - level) <= COVERAGE_TOLERANCE
        and c["min_tercile_coverage"] >= MIN_TERCILE_COVERAGE
    ]
    if good:
        return min(good, key=lambda c: c["median_half_width_mm"])
    return max(table, key=lambda c: (c["min_tercile_coverage"], -c["median_half_width_mm"]))


def coverage_tables(
    rows: OutOfFoldRows, features, n_bins: int, thresholds: dict | None = None
) -> dict:
    """Cross-fitted coverage and median half-width of each measure at the level, overall
    and by group (the flag: the model's `thresholds`, and the interval's own rule); and
    HC's observed coverage at RELIABILITY_LEVELS."""
    hc = rows.columns["hc_mm"]
    x = rows.x(features)
    hc_half = cross_fitted_half_widths(x, hc, rows.error("hc_mm"), rows.folds, [LEVEL], n_bins)
    flagged = rows.flagged(thresholds) | (hc_half[:, 0] > MAX_HC_HALFWIDTH_MM)
    groups = {
        "all": np.zeros(len(hc), int),
        "HC tercile": tercile_of(hc),
        "trimester": trimester_of(hc),
        "flag": flagged.astype(int),
    }
    names = {
        "all": ["all"],
        "HC tercile": ["small", "middle", "large"],
        "trimester": ["first", "second", "third"],
        "flag": ["ok", "check"],
    }
    table = []
    for measure in MEASURE_REFERENCES:
        error = rows.error(measure)
        if error is None or not np.isfinite(error).any():
            continue
        half = cross_fitted_half_widths(x, hc, error, rows.folds, [LEVEL], n_bins)[:, 0]
        covered = np.abs(error) <= half
        for group, labels in groups.items():
            for k, label in enumerate(names[group]):
                use = (labels == k) & np.isfinite(half) & np.isfinite(error)
                if not use.any():
                    continue
                table.append(
                    {
                        "measure": measure,
                        "group": group,
                        "value": label,
                        "n": int(use.sum()),
                        "coverage": float(covered[use].mean()),
                        "median_half_width_mm": float(np.median(half[use])),
                        "median_half_width_pct": float(
                            np.median(100 * half[use] / rows.columns[measure][use])
                        ),
                    }
                )
    error = rows.error("hc_mm")
    halves = cross_fitted_half_widths(x, hc, error, rows.folds, RELIABILITY_LEVELS, n_bins)
    reliability = [
        {"nominal": lv, "observed": float((np.abs(error) <= halves[:, j]).mean())}
        for j, lv in enumerate(RELIABILITY_LEVELS)
    ]
    return {"coverage": table, "reliability": reliability}


# ---------------------------------------------------------------- the command
def calibrate_model(
    rows_path: Path,
    model_dir: Path | None,
    report_dir: Path,
    data: Path | None = None,
    source: str = "",
) -> dict:
    """Choose the difficulty out of fold, calibrate on all rows, write the report to
    `report_dir` and (with `model_dir`) the calibration into its config.json."""
    rows = read_rows(rows_path, data)
    candidates = score_candidates(rows)
    chosen = choose(candidates)
    features, n_bins = chosen["features"], chosen["bins"]
    config_path = model_dir / "config.json" if model_dir is not None else None
    config = read_json(config_path) if config_path is not None else {}
    tables = coverage_tables(rows, features, n_bins, config.get("quality"))
    errors = {m: e for m in MEASURE_REFERENCES if (e := rows.error(m)) is not None}
    calibration = calibrate(
        rows.x(features),
        rows.columns["hc_mm"],
        errors,
        features=features,
        n_bins=n_bins,
        data=source or f"out-of-fold rows {rows_path.name} ({len(rows.filenames)} images)",
    )
    report_dir.mkdir(parents=True, exist_ok=True)
    write_report(report_dir, candidates, chosen, tables, calibration.to_dict())
    if config_path is not None:
        config["intervals"] = calibration.to_dict()
        write_json(config_path, config)
    return {"chosen": chosen, "calibration": calibration.to_dict(), **tables}


def write_report(out: Path, candidates, chosen, tables, calibration: dict) -> None:
    write_csv(out / "coverage.csv", tables["coverage"])
    write_csv(
        out / "candidates.csv", [{**c, "features": "+".join(c["features"])} for c in candidates]
    )
    write_json(out / "calibration.json", calibration)
    reliability_plot(out / "reliability.png", tables["reliability"])
    lines = [
        "# Calibrated 95 % intervals, out of fold",
        "",
        "Cross-fitted: for each fold, the difficulty, the HC bins and the quantiles are fitted on",
        "the other folds' rows alone and the fold's rows are scored. Made by `fetalhc calibrate`.",
        "",
        "## Difficulty candidates (HC, 95 %)",
        "",
        "| difficulty | HC bins | coverage | lowest tercile | median half-width mm |",
        "|---|---|---|---|---|",
    ]
    for c in candidates:
        mark = " **(chosen)**" if c is chosen else ""
        lines.append(
            f"| {' + '.join(c['features'])}{mark} | {c['bins']} | {100 * c['coverage']:.1f} % "
            f"| {100 * c['min_tercile_coverage']:.1f} % | {c['median_half_width_mm']:.2f} |"
        )
    lines += [
        "",
        f"Rule: the narrowest whose coverage lies within {100 * COVERAGE_TOLERANCE:.0f} points of",
        f"95 % and whose every HC tercile covers at least {100 * MIN_TERCILE_COVERAGE:.0f} %. The",
        "choice is made on the same out-of-fold rows it is scored on (not nested), so the chosen",
        "row's width is slightly optimistic; the candidates' spread shows by how much at most.",
        "",
        "## Coverage of the chosen calibration (95 %)",
        "",
        "| measure | group | value | n | coverage | median half-width mm | % of value |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in tables["coverage"]:
        lines.append(
            f"| {r['measure']} | {r['group']} | {r['value']} | {r['n']} | "
            f"{100 * r['coverage']:.1f} % | {r['median_half_width_mm']:.2f} | "
            f"{r['median_half_width_pct']:.1f} |"
        )
    lines += ["", "## Reliability (HC)", "", "| nominal | observed |", "|---|---|"]
    lines += [
        f"| {100 * r['nominal']:.1f} % | {100 * r['observed']:.1f} % |"
        for r in tables["reliability"]
    ]
    lines += ["", "![reliability](reliability.png)", ""]
    write_text(out / "report.md", "\n".join(lines))


def reliability_plot(path: Path, reliability: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    nominal = [100 * r["nominal"] for r in reliability]
    observed = [100 * r["observed"] for r in reliability]
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([50, 100], [50, 100], color="grey", lw=1, ls="--", label="calibrated")
    ax.plot(nominal, observed, "o-", label="HC, cross-fitted")
    ax.set_xlabel("nominal coverage %")
    ax.set_ylabel("observed coverage %")
    ax.set_xlim(48, 100)
    ax.set_ylim(48, 100)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
