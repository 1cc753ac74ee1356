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
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from fetalhc.errors import Status, one_line
from fetalhc.inference.inputs import (
    FromHeader,
    InputImage,
    SizeChoice,
    status_for_size,
)
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

log = logging.getLogger(__name__)

# predictions.csv's columns: a result's flat record (HC18 submission columns first), then
# `chosen`: yes on the frame a file's measurement is taken from (a single image: itself)
# `outputs`: what could not be written for a row (masks, overlays, DICOM results); the
# measurement never depends on them, so its status and HC stay as measured
COLUMNS = [*ROW_COLUMNS, "chosen", "outputs"]
# The text columns of a row: neutralised for spreadsheets in the CSV files written
TEXT_COLUMNS = ("filename", "quality", "status", "growth_chart", "notes", "chosen", "outputs")

PARTIAL = "predictions.partial.csv"
PARTIAL_KEY = "predictions.partial.json"


@dataclass
class PredictOptions:
    masks: bool = True
    overlays: bool = True
    ga_weeks: float | None = None  # known gestational age: HC z-score and centile
    dicom_out: Path | None = None  # DICOM inputs: SR, SEG and the overlay as SC written here


def _size_key(size: SizeChoice) -> float | str | None:
    """A size as the run key records it."""
    if isinstance(size, FromHeader):
        return f"header, else {size.fallback_mm}"
    return None if size.mm is None or size.unusable else size.mm


def _run_key(measurer: HeadMeasurer, sizes: dict[str, SizeChoice], options) -> str:
    """What a partial result depends on: the model, its settings (its quality thresholds
    too), the pixel sizes and the columns (a partial file of another version has others)."""
    seg = measurer.segmenter
    stats = [(c, c.stat()) for c in seg.checkpoints]
    models = [(str(c.resolve()), st.st_size, st.st_mtime_ns) for c, st in stats]
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
        status = status_for_size(sizes[im.name])
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
        status = status_for_size(size)
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
