"""Commands of a model's life cycle after training: `tune-flag` (its quality flag) and
`calibrate` (its intervals), both on the model's out-of-fold rows."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


def cmd_calibrate(args: argparse.Namespace) -> int:
    from fetalhc.study.intervals import calibrate_model

    out = calibrate_model(args.rows, args.model, args.report, args.data)
    chosen = out["chosen"]
    print(
        f"intervals: {' + '.join(chosen['features'])}, {chosen['bins']} HC bins: out of fold "
        f"{100 * chosen['coverage']:.1f} % covered at 95 %, median half-width "
        f"{chosen['median_half_width_mm']:.2f} mm"
    )
    print(f"report: {args.report / 'report.md'}")
    if args.model is not None:
        print(f"written: {args.model / 'config.json'} (intervals)")
    return 0


def cmd_tune_flag(args: argparse.Namespace) -> int:
    from fetalhc.measure.flag_search import described
    from fetalhc.study.flag import tune_flag

    if not 0 < args.share < 1:
        from fetalhc.errors import FetalHCError

        raise FetalHCError(f"--share {args.share:g}: must lie between 0 and 1")
    out = tune_flag(args.rows, args.model, args.share)
    t = {k: (float("inf") if v is None else v) for k, v in out["thresholds"].items()}
    print(f"flag: {described(t)}")
    for part in ("in_sample", "held_out"):
        f = out[part]
        print(
            f"{part.replace('_', ' ')}: {f['flagged_pct']:.1f} % flagged; errors over 10 mm "
            f"{f['caught_10mm']} of {f['over_10mm']} caught, over 5 mm {f['caught_5mm']} of "
            f"{f['over_5mm']}; unflagged ADF {f['unflagged_adf_mm']:.2f} mm"
        )
    if args.model is not None:
        print(f"written: {args.model / 'config.json'} (quality)")
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    from fetalhc.study.bundle import BundleOptions, bundle

    options = BundleOptions(
        notes=args.notes,
        head_crop=args.head_crop,
        locate_side=args.locate_side,
        crop_side=args.crop_side,
        oof_rows=args.oof,
        flag_share=args.share,
        data=args.data,
        replace=args.replace,
    )
    weights = bundle(args.checkpoint, args.out, options)
    print(
        f"{args.out}: {weights.name} ({weights.stat().st_size / 1e6:.1f} MB), config.json, "
        "MODEL_CARD.md"
    )
    return 0


def cmd_adapt(args: argparse.Namespace) -> int:
    from fetalhc.study.adapt import CANDIDATES, AdaptOptions, adapt
    from fetalhc.study.adapt_curve import CURVE_SIZES, learning_curve

    options = AdaptOptions(
        base=args.base,
        candidates=tuple(args.candidates.split(",")) if args.candidates else CANDIDATES,
        steps=args.steps,
        seed=args.seed,
        replay=args.replay,
        n_adapt=args.n,
        threads=args.threads,
    )
    if args.curve:
        sizes = tuple(int(n) for n in args.sizes.split(",")) if args.sizes else CURVE_SIZES
        rows = learning_curve(args.data, args.out, options, seeds=args.seeds, sizes=sizes)
        print(f"{args.out / 'curve.csv'}: {len(rows)} rows; {args.out / 'curve.png'}")
        return 0
    summary = adapt(args.data, args.out, options)
    state = "promoted" if summary["promoted"] else "NOT promoted"
    print(f"{args.out}: {summary['chosen']} — {state}: {summary['reason']}")
    return 0


def cmd_corrections_import(args: argparse.Namespace) -> int:
    from fetalhc.study.corrections_import import import_corrections

    counts = import_corrections(args.source, args.out, args.ellipses, args.pixel_csv)
    print(f"{args.out}: {counts['stored']} corrections stored, {counts['skipped']} skipped")
    for line in counts["problems"][:20]:
        print(f"  {line}")
    return 0 if counts["stored"] else 1


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("adapt", cmd_adapt, "make a model a clinic's own from its corrections, gated")
    p.add_argument("data", type=Path, help="a corrections folder or an HC18-layout folder")
    p.add_argument("--out", type=Path, required=True, help="the new model folder (or curve's)")
    p.add_argument("--base", type=Path, help="model folder or checkpoint (default: bundled)")
    p.add_argument("--replay", type=Path, help="HC18 layout: replay images and the HC18 check")
    p.add_argument("--candidates", help="comma-separated (default: all)")
    p.add_argument("--steps", type=int, default=100, help="fine-tuning steps of 10 crops")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, help="adapt on N corrections drawn with the seed")
    p.add_argument("--curve", action="store_true", help="held-back ADF against N, all seeds")
    p.add_argument("--seeds", type=int, default=3, help="draws per N for --curve")
    p.add_argument("--sizes", help="N for --curve, comma-separated (5,10,20,40,80,160)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads")

    p = add("corrections", cmd_corrections_import, "import corrections from files")
    p.add_argument("action", choices=["import"])
    p.add_argument("source", type=Path, help="HC18-layout folder, or a folder of images")
    p.add_argument("--out", type=Path, required=True, help="the corrections folder")
    p.add_argument("--ellipses", type=Path, help="predict's CSV, rows fixed (mm columns)")
    p.add_argument("--pixel-csv", type=Path, help="filename,pixel size(mm) for --ellipses")

    p = add(
        "bundle", cmd_bundle, "make a trained checkpoint a model folder (weights, config, card)"
    )
    p.add_argument("checkpoint", type=Path, help="a run's .safetensors (with its config.json)")
    p.add_argument("--out", type=Path, required=True, help="the model folder to write")
    p.add_argument("--oof", type=Path, help="out-of-fold rows: tune the flag, calibrate intervals")
    p.add_argument("--share", type=float, default=0.10, help="flag at most this share (0.10)")
    p.add_argument("--data", type=Path, help="HC18 layout: reference BPD/OFD for the intervals")
    p.add_argument("--head-crop", type=float, help="two-pass models: the close-up's margin")
    p.add_argument("--locate-side", type=int, help="two-pass models: the first pass's side")
    p.add_argument("--crop-side", type=int, help="two-pass models: the close-up's side")
    p.add_argument("--notes", default="", help="how the model was made, in words")
    p.add_argument("--replace", action="store_true", help="write into a folder holding a model")

    p = add(
        "tune-flag",
        cmd_tune_flag,
        "choose a model's quality-flag thresholds on its out-of-fold rows (checked held out)",
    )
    p.add_argument("rows", type=Path, help="evaluate's out-of-fold rows (CSV with a fold column)")
    p.add_argument("--model", type=Path, help="model folder whose config.json gets the flag")
    p.add_argument(
        "--share", type=float, default=0.10, help="flag at most this share of images (0.10)"
    )

    p = add(
        "calibrate",
        cmd_calibrate,
        "calibrate a model's 95 %% intervals (HC, BPD, OFD) on its out-of-fold rows",
    )
    p.add_argument("rows", type=Path, help="evaluate's out-of-fold rows (CSV with a fold column)")
    p.add_argument("--model", type=Path, help="model folder whose config.json gets the intervals")
    p.add_argument("--report", type=Path, required=True, help="folder for the report")
    p.add_argument(
        "--data", type=Path, help="HC18-layout folder: reference BPD/OFD for rows without them"
    )
