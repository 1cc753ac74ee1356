"""A clinic's corrections: labelled images that `fetalhc adapt` learns from.

Each correction is two files in the corrections folder, written atomically and never over
another one: the image (8-bit grey PNG) and a JSON record with the model's ellipse
("original", as MONAI Label keeps it; null when imported without one), the sonographer's
("final"), both in pixels, the pixel size, the model's id, where it came from, and its
part: `adapt` or `held-back`. The part is decided once, when the correction is stored, by a
hash of the patient or study key (the image's own hash when there is none): all images of
one patient fall on the same side, and the split never changes as corrections accumulate
(MONAI Label's re-drawn validation split leaked earlier training images into it).
The key itself is not stored, only its hash.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fetalhc import __version__
from fetalhc.errors import FetalHCError
from fetalhc.io.files import atomic_path
from fetalhc.measure.ellipse import Ellipse, hc_mm
from fetalhc.measure.quality import plausible_hc, plausible_pixel_size

PARTS = ("adapt", "held-back")
HELD_BACK_PERCENT = 30  # of patients (keys): the part a new model is judged on
RECORD_SUFFIX = ".json"


@dataclass(frozen=True)
class Correction:
    """One stored correction (its record, read back)."""

    image_path: Path
    final: Ellipse  # pixels
    original: Ellipse | None
    pixel_size_mm: float
    part: str
    record: dict

    @property
    def final_hc_mm(self) -> float:
        return hc_mm(self.final, self.pixel_size_mm)


def part_of(key_hash: str) -> str:
    """`held-back` for HELD_BACK_PERCENT of hashes, else `adapt`: a pure function of the
    hash, so a correction's part never changes."""
    return "held-back" if int(key_hash[:8], 16) % 100 < HELD_BACK_PERCENT else "adapt"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def ellipse_from(d, what: str) -> Ellipse:
    """An ellipse from {cx, cy, a, b, angle_rad} (pixels); FetalHCError naming `what`."""
    try:
        values = [float(d[k]) for k in ("cx", "cy", "a", "b", "angle_rad")]
    except (KeyError, TypeError, ValueError):
        raise FetalHCError(f"{what}: expected cx, cy, a, b, angle_rad as numbers") from None
    if not all(math.isfinite(v) for v in values) or min(values[2], values[3]) <= 0:
        raise FetalHCError(f"{what}: not an ellipse (finite numbers, positive semi-axes)")
    return Ellipse(*values)


def ellipse_dict(e: Ellipse | None) -> dict | None:
    if e is None:
        return None
    return {"cx": e.cx, "cy": e.cy, "a": e.a, "b": e.b, "angle_rad": e.angle}


def check_correction(gray: np.ndarray, final: Ellipse, pixel_size_mm: float) -> None:
    """FetalHCError unless the final ellipse is a head inside the image at a plausible
    pixel size (nothing is stored then)."""
    why = plausible_pixel_size(pixel_size_mm)
    if why:
        raise FetalHCError(f"pixel_size_mm: {why}")
    h, w = gray.shape[:2]
    c, s = math.cos(final.angle), math.sin(final.angle)
    half_w = math.hypot(final.a * c, final.b * s)
    half_h = math.hypot(final.a * s, final.b * c)
    margin = 0.1 * max(half_w, half_h)  # a head may touch the edge, not lie beyond it
    if (
        final.cx - half_w < -margin
        or final.cx + half_w > w + margin
        or final.cy - half_h < -margin
        or final.cy + half_h > h + margin
    ):
        raise FetalHCError(f"final: the ellipse lies outside the {w}x{h} image")
    why = plausible_hc(hc_mm(final, pixel_size_mm))
    if why:
        raise FetalHCError(f"final: {why}")


def store_correction(
    folder: Path,
    gray: np.ndarray,
    final: Ellipse,
    pixel_size_mm: float,
    original: Ellipse | None = None,
    model: str = "",
    key: str = "",
    source: str = "page",
    name: str = "",
) -> dict:
    """Check, then store one correction (image + record) in `folder`; returns the record.
    Names are new every time: an existing correction is never overwritten."""
    gray = np.asarray(gray)
    if gray.ndim != 2 or gray.dtype != np.uint8 or gray.size == 0:
        raise FetalHCError("the image must be 8-bit grey")
    check_correction(gray, final, pixel_size_mm)
    ok, png = cv2.imencode(".png", gray)
    if not ok:
        raise FetalHCError("cannot encode the image as PNG")
    image_hash = sha256_hex(gray.tobytes() + repr(gray.shape).encode())
    key_hash = sha256_hex(key.strip().encode()) if key.strip() else image_hash
    record = {
        "image": "",
        "image_sha256": image_hash,
        "name": name,
        "original": ellipse_dict(original),
        "final": ellipse_dict(final),
        "pixel_size_mm": float(pixel_size_mm),
        "original_hc_mm": hc_mm(original, pixel_size_mm) if original is not None else None,
        "final_hc_mm": hc_mm(final, pixel_size_mm),
        "model": model,
        "key_sha256": key_hash if key.strip() else None,
        "part": part_of(key_hash),
        "source": source,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "fetalhc_version": __version__,
    }
    folder.mkdir(parents=True, exist_ok=True)
    stem = _new_stem(folder, image_hash)
    record["image"] = f"{stem}.png"
    with atomic_path(folder / f"{stem}.png") as tmp:
        tmp.write_bytes(png.tobytes())
    # the record last: a correction exists once its record does (a crash leaves an orphan
    # image at most, which `read_corrections` ignores)
    with atomic_path(folder / f"{stem}{RECORD_SUFFIX}") as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _new_stem(folder: Path, image_hash: str) -> str:
    """A name no correction in `folder` has: time, image hash, a counter if need be; its
    image file is claimed at once (O_EXCL), so two writers never pick the same one."""
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    for n in range(1000):
        stem = f"{now}_{image_hash[:12]}" + (f"_{n}" if n else "")
        try:
            fd = os.open(folder / f"{stem}.png", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        os.close(fd)
        return stem
    raise FetalHCError(f"{folder}: cannot find a new name for a correction")


def read_corrections(folder: Path, part: str | None = None) -> list[Correction]:
    """The corrections stored in `folder` (one part of them, if given), oldest first."""
    if not folder.is_dir():
        raise FetalHCError(f"{folder}: no corrections folder")
    out = []
    for path in sorted(folder.glob(f"*{RECORD_SUFFIX}")):
        try:
            record = json.loads(path.read_text())
            final = ellipse_from(record["final"], f"{path.name}: final")
            original = (
                ellipse_from(record["original"], f"{path.name}: original")
                if record.get("original")
                else None
            )
            item = Correction(
                folder / record["image"],
                final,
                original,
                float(record["pixel_size_mm"]),
                record["part"],
                record,
            )
        except (OSError, ValueError, KeyError, TypeError, FetalHCError) as exc:
            raise FetalHCError(f"{path}: not a correction record ({exc})") from None
        if item.part not in PARTS or not item.image_path.is_file():
            raise FetalHCError(f"{path}: part {item.part!r} or image {record['image']} missing")
        if part is None or item.part == part:
            out.append(item)
    return out


def iter_parts(items: list[Correction]) -> Iterator[tuple[str, list[Correction]]]:
    for part in PARTS:
        yield part, [c for c in items if c.part == part]
