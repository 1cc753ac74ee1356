"""Starting the service: its settings checked before the model loads."""

from __future__ import annotations

import logging
import math

from fetalhc.errors import (
    FetalHCError,
)
from fetalhc.serve.config import ServiceConfig
from fetalhc.serve.guards import is_loopback
from fetalhc.serve.security import (
    origin_key,
    token_problem,
)

log = logging.getLogger(__name__)


def check_service(host: str, port: int, config: ServiceConfig) -> list[str]:
    """Refuse (FetalHCError) what cannot be served, before the model loads: a port out of
    range or in use, a non-positive upload limit, a --save folder that cannot be written,
    beyond loopback without a token or a Host name. Returns the warnings to print."""
    import socket

    from fetalhc.io.files import ensure_folder

    if not 0 < port < 65536:
        raise FetalHCError(f"--port {port}: must be 1-65535")
    if not (math.isfinite(config.max_upload_mb) and config.max_upload_mb > 0):
        raise FetalHCError(f"--max-upload-mb {config.max_upload_mb:g}: must be a positive number")
    if config.save_dir is not None:
        ensure_folder(config.save_dir, "--save")
    if config.corrections_dir is not None:
        ensure_folder(config.corrections_dir, "--corrections")
    warnings = []
    if not is_loopback(host):
        if host.strip("[]") in ("0.0.0.0", "::"):
            if not config.allowed_hosts:
                raise FetalHCError(
                    f"--host {host}: give --allowed-host NAME, the name or address clients "
                    "use (other Host headers are refused: DNS rebinding)"
                )
        else:
            config.allowed_hosts = (*config.allowed_hosts, host)
        if not config.token:
            raise FetalHCError(
                f"--host {host}: beyond loopback every request needs a token; give --token "
                "(or FETALHC_TOKEN)"
            )
    why = token_problem(config.token)
    if why:
        raise FetalHCError(why)
    for origin in config.allowed_origins:
        if origin_key(origin) is None:
            raise FetalHCError(f"--allow-origin {origin!r}: not an origin (http[s]://host[:port])")
    if not is_loopback(host):
        warnings.append(
            f"fetalhc: WARNING: serving on {host}, reachable from other machines: plain HTTP "
            "(no TLS) — put it behind a TLS proxy on a trusted network; not a medical device"
        )
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise FetalHCError(f"cannot serve on {host}:{port} ({exc.strerror or exc})") from None
    return warnings
