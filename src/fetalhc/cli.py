"""Command line: parses arguments and calls the library. No logic lives here."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

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
    from .train import TrainConfig, Trainer, parse_size

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
    )
    summary = Trainer(config, args.out, resume=args.resume).run()
    print(f"{args.out}: best val Dice {summary['best_val_dice']}, {summary['train_seconds']:.0f} s")
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
    p = add(
        "download", cmd_data_download, "download HC18 from Zenodo (verified, resumable)", data_sub
    )
    p.add_argument("dir", type=Path)
    p.add_argument("--url", default="https://zenodo.org", help="Zenodo base URL")
    p.add_argument("--record", default="1327317", help="Zenodo record id")

    p = add("strategies", cmd_strategies, "list the fine-tuning strategies and their sizes")
    p.add_argument("--encoder", default="mobilenet_v2")

    p = add("train", cmd_train, "train a model with a fine-tuning strategy")
    p.add_argument("--data", type=Path, required=True, help="HC18 folder")
    p.add_argument("--split", type=Path, required=True, help="split CSV")
    p.add_argument("--out", type=Path, required=True, help="run folder")
    p.add_argument("--strategy", default="decoder", help="preset or spec (decoder.3-4,head)")
    p.add_argument("--encoder", default="mobilenet_v2")
    p.add_argument("--encoder-weights", default="imagenet", help="imagenet | none | PATH")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=10)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--loss", default="bce", help="bce | dice | bce+dice")
    p.add_argument("--fraction", type=float, default=1.0, help="nested low-data subset")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", default="320x224", help="WxH, multiples of 32")
    p.add_argument("--train-parts", default="train", help="split parts to train on")
    p.add_argument("--val-part", default="val", help="split part for validation ('' for none)")
    p.add_argument("--precision", default="auto", help="auto | fp32 | bf16 | fp16")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: PyTorch default)")
    p.add_argument("--resume", action="store_true", help="continue from the last epoch")

    from . import commands

    commands.register(sub, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except FetalHCError as exc:
        print(f"fetalhc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("fetalhc: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
