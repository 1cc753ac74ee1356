"""A verdict per claim of the paper, from the study's tables."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from fetalhc.model.strategies import PRESETS

ORDER = list(PRESETS)
PAPER_WARMUP_EPOCHS = 5  # the paper averages epochs 6-20 ("without warm-up")
SCRATCH_PARAMS = 31_037_633
DECODER_PARAMS = 4_405_073
MIN_SEEDS = 3  # the bar for a row's mean; a verdict on fewer is marked provisional


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
