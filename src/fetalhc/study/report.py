"""A study's report: every row beside the paper's, a verdict per claim, readable figures.

The paper (Wang, Silvestre & Curran 2023) reports, for each strategy, the mean (SD) of its
validation metrics over epochs 6-20 of one run (its notebooks: `np.mean(dice_score[5:])`),
on 200 images used both to validate and to test. fetalhc reports two views of each row:
the test part at the best checkpoint, mean (SD) over seeds; and the paper's own statistic
computed from our per-epoch validation metrics (epochs 6-20, mean over seeds of the
per-run means).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from pathlib import Path

from fetalhc.errors import FetalHCError
from fetalhc.io.files import write_csv, write_text
from fetalhc.model.strategies import PRESETS
from fetalhc.study.figures import _figures
from fetalhc.study.tables import (
    MAIN_COLUMNS,
    _n_images,
    _size,
    bn_ablation_table,
    low_data_table,
    main_size,
    main_table,
    paper_tables,
    skip_ablation_table,
)
from fetalhc.study.verdicts import size_verdicts, skip_verdict, verdicts, within_3_by_variant

# The tables, verdicts and figures live in their modules; these names stay importable here.
__all__ = [
    "bn_ablation_table",
    "load_cells",
    "low_data_table",
    "main_table",
    "paper_tables",
    "read_history",
    "recipe_lines",
    "size_verdicts",
    "skip_ablation_table",
    "skip_verdict",
    "verdicts",
    "within_3_by_variant",
    "write_report",
]

ORDER = list(PRESETS)
PAPER_WARMUP_EPOCHS = 5  # the paper averages epochs 6-20 ("without warm-up")
SCRATCH_PARAMS = 31_037_633
DECODER_PARAMS = 4_405_073
MIN_SEEDS = 3  # the bar for a row's mean; a verdict on fewer is marked provisional


# ---------------------------------------------------------------- inputs
NOTES = "notes.md"  # a study's hand-written notes, included in its report


def load_cells(study: Path) -> list[dict]:
    """Finished cells with their own recipe (config.json) and per-epoch history."""
    from fetalhc.study.grid import degenerate_reason

    cells = []
    for path in sorted((study / "runs").glob("*/cell.json")):
        try:
            cell = json.loads(path.read_text())
            cell["metrics"]["paper_dice"]  # noqa: B018 - a record without it is not a cell
            cell["cell"]["strategy"]  # noqa: B018
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FetalHCError(
                f"{path}: corrupt cell record ({type(exc).__name__}); delete it to re-run the cell"
            ) from None
        folder = path.parent
        cell["folder"] = folder
        cell["history"] = read_history(folder / "history.csv")
        config = folder / "config.json"
        try:
            recorded = json.loads(config.read_text())
            cell["recipe"] = dict(recorded.get("train", {}))
            if recorded.get("precision"):  # what 'auto' resolved to on the machine
                cell["recipe"]["precision"] = recorded["precision"].removeprefix("torch.")
        except (OSError, ValueError, AttributeError):
            cell["recipe"] = {}
        if "degenerate" not in cell:  # cells of an older fetalhc
            cell["degenerate"] = degenerate_reason(
                cell["metrics"],
                cell.get("no_head", 0),
                cell.get("eval_images", 0),
                folder / "history.csv",
            )
        cells.append(cell)
    return cells


def read_history(path: Path) -> list[dict]:
    """A run's history.csv as floats per epoch; [] if missing or unreadable."""
    try:
        with open(path, newline="") as f:
            return [
                {k: float(v) for k, v in r.items() if v not in ("", None)}
                for r in csv.DictReader(f)
            ]
    except (OSError, ValueError):
        return []


def recipe_lines(cells: list[dict]) -> list[str]:
    """The recipe as the cells themselves recorded it (not the YAML)."""
    keys = (
        "epochs",
        "image_size",
        "batch_size",
        "lr",
        "loss",
        "normalization",
        "precision",
        "encoder_weights",
    )
    seen: dict[str, list[str]] = defaultdict(list)
    for c in cells:
        r = dict(c.get("recipe", {}))
        preset = PRESETS.get(c["cell"]["strategy"])
        if preset and not preset.loads_encoder_weights:  # recorded as given, yet not loaded
            r["encoder_weights"] = "none (random init)"
        elif r.get("encoder_weights") not in (None, "imagenet", "none"):
            r["encoder_weights"] = Path(r["encoder_weights"]).name
        text = ", ".join(f"{k} {r.get(k, '?')}" for k in keys)
        if r.get("skip_rescale"):  # named only where on, like the recipe's later fields
            text += ", skip_rescale (encoder skips divided by their RMS)"
        seen[text].append(c["name"])
    return [
        f"- {text} ({len(names)} cell{'' if len(names) == 1 else 's'})"
        for text, names in seen.items()
    ]


# ---------------------------------------------------------------- output
def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    write_csv(path, rows, [k for k in rows[0] if not k.startswith("_")])


def _markdown(rows: list[dict], columns: list[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r[c]
            cells.append(f"{v:,}" if isinstance(v, int) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return out


def write_report(study: str | Path) -> Path:
    study = Path(study)
    if not study.is_dir():
        raise FetalHCError(f"{study}: not a study folder")
    cells = load_cells(study)
    main = main_table(cells, "paper")
    older = main_table(cells, "frozen-eval")
    ablation = bn_ablation_table(cells)
    skips = skip_ablation_table(cells)
    low = low_data_table(cells)
    other_sizes = sorted({_size(c) for c in cells if _n_images(c)} - {main_size(cells)})
    low_other = {size: low_data_table(cells, size) for size in other_sizes}
    _write_csv(study / "main_table.csv", main)
    _write_csv(study / "bn_ablation_table.csv", ablation)
    _write_csv(study / "low_data_table.csv", low)
    if skips:
        _write_csv(study / "skip_ablation_table.csv", skips)
    for size, table in low_other.items():
        _write_csv(study / f"low_data_table_{size}.csv", table)
    _write_csv(
        study / "cells.csv",
        [
            {
                "name": c["name"],
                **c["cell"],
                **c["metrics"],
                "degenerate": c["degenerate"],
                "train_seconds": c["train"]["train_seconds"],
            }
            for c in cells
        ],
    )
    bn = "paper" if main else "frozen-eval"
    figures = _figures(study, cells, main or older, low, bn) if cells else []
    lines = [
        "# Fine-tuning study",
        "",
        f"{len(cells)} finished cells. The recipe, as recorded by the cells themselves:",
        "",
        *recipe_lines(cells),
        *[
            f"- `{c['name']}` was trained and evaluated by an earlier probe with the same "
            f"recipe (`{c['adopted_from']}`), adopted by "
            "`fetalhc compare --adopt` after its "
            "recorded recipe matched the cell's"
            for c in cells
            if c.get("adopted_from")
        ],
        "",
        "Columns: PA, Dice, mIoU (foreground IoU, the paper's name) computed as the paper did "
        "(model resolution, raw thresholded output) on our held-out **test** part at the best "
        "checkpoint, mean (SD) over seeds. `*_e6_20`: the paper's own statistic — mean over "
        "epochs 6–20 of the per-epoch **validation** metric, averaged over seeds. `paper_*`: "
        "the published mean (SD), where the SD is over epochs 6–20 of one run, not over seeds. "
        "`diff`: ours − paper. `degenerate`: cells whose model predicts head everywhere or "
        "nowhere, or whose validation Dice never moved; they are counted in the mean and named "
        "below.",
        "",
    ]
    if main:
        lines += ["## The paper's table (every BatchNorm in train mode, as the paper)", ""]
        lines += _markdown(main, MAIN_COLUMNS)
        lines += ["", "### Clinical columns (original resolution, after post-processing)", ""]
        lines += _markdown(
            main, ["strategy", "Dice_orig_pct", "HD_mm", "HC_abs_diff_mm", "train_min"]
        )
        close = [r for r in main if r["diff_Dice"] and abs(float(r["diff_Dice"])) <= 3]
        with_paper = [r for r in main if r["diff_Dice"]]
        lines += [
            "",
            f"{len(close)} of {len(with_paper)} rows with a published value are within "
            "3 Dice points of the paper (test part, best checkpoint).",
        ]
    if older:
        lines += ["", "## fetalhc's BatchNorm mode (frozen blocks' BatchNorm in eval mode)", ""]
        lines += _markdown(older, MAIN_COLUMNS)
    if ablation:
        lines += ["", "## BatchNorm ablation (same budget; Dice %, test part)", ""]
        lines += _markdown(ablation, list(ablation[0]))
    if skips:
        lines += [
            "",
            "## Skip-scale ablation (each encoder skip divided by its RMS on the first "
            "training batch; paper BN; Dice %, test part)",
            "",
        ]
        lines += _markdown(skips, [k for k in skips[0] if not k.startswith("_")])
        lines += ["", *[f"- {line}" for line in within_3_by_variant(skips)]]
        lines += [f"- {skip_verdict(skips)}"]
    if low:
        lines += ["", "## Low-data table (the paper's 79 / 239 / 399 training images)", ""]
        lines += _markdown(low, [k for k in low[0] if not k.startswith("_")])
    for size, table in low_other.items():
        if table:
            lines += ["", f"## Low-data table at {size}", ""]
            lines += _markdown(table, [k for k in table[0] if not k.startswith("_")])
    claims = verdicts(main, low) + size_verdicts(low, low_other, main_size(cells))
    if claims:
        lines += ["", "## The paper's claims, judged on these numbers", ""]
        lines += [f"- {c}" for c in claims]
    notes = study / NOTES
    if notes.is_file():  # what the tables cannot say: measured explanations, written by hand
        lines += ["", f"## Notes (from `{NOTES}`, written by hand)", ""]
        lines += notes.read_text(encoding="utf-8").strip().splitlines()
    bad = [c for c in cells if c["degenerate"]]
    if bad:
        lines += ["", "## Degenerate cells", ""]
        lines += [f"- `{c['name']}`: {c['degenerate']}" for c in bad]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    lines.append("")
    path = study / "report.md"
    write_text(path, "\n".join(lines))
    return path
