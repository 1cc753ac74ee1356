"""Command line: one parser, its commands registered by group (`*_commands` modules),
and `main`, which turns every error into one line and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from fetalhc.cli import (
    data_commands,
    measure_commands,
    model_commands,
    serve_commands,
    study_commands,
    train_commands,
)
from fetalhc.errors import FetalHCError


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

    data_commands.register(add, sub)
    train_commands.register(add)
    measure_commands.register(add)
    serve_commands.register(add)
    study_commands.register(add)
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
