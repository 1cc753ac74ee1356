"""Atomic writes and safe image reading shared by every step of the pipeline."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# OpenCV prints libpng warnings for truncated files; we report those ourselves.
try:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
except AttributeError:  # older OpenCV builds without the logging module
    pass


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp"
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    def _write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"could not write {path}")

    with atomic_path(path, suffix=".png") as tmp:
        _write(tmp)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_gray(path: str | os.PathLike) -> np.ndarray:
    """Read an 8-bit grey image; raise ValueError with a short reason if it cannot be decoded."""
    path = Path(path)
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ValueError(f"cannot read file ({exc.strerror})") from None
    if data.size == 0:
        raise ValueError("empty file")
    if data[:8].tobytes() == _PNG_SIGNATURE and b"IEND" not in data[-12:].tobytes():
        # Checked here because libpng would print its own error for a truncated file.
        raise ValueError("truncated PNG (no IEND chunk)")
    image = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise ValueError("not a decodable image (corrupt or truncated)")
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    return image
