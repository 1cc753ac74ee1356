"""`fetalhc listen` with real parts: dcmtk's storescu sends to the node, which forwards its
SR and SEG to a real Orthanc (started here on free ports, in a temporary folder); bad
objects get DIMSE failure statuses and the node goes on; SIGTERM stops it cleanly."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")
pytest.importorskip("highdicom")

from pydicom.uid import JPEGBaseline8Bit  # noqa: E402

from fetalhc.serve.dicom_node import Forward  # noqa: E402
from tests.dicom_helpers import make_dicom, sr_numbers  # noqa: E402

PIXEL_CM = 0.0133961232503
# pynetdicom installs a `storescu` of its own: the test drives dcmtk's (Debian `dcmtk`)
DCMTK_STORESCU = next(
    (
        str(p)
        for p in (Path(d) / "storescu" for d in ["/usr/bin", *os.environ["PATH"].split(":")])
        if p.is_file()
        and "dcmtk" in subprocess.run([p, "--version"], capture_output=True, text=True).stdout
    ),
    None,
)
ORTHANC = shutil.which("Orthanc")
pytestmark = [
    pytest.mark.skipif(DCMTK_STORESCU is None, reason="dcmtk's storescu is not installed"),
    pytest.mark.skipif(ORTHANC is None, reason="Orthanc is not installed"),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 180) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise AssertionError(f"exited early: {process.stderr.read() if process.stderr else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise AssertionError(f"nothing listens on {port} after {seconds} s")


def storescu(port: int, path: Path) -> str:
    """Send one file; dcmtk's verbose answer names the C-STORE response status."""
    out = subprocess.run(
        [DCMTK_STORESCU, "-v", "-aec", "FETALHC", "-xy", "127.0.0.1", str(port), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = [x for x in (out.stdout + out.stderr).splitlines() if "Store Response" in x]
    assert line, out.stdout + out.stderr
    return line[-1]


@pytest.fixture()
def orthanc(tmp_path):
    http, dicom = free_port(), free_port()
    config = {
        "Name": "fetalhc-test",
        "StorageDirectory": str(tmp_path / "orthanc"),
        "IndexDirectory": str(tmp_path / "orthanc"),
        "HttpPort": http,
        "DicomPort": dicom,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomAlwaysAllowStore": True,
        "Plugins": [],
    }
    (tmp_path / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen(
        [ORTHANC, str(tmp_path / "orthanc.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port(http, process, 60)
        yield f"http://127.0.0.1:{http}", dicom
    finally:
        process.terminate()
        process.wait(timeout=30)


def rest(base: str, path: str):
    with urllib.request.urlopen(base + path, timeout=30) as r:
        return r.read()


def test_forward_address_is_checked():
    assert Forward.parse("pacs.local:4242:PACS") == Forward("pacs.local", 4242, "PACS")
    from fetalhc.errors import FetalHCError

    for bad in ("pacs:4242", "pacs:99999:PACS", "pacs:4242:" + "A" * 17):
        with pytest.raises(FetalHCError, match="HOST:PORT:AET"):
            Forward.parse(bad)


def test_storescu_to_node_to_orthanc(tmp_path, sample, orthanc):
    base, pacs_port = orthanc
    head = cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)
    image = make_dicom(tmp_path / "in" / "image.dcm", head, region_cm=PIXEL_CM)
    blank = np.full_like(head, 40)
    noise = np.random.default_rng(0).integers(0, 256, head.shape, dtype=np.uint8)
    cine = make_dicom(tmp_path / "in" / "cine.dcm", [blank, head, noise], region_cm=PIXEL_CM)
    no_pixels = pydicom.dcmread(image)
    del no_pixels.PixelData
    no_pixels.SOPInstanceUID = no_pixels.file_meta.MediaStorageSOPInstanceUID = (
        pydicom.uid.generate_uid()
    )
    no_pixels.save_as(tmp_path / "in" / "no_pixels.dcm", enforce_file_format=True)
    jpeg = make_dicom(
        tmp_path / "in" / "jpeg.dcm", head, region_cm=PIXEL_CM, syntax=JPEGBaseline8Bit
    )
    huge = make_dicom(tmp_path / "in" / "huge.dcm", np.zeros((1000, 1000), np.uint8))

    port, out = free_port(), tmp_path / "node"
    env = {**os.environ, "FETALHC_MAX_PIXELS": "450000"}  # 800x540 fits, 1000x1000 does not
    node = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fetalhc.cli",
            "listen",
            "--port",
            str(port),
            "--out",
            str(out),
            "--forward",
            f"127.0.0.1:{pacs_port}:ORTHANC",
            "--backend",
            "torch",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        wait_for_port(port, node)
        # two associations at once
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda p: storescu(port, p), [image, cine]))
        assert all("Success" in a for a in answers), answers
        assert "DataSetDoesNotMatchSOPClass" in storescu(port, tmp_path / "in" / "no_pixels.dcm")
        assert "CannotUnderstand" in storescu(port, jpeg)
        assert "OutOfResources" in storescu(port, huge)
        # the node survived them all and still stores
        assert "Success" in storescu(port, image)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if len(list((out / "received" / "measured").glob("*.dcm"))) == 2:
                break
            time.sleep(0.5)
    finally:
        node.send_signal(signal.SIGTERM)
        _, err = node.communicate(timeout=180)
    assert node.returncode == 0, err
    assert "refused" in err and "not an image" in err and "too large" in err
    with open(out / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    image_uid = pydicom.dcmread(image).SOPInstanceUID
    cine_uid = pydicom.dcmread(cine).SOPInstanceUID
    by_name = {r["filename"]: r for r in rows}
    assert by_name[f"{image_uid}.dcm"]["status"] == "ok"
    assert [by_name[f"{cine_uid}.dcm#{k}"]["chosen"] for k in (1, 2, 3)] == ["no", "yes", "no"]
    assert not list((out / "received").glob("*.dcm"))  # everything received was measured

    # what reached the PACS: an SR and a SEG per measured object, the SR's HC the row's
    found = {"SR": [], "SEG": []}
    for instance in json.loads(rest(base, "/instances")):
        ds = pydicom.dcmread(__import__("io").BytesIO(rest(base, f"/instances/{instance}/file")))
        found.setdefault(ds.Modality, []).append(ds)
    assert len(found["SR"]) >= 2 and len(found["SEG"]) >= 2
    hc = {}
    for sr in found["SR"]:
        ref = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
        uid = ref.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
        hc[uid] = sr_numbers(sr)["11984-2"]
    assert hc[image_uid] == pytest.approx(float(by_name[f"{image_uid}.dcm"]["hc_mm"]), abs=0.01)
    assert hc[cine_uid] == pytest.approx(float(by_name[f"{cine_uid}.dcm#2"]["hc_mm"]), abs=0.01)


def test_an_object_received_before_a_crash_is_measured_at_the_next_start(tmp_path, sample):
    from fetalhc.inference.measurer import HeadMeasurer
    from fetalhc.serve.dicom_node import DicomNode

    head = cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)
    out = tmp_path / "node"
    kept = make_dicom(out / "received" / "1.2.3.dcm", head, region_cm=PIXEL_CM)  # never measured
    node = DicomNode(HeadMeasurer(backend="torch"), out)
    node.start(free_port())
    node.stop()  # drains the queue: the pending object first
    assert not kept.exists() and (out / "received" / "measured" / "1.2.3.dcm").exists()
    with open(out / "predictions.csv", newline="") as f:
        assert [r["status"] for r in csv.DictReader(f)] == ["ok"]
