"""DICOM in as hospitals send it: colour JPEG (YBR_FULL_422) read at its real grey levels,
cine loops decoded only where measured, header counts that are not numbers refused."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from fetalhc.errors import UnreadableImage  # noqa: E402
from fetalhc.io import dicom as dicom_io  # noqa: E402
from fetalhc.io.dicom import cine_frames, read_dicom  # noqa: E402
from tests.dicom_helpers import make_dicom  # noqa: E402


def jpeg_ybr_dicom(path, gray: np.ndarray):
    """`gray` as colour ultrasound stores it: baseline JPEG, YBR_FULL_422, 4:2:2."""
    from PIL import Image
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEGBaseline8Bit

    buf = io.BytesIO()
    Image.fromarray(np.dstack([gray] * 3)).save(buf, "JPEG", quality=95, subsampling=1)
    ds = pydicom.dcmread(make_dicom(path, gray))
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 3, "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.PixelData = encapsulate([buf.getvalue()])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
    return path


def test_colour_jpeg_ybr_reads_at_the_grey_levels_of_the_picture(tmp_path, sample):
    head = cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)
    read = read_dicom(jpeg_ybr_dicom(tmp_path / "ybr.dcm", head)).image
    # JPEG at quality 95 moves a level or two; converting YBR twice moved them by ~100
    assert abs(float(np.median(read)) - float(np.median(head))) <= 2
    assert np.abs(read.astype(int) - head.astype(int)).mean() < 3
    gradient = np.tile(np.linspace(20, 230, 160), (120, 1)).astype(np.uint8)
    read = read_dicom(jpeg_ybr_dicom(tmp_path / "g.dcm", gradient)).image
    assert np.abs(read.astype(int) - gradient.astype(int)).max() <= 3


def test_a_long_cine_loop_decodes_only_the_frames_it_measures(tmp_path, monkeypatch):
    frames = [np.full((32, 40), 10 + i % 200, np.uint8) for i in range(300)]
    path = make_dicom(tmp_path / "loop.dcm", frames)
    calls = []
    decode = dicom_io._decode_frame
    monkeypatch.setattr(
        dicom_io, "_decode_frame", lambda ds, i, kind: calls.append(i) or decode(ds, i, kind)
    )
    dcm = read_dicom(path, cine=True)
    wanted = cine_frames(300)
    assert len(wanted) == 60 and sorted(calls) == [k - 1 for k in wanted]
    assert len(dcm.frames) == 300
    for k in wanted:
        assert int(dcm.frames[k - 1][0, 0]) == 10 + (k - 1) % 200
    with pytest.raises(IndexError, match="not decoded"):
        dcm.frames[1]


@pytest.mark.parametrize(("keyword", "value"), [("NumberOfFrames", "ab"), ("Rows", "lots")])
def test_header_counts_that_are_not_numbers_are_one_clear_refusal(tmp_path, keyword, value):
    path = make_dicom(tmp_path / "x.dcm", np.zeros((16, 16), np.uint8), frames=2)
    raw = path.read_bytes()
    ds = pydicom.dcmread(path)
    ds[keyword].VR = "LO"  # a text where a count belongs, as a careless writer leaves it
    ds[keyword].value = value
    ds.save_as(path, enforce_file_format=True)
    assert path.read_bytes() != raw
    with pytest.raises(UnreadableImage, match=keyword) as info:
        read_dicom(path, cine=True)
    assert "\n" not in str(info.value)
