"""What several command modules share."""

from __future__ import annotations

import argparse
from pathlib import Path

from fetalhc.cli.types import nonnegative_int
from fetalhc.inference.segmenter import BACKENDS


def checkpoint_of(args: argparse.Namespace, allow_default: bool = False) -> Path:
    from fetalhc.inference.segmenter import default_checkpoint
    from fetalhc.model.checkpoint import resolve_checkpoint

    if allow_default and not args.run and not args.checkpoint:
        return default_checkpoint()
    return resolve_checkpoint(args.run, args.checkpoint)


def add_model_flags(p: argparse.ArgumentParser, threads_help: str = "CPU threads") -> None:
    """The flags that choose the model and how it runs, as every measuring command has
    them: --model/--run, --checkpoint, --average, --backend, --threads."""
    p.add_argument(
        "--run", "--model", type=Path, help="run or model folder (default: the bundled model)"
    )
    p.add_argument("--checkpoint", type=Path, help=".safetensors (with config.json) or .onnx")
    p.add_argument(
        "--average",
        action="append",
        type=Path,
        metavar="MODEL",
        help="also run MODEL (a run or model folder, or a checkpoint) and average the head "
        "probabilities pass by pass; the flag and intervals stay the first model's; repeatable",
    )
    p.add_argument("--backend", default="auto", choices=BACKENDS)
    p.add_argument(
        "--threads", type=nonnegative_int, default=0, help=f"{threads_help} (0: library default)"
    )


def measurer_of(args: argparse.Namespace, **options):
    """The HeadMeasurer the model flags name (`add_model_flags`), with `options`."""
    from fetalhc.inference.measurer import HeadMeasurer

    return HeadMeasurer(
        checkpoint_of(args, allow_default=True),
        backend=args.backend,
        threads=args.threads,
        average=args.average or (),
        **options,
    )
