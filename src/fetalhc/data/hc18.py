"""HC18 reader: image records, pixel sizes, reference HC, subjects and training masks.

Layout (official HC18 release)::

    DIR/training_set/NNN_HC.png, NNN_HC_Annotation.png, NNN_2HC.png, ...
    DIR/training_set_pixel_size_and_HC.csv   filename,pixel size(mm),head circumference (mm)
    DIR/test_set/NNN_HC.png
    DIR/test_set_pixel_size.csv              filename,pixel size(mm)

The CSVs may also sit inside their image folder; both places are accepted.
"""

from __future__ import annotations

import csv
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError
from fetalhc.io.images import read_gray
from fetalhc.measure.ellipse import Ellipse, draw_filled, fit_outline
from fetalhc.measure.quality import plausible_pixel_size

PARTS = {
    "training_set": "training_set_pixel_size_and_HC.csv",
    "test_set": "test_set_pixel_size.csv",
}
_NAME = re.compile(r"^(?P<subject>\d+)_(?P<repeat>\d*)HC\.png$", re.IGNORECASE)
ANNOTATION_SUFFIX = "_Annotation.png"


@dataclass(frozen=True)
class Record:
    """One HC18 image with what is known about it."""

    filename: str
    image_path: Path
    pixel_size_mm: float | None
    hc_mm: float | None = None  # reference HC (training set only)
    annotation_path: Path | None = None

    @property
    def subject(self) -> str:
        return subject_of(self.filename)

    @property
    def stem(self) -> str:
        return Path(self.filename).stem


def subject_of(filename: str) -> str:
    """Subject id from an HC18 file name: 010_HC.png, 010_2HC.png and 010_3HC.png -> '010'."""
    name = Path(filename).name
    m = _NAME.match(name)
    if m:
        return m.group("subject")
    return name.split("_")[0] if "_" in name else Path(name).stem


def annotation_path_for(image_path: Path) -> Path:
    return image_path.with_name(image_path.stem + ANNOTATION_SUFFIX)


def is_annotation(path: Path) -> bool:
    return path.name.endswith(ANNOTATION_SUFFIX)


def find_csv(root: Path, part: str) -> Path | None:
    for candidate in (root / PARTS[part], root / part / PARTS[part]):
        if candidate.is_file():
            return candidate
    return None


CONFLICT = "conflicting rows"


def _column_key(name: str) -> str:
    """'pixel size(mm)', 'Pixel_Size (mm)' -> 'pixelsize': header names compared loosely."""
    return re.sub(r"\(.*?\)|[^a-z]", "", name.lower())


_COLUMNS = {"filename": "filename", "pixelsize": "pixel_size", "headcircumference": "hc"}


def read_pixel_csv(
    path: Path, need_hc: bool = False, duplicates: list[str] | None = None
) -> dict[str, dict[str, str]]:
    """Rows of an HC18 CSV keyed by file name, columns found by their header names
    (`filename`, `pixel size(mm)`, `head circumference (mm)`, in any order). Values stay
    text (callers validate). A file listed twice with different values is kept with the
    value CONFLICT, so that no row silently wins."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if header is None:
                raise FetalHCError(f"{path}: empty CSV")
            index = {}
            for i, name in enumerate(header):
                key = _COLUMNS.get(_column_key(name))
                if key and key not in index:
                    index[key] = i
            wanted = ["filename", "pixel_size"] + (["hc"] if need_hc else [])
            missing = [k for k in wanted if k not in index]
            if missing:
                names = {
                    "filename": "filename",
                    "pixel_size": "pixel size(mm)",
                    "hc": "head circumference (mm)",
                }
                raise FetalHCError(
                    f"{path}: no column {' or '.join(repr(names[k]) for k in missing)} in the "
                    f"header ({', '.join(header)})"
                )
            rows: dict[str, dict[str, str]] = {}
            for row in reader:
                if not row or not "".join(row).strip():
                    continue
                values = {k: (row[i].strip() if i < len(row) else "") for k, i in index.items()}
                name = values.pop("filename")
                if not name:
                    continue
                values.setdefault("hc", "")
                if name in rows:
                    if duplicates is not None:
                        duplicates.append(name)
                    if rows[name] != values:
                        values = {k: CONFLICT for k in values}
                rows[name] = values
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FetalHCError(f"{path}: cannot read CSV ({exc})") from None


def parse_positive(text: str) -> float | None:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value > 0 else None


def list_images(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if p.suffix.lower() == ".png" and not is_annotation(p)
    )


def load_part(root: str | Path, part: str = "training_set") -> list[Record]:
    """Records of one part, for images that have a valid CSV row (see `data check` for the rest)."""
    root = Path(root)
    folder = root / part
    if not folder.is_dir():
        raise FetalHCError(f"{root}: no {part}/ folder (expected the HC18 layout)")
    csv_path = find_csv(root, part)
    if csv_path is None:
        raise FetalHCError(f"{root}: missing {PARTS[part]}")
    rows = read_pixel_csv(csv_path, need_hc=part == "training_set")
    records = []
    for image in list_images(folder):
        row = rows.get(image.name)
        if row is None:
            continue
        pixel = parse_positive(row["pixel_size"])
        if plausible_pixel_size(pixel):  # `data check` names it
            continue
        ann = annotation_path_for(image)
        records.append(
            Record(
                filename=image.name,
                image_path=image,
                pixel_size_mm=pixel,
                hc_mm=parse_positive(row["hc"]),
                annotation_path=ann if ann.is_file() else None,
            )
        )
    return records


def load_labelled(root: str | Path) -> list[Record]:
    """Training-set records that have an annotation (the labelled images)."""
    return [r for r in load_part(root, "training_set") if r.annotation_path is not None]


def reference_ellipse(annotation: np.ndarray) -> Ellipse | None:
    """The reference ellipse: fitted through the middle of the drawn outline."""
    return fit_outline(annotation > 127)


def annotation_to_mask(annotation: np.ndarray) -> np.ndarray:
    """Filled 0/1 head mask whose boundary is the reference ellipse.

    Filling the drawn outline (or its convex hull) would put the boundary at the line's
    outer edge, about half a line width too large; instead the mask is the set of pixels
    whose centres lie inside the ellipse fitted to the outline, which also copes with
    outlines that have gaps or run off the image.
    """
    ellipse = reference_ellipse(annotation)
    if ellipse is None:
        raise ValueError("annotation holds no ellipse")
    return draw_filled(ellipse, annotation.shape[:2])


def load_mask(record: Record) -> np.ndarray:
    if record.annotation_path is None:
        raise ValueError(f"{record.filename}: no annotation")
    return annotation_to_mask(read_gray(record.annotation_path))
