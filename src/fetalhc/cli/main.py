"""Command line: parses arguments and calls the library. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from fetalhc.cli import model_commands, serve_commands
from fetalhc.cli.common import add_model_flags, checkpoint_of, measurer_of
from fetalhc.cli.types import finite_float, nonnegative_int, positive_int
from fetalhc.data.split import SPLIT_PARTS
from fetalhc.errors import FetalHCError
from fetalhc.io.files import ensure_folder


# ---------------------------------------------------------------- data
def cmd_data_check(args: argparse.Namespace) -> int:
    from fetalhc.data.check import check_dataset, format_report

    report = check_dataset(args.dir)
    print(format_report(report))
    return 0 if report.ok else 1


def cmd_data_split(args: argparse.Namespace) -> int:
    from fetalhc.data.hc18 import load_labelled
    from fetalhc.data.split import read_split, split_files, write_split

    ensure_folder(args.out.parent)
    records = load_labelled(args.dir)
    if not records:
        raise FetalHCError(f"{args.dir}: no labelled images to split")
    outputs = split_files(
        [r.filename for r in records],
        args.out,
        args.val,
        args.test,
        args.seed,
        args.folds,
        per_image=args.per_image,
        like=read_split(args.like) if args.like else None,
    )
    for path, parts in outputs.items():
        write_split(path, parts)
        counts = {p: sum(v == p for v in parts.values()) for p in ("train", "val", "test")}
        print(f"{path}: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from fetalhc.data.download import download_hc18

    for path in download_hc18(args.dir, base_url=args.url, record=args.record):
        print(path)
    return 0


# ---------------------------------------------------------------- model and training
def cmd_strategies(args: argparse.Namespace) -> int:
    from fetalhc.model.freeze import strategy_table

    rows = strategy_table(args.encoder)
    print(f"{'strategy':<16}{'trainable layers':<38}{'trainable':>12}{'total':>12}{'% of 31M':>10}")
    for r in rows:
        print(
            f"{r['strategy']:<16}{r['trainable_layers']:<38}{r['trainable_params']:>12,}"
            f"{r['total_params']:>12,}{r['pct_of_scratch_unet']:>9.2f}%"
        )
    return 0


def train_config(args: argparse.Namespace):
    """The run's TrainConfig: defaults < --config YAML < the flags given."""
    from fetalhc.training.config import config_from_mapping, read_config_file

    mapping = read_config_file(args.config) if args.config else {}
    mapping.update(getattr(args, "recipe", {}))
    for key in ("data", "split"):
        if not mapping.get(key):
            raise FetalHCError(f"give --{key} (or '{key}:' in --config)")
    return config_from_mapping(mapping)


def cmd_train(args: argparse.Namespace) -> int:
    from fetalhc.training.trainer import Trainer

    config = train_config(args)
    ensure_folder(args.out)
    summary = Trainer(config, args.out, resume=args.resume).run()
    print(f"{args.out}: best val Dice {summary['best_val_dice']}, {summary['train_seconds']:.0f} s")
    return 0


class _Recipe(argparse.Action):
    """Collects the TrainConfig keys given on the command line in `args.recipe`, so a flag
    overrides --config and an absent flag leaves the YAML's (or the default) value."""

    def __call__(self, parser, namespace, values, option_string=None):
        recipe = dict(getattr(namespace, "recipe", None) or {})
        recipe[self.dest] = self.const if self.nargs == 0 else values
        namespace.recipe = recipe


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    """`fetalhc train`'s options, generated from TrainConfig's fields (flag = key)."""
    import typing
    from dataclasses import fields

    from fetalhc.training.config import TrainConfig, defaults, format_size

    hints = typing.get_type_hints(TrainConfig)
    d = defaults()
    p.set_defaults(recipe={})
    p.add_argument("--config", type=Path, help="YAML of TrainConfig keys; flags override it")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    for f in fields(TrainConfig):
        flags = [f"--{f.name.replace('_', '-')}", *f.metadata.get("aliases", ())]
        shown = format_size(d[f.name]) if f.name == "image_size" else d[f.name]
        if isinstance(shown, list):
            shown = ",".join(map(str, shown))
        help_text = (
            f"{f.metadata['help']} (default: {shown!s})" if shown != "" else f.metadata["help"]
        )
        kind = hints[f.name]
        metavar = f.name.upper()
        options: dict = {"dest": f.name, "action": _Recipe, "help": help_text, "metavar": metavar}
        if kind is bool:
            options.update(nargs=0, const=True, metavar=None)
            p.add_argument(*flags, **options)
            p.add_argument(
                f"--no-{f.name.replace('_', '-')}",
                dest=f.name,
                action=_Recipe,
                nargs=0,
                const=False,
                help=argparse.SUPPRESS,
            )
            continue
        if kind is int:
            options["type"] = int
        elif kind is float:
            options["type"] = finite_float
        if f.metadata.get("choices"):
            options.update(choices=f.metadata["choices"], metavar=None)
        p.add_argument(*flags, **options)
    p.add_argument("--threads", type=nonnegative_int, default=0, help="CPU threads (0: default)")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch")


# ---------------------------------------------------------------- evaluation, prediction, export
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

    from fetalhc.errors import FetalHCError
    from fetalhc.inference.inputs import collect_images, pixel_sizes
    from fetalhc.inference.predict import PredictOptions, predict
    from fetalhc.measure.quality import plausible_pixel_size

    if args.pixel_size is not None and plausible_pixel_size(args.pixel_size):
        raise FetalHCError(f"--pixel-size: {plausible_pixel_size(args.pixel_size)}")
    outputs = [args.out, *([args.dicom_out] if args.dicom_out else [])]
    images, notes = collect_images(args.inputs, exclude=outputs)
    for note in notes:
        print(f"fetalhc: {note}", file=sys.stderr)
    options = PredictOptions(
        pixel_size=args.pixel_size,
        pixel_csv=args.pixel_csv,
        ga_weeks=_given_ga(args),
        dicom_out=args.dicom_out,
    )
    sizes = pixel_sizes(
        images, args.pixel_size, args.pixel_csv
    )  # a missing pixel size fails before the model loads
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


# ---------------------------------------------------------------- study
def cmd_compare(args: argparse.Namespace) -> int:
    from fetalhc.study.run import run_study

    if args.adopt:
        from fetalhc.study.adoption import adopt_run

        run, cell = args.adopt
        record = adopt_run(args.config, args.out, Path(run), cell)
        print(f"{cell}: adopted from {run}, test Dice {record['metrics']['dice']:.4f}")
        return 0
    results = run_study(args.config, args.out, args.workers, args.ray, args.rerun_stale)
    failed = [r for r in results if "error" in r]
    print(f"{args.out / 'report.md'}: {len(results) - len(failed)} cells run, {len(failed)} failed")
    return 1 if failed else 0


def cmd_report(args: argparse.Namespace) -> int:
    from fetalhc.study.report import write_report

    path = write_report(args.dir)
    print(path)
    return 0


# ---------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fetalhc",
        description="Fetal head segmentation and head-circumference measurement (HC18).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable, help_: str, parent=sub) -> argparse.ArgumentParser:
        p = parent.add_parser(name, help=help_, description=help_)
        p.set_defaults(func=func)
        return p

    data = sub.add_parser("data", help="HC18 data: check, split, download")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    p = add("check", cmd_data_check, "summarise an HC18 folder and list every problem", data_sub)
    p.add_argument("dir", type=Path)
    p = add("split", cmd_data_split, "group-aware train/val/test split as CSV", data_sub)
    p.add_argument("dir", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--val", type=float, default=0.1)
    p.add_argument("--test", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--folds",
        type=nonnegative_int,
        default=0,
        help="also write OUT.foldK.csv for K-fold cross-validation over train+val "
        "(test stays held out)",
    )
    p.add_argument(
        "--per-image",
        action="store_true",
        help="deal images one by one, as the paper's notebooks did (a subject's images may "
        "fall in two parts; to measure what that overlap is worth)",
    )
    p.add_argument(
        "--like",
        type=Path,
        metavar="SPLIT",
        help="with --per-image: deal SPLIT's images again, each part keeping its size",
    )
    p = add(
        "download", cmd_data_download, "download HC18 from Zenodo (verified, resumable)", data_sub
    )
    p.add_argument("dir", type=Path)
    p.add_argument("--url", default="https://zenodo.org", help="Zenodo base URL")
    p.add_argument("--record", default="1327317", help="Zenodo record id")

    p = add("strategies", cmd_strategies, "list the fine-tuning strategies and their sizes")
    p.add_argument("--encoder", default="mobilenet_v2")

    p = add("train", cmd_train, "train a model with a fine-tuning strategy")
    _add_train_arguments(p)

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

    serve_commands.register(add)

    p = add("export", cmd_export, "export a checkpoint to ONNX, checked against PyTorch")
    p.add_argument("--onnx", type=Path, required=True)
    p.add_argument("--run", type=Path)
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--int8", action="store_true", help="also write MODEL_int8.onnx (static)")
    p.add_argument("--calibration", type=Path, help="images to calibrate int8 on")
    p.add_argument("--calibration-images", type=positive_int, default=64)
    p = add("compare", cmd_compare, "run a study grid (strategies x seeds x fractions)")
    p.add_argument("--config", type=Path, required=True, help="study YAML")
    p.add_argument("--out", type=Path, required=True, help="study folder")
    p.add_argument("--workers", type=int, help="parallel processes on this machine")
    p.add_argument(
        "--rerun-stale",
        action="store_true",
        help="re-run cells whose recipe differs from the YAML (default: stop and name them)",
    )
    p.add_argument(
        "--ray", metavar="ADDRESS", help="run cells on a Ray cluster ('local': start one)"
    )
    p.add_argument(
        "--adopt",
        nargs=2,
        metavar=("RUN", "CELL"),
        help="take RUN (trained and evaluated outside the study with the same recipe) as "
        "the study's cell CELL instead of training it again; refused, naming what differs, "
        "unless the recipes match",
    )
    p = add("report", cmd_report, "rebuild a study's report from its finished cells")
    p.add_argument("dir", type=Path)
    model_commands.register(add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import logging
    import os

    from fetalhc.io.files import quiet_opencv

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("fetalhc").setLevel(logging.INFO)
    quiet_opencv()
    try:
        if getattr(args, "threads", 0):
            from fetalhc.model.unet import set_threads  # PyTorch's, for the whole process

            set_threads(args.threads)
        return int(args.func(args) or 0)
    except FetalHCError as exc:
        print(f"fetalhc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fetalhc: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a file or folder the user named: missing, read-only, full
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"fetalhc: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("fetalhc: error: out of memory (smaller --batch or images?)", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the promise is one line, never a traceback
        if os.environ.get("FETALHC_DEBUG"):
            raise
        print(
            f"fetalhc: internal error: {type(exc).__name__}: {exc} "
            "(set FETALHC_DEBUG=1 for the traceback; please report it)",
            file=sys.stderr,
        )
        return 3


if __name__ == "__main__":
    sys.exit(main())
