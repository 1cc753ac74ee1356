"""Atomic writes, run-folder locks and output folders, shared by every step of the pipeline."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fetalhc.errors import FetalHCError

log = logging.getLogger(__name__)


def _umask() -> int:
    """The process umask, read without changing it for good (no import-time side effect)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def quiet_opencv() -> None:
    """Silence OpenCV's own libpng/libjpeg warnings (fetalhc reports bad files itself).
    Called by the CLI; a library user keeps their OpenCV settings."""
    try:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    except AttributeError:  # older OpenCV builds without the logging module
        pass


# in the name of every temporary file atomic_path makes, so that one left by a killed
# process (SIGKILL runs no cleanup) can be told apart and removed
TEMP_MARK = ".fetalhc-tmp-"
LOCK_NAME = ".fetalhc.lock"


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to `path`; it replaces `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}{TEMP_MARK}", suffix=suffix or path.suffix or ".tmp"
    )
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_temporaries(folder: str | os.PathLike) -> list[str]:
    """Delete the temporary files atomic_path left in `folder` when its process was killed
    (a scratch U-Net's resume.pt is ~370 MB). Only call this while holding the folder's
    lock: a live writer's temporary file looks the same."""
    removed = []
    for tmp in Path(folder).glob(f".*{TEMP_MARK}*"):
        tmp.unlink(missing_ok=True)
        removed.append(tmp.name)
    return removed


@contextmanager
def exclusive_folder(folder: str | os.PathLike, what: str = "run folder") -> Iterator[None]:
    """Hold `folder` for one process: a second one (another `train --resume`, a second
    `compare` over the same study) stops with a clear message instead of interleaving its
    writes with ours. The lock is the OS's (flock), so it dies with its process: a killed
    run leaves nothing to clean up by hand. Where flock does not exist this does nothing."""
    try:
        import fcntl
    except ImportError:  # not POSIX
        yield
        return
    folder = Path(folder)
    created = not folder.exists()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    except OSError as exc:
        raise FetalHCError(f"{folder}: cannot use as {what} ({exc.strerror or exc})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise FetalHCError(
                f"{folder}: in use by another fetalhc process; wait for it to finish or stop it"
            ) from None
        for name in remove_stale_temporaries(folder):
            log.info("%s: removed %s, left by a killed write", folder, name)
        yield
    except BaseException:
        # a run that failed before writing anything leaves nothing behind (nor the folder,
        # if this made it)
        if [f.name for f in folder.iterdir()] == [LOCK_NAME]:
            (folder / LOCK_NAME).unlink(missing_ok=True)
            if created:
                with contextlib.suppress(OSError):
                    folder.rmdir()
        raise
    finally:
        os.close(fd)  # releases the lock


def ensure_folder(path: str | os.PathLike, what: str = "--out") -> Path:
    """Create `path` as a folder (with parents) or fail with a one-line reason, before any
    work is done."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise FetalHCError(f"{what} {path}: exists and is not a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".fetalhc-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise FetalHCError(f"{what} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_csv(
    path: str | os.PathLike, rows: list[dict], fieldnames: list[str] | None = None
) -> None:
    """Rows as a CSV, atomically; columns: `fieldnames` or the first row's keys (other
    keys are left out)."""
    columns = fieldnames or list(rows[0])
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


# Cells a spreadsheet would run as a formula (OWASP CSV injection): =, +, -, @, tab, CR.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(text: str) -> str:
    """A text cell that a spreadsheet shows as text: a leading formula character gets a
    single quote before it (OWASP's rule). Numbers are not text cells: leave them alone."""
    return "'" + text if isinstance(text, str) and text.startswith(FORMULA_START) else text


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_yaml(path: str | os.PathLike, what: str = "file") -> Any:
    """A YAML file's content, or FetalHCError naming the file and what is wrong."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise FetalHCError(f"{path}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FetalHCError(f"{path}: cannot read ({exc})") from None
    except yaml.YAMLError as exc:
        raise FetalHCError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file's content, or FetalHCError with the file's name and what is wrong."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FetalHCError(f"{path}: not found") from None
    except (OSError, ValueError) as exc:
        raise FetalHCError(f"{path}: unreadable config ({exc})") from None


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    def _write(tmp: Path) -> None:
        if not cv2.imwrite(str(tmp), image):
            raise OSError(f"could not write {path}")

    with atomic_path(path, suffix=".png") as tmp:
        _write(tmp)
