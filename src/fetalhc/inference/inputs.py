"""What a `predict` run reads: the images named (folders searched, every input accounted
for, names and output stems unique in the batch) and each one's pixel size."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from fetalhc.data.hc18 import CONFLICT, is_annotation, parse_positive, read_pixel_csv
from fetalhc.errors import FetalHCError, Status
from fetalhc.io.dicom import DICOM_SUFFIXES
from fetalhc.io.pixel_size import PixelSize
from fetalhc.measure.quality import plausible_pixel_size

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}


@dataclass(frozen=True)
class InputImage:
    path: Path
    name: str  # unique in this batch: the row's filename
    # the outputs' file stem (masks, overlays, DICOM results; a cine frame's adds _fNNN):
    # unique in the batch even where names differ only by suffix or by a folder's "/"
    stem: str = ""

    def __post_init__(self) -> None:
        if not self.stem:
            object.__setattr__(self, "stem", str(PurePosixPath(self.name).with_suffix("")))


def output_stems(names: Sequence[str], dicom: set[str]) -> dict[str, str]:
    """Each input's output stem: its name without the suffix where that is unique, else
    made unique with `~N`. Unique also once a folder's "/" is written "__" (DICOM results
    lie flat) and against the frame stems `<stem>_fNNN` a DICOM input (`dicom`: their
    names) may write: `x.png` and `x.jpg`, `sub/x.dcm` and `sub__x.dcm`, `loop.dcm`'s frame
    2 and `loop_f002.dcm` never share an output file."""
    bases = {n: str(PurePosixPath(n).with_suffix("")) for n in names}
    cine_bases = {bases[n].replace("/", "__") for n in names if n in dicom}
    used: set[str] = set()
    out = {}
    for name in names:
        stem, k = bases[name], 2
        while True:
            flat = stem.replace("/", "__")
            frame = re.fullmatch(r"(.+)_f\d+", flat)
            if flat not in used and not (frame and frame.group(1) in cine_bases):
                break
            stem, k = f"{bases[name]}~{k}", k + 1
        used.add(flat)
        out[name] = stem
    return out


def collect_images(
    inputs: list[Path], exclude: Sequence[Path] = ()
) -> tuple[list[InputImage], list[str]]:
    """Images named on the command line or inside named folders, sub-folders included
    (annotations left out). Returns the images and notes on what was left out, so every
    input is accounted for. Names are made unique: a file in a sub-folder is named by its
    path inside the folder; the same name from two inputs is prefixed by its folder.
    Nothing inside `exclude` (predict's own output folders) is read back as an input."""
    found: list[tuple[Path, str, str]] = []  # path, name, folder label
    notes: list[str] = []
    outputs = [e.resolve() for e in exclude]

    def is_output(p: Path) -> bool:
        try:
            resolved = p.resolve()
        except (OSError, RuntimeError):  # a symlink loop
            return False
        return any(resolved == o or o in resolved.parents for o in outputs)

    for item in inputs:
        if item.is_dir():
            ignored = own = 0
            not_files: list[str] = []
            for p in sorted(item.rglob("*")):
                if is_output(p):
                    own += p.suffix.lower() in IMAGE_SUFFIXES
                    continue
                try:
                    regular = p.is_file()
                except OSError:  # a symlink loop, a vanished file
                    regular = False
                if not regular:
                    # a broken symlink, a loop or a FIFO named like an image: said, not read
                    if p.suffix.lower() in IMAGE_SUFFIXES and not p.is_dir():
                        not_files.append(p.relative_to(item).as_posix())
                    continue
                if p.suffix.lower() in IMAGE_SUFFIXES and not is_annotation(p):
                    found.append((p, p.relative_to(item).as_posix(), item.name or str(item)))
                elif not is_annotation(p) and not p.name.startswith("."):
                    ignored += 1
            if ignored:
                notes.append(f"{item}: {ignored} file(s) that are not images were ignored")
            if not_files:
                shown = ", ".join(not_files[:5]) + (", ..." if len(not_files) > 5 else "")
                notes.append(
                    f"{item}: {len(not_files)} image name(s) that are not regular files (broken "
                    f"links, link loops, pipes) were skipped: {shown}"
                )
            if own:
                notes.append(f"{item}: {own} image(s) in the output folder were not read back")
        elif item.is_file():
            found.append((item, item.name, item.parent.name))
        elif item.is_symlink() or item.exists():
            raise FetalHCError(f"{item}: not a regular file or folder")
        else:
            raise FetalHCError(f"{item}: no such file or folder")
    if not found:
        raise FetalHCError("no images found in " + ", ".join(map(str, inputs)))
    seen: dict[Path, str] = {}
    counts: dict[str, int] = {}
    for _path, name, _folder in found:
        counts[name] = counts.get(name, 0) + 1
    named: list[tuple[Path, str]] = []
    used: set[str] = set()
    for path, name, folder in found:
        resolved = path.resolve()
        if resolved in seen:
            notes.append(f"{path}: given twice; measured once as {seen[resolved]}")
            continue
        unique = name if counts[name] == 1 else f"{folder}/{name}"
        base, n = unique, 2
        while unique in used:
            unique = f"{base}~{n}"
            n += 1
        used.add(unique)
        seen[resolved] = unique
        named.append((path, unique))
    dicom = {name for path, name in named if path.suffix.lower() in DICOM_SUFFIXES}
    stems = output_stems([name for _, name in named], dicom)
    return [InputImage(path, name, stems[name]) for path, name in named], notes


@dataclass(frozen=True)
class FromHeader:
    """A DICOM file's pixel size: its header's, read when the file is (once), else
    `fallback_mm` (--pixel-size)."""

    fallback_mm: float | None = None

    def choose(self, header: PixelSize) -> PixelSize:
        if header.mm is not None or self.fallback_mm is None:
            return header  # without a fallback, its reason for none too
        return PixelSize.of(self.fallback_mm)


SizeChoice = PixelSize | FromHeader


def pixel_sizes(
    images: list[InputImage], pixel_size: float | None, pixel_csv: Path | None
) -> dict[str, SizeChoice]:
    """Pixel size of each image: its CSV row (by path inside the folder, then file name),
    else a DICOM file's header (`FromHeader`: read when the file is measured), else
    --pixel-size. CSV columns are found by header name."""
    dicom = {im.name for im in images if im.path.suffix.lower() in DICOM_SUFFIXES}
    all_dicom = bool(dicom) and len(dicom) == len(images)
    if pixel_size is not None and (why := plausible_pixel_size(pixel_size)):
        raise FetalHCError(f"--pixel-size: {why}")
    if pixel_csv is None and pixel_size is None and not all_dicom:
        raise FetalHCError("give --pixel-size MM or --pixel-csv CSV (HC is reported in mm)")
    rows = read_pixel_csv(pixel_csv) if pixel_csv else {}
    out: dict[str, SizeChoice] = {}
    for image in images:
        row = rows.get(image.name) or rows.get(image.path.name)
        if row is None:
            given = PixelSize.of(pixel_size)
            out[image.name] = FromHeader(pixel_size) if image.name in dicom else given
        elif row["pixel_size"] == CONFLICT:
            out[image.name] = PixelSize.of(None)
        else:
            value = parse_positive(row["pixel_size"])
            out[image.name] = PixelSize.of(value if value is not None else float("nan"))
    return out


def status_for_size(size: SizeChoice) -> tuple[Status, str] | None:
    """Why an image cannot be measured in mm before it is even read (None: it can)."""
    if isinstance(size, FromHeader):
        return None  # decided once the header is read
    if size.mm is None:
        return Status.NO_PIXEL_SIZE, size.note
    if size.unusable:  # a CSV value that is not a number
        return Status.IMPLAUSIBLE_PIXEL_SIZE, "not a positive number"
    return None
