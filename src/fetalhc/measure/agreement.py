"""Agreement between two measurers of HC on the same images: ADF, bias, Bland-Altman
limits of agreement, large errors, and a paired bootstrap interval of an ADF change."""

from __future__ import annotations

import numpy as np

LARGE_ERROR_MM = 10.0


def agreement(measured: np.ndarray, reference: np.ndarray, ok: np.ndarray | None = None) -> dict:
    """ADF (mean |difference|), bias, Bland-Altman 95 % limits (bias +/- 1.96 SD), errors
    over LARGE_ERROR_MM and how many of them were marked `ok` (with `ok` given)."""
    d = np.asarray(measured, float) - np.asarray(reference, float)
    found = np.isfinite(d)
    large = ~found | (np.abs(np.nan_to_num(d, nan=np.inf)) > LARGE_ERROR_MM)
    sd = float(np.std(d[found], ddof=1)) if found.sum() > 1 else float("nan")
    bias = float(np.mean(d[found])) if found.any() else float("nan")
    out = {
        "n": int(len(d)),
        "no_head": int((~found).sum()),
        "adf_mm": float(np.mean(np.abs(d[found]))) if found.any() else float("nan"),
        "bias_mm": bias,
        "loa_low_mm": bias - 1.96 * sd,
        "loa_high_mm": bias + 1.96 * sd,
        "over_10mm": int(large.sum()),
    }
    if ok is not None:
        out["over_10mm_ok"] = int((large & np.asarray(ok, bool)).sum())
    return out


def paired_bootstrap_ci(
    errors_new: np.ndarray,
    errors_old: np.ndarray,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean change of |error| (new - old) over the same images and its percentile bootstrap
    interval, images resampled in pairs. A missing measurement counts as an error of
    LARGE_ERROR_MM * 3 (a failure must not look like an improvement)."""
    fail = 3 * LARGE_ERROR_MM
    new = np.nan_to_num(np.abs(np.asarray(errors_new, float)), nan=fail)
    old = np.nan_to_num(np.abs(np.asarray(errors_old, float)), nan=fail)
    change = new - old
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(change), size=(n_boot, len(change)))
    means = change[idx].mean(axis=1)
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(change.mean()), float(low), float(high)
