"""A study's tables, as numbers beside their formatted cells: the main table, the
ablations and the low-data table."""

from __future__ import annotations

import csv
import math
from importlib import resources

import numpy as np

from fetalhc.model.strategies import PRESETS

ORDER = list(PRESETS)
PAPER_WARMUP_EPOCHS = 5  # the paper averages epochs 6-20 ("without warm-up")
SCRATCH_PARAMS = 31_037_633
DECODER_PARAMS = 4_405_073
MIN_SEEDS = 3  # the bar for a row's mean; a verdict on fewer is marked provisional


def _bn(cell: dict) -> str:
    return cell["cell"].get("bn_mode") or cell.get("recipe", {}).get("bn_mode", "frozen-eval")


def _n_images(cell: dict) -> int:
    return int(cell["cell"].get("train_images", 0) or 0)


def _full_data(cell: dict) -> bool:
    return _n_images(cell) == 0 and abs(cell["cell"].get("fraction", 1.0) - 1.0) < 1e-9


def _skip(cell: dict) -> bool:
    """A cell of the skip-scale ablation (the encoder's skips divided by their RMS)."""
    return bool(cell["cell"].get("skip_rescale"))


def _size(cell: dict) -> str:
    return str(cell["cell"].get("image_size", ""))


def main_size(cells: list[dict]) -> str:
    """The study's image size: the one most of its cells ran at (probes at other sizes get
    tables of their own)."""
    sizes = [_size(c) for c in cells]
    return max(set(sizes), key=sizes.count) if sizes else ""


# ---------------------------------------------------------------- statistics
def _values(values) -> np.ndarray:
    return np.asarray([v for v in values if v is not None and math.isfinite(v)], float)


def _mean_sd(values, scale: float = 1.0, digits: int = 2) -> str:
    v = _values(values) * scale
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ({v.std(ddof=1):.{digits}f})"


def _mean(values, scale: float = 1.0) -> float:
    v = _values(values) * scale
    return float(v.mean()) if v.size else math.nan


def paper_statistic(history: list[dict], key: str) -> tuple[float, float]:
    """The paper's figure for one run: mean and SD of a validation metric over epochs 6-20."""
    v = _values(r.get(key) for r in history[PAPER_WARMUP_EPOCHS:])
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std())


def _rows_of(
    cells: list[dict], strategy: str, bn: str | None = None, skip: bool = False
) -> list[dict]:
    """Full-data cells of a strategy at the study's size: one BatchNorm mode, plain or with
    the skips rescaled."""
    size = main_size(cells)
    return [
        c
        for c in cells
        if c["cell"]["strategy"] == strategy
        and _full_data(c)
        and (bn is None or _bn(c) == bn)
        and _skip(c) == skip
        and _size(c) == size
    ]


def main_table(cells: list[dict], bn: str = "paper") -> list[dict]:
    """One row per strategy: ours (test, seeds) and ours (paper statistic) beside the paper."""
    paper, _ = paper_tables()
    rows = []
    strategies = [s for s in ORDER if _rows_of(cells, s, bn)]
    for strategy in strategies:
        group = _rows_of(cells, strategy, bn)
        m = [c["metrics"] for c in group]
        p = paper.get(strategy, {})
        ours_dice = _mean(x["paper_dice"] for x in m) * 100
        stat = [paper_statistic(c["history"], "val_paper_dice")[0] for c in group]
        stat_pa = [paper_statistic(c["history"], "val_paper_pa")[0] for c in group]
        stat_iou = [paper_statistic(c["history"], "val_paper_miou")[0] for c in group]
        paper_dice = float(p["dice"]) if p else math.nan
        preset = PRESETS.get(strategy)
        rows.append(
            {
                "strategy": strategy,
                "trainable_layers": preset.label if preset else strategy,
                "trainable_params": group[0]["train"]["trainable_params"],
                "seeds": len(group),
                "degenerate": sum(bool(c["degenerate"]) for c in group),
                "PA": _mean_sd([x["paper_pixel_accuracy"] for x in m], 100),
                "Dice": _mean_sd([x["paper_dice"] for x in m], 100),
                "mIoU": _mean_sd([x["paper_iou"] for x in m], 100),
                "PA_e6_20": _mean_sd(stat_pa, 100),
                "Dice_e6_20": _mean_sd(stat, 100),
                "mIoU_e6_20": _mean_sd(stat_iou, 100),
                "paper_PA": f"{p['pixel_accuracy']} ({p['pixel_accuracy_sd']})" if p else "",
                "paper_Dice": f"{p['dice']} ({p['dice_sd']})" if p else "",
                "paper_mIoU": f"{p['miou']} ({p['miou_sd']})" if p else "",
                "diff_Dice": f"{ours_dice - paper_dice:+.2f}" if p else "",
                "diff_Dice_e6_20": f"{_mean(stat, 100) - paper_dice:+.2f}" if p else "",
                "Dice_orig_pct": _mean_sd([x["dice"] for x in m], 100),
                "HD_mm": _mean_sd([x["hd_mm"] for x in m]),
                "HC_abs_diff_mm": _mean_sd([x["hc_abs_diff_mm"] for x in m]),
                "train_min": _mean_sd([c["train"]["train_seconds"] / 60 for c in group], digits=1),
                "_dice": ours_dice,
                "_dice_values": [100 * x["paper_dice"] for x in m],
                "_paper_dice": paper_dice,
            }
        )
    return rows


def _diff(ours: float, paper: float) -> str:
    return f"{ours - paper:+.2f}" if math.isfinite(ours) and math.isfinite(paper) else ""


def bn_ablation_table(cells: list[dict]) -> list[dict]:
    rows = []
    for strategy in ORDER:
        paper_mode = _rows_of(cells, strategy, "paper")
        own_mode = _rows_of(cells, strategy, "frozen-eval")
        if not paper_mode or not own_mode:
            continue
        rows.append(
            {
                "strategy": strategy,
                "Dice (paper BN)": _mean_sd([c["metrics"]["paper_dice"] for c in paper_mode], 100),
                "Dice (frozen-eval BN)": _mean_sd(
                    [c["metrics"]["paper_dice"] for c in own_mode], 100
                ),
                "degenerate (paper / frozen-eval)": (
                    f"{sum(bool(c['degenerate']) for c in paper_mode)} / "
                    f"{sum(bool(c['degenerate']) for c in own_mode)}"
                ),
            }
        )
    return rows


def skip_ablation_table(cells: list[dict]) -> list[dict]:
    """The partial-freeze rows in each variant (test Dice, mean (SD) over seeds) beside the
    paper: paper BatchNorm as is, with the encoder's skips rescaled, and frozen-eval BN;
    which variant comes closest, and by how much the skip scale moves the row."""
    paper, _ = paper_tables()
    rows = []
    for strategy in ORDER:
        rescaled = _rows_of(cells, strategy, "paper", skip=True)
        if not rescaled:
            continue
        plain = _rows_of(cells, strategy, "paper")
        frozen = _rows_of(cells, strategy, "frozen-eval")
        target = float(paper[strategy]["dice"]) if strategy in paper else math.nan
        variants = {"paper BN": plain, "skips rescaled": rescaled, "frozen-eval BN": frozen}
        means = {
            k: _mean([c["metrics"]["paper_dice"] for c in v], 100) for k, v in variants.items()
        }
        known = {k: v for k, v in means.items() if math.isfinite(v)}
        closest = min(known, key=lambda k: abs(known[k] - target)) if known else ""
        moved = means["skips rescaled"] - means["paper BN"]
        rows.append(
            {
                "strategy": strategy,
                "paper_Dice": f"{target:.2f}" if math.isfinite(target) else "",
                "Dice (paper BN)": _mean_sd([c["metrics"]["paper_dice"] for c in plain], 100),
                "Dice (skips rescaled)": _mean_sd(
                    [c["metrics"]["paper_dice"] for c in rescaled], 100
                ),
                "Dice (frozen-eval BN)": _mean_sd(
                    [c["metrics"]["paper_dice"] for c in frozen], 100
                ),
                "seeds (rescaled)": len(rescaled),
                "rescaling moves it": f"{moved:+.2f}" if math.isfinite(moved) else "",
                "towards the paper": (
                    "yes"
                    if abs(means["skips rescaled"] - target) < abs(means["paper BN"] - target) - 1
                    else "no"
                )
                if math.isfinite(moved) and math.isfinite(target)
                else "",
                "closest to the paper": closest,
                "_means": means,
                "_target": target,
            }
        )
    return rows


def paper_tables() -> tuple[dict[str, dict], list[dict]]:
    """The paper's published tables (transcribed from the authors' repository)."""
    ref = resources.files("fetalhc.study") / "reference"
    with (ref / "paper_strategies.csv").open(newline="") as f:
        main = {r["fetalhc_strategy"]: r for r in csv.DictReader(f)}
    with (ref / "paper_low_data.csv").open(newline="") as f:
        low = list(csv.DictReader(f))
    return main, low


MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h"]


def low_data_table(cells: list[dict], size: str | None = None) -> list[dict]:
    """Training-set sizes (images) x {scratch U-Net, decoder} at one image size (default:
    the study's): ours beside the paper's."""
    _, paper = paper_tables()
    paper_by = {(r["backbone"].startswith("none"), int(r["train_size"])): r for r in paper}
    size = size or main_size(cells)
    rows = []
    for strategy in ("scratch-unet", "decoder"):
        group = [
            c
            for c in cells
            if c["cell"]["strategy"] == strategy
            and _bn(c) == "paper"
            and not _skip(c)
            and _size(c) == size
        ]
        sizes = sorted({_n_images(c) for c in group if _n_images(c)})
        for n in sizes:
            sub = [c for c in group if _n_images(c) == n]
            p = paper_by.get((strategy == "scratch-unet", n), {})
            stat = [paper_statistic(c["history"], "val_paper_dice")[0] for c in sub]
            rows.append(
                {
                    "model": strategy,
                    "train_images": n,
                    "seeds": len(sub),
                    "Dice": _mean_sd([c["metrics"]["paper_dice"] for c in sub], 100),
                    "Dice_e6_20": _mean_sd(stat, 100),
                    "paper_Dice": p.get("dice", ""),
                    "PA": _mean_sd([c["metrics"]["paper_pixel_accuracy"] for c in sub], 100),
                    "paper_PA": p.get("pixel_accuracy", ""),
                    "mIoU": _mean_sd([c["metrics"]["paper_iou"] for c in sub], 100),
                    "paper_mIoU": p.get("miou", ""),
                    "_dice": _mean([c["metrics"]["paper_dice"] for c in sub], 100),
                    "_dice_values": [100 * c["metrics"]["paper_dice"] for c in sub],
                    "_by_seed": {c["cell"]["seed"]: 100 * c["metrics"]["paper_dice"] for c in sub},
                }
            )
    return rows


MAIN_COLUMNS = [
    "strategy",
    "trainable_params",
    "seeds",
    "degenerate",
    "PA",
    "Dice",
    "mIoU",
    "Dice_e6_20",
    "paper_PA",
    "paper_Dice",
    "paper_mIoU",
    "diff_Dice",
    "diff_Dice_e6_20",
]
