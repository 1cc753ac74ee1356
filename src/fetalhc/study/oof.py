"""Out-of-fold rows (`evaluate`'s CSV of fold models, each image scored by the model that
did not train on it, with a `fold` column): what a model's flag and intervals are tuned on."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from fetalhc.errors import FetalHCError
from fetalhc.measure.quality import cell_number

TEXT_COLUMNS = {"filename", "subject", "quality", "status", "notes", "growth_chart"}


def read_oof_rows(path: Path) -> list[dict]:
    """The rows, numbers as floats (NaN where empty), text columns as text; FetalHCError
    unless they are out-of-fold rows (`fold`, `hc_mm`, `ref_hc_mm`)."""
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FetalHCError(f"{path}: cannot read ({exc})") from None
    need = {"fold", "hc_mm", "ref_hc_mm"}
    if not rows or not need <= set(rows[0]):
        raise FetalHCError(f"{path}: expected evaluate's out-of-fold rows (fold, hc_mm, ref_hc_mm)")
    out = []
    for r in rows:
        row = {
            k: (v if k in TEXT_COLUMNS else cell_number(v)) for k, v in r.items() if k is not None
        }
        if not math.isfinite(row["fold"]):
            raise FetalHCError(f"{path}: {r.get('filename', '?')}: fold {r['fold']!r}")
        row["fold"] = int(row["fold"])
        out.append(row)
    return out
