"""The service's settings, in one place."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from fetalhc.io.pixels import max_image_pixels

log = logging.getLogger(__name__)


@dataclass
class ServiceConfig:
    max_upload_mb: float = 50.0
    max_pixels: int = field(default_factory=max_image_pixels)
    workers: int = 1
    queue: int = 8  # requests waiting for a worker beyond those running
    save_dir: Path | None = None
    corrections_dir: Path | None = None  # where "Save correction" stores (serve --corrections)
    retry_after_s: int = 5
    # who may talk to the service: Host headers served (besides loopback), page origins
    # allowed to POST (besides this server's own), and the token every API call needs
    allowed_hosts: tuple[str, ...] = ()
    allowed_origins: tuple[str, ...] = ()
    token: str | None = None


# HTTP status of each kind of unusable upload: over the limit 413, not an image at all 415
# (the client sent the wrong thing); any other unusable image 422.
