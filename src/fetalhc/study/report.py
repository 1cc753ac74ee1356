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
import math
from collections import defaultdict
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError
from fetalhc.io.files import atomic_path, write_csv, write_text
from fetalhc.model.strategies import PRESETS

ORDER = list(PRESETS)
PAPER_WARMUP_EPOCHS = 5  # the paper averages epochs 6-20 ("without warm-up")
SCRATCH_PARAMS = 31_037_633
DECODER_PARAMS = 4_405_073
MIN_SEEDS = 3  # the bar for a row's mean; a verdict on fewer is marked provisional


# ---------------------------------------------------------------- inputs
NOTES = "notes.md"  # a study's hand-written notes, included in its report


def paper_tables() -> tuple[dict[str, dict], list[dict]]:
    """The paper's published tables (transcribed from the authors' repository)."""
    ref = resources.files("fetalhc.study") / "reference"
    with (ref / "paper_strategies.csv").open(newline="") as f:
        main = {r["fetalhc_strategy"]: r for r in csv.DictReader(f)}
    with (ref / "paper_low_data.csv").open(newline="") as f:
        low = list(csv.DictReader(f))
    return main, low


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


def within_3_by_variant(rows: list[dict]) -> list[str]:
    """How many rows of the ablation each variant brings within 3 Dice points of the paper."""
    out = []
    for variant in ("paper BN", "skips rescaled", "frozen-eval BN"):
        judged = [r for r in rows if math.isfinite(r["_means"][variant])]
        close = [r["strategy"] for r in judged if abs(r["_means"][variant] - r["_target"]) <= 3]
        out.append(
            f"{variant}: {len(close)} of {len(judged)} rows within 3 Dice points"
            + (f" ({', '.join(close)})" if close else "")
        )
    return out


def skip_verdict(rows: list[dict]) -> str:
    """Does the skip scale explain the partial-freeze rows, in both directions: the rows the
    paper has higher (encoder, D-0, D-0,1, D-0,1,2) and those it has lower (D-2,3,4, D-4)?"""
    if not rows:
        return ""
    low = [r for r in rows if r["strategy"] in ("encoder", "d0", "d01", "d012")]
    high = [r for r in rows if r["strategy"] in ("d234", "d4")]
    up = [r["strategy"] for r in low if r["towards the paper"] == "yes"]
    down = [r["strategy"] for r in high if r["towards the paper"] == "yes"]
    seeds = [
        f"{r['strategy']} {r['seeds (rescaled)']} of {MIN_SEEDS}"
        for r in rows
        if r["seeds (rescaled)"] < MIN_SEEDS
    ]
    missing = [
        s
        for s in ("encoder", "d0", "d01", "d012", "d234", "d4")
        if s not in {r["strategy"] for r in rows}
    ]
    if low and high and len(up) == len(low) and len(down) == len(high):
        word = "explains both directions"
    elif up and not down:
        word = "moves the rows the paper has higher, not those it has lower"
    elif down and not up:
        word = "moves the rows the paper has lower, not those it has higher"
    elif up or down:
        word = "explains some rows"
    else:
        word = "does not explain the rows"
    return (
        f"Skip scale: **{word}**. Rescaling moves {len(up)} of {len(low)} rows the paper has "
        f"higher towards it ({', '.join(up) or 'none'}) and {len(down)} of {len(high)} rows "
        f"it has lower ({', '.join(down) or 'none'}); towards = over 1 Dice point closer"
        + _provisional(seeds, missing)
    )


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


# ---------------------------------------------------------------- verdicts
def _provisional(short_rows: Sequence[str], missing: Sequence[str] = ()) -> str:
    """' (provisional: ...)' when a verdict rests on rows with too few seeds or lacks cells."""
    parts = []
    if short_rows:
        parts.append(f"seeds {', '.join(short_rows)}")
    if missing:
        parts.append(f"not yet run: {', '.join(missing)}")
    return f" (provisional: {'; '.join(parts)})" if parts else ""


def _short(rows: list[dict], key: str) -> list[str]:
    """Rows with fewer than MIN_SEEDS seeds, as 'name k of 3'."""
    return [f"{r[key]} {r['seeds']} of {MIN_SEEDS}" for r in rows if r["seeds"] < MIN_SEEDS]


def verdicts(main: list[dict], low: list[dict]) -> list[str]:
    """Each claim of the paper, judged on our numbers only; a claim not yet judgeable says
    which cells it waits for, so a partial study never silently drops a claim."""
    by = {r["strategy"]: r for r in main}
    out = []
    dec = by.get("decoder")
    claim = (
        f"**Decoder fine-tuning matches full fine-tuning and the scratch U-Net with "
        f"{100 * (1 - DECODER_PARAMS / SCRATCH_PARAMS):.1f} % fewer trainable parameters**"
    )
    if dec and "full" in by and "scratch-unet" in by:
        gaps = {k: dec["_dice"] - by[k]["_dice"] for k in ("full", "scratch-unet")}
        worst = min(gaps.values())
        verdict = (
            "reproduced"
            if worst >= -1
            else "partly reproduced"
            if worst >= -3
            else ("not reproduced")
        )
        rows = [dec, by["full"], by["scratch-unet"]]
        out.append(
            f"{claim} — {verdict}{_provisional(_short(rows, 'strategy'))}: decoder "
            f"{dec['_dice']:.2f}, full {by['full']['_dice']:.2f}, scratch "
            f"{by['scratch-unet']['_dice']:.2f} (Dice %, test; 'matches' = within 1 point, "
            "'partly' = within 3)."
        )
    elif main:
        missing = [k for k in ("decoder", "full", "scratch-unet") if k not in by]
        out.append(f"{claim} — not judged yet: no finished cell of {', '.join(missing)}.")
    claim = (
        "**Decoder fine-tuning beats every strategy with fewer than 4.4 M trainable parameters**"
    )
    if dec:
        smaller = [r for r in main if r["trainable_params"] < DECODER_PARAMS]
        if smaller:
            beaten = [r for r in smaller if dec["_dice"] > r["_dice"]]
            verdict = (
                "reproduced"
                if len(beaten) == len(smaller)
                else "partly reproduced"
                if len(beaten) >= len(smaller) - 1
                else "not reproduced"
            )
            detail = ", ".join(f"{r['strategy']} {r['_dice']:.2f}" for r in smaller)
            out.append(
                f"{claim} — {verdict}{_provisional(_short([dec, *smaller], 'strategy'))}: decoder "
                f"{dec['_dice']:.2f} beats {len(beaten)} of {len(smaller)} ({detail})."
            )
    claim = "**Pretraining helps most with little data**"
    if low:
        gap = {}
        for n in sorted({r["train_images"] for r in low}):
            pair = {r["model"]: r["_dice"] for r in low if r["train_images"] == n}
            if len(pair) == 2:
                gap[n] = pair["decoder"] - pair["scratch-unet"]
        # at every size either model was run, the other is needed for a pair
        have = {(r["model"], r["train_images"]) for r in low}
        missing = [
            f"{m} {n}"
            for n in sorted({n for _, n in have})
            for m in ("scratch-unet", "decoder")
            if (m, n) not in have
        ]
        if len(gap) >= 2:
            sizes = sorted(gap)
            shrinking = all(gap[a] >= gap[b] for a, b in zip(sizes, sizes[1:], strict=False))
            helps = gap[sizes[0]] > 0
            verdict = (
                "reproduced"
                if helps and shrinking
                else "partly reproduced"
                if helps
                else "not reproduced"
            )
            detail = ", ".join(f"{n} images: {gap[n]:+.2f}" for n in sizes)
            rows = [dict(r, label=f"{r['model']} {r['train_images']}") for r in low]
            caveat = _provisional(_short(rows, "label"), missing)
            out.append(
                f"{claim} — {verdict}{caveat}: Dice gain of the pretrained decoder over the "
                f"scratch U-Net by training-set size: {detail}."
            )
        else:
            detail = ", ".join(f"{n} images: {gap[n]:+.2f}" for n in sorted(gap))
            waits = f"; not yet run: {', '.join(missing)}" if missing else ""
            so_far = f" (so far, decoder − scratch Dice at {detail})" if detail else ""
            out.append(
                f"{claim} — not judged yet: needs the scratch U-Net and the decoder at two or "
                f"more training-set sizes{waits}{so_far}."
            )
    return out


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


MARKERS = ["o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h"]


def _figures(
    study: Path, cells: list[dict], main: list[dict], low: list[dict], bn: str
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = study / "figures"
    figs.mkdir(exist_ok=True)
    made = []
    colours = matplotlib.colormaps["tab20"].colors

    def style(strategy: str) -> dict:
        i = ORDER.index(strategy) if strategy in ORDER else len(ORDER) - 1
        return {"color": colours[(2 * i) % 20 if i < 10 else 1], "marker": MARKERS[i % 11]}

    def save(fig, name: str) -> None:
        fig.tight_layout()
        with atomic_path(figs / name, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        made.append(f"figures/{name}")

    if main:
        fig, ax = plt.subplots(figsize=(8, 5))
        for r in main:
            ys = r["_dice_values"]
            sd = float(np.std(ys, ddof=1)) if len(ys) > 1 else 0.0
            ax.errorbar(
                r["trainable_params"],
                np.mean(ys),
                yerr=sd,
                capsize=3,
                linestyle="none",
                markersize=7,
                label=f"{r['strategy']} (n={len(ys)})",
                **style(r["strategy"]),
            )
            if math.isfinite(r["_paper_dice"]):
                ax.scatter(
                    r["trainable_params"],
                    r["_paper_dice"],
                    facecolors="none",
                    edgecolors=style(r["strategy"])["color"],
                    s=60,
                    marker=style(r["strategy"])["marker"],
                )
        ax.set_xscale("log")
        ax.set_ylim(0, 100)
        ax.set_xlabel("trainable parameters (log scale)")
        ax.set_ylabel("Dice (%), test part, model resolution")
        ax.set_title(
            "Dice against trainable parameters\nfilled: fetalhc, mean ± SD over seeds; "
            "hollow: the paper",
            fontsize=10,
        )
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
        save(fig, "dice_vs_params.png")

        n = len(main)
        cols = 4
        rows_ = math.ceil(n / cols)
        fig, axes = plt.subplots(rows_, cols, figsize=(3.2 * cols, 2.6 * rows_), squeeze=False)
        seed_lines = ("-", "--", ":", "-.")  # one panel's seeds share a colour
        for ax, r in zip(axes.flat, main, strict=False):
            for i, c in enumerate(_rows_of(cells, r["strategy"], bn)):
                h = c["history"]
                ax.plot(
                    [x["epoch"] for x in h],
                    [100 * x["val_dice"] for x in h],
                    label=f"seed {c['cell']['seed']}",
                    linestyle=seed_lines[i % len(seed_lines)],
                    **{**style(r["strategy"]), "markersize": 3},
                )
            if math.isfinite(r["_paper_dice"]):
                ax.axhline(r["_paper_dice"], color="0.5", linewidth=1, label="paper")
            ax.set_ylim(0, 100)
            ax.set_title(r["strategy"], fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylabel("val Dice (%)", fontsize=8)
            ax.legend(fontsize=6)
        for ax in list(axes.flat)[n:]:
            ax.axis("off")
        fig.suptitle(
            "Learning curves (validation Dice, every seed; grey line: the paper's published Dice)",
            fontsize=10,
        )
        save(fig, "learning_curves.png")

    if low:
        _, paper_low = paper_tables()
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for model in ("scratch-unet", "decoder"):
            sub = [r for r in low if r["model"] == model]
            if not sub:
                continue
            # every seed as a faint dot just beside the mean ± SD (the two models' dots
            # shifted apart), so the spread is visible
            shift = -6 if model == "scratch-unet" else 6
            seeds = [(r["train_images"] + shift, d) for r in sub for d in r["_dice_values"]]
            ax.scatter(*zip(*seeds, strict=True), s=12, alpha=0.35, color=style(model)["color"])
            xs = [r["train_images"] for r in sub]
            means = [np.mean(r["_dice_values"]) for r in sub]
            sds = [
                np.std(r["_dice_values"], ddof=1) if len(r["_dice_values"]) > 1 else 0 for r in sub
            ]
            ax.errorbar(
                xs,
                means,
                yerr=sds,
                capsize=3,
                label=f"{model} (fetalhc, mean ± SD; dots: seeds)",
                **style(model),
            )
            # the paper's whole curve, also at sizes not (yet) run here
            paper = sorted(
                (int(r["train_size"]), float(r["dice"]))
                for r in paper_low
                if r["backbone"].startswith("none") == (model == "scratch-unet")
            )
            if paper:
                ax.plot(
                    *zip(*paper, strict=True),
                    linestyle="--",
                    color=style(model)["color"],
                    marker=style(model)["marker"],
                    fillstyle="none",
                    label=f"{model} (paper)",
                )
        ax.set_xlabel("training images")
        ax.set_ylabel("Dice (%), test part")
        ax.set_title("Low-data table: Dice against training-set size")
        ax.legend(fontsize=8)
        save(fig, "dice_vs_train_images.png")
    return made


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


def size_verdicts(low: list[dict], low_other: dict[str, list[dict]], size: str) -> list[str]:
    """The little-data half of the third claim at each other image size: at every training
    set size run there by both models, the decoder's lead over the scratch U-Net, per seed
    (the two models of one seed train on the same images), beside the lead at `size`."""

    def gaps(rows: list[dict]) -> dict[int, dict[int, float]]:
        out = {}
        for n in sorted({r["train_images"] for r in rows}):
            pair = {r["model"]: r for r in rows if r["train_images"] == n}
            if len(pair) == 2:
                dec, scr = pair["decoder"]["_by_seed"], pair["scratch-unet"]["_by_seed"]
                out[n] = {k: dec[k] - scr[k] for k in sorted(set(dec) & set(scr))}
        return out

    here = gaps(low)
    lines = []
    for other, rows in low_other.items():
        for n, per_seed in gaps(rows).items():
            if not per_seed:
                continue
            mean = float(np.mean(list(per_seed.values())))
            leads = sum(v > 0 for v in per_seed.values())
            verdict = (
                "reproduced"
                if leads == len(per_seed)
                else "not reproduced"
                if leads == 0
                else "mixed"
            )
            short = (
                f" (provisional: {len(per_seed)} of {MIN_SEEDS} seeds)"
                if len(per_seed) < MIN_SEEDS
                else ""
            )
            seeds = ", ".join(f"s{k} {v:+.2f}" for k, v in per_seed.items())
            base = here.get(n)
            beside = (
                f"; at {size}: {np.mean(list(base.values())):+.2f}"
                f" ({', '.join(f's{k} {v:+.2f}' for k, v in base.items())})"
                if base
                else ""
            )
            lines.append(
                f"**Pretraining helps with little data, at {other}** ({n} training images) "
                f"— {verdict}{short}: decoder − scratch U-Net Dice {mean:+.2f} "
                f"({seeds}){beside}."
            )
    return lines


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
            "`experiments/resolution-probe/adopt_cell.py` after its "
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
