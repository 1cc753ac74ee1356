"""`fetalhc evaluate`, `predict` and `export`: the model measures."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fetalhc.cli.common import add_model_flags, checkpoint_of, measurer_of
from fetalhc.cli.types import finite_float, nonnegative_int, positive_int
from fetalhc.data.split import SPLIT_PARTS
from fetalhc.errors import FetalHCError
from fetalhc.io.files import ensure_folder


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--tta", action="store_true", help="average with the mirrored image")


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fetalhc.inference.evaluate import EvalOptions, evaluate

    if args.run_pos and not args.run:
        args.run = args.run_pos
    checkpoint = checkpoint_of(args)
    if args.average and not args.out:
        raise FetalHCError("--average: give --out (an average's scores are not the run's own)")
    out = ensure_folder(args.out or (checkpoint.parent / f"eval-{args.part}"))
    summary = evaluate(
        checkpoint,
        args.data,
        args.split,
        out,
        EvalOptions(part=args.part, worst=args.worst),
        backend=args.backend,
        threads=args.threads,
        batch_size=args.batch,
        flip_tta=args.tta,
        average=args.average or (),
    )
    m = summary["metrics"]
    print(
        f"{out}: {summary['images']} images  Dice {m['dice']['mean']:.4f}  "
        f"HD {m['hd_mm']['mean']:.2f} mm  |HC diff| {m['hc_abs_diff_mm']['mean']:.2f} mm "
        f"(median {m['hc_abs_diff_mm']['median']:.2f})"
    )
    return 1 if summary["skipped"] else 0


def cmd_predict(args: argparse.Namespace) -> int:
    import sys

    from fetalhc.inference.inputs import collect_images, pixel_sizes
    from fetalhc.inference.predict import PredictOptions, predict

    outputs = [args.out, *([args.dicom_out] if args.dicom_out else [])]
    images, notes = collect_images(args.inputs, exclude=outputs)
    for note in notes:
        print(f"fetalhc: {note}", file=sys.stderr)
    options = PredictOptions(ga_weeks=_given_ga(args), dicom_out=args.dicom_out)
    # a missing or implausible pixel size fails before anything is written or loaded
    sizes = pixel_sizes(images, args.pixel_size, args.pixel_csv)
    ensure_folder(args.out)
    measurer = measurer_of(args, batch_size=args.batch, flip_tta=args.tta)
    failed = predict(images, sizes, measurer, args.out, options)
    print(f"{args.out / 'predictions.csv'}: {len(images) - failed} measured, {failed} failed")
    return 1 if failed else 0


def _given_ga(args: argparse.Namespace) -> float | None:
    """--ga W+D, or --lmp DATE with --exam-date DATE: the known gestational age."""
    from fetalhc.errors import FetalHCError
    from fetalhc.measure.biometry import ga_from_dates, parse_ga

    if args.ga and (args.lmp or args.exam_date):
        raise FetalHCError("give --ga or --lmp/--exam-date, not both")
    if args.ga:
        return parse_ga(args.ga)
    if args.lmp or args.exam_date:
        if not (args.lmp and args.exam_date):
            raise FetalHCError("--lmp and --exam-date go together")
        return ga_from_dates(args.exam_date, args.lmp)
    return None


def cmd_export(args: argparse.Namespace) -> int:
    from fetalhc.inference.onnx_export import export_checked

    checkpoint = checkpoint_of(args, allow_default=True)
    ensure_folder(args.onnx.parent, "--onnx")
    report = export_checked(
        checkpoint,
        args.onnx,
        int8=args.int8,
        calibration=args.calibration,
        calibration_images=args.calibration_images,
    )
    print(
        f"{args.onnx}: largest |logit| difference from PyTorch on {report.checked_images} real "
        f"images: {report.max_difference:.2e} (limit 1e-3)"
    )
    for note in report.skipped:
        print(f"skipped {note}")
    if report.int8 is not None:
        print(
            f"{report.int8}: int8, calibrated on {report.calibrated_images} images; check its "
            "accuracy with `fetalhc evaluate --checkpoint` before use"
        )
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("evaluate", cmd_evaluate, "evaluate a run on labelled images (metrics, HC in mm)")
    p.add_argument("run_pos", nargs="?", type=Path, metavar="RUN")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split", type=Path, help="split CSV (without it: every labelled image)")
    p.add_argument("--part", default="test", choices=SPLIT_PARTS)
    p.add_argument("--out", type=Path, help="output folder (default RUN/eval-PART)")
    p.add_argument(
        "--worst", type=nonnegative_int, default=10, help="overlays of the N worst images"
    )
    _add_backend_flags(p)

    p = add("predict", cmd_predict, "measure HC on images or folders")
    p.add_argument("inputs", nargs="+", type=Path)
    p.add_argument("--pixel-size", type=finite_float, help="mm per pixel for every image")
    p.add_argument("--pixel-csv", type=Path, help="HC18 CSV with filename,pixel size(mm)")
    p.add_argument("--out", type=Path, default=Path("predictions"))
    p.add_argument("--ga", help="known gestational age (weeks+days, e.g. 20+3): HC centile")
    p.add_argument("--lmp", help="first day of the last menstrual period (YYYY-MM-DD)")
    p.add_argument("--exam-date", help="date of the scan (YYYY-MM-DD), with --lmp")
    p.add_argument(
        "--dicom-out",
        type=Path,
        help="for each DICOM input: a Structured Report, a Segmentation and the overlay "
        "(Secondary Capture) here",
    )
    _add_backend_flags(p)

    p = add("export", cmd_export, "export a checkpoint to ONNX, checked against PyTorch")
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--run", type=Path)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--int8", action="store_true", help="also write MODEL_int8.onnx (static)")
    p.add_argument("--calibration", type=Path, help="images to calibrate int8 on")
    p.add_argument("--calibration-images", type=positive_int, default=64)
