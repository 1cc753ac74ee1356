"""A study's figures."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from fetalhc.io.files import atomic_path
from fetalhc.study.tables import MARKERS, ORDER, _rows_of, paper_tables


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
