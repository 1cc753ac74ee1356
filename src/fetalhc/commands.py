"""Sub-commands of the later pipeline steps: evaluate, predict, export, compare, report."""

from __future__ import annotations

import argparse
from pathlib import Path

from .cli_types import finite_float, nonnegative_int, positive_int
from .config import BACKENDS, SPLIT_PARTS


def _add_backend_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", type=Path, help="run folder (uses RUN/best.safetensors)")
    p.add_argument("--checkpoint", type=Path, help=".safetensors (with config.json) or .onnx")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument(
        "--threads", type=nonnegative_int, default=0, help="CPU threads (0: library default)"
    )
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--tta", action="store_true", help="average with the mirrored image")


def _checkpoint(args: argparse.Namespace, allow_default: bool = False) -> Path:
    from .checkpoint import resolve_checkpoint
    from .inference import default_checkpoint

    if allow_default and not args.run and not args.checkpoint:
        return default_checkpoint()
    return resolve_checkpoint(args.run, args.checkpoint)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .evaluate import EvalOptions, evaluate

    if args.run_pos and not args.run:
        args.run = args.run_pos
    checkpoint = _checkpoint(args)
    out = args.out or (checkpoint.parent / f"eval-{args.part}")
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

    from .data import plausible_pixel_size
    from .errors import FetalHCError
    from .measurer import HeadMeasurer
    from .predict import (
        PredictOptions,
        check_output_folder,
        collect_images,
        pixel_sizes,
        predict,
    )

    if args.pixel_size is not None and plausible_pixel_size(args.pixel_size):
        raise FetalHCError(f"--pixel-size: {plausible_pixel_size(args.pixel_size)}")
    images, notes = collect_images(args.inputs)
    for note in notes:
        print(f"fetalhc: {note}", file=sys.stderr)
    options = PredictOptions(
        pixel_size=args.pixel_size, pixel_csv=args.pixel_csv, ga_weeks=_given_ga(args)
    )
    sizes = pixel_sizes(images, options)  # a missing pixel size fails before the model loads
    check_output_folder(args.out)
    measurer = HeadMeasurer(
        _checkpoint(args, allow_default=True),
        backend=args.backend,
        threads=args.threads,
        batch_size=args.batch,
        flip_tta=args.tta,
    )
    failed = predict(images, sizes, measurer, args.out, options)
    print(f"{args.out / 'predictions.csv'}: {len(images) - failed} measured, {failed} failed")
    return 1 if failed else 0


def _given_ga(args: argparse.Namespace) -> float | None:
    """--ga W+D, or --lmp DATE with --exam-date DATE: the known gestational age."""
    from .biometry import ga_from_dates, parse_ga
    from .errors import FetalHCError

    if args.ga and (args.lmp or args.exam_date):
        raise FetalHCError("give --ga or --lmp/--exam-date, not both")
    if args.ga:
        return parse_ga(args.ga)
    if args.lmp or args.exam_date:
        if not (args.lmp and args.exam_date):
            raise FetalHCError("--lmp and --exam-date go together")
        return ga_from_dates(args.exam_date, args.lmp)
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    from .errors import FetalHCError
    from .measurer import HeadMeasurer

    try:
        from .serve import ServiceConfig, serve
    except ImportError as exc:
        raise FetalHCError(
            f"`fetalhc serve` needs FastAPI and uvicorn ({exc.name} missing)"
        ) from None
    if args.save is not None and args.save.exists() and not args.save.is_dir():
        raise FetalHCError(f"--save {args.save}: exists and is not a folder")
    measurer = HeadMeasurer(
        _checkpoint(args, allow_default=True), backend=args.backend, threads=args.threads
    )
    config = ServiceConfig(
        max_upload_mb=args.max_upload_mb,
        workers=args.workers,
        queue=args.queue,
        save_dir=args.save,
    )
    serve(measurer, args.host, args.port, config)
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export_onnx
    from .fileio import read_gray
    from .sample import sample_dir

    checkpoint = _checkpoint(args, allow_default=True)
    folder = sample_dir() / "training_set"
    images = [read_gray(p) for p in sorted(folder.glob("*HC.png"))[:4]]
    diff = export_onnx(checkpoint, args.onnx, verify=True, check_images=images)
    print(
        f"{args.onnx}: largest |logit| difference from PyTorch on {len(images)} real "
        f"images: {diff:.2e} (limit 1e-3)"
    )
    if args.int8:
        from .export import quantize_int8
        from .predict import collect_images

        folders = [args.calibration] if args.calibration else [folder, sample_dir() / "test_set"]
        calibration = []
        found, _ = collect_images(folders)
        for item in found[: args.calibration_images]:
            try:
                calibration.append(read_gray(item.path))
            except ValueError as exc:
                print(f"skipped {item.name}: {exc}")
        target = args.onnx.with_name(args.onnx.stem + "_int8.onnx")
        quantize_int8(args.onnx, target, calibration)
        print(
            f"{target}: int8, calibrated on {len(calibration)} images; check its accuracy "
            "with `fetalhc evaluate --checkpoint` before use"
        )
    return 0


def register(sub, add) -> None:
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
    _add_backend_flags(p)

    p = add("serve", cmd_serve, "web page and REST API to measure and correct (local)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=positive_int, default=8000)
    p.add_argument("--run", type=Path, help="run folder (default: the bundled model)")
    p.add_argument("--checkpoint", type=Path, help=".safetensors (with config.json) or .onnx")
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument("--threads", type=nonnegative_int, default=0, help="CPU threads per model")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel inferences")
    p.add_argument("--queue", type=nonnegative_int, default=8, help="requests that may wait")
    p.add_argument("--max-upload-mb", type=finite_float, default=50.0)
    p.add_argument("--save", type=Path, help="keep each image and its result here")

    p = add("export", cmd_export, "export a checkpoint to ONNX, checked against PyTorch")
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--run", type=Path)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--int8", action="store_true", help="also write MODEL_int8.onnx (static)")
    p.add_argument("--calibration", type=Path, help="images to calibrate int8 on")
    p.add_argument("--calibration-images", type=positive_int, default=64)

    from .study import register as register_study

    register_study(add)
