"""DICOM headers as hospitals send them: the measurement never depends on the outputs,
and the SR, SEG and SC copy only what is valid (dciodvfy clean), with names intact."""

from __future__ import annotations

import shutil
import subprocess

import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")

from fetalhc.io.dicom_header import dicom_date, dicom_time, fit_for_results, valid_uid  # noqa: E402
from tests.dicom_helpers import make_dicom  # noqa: E402

PIXEL_CM = 0.0133961232503


def _set(**values):
    def change(ds):
        for k, v in values.items():
            setattr(ds, k, v)

    return change


def _drop(*keys):
    def change(ds):
        for k in keys:
            if k in ds:
                delattr(ds, k)

    return change


CASES = {
    "missing identity": _drop(
        "PatientID", "PatientName", "PatientBirthDate", "StudyInstanceUID", "SeriesInstanceUID"
    ),
    "dates, times and sex as people write them": _set(
        PatientBirthDate="1990-01-01", StudyTime="10:15:00", PatientSex="X"
    ),
    "two patient names": _set(PatientName=["A^B", "C^D"]),
    "unknown character set": _set(SpecificCharacterSet="ISO_IR 999"),
    "over-long accession and description": _set(
        AccessionNumber="A" * 30, StudyDescription="D" * 90
    ),
    "UIDs with letters and leading zeros": _set(
        StudyInstanceUID="1.2.840.99.5a", SeriesInstanceUID="1.02.3"
    ),
}
NAMES = {
    "ISO_IR 192": "Müller^Zoë",
    "GB18030": "王^小明",
    "ISO_IR 100": "Müller^José",
}


def test_what_people_write_becomes_dicom_or_nothing():
    assert dicom_date("1990-01-01") == "19900101" and dicom_date("19900101") == "19900101"
    assert dicom_date("1990-13-01") is None and dicom_date("soon") is None
    assert dicom_time("10:15:00") == "101500" and dicom_time("101500.123") == "101500.123"
    assert dicom_time("25:00") is None
    assert valid_uid("1.2.840.10008.1") and not valid_uid("1.2.840.99.5a")
    assert not valid_uid("1.02.3") and not valid_uid("1." * 40 + "1") and not valid_uid("")


def _outputs(measurer, path, tmp_path):
    measured = measurer.measure_dicom(path)
    result = measured.chosen
    files = {}
    for kind, build in (
        ("sr", result.to_dicom_sr),
        ("seg", result.to_dicom_seg),
        ("sc", result.to_dicom_sc),
    ):
        files[kind] = tmp_path / f"{kind}.dcm"
        build(measured.dataset, "model").save_as(files[kind], enforce_file_format=True)
    return result, files


def _dciodvfy_errors(path) -> list[str]:
    if shutil.which("dciodvfy") is None:
        return []
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]


@pytest.mark.parametrize("case", list(CASES))
def test_a_careless_header_still_gives_the_hc_and_valid_outputs(measurer, head, tmp_path, case):
    path = make_dicom(tmp_path / "in.dcm", head, region_cm=PIXEL_CM)
    ds = pydicom.dcmread(path)
    CASES[case](ds)
    ds.save_as(path, enforce_file_format=False)
    result, files = _outputs(measurer, path, tmp_path)
    assert result.ok and 150 < result.hc_mm < 200
    for kind, file in files.items():
        assert _dciodvfy_errors(file) == [], (case, kind)
        out = pydicom.dcmread(file)
        assert valid_uid(out.StudyInstanceUID) and out.SpecificCharacterSet == "ISO_IR 192"
    if "PatientID" in ds:  # copied where it was valid
        assert pydicom.dcmread(files["sr"]).PatientID == ds.PatientID


@pytest.mark.parametrize("charset", list(NAMES))
def test_a_patient_name_reads_the_same_in_every_output(measurer, head, tmp_path, charset):
    path = make_dicom(tmp_path / "in.dcm", head, region_cm=PIXEL_CM)
    ds = pydicom.dcmread(path)
    ds.SpecificCharacterSet, ds.PatientName = charset, NAMES[charset]
    ds.save_as(path, enforce_file_format=True)
    assert NAMES[charset].encode("utf-8") not in path.read_bytes() or charset == "ISO_IR 192"
    _, files = _outputs(measurer, path, tmp_path)
    for kind, file in files.items():
        assert str(pydicom.dcmread(file).PatientName) == NAMES[charset], kind
        assert _dciodvfy_errors(file) == [], kind


def test_fitting_a_header_says_what_it_changed_without_patient_data():
    ds = pydicom.Dataset()
    ds.PatientName, ds.PatientBirthDate, ds.AccessionNumber = "Doe^Jane", "1990-01-01", "A" * 30
    fixed, problems = fit_for_results(ds)
    assert fixed.PatientBirthDate == "19900101" and fixed.AccessionNumber == ""
    assert valid_uid(fixed.StudyInstanceUID) and fixed.PatientID == ""
    text = " ".join(problems)
    assert "AccessionNumber" in text and "Doe" not in text and "1990" not in text


def test_an_output_that_cannot_be_built_never_costs_the_measurement(
    measurer, head, tmp_path, monkeypatch
):
    from fetalhc.inference.inputs import InputImage
    from fetalhc.inference.measurer import HeadMeasurement
    from fetalhc.inference.predict import PredictOptions, measure_dicom_file

    path = make_dicom(tmp_path / "in.dcm", head, region_cm=PIXEL_CM)

    def broken(self, source, model=""):
        raise ValueError("a header\nno library can build on")

    monkeypatch.setattr(HeadMeasurement, "to_dicom_sr", broken)
    options = PredictOptions(dicom_out=tmp_path / "dicom", masks=False, overlays=False)
    (tmp_path / "dicom").mkdir()
    rows, written = measure_dicom_file(
        InputImage(path, "in.dcm"), PIXEL_CM * 10, measurer, tmp_path, options
    )
    (row,) = rows
    assert row["status"] == "ok" and 150 < float(row["hc_mm"]) < 200
    assert row["outputs"].startswith("SR not built (ValueError: a header no library")
    assert sorted(p.name for p in written) == ["in_sc.dcm", "in_seg.dcm"]


def test_reading_a_careless_header_logs_no_patient_data(tmp_path, head, caplog, recwarn):
    import logging

    from fetalhc.io.dicom import read_dicom

    path = make_dicom(tmp_path / "in.dcm", head, region_cm=PIXEL_CM)
    ds = pydicom.dcmread(path)
    ds.PatientBirthDate = "1990-01-01"
    ds.save_as(path, enforce_file_format=False)
    caplog.clear()
    recwarn.clear()  # what writing the test's file said is not the reader's
    with caplog.at_level(logging.DEBUG):
        read_dicom(path)
    said = caplog.text + " ".join(str(w.message) for w in recwarn)
    assert "1990" not in said
