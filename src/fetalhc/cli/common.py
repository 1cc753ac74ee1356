"""What several command modules share."""

from __future__ import annotations

import argparse
from pathlib import Path


def checkpoint_of(args: argparse.Namespace, allow_default: bool = False) -> Path:
    from fetalhc.inference.segmenter import default_checkpoint
    from fetalhc.model.checkpoint import resolve_checkpoint

    if allow_default and not args.run and not args.checkpoint:
        return default_checkpoint()
    return resolve_checkpoint(args.run, args.checkpoint)
