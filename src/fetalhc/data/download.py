"""`fetalhc data download`: fetch HC18 from Zenodo, verify checksums, resume, extract.

The file list and checksums come from the Zenodo record's JSON (``/api/records/<id>``), so
nothing is hard-coded but the record id; `base_url` lets tests point at a local server.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from fetalhc.errors import FetalHCError

ZENODO_URL = "https://zenodo.org"
HC18_RECORD = "1327317"
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    key: str
    url: str
    size: int
    algorithm: str
    checksum: str


def fetch_record(base_url: str, record: str, timeout: float = 30) -> list[RemoteFile]:
    url = f"{base_url.rstrip('/')}/api/records/{record}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            meta = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FetalHCError(f"cannot read the Zenodo record {url}: {exc}") from None
    entries = meta.get("files", []) if isinstance(meta, dict) else None
    if not isinstance(entries, list):
        raise FetalHCError(f"record {record}: malformed record (no list of files)")
    files = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise FetalHCError(f"record {record}: malformed file entry {entry!r:.80}")
        algorithm, _, digest = str(entry.get("checksum", "")).partition(":")
        links = entry.get("links") if isinstance(entry.get("links"), dict) else {}
        link = links.get("self") or links.get("download")
        key = entry.get("key")
        if not link or not digest or not isinstance(key, str) or not key:
            raise FetalHCError(f"record {record}: file entry without key, link or checksum")
        check_file_name(key)
        if algorithm.lower() not in hashlib.algorithms_available:
            raise FetalHCError(f"record {record}: {key}: unknown checksum type {algorithm!r}")
        try:
            size = int(entry.get("size", 0))
        except (TypeError, ValueError):
            raise FetalHCError(f"record {record}: {key}: size is not a number") from None
        files.append(RemoteFile(key, str(link), size, algorithm.lower(), digest))
    if not files:
        raise FetalHCError(f"record {record} lists no files")
    return files


def check_file_name(key: str) -> None:
    """Refuse a file name that is not a plain name inside the target folder."""
    path = PurePosixPath(key.replace("\\", "/"))
    if (
        path.is_absolute()
        or len(path.parts) != 1
        or path.name in ("", ".", "..")
        or ":" in key
        or "\x00" in key
    ):
        raise FetalHCError(f"refusing file name {key!r} from the record: it would leave the folder")


def file_digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def _download_once(remote: RemoteFile, part: Path, timeout: float, bar: tqdm) -> None:
    start = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(remote.url)
    if start:
        request.add_header("Range", f"bytes={start}-")
    with urllib.request.urlopen(request, timeout=timeout) as resp:
        if start and resp.status != 206:  # server ignored the range: start again
            start = 0
        bar.reset(total=remote.size or None)
        bar.update(start)
        with open(part, "ab" if start else "wb") as out:
            for block in iter(lambda: resp.read(CHUNK), b""):
                out.write(block)
                bar.update(len(block))
    if remote.size and part.stat().st_size < remote.size:
        raise ConnectionError("connection closed before the end of the file")


def download_file(
    remote: RemoteFile,
    dest_dir: Path,
    retries: int = 5,
    timeout: float = 60,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Download into dest_dir/remote.key, resuming a partial `.part` file; verify its checksum."""
    check_file_name(remote.key)
    final = dest_dir / remote.key
    if final.exists() and file_digest(final, remote.algorithm) == remote.checksum:
        return final
    part = dest_dir / (remote.key + ".part")
    with tqdm(desc=remote.key, unit="B", unit_scale=True, leave=False) as bar:
        for attempt in range(retries + 1):
            try:
                _download_once(remote, part, timeout, bar)
                break
            except (urllib.error.URLError, ConnectionError, OSError) as exc:
                if attempt == retries:
                    raise FetalHCError(
                        f"{remote.key}: download failed after {retries + 1} tries ({exc}); "
                        "run the command again to resume"
                    ) from None
                sleep(min(2**attempt, 30))
    digest = file_digest(part, remote.algorithm)
    if digest != remote.checksum:
        part.unlink()
        raise FetalHCError(
            f"{remote.key}: {remote.algorithm} checksum mismatch "
            f"(got {digest}, expected {remote.checksum}); the partial file was removed"
        )
    os.replace(part, final)
    return final


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a zip, refusing members that would land outside `dest`."""
    dest = dest.resolve()
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.infolist():
                target = (dest / member.filename).resolve()
                if not target.is_relative_to(dest):
                    raise FetalHCError(f"{archive.name}: unsafe path {member.filename!r}")
                if member.filename.startswith("__MACOSX"):
                    continue
                if member.is_dir():
                    target.mkdir(parents=True, exist_ok=True)
                    continue
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".part")
                with zf.open(member) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out)
                os.replace(tmp, target)
    except zipfile.BadZipFile:
        raise FetalHCError(f"{archive.name}: not a valid zip archive") from None


def download_hc18(
    dest: str | Path,
    base_url: str = ZENODO_URL,
    record: str = HC18_RECORD,
    retries: int = 5,
    timeout: float = 60,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Path]:
    dest = Path(dest)
    cache = dest / ".download"
    cache.mkdir(parents=True, exist_ok=True)
    done = []
    for remote in fetch_record(base_url, record, timeout):
        path = download_file(remote, cache, retries, timeout, sleep)
        if path.suffix == ".zip":
            safe_extract(path, dest)
        else:
            shutil.copyfile(path, dest / remote.key)
        done.append(dest / remote.key)
    return done
