"""`fetalhc predict`: HC18 submission rows, masks and overlays for images or folders.

Guarantees: the output folder is checked before any work; every input image gets exactly
one row (measured, or a status saying why not); rows reach disk as they are measured
(`predictions.partial.csv`, flushed per batch), so a killed run keeps them and a re-run
continues where it stopped; `predictions.csv` is written atomically at the end.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from fetalhc.data.hc18 import CONFLICT, is_annotation, parse_positive, read_pixel_csv
from fetalhc.errors import FetalHCError, Status
from fetalhc.inference.measurer import (
    ROW_COLUMNS,
    HeadMeasurement,
    HeadMeasurer,
    overlay_picture,
)
from fetalhc.io.dicom import DICOM_SUFFIXES, read_dicom
from fetalhc.io.dicom_results import write_dicom
from fetalhc.io.files import (
    atomic_path,
    ensure_folder,
    exclusive_folder,
    spreadsheet_safe,
    write_csv,
    write_json,
    write_png,
)
from fetalhc.io.pixel_size import PixelSize

log = logging.getLogger(__name__)

# predictions.csv's columns: a result's flat record (HC18 submission columns first), then
# `chosen`: yes on the frame a file's measurement is taken from (a single image: itself)
# `outputs`: what could not be written for a row (masks, overlays, DICOM results); the
# measurement never depends on them, so its status and HC stay as measured
COLUMNS = [*ROW_COLUMNS, "chosen", "outputs"]
# The text columns of a row: neutralised for spreadsheets in the CSV files written
TEXT_COLUMNS = ("filename", "quality", "status", "growth_chart", "notes", "chosen", "outputs")

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".dcm", ".dicom"}
PARTIAL = "predictions.partial.csv"
PARTIAL_KEY = "predictions.partial.json"


@dataclass
class PredictOptions:
    pixel_size: float | None = None
    pixel_csv: Path | None = None
    masks: bool = True
    overlays: bool = True
    ga_weeks: float | None = None  # known gestational age: HC z-score and centile
    dicom_out: Path | None = None  # DICOM inputs: SR, SEG and the overlay as SC written here


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
        return header if header.mm is not None else PixelSize.of(self.fallback_mm)


SizeChoice = PixelSize | FromHeader


def pixel_sizes(images: list[InputImage], options: PredictOptions) -> dict[str, SizeChoice]:
    """Pixel size of each image: its CSV row (by path inside the folder, then file name),
    else a DICOM file's header (`FromHeader`: read when the file is measured), else
    --pixel-size. CSV columns are found by header name."""
    dicom = {im.name for im in images if im.path.suffix.lower() in DICOM_SUFFIXES}
    all_dicom = bool(dicom) and len(dicom) == len(images)
    if options.pixel_csv is None and options.pixel_size is None and not all_dicom:
        raise FetalHCError("give --pixel-size MM or --pixel-csv CSV (HC is reported in mm)")
    rows = read_pixel_csv(options.pixel_csv) if options.pixel_csv else {}
    out: dict[str, SizeChoice] = {}
    for image in images:
        row = rows.get(image.name) or rows.get(image.path.name)
        if row is None:
            given = PixelSize.of(options.pixel_size)
            out[image.name] = FromHeader(options.pixel_size) if image.name in dicom else given
        elif row["pixel_size"] == CONFLICT:
            out[image.name] = PixelSize.of(None)
        else:
            value = parse_positive(row["pixel_size"])
            out[image.name] = PixelSize.of(value if value is not None else float("nan"))
    return out


def _status_for_size(size: SizeChoice) -> tuple[Status, str] | None:
    """Why an image cannot be measured in mm before it is even read (None: it can)."""
    if isinstance(size, FromHeader):
        return None  # decided once the header is read
    if size.mm is None:
        return Status.NO_PIXEL_SIZE, size.note
    if size.unusable:  # a CSV value that is not a number
        return Status.IMPLAUSIBLE_PIXEL_SIZE, "not a positive number"
    return None


def _size_key(size: SizeChoice) -> float | str | None:
    """A size as the run key records it."""
    if isinstance(size, FromHeader):
        return f"header, else {size.fallback_mm}"
    return None if size.mm is None or size.unusable else size.mm


def _run_key(measurer: HeadMeasurer, sizes: dict[str, SizeChoice], options) -> str:
    """What a partial result depends on: the model, its settings (its quality thresholds
    too), the pixel sizes and the columns (a partial file of another version has others)."""
    seg = measurer.segmenter
    models = [(str(c.resolve()), c.stat().st_size, c.stat().st_mtime_ns) for c in seg.checkpoints]
    identity = {
        "checkpoint": models[0][0],
        "size": models[0][1],
        "mtime": models[0][2],
        "averaged_with": models[1:],
        "tta": seg.flip_tta,
        "sizes": {k: _size_key(v) for k, v in sorted(sizes.items())},
        "masks": options.masks,
        "ga": options.ga_weeks,
        "overlays": options.overlays,
        "quality": asdict(measurer.thresholds),
        "columns": COLUMNS,
        "dicom_out": str(options.dicom_out) if options.dicom_out else None,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


CHECKSUM = "row_sha256"  # the partial file's last column: a torn row does not verify


def _checksum(row: dict) -> str:
    text = json.dumps([str(row.get(c, "")) for c in COLUMNS], ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _read_partial(out: Path, key: str) -> list[dict]:
    """Verified rows of an interrupted run with the same model and pixel sizes (else none):
    a row torn by a kill, or glued to the next run's first row, fails its checksum and its
    image is measured again."""
    partial, key_file = out / PARTIAL, out / PARTIAL_KEY
    if not partial.is_file() or not key_file.is_file():
        return []
    try:
        if json.loads(key_file.read_text()).get("key") != key:
            return []
        with open(partial, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, ValueError, csv.Error):
        return []
    good = []
    for row in rows:
        if None in row.values() or None in row:
            continue  # too many or too few cells
        stored = row.pop(CHECKSUM, "")
        if row.get("status") and stored == _checksum(row):
            good.append(row)
    return good


def _input_of(filename: str, names: set[str]) -> str:
    """The input a row belongs to: itself, or the cine loop `name` of a row `name#7`."""
    if filename in names:
        return filename
    base, _, frame = filename.rpartition("#")
    return base if frame.isdigit() and base in names else filename


def _order(row: dict) -> tuple[str, int]:
    base, _, frame = row["filename"].rpartition("#")
    return (base, int(frame)) if frame.isdigit() else (row["filename"], 0)


def predict(
    images: list[InputImage],
    sizes: dict[str, SizeChoice],
    measurer: HeadMeasurer,
    out: Path,
    options: PredictOptions,
) -> int:
    """Write OUT/predictions.csv (+ masks, overlays, DICOM results); return how many
    inputs failed (no measured head on the row a file's measurement is taken from)."""
    ensure_folder(out)
    if options.dicom_out is not None:
        ensure_folder(options.dicom_out, "--dicom-out")
    with exclusive_folder(out, "output folder"):  # one predict per output folder
        return _predict(images, sizes, measurer, out, options)


def _predict(images, sizes, measurer: HeadMeasurer, out: Path, options: PredictOptions) -> int:
    key = _run_key(measurer, sizes, options)
    names = {im.name for im in images}
    done: dict[str, list[dict]] = {}
    for row in _read_partial(out, key):
        done.setdefault(_input_of(row["filename"], names), []).append(row)
    if done:
        log.info(
            "continuing an interrupted run: %d of %d images already measured",
            len(done),
            len(images),
        )
    else:
        write_json(out / PARTIAL_KEY, {"key": key})
    todo = [im for im in images if im.name not in done]
    fields = [*COLUMNS, CHECKSUM]
    # the partial file is rewritten with the verified rows only, so appended rows never
    # follow a torn one on the same line
    with atomic_path(out / PARTIAL) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows({**r, CHECKSUM: _checksum(r)} for rs in done.values() for r in rs)
    with open(out / PARTIAL, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        for start in tqdm(
            range(0, len(todo), measurer.batch_size), desc="predict", unit="batch", disable=None
        ):
            batch = todo[start : start + measurer.batch_size]
            for row in _measure_batch(batch, sizes, measurer, out, options):
                writer.writerow({**row, CHECKSUM: _checksum(row)})
                done.setdefault(_input_of(row["filename"], names), []).append(row)
            f.flush()
            os.fsync(f.fileno())
    rows = sorted((r for im in images for r in done[im.name]), key=_order)
    write_csv(out / "predictions.csv", [safe_row(r) for r in rows], COLUMNS)
    for name in (PARTIAL, PARTIAL_KEY):
        (out / name).unlink(missing_ok=True)
    return sum(
        not any(r["chosen"] == "yes" and r["status"] == "ok" for r in done[im.name])
        for im in images
    )


def _measure_batch(
    batch: list[InputImage],
    sizes: dict[str, SizeChoice],
    measurer: HeadMeasurer,
    out: Path,
    options: PredictOptions,
) -> list[dict]:
    rows = []
    plain = []
    for im in batch:
        status = _status_for_size(sizes[im.name])
        if status:
            rows.append(_row(HeadMeasurement(im.name, *status), chosen=True))
        elif im.path.suffix.lower() in DICOM_SUFFIXES:
            rows.extend(measure_dicom_file(im, sizes[im.name], measurer, out, options)[0])
        else:
            plain.append(im)
    results = measurer.measure_many(
        [im.path for im in plain],
        [sizes[im.name] for im in plain],
        [im.name for im in plain],
        ga_weeks=options.ga_weeks,
    )
    stems = {im.name: im.stem for im in plain}
    for result in results:
        stem = stems[result.filename]
        rows.append(_row(result, chosen=True, outputs=_keep_pictures(result, stem, out, options)))
    return rows


def measure_dicom_file(
    im: InputImage, size: SizeChoice, measurer: HeadMeasurer, out: Path, options
) -> tuple[list[dict], list[Path]]:
    """A DICOM file, read once: a single image, or a cine loop frame by frame (rows
    `<file>#<frame>`, `chosen` on the best one); with --dicom-out, the SR, SEG and SC of
    the chosen one. Returns the rows and the DICOM files written."""
    try:
        dcm = read_dicom(im.path, cine=True)
    except ValueError as exc:
        return [_row(HeadMeasurement(im.name, Status.UNREADABLE, str(exc)), chosen=True)], []
    if isinstance(size, FromHeader):
        size = size.choose(dcm.pixel_size)
        status = _status_for_size(size)
        if status:
            return [_row(HeadMeasurement(im.name, *status), chosen=True)], []
    cine = measurer.measure_frames(dcm.frames, size, im.name, options.ga_weeks)
    problems = [_keep_pictures(result, im.stem, out, options) for result in cine.frames]
    written: list[Path] = []
    if options.dicom_out is not None and cine.chosen is not None and cine.chosen.ok:
        written, problem = _write_dicom_results(
            cine.chosen, im.stem, dcm.dataset, measurer.model_name, options
        )
        i = cine.chosen_index
        problems[i] = "; ".join(p for p in (problems[i], problem) if p)
    rows = [
        _row(r, chosen=i == cine.chosen_index, outputs=problems[i])
        for i, r in enumerate(cine.frames)
    ]
    return rows, written


def _write_dicom_results(
    result: HeadMeasurement, stem: str, source, model: str, options
) -> tuple[list[Path], str]:
    """SR, SEG and SC of one measured head, atomically, named after the input's stem
    (flat: a folder's "/" written "__"); each one that cannot be built or written is named
    in the returned problem (the others are still written, and the measurement stands)."""
    stem = picture_stem(result, stem).replace("/", "__")
    written, problems = [], []
    builders = (
        ("sr", result.to_dicom_sr),
        ("seg", result.to_dicom_seg),
        ("sc", result.to_dicom_sc),
    )
    for kind, build in builders:
        path = options.dicom_out / f"{stem}_{kind}.dcm"
        try:
            write_dicom(path, build(source, model))
            written.append(path)
        except OSError as exc:
            problems.append(f"{kind.upper()} not written ({exc.strerror or one_line(exc)})")
        except Exception as exc:  # noqa: BLE001 - a header no DICOM library can build on
            problems.append(f"{kind.upper()} not built ({type(exc).__name__}: {one_line(exc)})")
    return written, "; ".join(problems)


def one_line(exc: BaseException) -> str:
    """An exception's message as one short line (pydicom's run over several)."""
    text = " ".join(str(exc).split())
    return text[:160]


def _keep_pictures(result: HeadMeasurement, stem: str, out: Path, options: PredictOptions) -> str:
    """Write the mask and overlay; '' or what could not be written (the measurement
    stands either way)."""
    try:
        _write_pictures(result, stem, out, options)
    except OSError as exc:
        return f"mask or overlay not written ({exc.strerror or one_line(exc)})"
    return ""


def safe_row(row: dict) -> dict:
    """A row as a CSV file holds it: text cells neutralised for spreadsheets."""
    return {k: spreadsheet_safe(v) if k in TEXT_COLUMNS else v for k, v in row.items()}


def _row(result: HeadMeasurement, chosen: bool, outputs: str = "") -> dict:
    return {**result.as_row(), "chosen": "yes" if chosen else "no", "outputs": outputs}


def _write_pictures(result: HeadMeasurement, stem: str, out: Path, options: PredictOptions) -> None:
    if result.image is None:
        return
    stem = picture_stem(result, stem)
    if options.masks and result.mask is not None:
        write_png(out / "masks" / f"{stem}_mask.png", result.mask * 255)
    if options.overlays:
        write_png(out / "overlays" / f"{stem}_overlay.png", overlay_picture(result))


def picture_stem(result: HeadMeasurement, stem: str) -> str:
    """A result's file stem: its input's (`InputImage.stem`: `sub/001_HC`), a cine loop's
    frame 7 `loop_f007`."""
    return f"{stem}_f{result.frame:03d}" if result.frame else stem
