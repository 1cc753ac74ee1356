"""`fetalhc data check | split | download`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from fetalhc.cli.types import nonnegative_int
from fetalhc.errors import FetalHCError
from fetalhc.io.files import ensure_folder


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


def register(add: Callable[..., argparse.ArgumentParser], sub) -> None:
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
