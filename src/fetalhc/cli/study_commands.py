"""`fetalhc compare` (a study grid, or a run adopted as a cell) and `fetalhc report`."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path


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


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
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
