"""Commands of a model's life cycle after training: `calibrate` (its intervals)."""

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


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
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
