"""The batch contract: every input gets its row, odd arrays and files are measured or
named, outputs are never read back, a torn partial row is measured again."""

from __future__ import annotations

import csv
import math
from decimal import Decimal
from pathlib import Path

import cv2
import numpy as np
import pytest

from fetalhc.errors import FetalHCError
from tests.conftest import run_cli
from tests.dicom_helpers import make_dicom

PIXEL_MM = 0.133961232503  # 180_HC.png's pixel size in HC18's CSV


def declare(png: bytes, width: int, height: int) -> bytes:
    """A PNG whose IHDR declares another size (its CRC made right again)."""
    import zlib

    ihdr = bytearray(png[12:29])  # type + 13 data bytes
    ihdr[4:12] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    crc = zlib.crc32(bytes(ihdr)).to_bytes(4, "big")
    return png[:12] + bytes(ihdr) + crc + png[33:]


@pytest.mark.parametrize("dtype", [np.float64, np.uint32, np.int64, np.int32])
def test_colour_arrays_of_any_number_type_read_as_grey(dtype, head):
    from fetalhc.io.pixels import to_gray_uint8

    colour = np.repeat(head[..., None], 3, axis=2).astype(dtype)
    gray = to_gray_uint8(colour)
    assert gray.dtype == np.uint8 and gray.shape == head.shape
    # the same picture as the grey array of that type (read by its value range)
    expected = to_gray_uint8(head.astype(dtype))
    assert np.abs(gray.astype(int) - expected.astype(int)).max() <= 1


def test_an_image_opencv_refuses_is_a_row_not_a_stop(tmp_path):
    """A PNG whose header declares 60000 x 2 pixels: under the pixel limit, over what
    OpenCV decodes."""
    from fetalhc.errors import UnsupportedImage
    from fetalhc.io.images import decode_gray

    ok, data = cv2.imencode(".png", np.zeros((2, 16), np.uint8))
    png = declare(data.tobytes(), 60000, 2)
    with pytest.raises(UnsupportedImage):
        decode_gray(np.frombuffer(bytes(png), np.uint8))


def test_a_header_declaring_a_huge_image_is_refused_before_decoding():
    from fetalhc.errors import ImageTooLarge
    from fetalhc.io.images import decode_gray

    ok, data = cv2.imencode(".png", np.zeros((8, 8), np.uint8))
    png = declare(data.tobytes(), 30000, 30000)  # 900 MP declared
    with pytest.raises(ImageTooLarge):
        decode_gray(np.frombuffer(bytes(png), np.uint8))


def test_measure_many_takes_odd_arrays_and_typed_pixel_sizes(head, measurer):
    odd = [
        np.repeat(head[..., None], 3, axis=2).astype(np.float64),
        np.repeat(head[..., None], 3, axis=2).astype(np.uint32),
        np.zeros((5, 5, 0)),  # no channels: its own row
        np.array([["a", "b"], ["c", "d"]]),  # not numbers: its own row
    ]
    results = list(
        measurer.measure_many(odd, [Decimal("0.133961232503"), "0.133961232503", 0.1, 0.1])
    )
    assert [r.status.value for r in results[:2]] == ["ok", "ok"]
    assert results[0].hc_mm == pytest.approx(results[1].hc_mm, rel=1e-3)
    assert [r.status.value for r in results[2:]] == ["unreadable", "unreadable"]
    with pytest.raises(FetalHCError, match="pixel size"):
        list(measurer.measure_many([head], [object()]))
    with pytest.raises(FetalHCError, match="pixel size"):
        list(measurer.measure_many([head], ["twelve"]))
    assert math.isfinite(results[0].hc_mm)


def rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {r["filename"]: r for r in csv.DictReader(f)}


@pytest.fixture()
def images(tmp_path, sample) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("090_HC.png", "180_HC.png"):
        (folder / name).write_bytes((sample / "test_set" / name).read_bytes())
    return folder


def test_outputs_are_never_read_back_and_odd_entries_are_counted(tmp_path, images):
    import os

    (images / "=cmd.png").write_bytes((images / "090_HC.png").read_bytes())  # a formula name
    (images / "dangling.png").symlink_to(images / "nowhere.png")
    (images / "loop.png").symlink_to(images / "loop.png")
    os.mkfifo(images / "pipe.png")
    out = images / "results"  # --out inside the input folder
    for _ in range(2):
        r = run_cli("predict", images, "--pixel-size", "0.12", "--out", out)
        assert r.returncode == 0, r.stderr
        assert "3 image name(s) that are not regular files" in r.stderr
        assert "skipped: dangling.png, loop.png, pipe.png" in r.stderr  # named, not only counted
    assert "image(s) in the output folder were not read back" in r.stderr
    found = rows(out / "predictions.csv")
    assert set(found) == {"'=cmd.png", "090_HC.png", "180_HC.png"}  # neutralised, no masks


def test_spreadsheet_formulas_are_neutralised_in_text_cells_only():
    from fetalhc.inference.predict import safe_row

    row = safe_row({"filename": "@SUM(A1)", "notes": "-x", "angle_rad": -0.5, "hc_mm": ""})
    assert row == {"filename": "'@SUM(A1)", "notes": "'-x", "angle_rad": -0.5, "hc_mm": ""}


def test_a_torn_partial_row_is_measured_again(tmp_path):
    from fetalhc.inference import predict as p

    out = tmp_path / "out"
    out.mkdir()
    good = {c: "" for c in p.COLUMNS} | {"filename": "a.png", "status": "ok", "chosen": "yes"}
    fields = [*p.COLUMNS, p.CHECKSUM]
    with open(out / p.PARTIAL, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerow({**good, p.CHECKSUM: p._checksum(good)})
        torn = {**good, "filename": "b.png", "hc_mm": "30.093268"}
        w.writerow({**torn, p.CHECKSUM: p._checksum(good)})  # its checksum does not match
        f.write("c.png,1.0,2.0")  # a line cut short by a kill
    (out / p.PARTIAL_KEY).write_text('{"key": "k"}')
    assert [r["filename"] for r in p._read_partial(out, "k")] == ["a.png"]
    assert p._read_partial(out, "other") == []


def test_two_predicts_into_one_folder_are_refused(tmp_path, images):
    from fetalhc.io.files import exclusive_folder

    out = tmp_path / "out"
    with exclusive_folder(out, "output folder"):  # another fetalhc process holds it
        second = run_cli("predict", images, "--pixel-size", "0.12", "--out", out)
    assert second.returncode == 2 and "in use by another fetalhc process" in second.stderr
    assert not (out / "predictions.csv").exists()
    again = run_cli("predict", images, "--pixel-size", "0.12", "--out", out)
    assert again.returncode == 0 and set(rows(out / "predictions.csv")) == {
        "090_HC.png",
        "180_HC.png",
    }


def test_inputs_whose_names_map_to_one_output_name_keep_their_own_outputs(tmp_path, head):
    """`x.png` and `x.jpg`; `sub/y.dcm` and `sub__y.dcm` (DICOM results lie flat); the
    chosen frame of `loop.dcm` and `loop_f001.dcm`: every row its own mask and overlay,
    every DICOM input its own SR, SEG and SC, nothing overwritten."""
    import pydicom

    from fetalhc.inference.inputs import output_stems

    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    cv2.imwrite(str(folder / "x.png"), head)
    cv2.imwrite(str(folder / "x.jpg"), head)
    make_dicom(folder / "sub" / "y.dcm", head, region_cm=PIXEL_MM / 10)
    make_dicom(folder / "sub__y.dcm", head, region_cm=PIXEL_MM / 10)
    make_dicom(folder / "loop.dcm", head, region_cm=PIXEL_MM / 10, frames=2)
    make_dicom(folder / "loop_f001.dcm", head, region_cm=PIXEL_MM / 10)
    out, dicom_out = tmp_path / "out", tmp_path / "dicom"
    r = run_cli(
        "predict", folder, "--out", out, "--dicom-out", dicom_out, "--pixel-size", str(PIXEL_MM)
    )
    assert r.returncode == 0, r.stderr
    table = rows(out / "predictions.csv")
    assert len(table) == 7 and all(row["status"] == "ok" for row in table.values())
    assert len(list((out / "masks").rglob("*.png"))) == 7  # one per row
    assert len(list((out / "overlays").rglob("*.png"))) == 7
    written = sorted(dicom_out.glob("*.dcm"))
    assert len(written) == 4 * 3  # four DICOM inputs, each its SR, SEG and SC
    assert len({pydicom.dcmread(p).SOPInstanceUID for p in written}) == 12
    # the names, as decided once for the batch
    names = ["loop.dcm", "loop_f001.dcm", "sub/y.dcm", "sub__y.dcm", "x.jpg", "x.png"]
    stems = output_stems(names, {n for n in names if n.endswith(".dcm")})
    assert stems == {
        "loop.dcm": "loop",
        "loop_f001.dcm": "loop_f001~2",
        "sub/y.dcm": "sub/y",
        "sub__y.dcm": "sub__y~2",
        "x.jpg": "x",
        "x.png": "x~2",
    }
