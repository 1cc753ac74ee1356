"""The quality flag's threshold search on out-of-fold rows (`fetalhc tune-flag`).

Each tuned rule of `fetalhc.measure.quality` (RULES) is tried at each value of GRID or off;
the combination kept catches the most errors over 10 mm, then over 7.5 mm, then over 5 mm,
flagging at most a share of the images (then: the fewest flagged). `held_out_flags` shows
what the flag does on rows its thresholds were not chosen on (two folds choose, the third
is scored). Rows are dicts with `evaluate`'s columns as numbers (`hc_abs_diff_mm`, the
flag's features, `fold`).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import fields

import numpy as np

from fetalhc.measure.quality import (
    QualityThresholds,
    flagged_rows,
    rule_trips,
    untuned_flags,
)

# Flag at most 10 % of the images (the bundled model's budget).
FLAG_SHARE = 0.10
# Candidate thresholds: each check may also be switched off (its first value).
GRID = {
    "min_ellipse_iou": [0.0, *np.round(np.arange(0.90, 0.985, 0.01), 3)],
    "max_edge_probability": [1.0, *np.round(np.arange(0.10, 0.51, 0.05), 3)],
    "max_pass_disagreement": [math.inf, *np.round(np.arange(0.01, 0.101, 0.005), 4)],
    "max_hc_mm": [math.inf, 280.0, 290.0, 300.0, 310.0, 320.0, 330.0],
    "max_pass_distance_mm": [math.inf, *np.round(np.arange(0.3, 1.51, 0.1), 2)],
    # degrees of the outline with no skull edge under it: a quarter to a half of it
    "max_unsupported_arc_deg": [math.inf, *range(80, 181, 20)],
}
# Every check off: a min_ rule at 0 never trips, a max_ rule at its grid's "off" value.
NO_FLAG = {name: values[0] for name, values in GRID.items()}
assert set(GRID) == {f.name for f in fields(QualityThresholds)}, "a tuned rule without a grid"
ERROR_TIERS_MM = (10.0, 7.5, 5.0)


def abs_errors(rows: list[dict]) -> np.ndarray:
    return np.array([r.get("hc_abs_diff_mm", math.nan) for r in rows], float)


def no_head(rows: list[dict]) -> np.ndarray:
    return ~np.isfinite(abs_errors(rows))


def flagged(rows: list[dict], thresholds: dict) -> np.ndarray:
    """The flag that ships, with `thresholds`; an image without a head: always flagged."""
    return no_head(rows) | flagged_rows(rows, QualityThresholds.from_dict(thresholds))


def catch_figures(rows: list[dict], flag: np.ndarray) -> dict:
    """Share flagged, errors over 10 / 7.5 / 5 mm and how many of them are flagged, and
    the ADF of the rest."""
    adf = np.nan_to_num(abs_errors(rows), nan=1e9)
    out: dict[str, float] = {"flagged_pct": 100 * float(flag.mean()) if len(flag) else 0.0}
    for mm, key in zip(ERROR_TIERS_MM, ("10mm", "7_5mm", "5mm"), strict=True):
        over = adf > mm
        out[f"over_{key}"], out[f"caught_{key}"] = int(over.sum()), int((flag & over).sum())
    kept = adf[~flag & (adf < 1e8)]
    out["unflagged_adf_mm"] = float(np.mean(kept)) if kept.size else math.nan
    return out


def flag_figures(rows: list[dict], thresholds: dict) -> dict:
    return catch_figures(rows, flagged(rows, thresholds))


def _bits(flags: np.ndarray) -> int:
    """A boolean vector as one integer, so that a combination of checks is a few ORs."""
    return int.from_bytes(np.packbits(flags.astype(bool)).tobytes(), "big")


def choose_thresholds(rows: list[dict], share: float = FLAG_SHARE) -> dict:
    """The thresholds that catch most errors over 10 mm, then 7.5, then 5, flagging at most
    `share` of the images (then: the fewest flagged). Exhaustive over GRID; each check's
    flags are computed once and combined as bit sets."""
    adf = np.nan_to_num(abs_errors(rows), nan=1e9)
    tiers = [_bits(adf > mm) for mm in ERROR_TIERS_MM]
    always = _bits(no_head(rows) | untuned_flags(rows))
    per_check = [[_bits(rule_trips(rows, name, v)) for v in GRID[name]] for name in GRID]
    limit = share * len(rows)
    best, best_key = dict(NO_FLAG), None
    for index in itertools.product(*(range(len(GRID[name])) for name in GRID)):
        flags = always
        for check, i in zip(per_check, index, strict=True):
            flags |= check[i]
        n = flags.bit_count()
        if n > limit:
            continue
        key = (*((flags & tier).bit_count() for tier in tiers), -n)
        if best_key is None or key > best_key:
            best_key = key
            best = {name: GRID[name][i] for name, i in zip(GRID, index, strict=True)}
    return best


def held_out_flags(rows: list[dict], share: float = FLAG_SHARE) -> list[tuple]:
    """Per fold k: the thresholds chosen on the other folds, fold k's rows and their flags
    (what the flag does on images its thresholds were not chosen on)."""
    out = []
    for k in sorted({int(r["fold"]) for r in rows}):
        held = [r for r in rows if int(r["fold"]) == k]
        t = choose_thresholds([r for r in rows if int(r["fold"]) != k], share)
        out.append((k, t, held, flagged(held, t)))
    return out


def held_out_figures(rows: list[dict], share: float = FLAG_SHARE) -> dict:
    """`held_out_flags` pooled over the folds."""
    parts = held_out_flags(rows, share)
    held = [r for _, _, fold_rows, _ in parts for r in fold_rows]
    return catch_figures(held, np.concatenate([flags for *_, flags in parts]))


def plain_thresholds(thresholds: dict) -> dict:
    """Thresholds as config.json stores them (numbers; a check that is off at its grid's
    'off' value as that number, infinity as null)."""
    return {k: (None if math.isinf(v) else float(v)) for k, v in thresholds.items()}


def described(thresholds: dict) -> str:
    """Thresholds as a reader wants them: numbers, 'off' for a check that is off."""
    return ", ".join(
        f"{k} {'off' if v == NO_FLAG[k] else f'{float(v):g}'}" for k, v in thresholds.items()
    )
