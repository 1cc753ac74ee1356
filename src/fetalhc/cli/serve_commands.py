"""Commands of the service stage: `serve` (the page and the REST API) and `listen` (the
DICOM node)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

from fetalhc.cli.common import add_model_flags, measurer_of
from fetalhc.cli.types import finite_float, nonnegative_int, positive_int
from fetalhc.errors import FetalHCError


def cmd_serve(args: argparse.Namespace) -> int:
    from fetalhc.errors import FetalHCError

    try:
        from fetalhc.serve.app import ServiceConfig, serve
    except ImportError as exc:
        raise FetalHCError(
            f"`fetalhc serve` needs FastAPI and uvicorn ({exc.name} missing)"
        ) from None

    from fetalhc.serve.app import check_service

    config = ServiceConfig(
        max_upload_mb=args.max_upload_mb,
        workers=args.workers,
        queue=args.queue,
        save_dir=args.save,
        corrections_dir=args.corrections,
        allowed_hosts=tuple(args.allowed_host or ()),
        allowed_origins=tuple(args.allow_origin or ()),
        # an empty --token (or FETALHC_TOKEN) is refused by check_service, not read as none
        token=args.token if args.token is not None else os.environ.get("FETALHC_TOKEN"),
    )
    for warning in check_service(args.host, args.port, config):  # before the model loads
        print(warning, file=sys.stderr)
    measurer = measurer_of(args)
    serve(measurer, args.host, args.port, config)
    return 0


def cmd_listen(args: argparse.Namespace) -> int:
    from fetalhc.serve.dicom_node import DicomNode, Forward, ae_title_problem

    forward = Forward.parse(args.forward) if args.forward else None
    if not 0 < args.port < 65536:
        raise FetalHCError(f"--port {args.port}: must be 1-65535")
    why = ae_title_problem(args.aet)
    if why:
        raise FetalHCError(f"--aet {args.aet!r}: {why}")
    measurer = measurer_of(args)
    node = DicomNode(measurer, args.out, aet=args.aet, forward=forward)
    node.start(args.port, args.host)
    print(f"fetalhc: DICOM node {args.aet} on {args.host}:{args.port}, results in {args.out}")
    node.serve_until_signalled()
    return 0


def register(add: Callable[..., argparse.ArgumentParser]) -> None:
    p = add("serve", cmd_serve, "web page and REST API to measure and correct (local)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--port", type=positive_int, default=8000)
    add_model_flags(p, "CPU threads per model")
    p.add_argument("--workers", type=positive_int, default=1, help="parallel inferences")
    p.add_argument("--queue", type=nonnegative_int, default=8, help="requests that may wait")
    p.add_argument("--max-upload-mb", type=finite_float, default=50.0)
    p.add_argument("--save", type=Path, help="keep each image and its result here")
    p.add_argument(
        "--corrections",
        type=Path,
        help="keep the page's corrections here (for fetalhc adapt): image + both ellipses",
    )
    p.add_argument(
        "--token",
        help="every API request must carry it (Authorization: Bearer TOKEN; the page: open "
        "/#token=TOKEN); required beyond loopback; or FETALHC_TOKEN",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        metavar="NAME",
        help="a Host name served besides loopback (the name clients use); repeatable",
    )
    p.add_argument(
        "--allow-origin",
        action="append",
        metavar="URL",
        help="a page origin allowed to POST besides this server's own; repeatable",
    )

    p = add("listen", cmd_listen, "a DICOM node: receive images by C-STORE, measure, forward")
    p.add_argument("--port", type=int, required=True, help="DICOM port to listen on")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    p.add_argument("--aet", default="FETALHC", help="this node's AE title")
    p.add_argument("--out", type=Path, required=True, help="rows, received objects, SR/SEG")
    p.add_argument("--forward", metavar="HOST:PORT:AET", help="send the SR and SEG to a PACS")
    add_model_flags(p)
