"""Aggregate a study's finished cells into the paper's tables, figures and one Markdown report."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .fileio import atomic_path, write_text
from .strategies import PRESETS

# Published figures we could verify for the paper's table (Wang, Silvestre & Curran 2023):
# only the decoder row's metrics and the parameter counts; other rows are left blank.
PAPER = {"decoder": {"pixel_accuracy": 97.77, "dice": 96.28, "miou": 92.87}}
ORDER = list(PRESETS)


def load_cells(study: Path) -> list[dict]:
    cells = []
    for path in sorted((study / "runs").glob("*/cell.json")):
        cell = json.loads(path.read_text())
        cell["folder"] = path.parent
        cells.append(cell)
    return cells


def _mean_sd(values: list[float], scale: float = 1.0, digits: int = 2) -> str:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float) * scale
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.{digits}f}"
    return f"{v.mean():.{digits}f} ({v.std(ddof=1):.{digits}f})"


def _group(cells: list[dict], fraction: float | None = 1.0) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for c in cells:
        if fraction is None or abs(c["cell"]["fraction"] - fraction) < 1e-9:
            groups[c["cell"]["strategy"]].append(c)
    return dict(sorted(groups.items(), key=lambda kv: ORDER.index(kv[0]) if kv[0] in ORDER else 99))


def _paper(strategy: str, key: str) -> str:
    value = PAPER.get(strategy, {}).get(key)
    return f"{value:.2f}" if value is not None else ""


def main_table(cells: list[dict]) -> list[dict]:
    rows = []
    for strategy, group in _group(cells).items():
        m = [c["metrics"] for c in group]
        preset = PRESETS.get(strategy)
        rows.append(
            {
                "strategy": strategy,
                "trainable_layers": preset.label if preset else strategy,
                "trainable_params_M": group[0]["train"]["trainable_params"] / 1e6,
                "model_size_MB": group[0]["train"]["total_params"] * 4 / 1e6,
                "seeds": len(group),
                "PA": _mean_sd([x["paper_pixel_accuracy"] for x in m], 100),
                "Dice": _mean_sd([x["paper_dice"] for x in m], 100),
                "mIoU": _mean_sd([x["paper_iou"] for x in m], 100),
                "Dice_orig_pct": _mean_sd([x["dice"] for x in m], 100),
                "HD_mm": _mean_sd([x["hd_mm"] for x in m]),
                "HC_abs_diff_mm": _mean_sd([x["hc_abs_diff_mm"] for x in m]),
                "train_min": _mean_sd([c["train"]["train_seconds"] / 60 for c in group], digits=1),
                "infer_ms": _mean_sd([c["inference_ms_per_image"] for c in group], digits=0),
                "paper_PA": _paper(strategy, "pixel_accuracy"),
                "paper_Dice": _paper(strategy, "dice"),
                "paper_mIoU": _paper(strategy, "miou"),
            }
        )
    return rows


def low_data_table(cells: list[dict]) -> list[dict]:
    fractions = sorted({c["cell"]["fraction"] for c in cells})
    if len(fractions) < 2:
        return []
    rows = []
    for strategy, group in _group(cells, None).items():
        row: dict = {"strategy": strategy}
        present = False
        for f in fractions:
            sub = [c for c in group if abs(c["cell"]["fraction"] - f) < 1e-9]
            row[f"Dice {int(round(f * 100))}%"] = _mean_sd(
                [c["metrics"]["paper_dice"] for c in sub], 100
            )
            present |= bool(sub) and f < 1
        if present:
            rows.append(row)
    return rows


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _markdown(rows: list[dict], columns: list[str]) -> list[str]:
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for r in rows:
        cells = []
        for c in columns:
            v = r[c]
            cells.append(f"{v:.3f}" if isinstance(v, float) else str(v))
        out.append("| " + " | ".join(cells) + " |")
    return out


def _figures(study: Path, cells: list[dict], part: str = "test") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = study / "figures"
    figs.mkdir(exist_ok=True)
    made = []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        with atomic_path(figs / name, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=110)
        plt.close(fig)
        made.append(f"figures/{name}")

    groups = _group(cells)
    if groups:
        fig, ax = plt.subplots(figsize=(6.5, 4))
        for strategy, group in groups.items():
            x = group[0]["train"]["trainable_params"]
            ys = [100 * c["metrics"]["paper_dice"] for c in group]
            ax.errorbar(x, np.mean(ys), yerr=np.std(ys) if len(ys) > 1 else 0, fmt="o", capsize=3)
            ax.annotate(
                strategy, (x, np.mean(ys)), fontsize=7, xytext=(4, 3), textcoords="offset points"
            )
        ax.set_xscale("log")
        ax.set_xlabel("trainable parameters")
        ax.set_ylabel("Dice (%) at model resolution")
        ax.set_title("Dice against trainable parameters")
        save(fig, "dice_vs_params.png")

        fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(groups)), 4))
        data, labels = [], []
        for strategy, group in groups.items():
            diffs = []
            for c in group:
                per_image = Path(c["folder"]) / f"eval-{part}" / "per_image.csv"
                if per_image.exists():
                    with open(per_image) as f:
                        diffs += [float(r["hc_abs_diff_mm"]) for r in csv.DictReader(f)]
            diffs = [d for d in diffs if math.isfinite(d)]
            if diffs:
                data.append(diffs)
                labels.append(strategy)
        if data:
            ax.boxplot(data, showfliers=True)
            ax.set_xticks(range(1, len(labels) + 1), labels, rotation=45, ha="right", fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("|HC difference| (mm)")
            ax.set_title("HC absolute difference by strategy (all seeds, test images)")
            save(fig, "hc_diff_by_strategy.png")

        fig, ax = plt.subplots(figsize=(6.5, 4))
        for strategy, group in groups.items():
            history = Path(group[0]["folder"]) / "history.csv"
            if history.exists():
                with open(history) as f:
                    rows = list(csv.DictReader(f))
                ax.plot(
                    [int(r["epoch"]) for r in rows],
                    [float(r["val_dice"]) for r in rows],
                    marker=".",
                    label=strategy,
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation Dice")
        ax.set_title("Learning curves (first seed)")
        ax.legend(fontsize=7)
        save(fig, "learning_curves.png")

    fractions = sorted({c["cell"]["fraction"] for c in cells})
    if len(fractions) > 1:
        fig, ax = plt.subplots(figsize=(6, 4))
        for strategy, group in _group(cells, None).items():
            xs, ys = [], []
            for f in fractions:
                sub = [
                    100 * c["metrics"]["paper_dice"]
                    for c in group
                    if abs(c["cell"]["fraction"] - f) < 1e-9
                ]
                if sub:
                    xs.append(100 * f)
                    ys.append(np.mean(sub))
            if len(xs) > 1:
                ax.plot(xs, ys, "o-", label=strategy)
        ax.set_xlabel("training images used (%)")
        ax.set_ylabel("Dice (%)")
        ax.set_title("Dice against training fraction")
        ax.legend(fontsize=8)
        save(fig, "dice_vs_fraction.png")
    return made


def write_report(study: str | Path) -> Path:
    study = Path(study)
    cells = load_cells(study)
    main = main_table(cells)
    low = low_data_table(cells)
    _write_csv(study / "main_table.csv", main)
    _write_csv(study / "low_data_table.csv", low)
    summaries = [
        {
            "name": c["name"],
            **c["cell"],
            **c["metrics"],
            "train_seconds": c["train"]["train_seconds"],
            "inference_ms_per_image": c["inference_ms_per_image"],
        }
        for c in cells
    ]
    _write_csv(study / "cells.csv", summaries)
    meta = json.loads((study / "study.json").read_text()) if (study / "study.json").exists() else {}
    figures = _figures(study, cells, meta.get("evaluate_part", "test")) if cells else []
    train = meta.get("train", {})
    lines = [
        "# Fine-tuning study",
        "",
        f"{len(cells)} finished cells. Training: {train.get('epochs', 20)} epochs, image size "
        f"{train.get('image_size', '320x224')}, batch {train.get('batch_size', 10)}, "
        f"lr {train.get('lr', 1e-4)}, loss {train.get('loss', 'bce')}; encoder weights "
        f"`{meta.get('encoder_weights', '?')}`; evaluated on the split's "
        f"`{meta.get('evaluate_part', 'test')}` part. PA, Dice and mIoU (foreground IoU, the "
        "paper's name) are computed as the paper did, at model resolution on the raw thresholded "
        "output; Dice (orig.), HD and HC at each image's original resolution in mm, after "
        "fetalhc's post-processing (largest component, holes filled), which lifts weak models "
        "most. Mean (SD) over seeds. `paper_*`: the published figures we could verify (the "
        "decoder row); trainable parameter counts equal the paper's for every row.",
        "",
        "## Strategies (100 % of the training part)",
        "",
    ]
    lines += _markdown(
        main,
        [
            "strategy",
            "trainable_layers",
            "trainable_params_M",
            "model_size_MB",
            "seeds",
            "PA",
            "Dice",
            "mIoU",
            "paper_PA",
            "paper_Dice",
            "paper_mIoU",
        ],
    )
    lines += ["", "### Clinical columns", ""]
    lines += _markdown(
        main, ["strategy", "Dice_orig_pct", "HD_mm", "HC_abs_diff_mm", "train_min", "infer_ms"]
    )
    if low:
        lines += ["", "## Low-data table (nested subsets of the training part; Dice %)", ""]
        lines += _markdown(low, list(low[0]))
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    lines.append("")
    path = study / "report.md"
    write_text(path, "\n".join(lines))
    return path
