"""`fetalhc tune-flag`: a model's quality flag chosen on its out-of-fold rows, checked held
out, written into its config.json."""

from __future__ import annotations

from pathlib import Path

from fetalhc.io.files import read_json, write_json
from fetalhc.measure.flag_search import (
    FLAG_SHARE,
    choose_thresholds,
    flag_figures,
    held_out_figures,
    plain_thresholds,
)
from fetalhc.study.oof import read_oof_rows


def tune_flag(rows_path: Path, model_dir: Path | None, share: float = FLAG_SHARE) -> dict:
    """The thresholds chosen on all rows, their figures in sample and held out (chosen on
    two folds, scored on the third); written into `model_dir`/config.json when given."""
    rows = read_oof_rows(rows_path)
    chosen = choose_thresholds(rows, share)
    result = {
        "thresholds": plain_thresholds(chosen),
        "in_sample": flag_figures(rows, chosen),
        "held_out": held_out_figures(rows, share),
        "rows": len(rows),
        "share": share,
    }
    if model_dir is not None:
        config_path = model_dir / "config.json"
        config = read_json(config_path)
        config["quality"] = result["thresholds"]
        write_json(config_path, config)
    return result
