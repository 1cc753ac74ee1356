"""Command line: parses arguments and calls the library. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from .cli_types import finite_float, nonnegative_int, positive_int
from .errors import FetalHCError


# ---------------------------------------------------------------- data
def cmd_data_check(args: argparse.Namespace) -> int:
    from .check import check_dataset, format_report

    report = check_dataset(args.dir)
    print(format_report(report))
    return 0 if report.ok else 1


def cmd_data_split(args: argparse.Namespace) -> int:
    from .data import load_labelled
    from .split import group_split, write_split

    records = load_labelled(args.dir)
    if not records:
        raise FetalHCError(f"{args.dir}: no labelled images to split")
    assignment = group_split([r.filename for r in records], args.val, args.test, args.seed)
    write_split(args.out, assignment)
    counts = {p: sum(v == p for v in assignment.values()) for p in ("train", "val", "test")}
    print(f"{args.out}: " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    return 0


def cmd_data_download(args: argparse.Namespace) -> int:
    from .download import download_hc18

    for path in download_hc18(args.dir, base_url=args.url, record=args.record):
        print(path)
    return 0


# ---------------------------------------------------------------- model and training
def cmd_strategies(args: argparse.Namespace) -> int:
    from .strategies import strategy_table

    rows = strategy_table(args.encoder)
    print(f"{'strategy':<16}{'trainable layers':<38}{'trainable':>12}{'total':>12}{'% of 31M':>10}")
    for r in rows:
        print(
            f"{r['strategy']:<16}{r['trainable_layers']:<38}{r['trainable_params']:>12,}"
            f"{r['total_params']:>12,}{r['pct_of_scratch_unet']:>9.2f}%"
        )
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config import TrainConfig, parse_size
    from .train import Trainer

    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    config = TrainConfig(
        data=str(args.data),
        split=str(args.split),
        strategy=args.strategy,
        encoder=args.encoder,
        encoder_weights=str(args.encoder_weights),
        epochs=args.epochs,
        batch_size=args.batch,
        lr=args.lr,
        loss=args.loss,
        fraction=args.fraction,
        seed=args.seed,
        image_size=parse_size(args.image_size),
        train_parts=args.train_parts.split(","),
        val_part=args.val_part,
        precision=args.precision,
        device=args.device,
        bn_mode=args.bn_mode,
        normalization=args.normalization,
        train_images=args.train_images,
    )
    summary = Trainer(config, args.out, resume=args.resume).run()
    print(f"{args.out}: best val Dice {summary['best_val_dice']}, {summary['train_seconds']:.0f} s")
    return 0


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    """`fetalhc train`'s options; every default comes from TrainConfig."""
    from .config import (
        BN_MODES,
        DEVICES,
        LOSSES,
        NORMALIZATIONS,
        PRECISIONS,
        defaults,
        format_size,
    )

    d = defaults()
    p.add_argument("--data", type=Path, required=True, help="HC18 folder")
    p.add_argument("--split", type=Path, required=True, help="split CSV")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--strategy", default=d["strategy"], help="preset or spec (decoder.3-4,head)")
    p.add_argument("--encoder", default=d["encoder"])
    p.add_argument("--encoder-weights", default=d["encoder_weights"], help="imagenet | none | PATH")
    p.add_argument("--epochs", type=positive_int, default=d["epochs"])
    p.add_argument("--batch", type=positive_int, default=d["batch_size"])
    p.add_argument("--lr", type=finite_float, default=d["lr"])
    p.add_argument("--loss", default=d["loss"], choices=LOSSES)
    p.add_argument("--fraction", type=finite_float, default=d["fraction"], help="nested subset")
    p.add_argument(
        "--train-images", type=int, default=d["train_images"], help="first N of the nested subset"
    )
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument(
        "--image-size", default=format_size(d["image_size"]), help="WxH, multiples of 32"
    )
    p.add_argument("--train-parts", default=",".join(d["train_parts"]), help="split parts")
    p.add_argument("--val-part", default=d["val_part"], help="validation part ('' for none)")
    p.add_argument("--precision", default=d["precision"], choices=PRECISIONS)
    p.add_argument("--device", default=d["device"], choices=DEVICES)
    p.add_argument(
        "--bn-mode",
        default=d["bn_mode"],
        choices=BN_MODES,
        help="paper: every BatchNorm in train mode (as the paper); frozen-eval: frozen "
        "blocks' BatchNorm in eval mode",
    )
    p.add_argument(
        "--normalization",
        default=d["normalization"],
        choices=NORMALIZATIONS,
        help="input: ImageNet mean/std, or unit = [0, 1] as the paper",
    )
    p.add_argument("--threads", type=nonnegative_int, default=0, help="CPU threads (0: default)")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch")


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

    from . import commands

    commands.register(sub, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import logging
    import os

    from .fileio import quiet_opencv

    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    quiet_opencv()
    try:
        return int(args.func(args) or 0)
    except FetalHCError as exc:
        print(f"fetalhc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fetalhc: interrupted", file=sys.stderr)
        return 130
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
