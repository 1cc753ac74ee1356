"""DICOM out: SR, SEG and SC from `predict --dicom-out`, a cine loop frame by frame."""

from __future__ import annotations

import csv
import shutil
import subprocess

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")

from fetalhc.io.dicom_results import ellipse_points  # noqa: E402
from tests.conftest import run_cli  # noqa: E402
from tests.dicom_helpers import make_dicom, sr_numbers  # noqa: E402

PIXEL_CM = 0.0133961232503  # 180_HC.png's pixel size (HC18's CSV), in cm as US regions hold it


def rows(path):
    with open(path, newline="") as f:
        return {r["filename"]: r for r in csv.DictReader(f)}


def _items(ds):
    """Every content item of an SR, depth first."""
    for item in getattr(ds, "ContentSequence", []):
        yield item
        yield from _items(item)


def _code(item) -> str:
    return item.ConceptNameCodeSequence[0].CodeValue if "ConceptNameCodeSequence" in item else ""


def dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        pytest.skip("dciodvfy (Debian dicom3tools) is not installed")
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


def test_ellipse_graphic_data_is_major_then_minor_axis():
    pts = ellipse_points(100, 50, 10, 30, 0.0)  # b > a: the major axis is the second one
    major = np.linalg.norm(pts[1] - pts[0])
    minor = np.linalg.norm(pts[3] - pts[2])
    assert major == pytest.approx(60) and minor == pytest.approx(20)
    assert np.allclose(pts.mean(axis=0), [100, 50])


def test_sr_and_seg_of_a_dicom_image(tmp_path, head):
    src = make_dicom(tmp_path / "in" / "scan.dcm", head, region_cm=PIXEL_CM)
    out, dicom_out = tmp_path / "out", tmp_path / "dicom"
    r = run_cli("predict", src.parent, "--out", out, "--dicom-out", dicom_out)
    assert r.returncode == 0, r.stderr
    row = rows(out / "predictions.csv")["scan.dcm"]
    assert row["status"] == "ok" and row["chosen"] == "yes"
    source = pydicom.dcmread(src)
    sr = pydicom.dcmread(dicom_out / "scan_sr.dcm")
    seg = pydicom.dcmread(dicom_out / "scan_seg.dcm")
    assert (dicom_out / "scan_sc.dcm").is_file()
    values = sr_numbers(sr)
    assert values["11984-2"] == pytest.approx(float(row["hc_mm"]), abs=0.01)  # HC
    assert values["11820-8"] == pytest.approx(float(row["bpd_mm"]), abs=0.01)  # BPD
    assert values["11851-3"] == pytest.approx(float(row["ofd_mm"]), abs=0.01)  # OFD
    # HC's interval as TID 310 uncertainty rows in mm under its NUM item, the method named
    hc_item = next(i for i in _items(sr) if _code(i) == "11984-2")
    props = {_code(i): i for i in hc_item.ContentSequence if i.ValueType == "NUM"}
    upper, lower = props["371886008"], props["371885007"]
    for item in (upper, lower):
        assert item.RelationshipType == "HAS PROPERTIES"
        unit = item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0]
        assert unit.CodeValue == "mm" and unit.CodingSchemeDesignator == "UCUM"
    hc, low, high = (float(row[k]) for k in ("hc_mm", "hc_low_mm", "hc_high_mm"))
    assert low < hc < high
    assert float(upper.MeasuredValueSequence[0].NumericValue) == pytest.approx(high - hc, abs=1e-3)
    assert float(lower.MeasuredValueSequence[0].NumericValue) == pytest.approx(hc - low, abs=1e-3)
    methods = [i.TextValue for i in _items(sr) if _code(i) == "uncertainty"]
    assert len(methods) == 1 and "95 % interval" in methods[0] and "conformal" in methods[0]
    for derived in (sr, seg):
        assert derived.StudyInstanceUID == source.StudyInstanceUID
        assert derived.PatientID == source.PatientID
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    assert evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    ref = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
    assert ref.ReferencedSOPInstanceUID == source.SOPInstanceUID
    mask = cv2.imread(str(out / "masks" / "scan_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    assert np.array_equal(seg.pixel_array.astype(bool), mask)
    for name in ("scan_sr.dcm", "scan_seg.dcm", "scan_sc.dcm"):
        assert dciodvfy_errors(dicom_out / name) == [], name


def test_a_cine_loop_is_measured_frame_by_frame_and_the_head_frame_chosen(tmp_path, head):
    rng = np.random.default_rng(0)
    blank = np.full_like(head, 40)
    noise = rng.integers(0, 256, head.shape, dtype=np.uint8)
    src = make_dicom(tmp_path / "in" / "loop.dcm", [blank, head, noise], region_cm=PIXEL_CM)
    out, dicom_out = tmp_path / "out", tmp_path / "dicom"
    r = run_cli("predict", src, "--out", out, "--dicom-out", dicom_out)
    assert r.returncode == 0, r.stderr
    found = rows(out / "predictions.csv")
    assert list(found) == ["loop.dcm#1", "loop.dcm#2", "loop.dcm#3"]
    assert [found[f"loop.dcm#{k}"]["chosen"] for k in (1, 2, 3)] == ["no", "yes", "no"]
    assert found["loop.dcm#2"]["status"] == "ok" and found["loop.dcm#1"]["status"] == "no_head"
    sr = pydicom.dcmread(dicom_out / "loop_f002_sr.dcm")
    assert sr_numbers(sr)["11984-2"] == pytest.approx(float(found["loop.dcm#2"]["hc_mm"]), abs=0.01)
    seg = pydicom.dcmread(dicom_out / "loop_f002_seg.dcm")
    frame_ref = seg.PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    assert frame_ref.SourceImageSequence[0].ReferencedFrameNumber == 2
    assert (out / "overlays" / "loop_f002_overlay.png").is_file()
    for name in ("loop_f002_sr.dcm", "loop_f002_seg.dcm", "loop_f002_sc.dcm"):
        assert dciodvfy_errors(dicom_out / name) == [], name
