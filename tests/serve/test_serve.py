"""`fetalhc serve`: real requests against the app, DICOM input, every status code."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
pydicom = pytest.importorskip("pydicom")

from fastapi.testclient import TestClient  # noqa: E402
from pydicom.uid import (  # noqa: E402
    JPEGBaseline8Bit,
)

from fetalhc.io.dicom import read_dicom  # noqa: E402
from fetalhc.serve.app import ServiceConfig, create_app  # noqa: E402
from tests.dicom_helpers import make_dicom, sr_numbers  # noqa: E402
from tests.doubles import SlowMeasurer  # noqa: E402

PIXEL = 0.133961232503  # 180_HC.png's pixel size in HC18's CSV


@pytest.fixture(scope="module")
def gray(sample) -> np.ndarray:
    return cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def client():
    from fetalhc.inference.measurer import HeadMeasurer

    app = create_app(HeadMeasurer(backend="torch"), ServiceConfig(max_upload_mb=2))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        yield c


def post(client, name: str, data: bytes, **form):
    return client.post("/api/v1/measure", files={"file": (name, data)}, data=form)


# ---------------------------------------------------------------- DICOM reader
def test_dicom_pixel_size_from_ultrasound_region_then_pixel_spacing(tmp_path, gray):
    with_region = read_dicom(make_dicom(tmp_path / "a.dcm", gray, region_cm=PIXEL / 10))
    assert with_region.pixel_size.mm == pytest.approx(PIXEL)
    assert with_region.pixel_size.source == "ultrasound region"
    np.testing.assert_array_equal(with_region.image, gray)
    spacing = read_dicom(make_dicom(tmp_path / "b.dcm", gray, spacing_mm=0.2))
    assert (spacing.pixel_size.mm, spacing.pixel_size.source) == (0.2, "PixelSpacing")
    neither = read_dicom(make_dicom(tmp_path / "c.dcm", gray))
    assert neither.pixel_size.mm is None


def test_dicom_multiframe_and_undecodable_syntax_are_clear_errors(tmp_path, gray):
    with pytest.raises(ValueError, match="multi-frame"):
        read_dicom(make_dicom(tmp_path / "m.dcm", gray, frames=3))
    broken = make_dicom(tmp_path / "j.dcm", gray, syntax=JPEGBaseline8Bit)
    with pytest.raises(ValueError, match="cannot decode the DICOM pixel data"):
        read_dicom(broken)  # raw bytes declared as JPEG: no codec can read them
    with pytest.raises(ValueError, match="not a readable DICOM|without an image"):
        read_dicom(b"\x00" * 128 + b"DICM" + b"garbage")


# ---------------------------------------------------------------- API
def test_health(client):
    body = client.get("/api/v1/health").json()
    assert body["status"] == "ok" and body["model"] == "default.safetensors" and body["version"]
    assert client.get("/openapi.json").json()["paths"]["/api/v1/measure"]
    assert client.get("/docs").status_code == 404  # its scripts come from a CDN: off
    page = client.get("/")
    assert page.status_code == 200 and "fetalhc" in page.text
    assert client.get("/app.js").status_code == 200


def test_png_and_the_same_image_as_dicom_give_the_same_hc(client, tmp_path, sample, gray):
    png = (sample / "test_set" / "180_HC.png").read_bytes()
    r = post(client, "180_HC.png", png, pixel_size_mm=str(PIXEL), mask="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and body["pixel_size_source"] == "form"
    assert 40 < body["hc_mm"] < 450 and body["ellipse_px"]["a"] > 0
    assert body["ellipse_mm"]["semi_axes_a_mm"] == pytest.approx(body["ellipse_px"]["a"] * PIXEL)
    assert body["mask_png_base64"]
    # the flag's features, as in predict's CSV; the bundled model has two passes
    features = body["quality_features"]
    assert 0.9 < features["ellipse_iou"] <= 1 and 0 <= features["pass_distance_mm"] < 5
    dcm = make_dicom(tmp_path / "x.dcm", gray, region_cm=PIXEL / 10).read_bytes()
    d = post(client, "x.dcm", dcm).json()
    assert d["pixel_size_source"] == "dicom: ultrasound region"
    assert d["hc_mm"] == pytest.approx(body["hc_mm"], abs=0.01)
    # the calibrated interval around HC, the GA range from it, and the same through DICOM
    low, high = body["hc_interval_mm"]
    assert low < body["hc_mm"] < high and body["interval_level"] == 0.95
    assert body["ga_range_weeks"][0] < body["ga_weeks"] < body["ga_range_weeks"][1]
    assert "conformal" in body["interval_method"]
    assert d["hc_interval_mm"] == pytest.approx(body["hc_interval_mm"], abs=0.01)
    bpd_low, bpd_high = body["biometry"]["bpd_interval_mm"]
    assert bpd_low < body["biometry"]["bpd_mm"] < bpd_high


def test_missing_pixel_size_gives_the_ellipse_and_a_message(client, sample):
    r = post(client, "a.png", (sample / "test_set" / "180_HC.png").read_bytes())
    body = r.json()
    assert r.status_code == 200 and body["status"] == "no_pixel_size"
    assert body["hc_mm"] is None and body["ellipse_px"] and "pixel size" in body["message"]
    assert body["hc_interval_mm"] is None and body["ga_range_weeks"] is None


def test_image_without_head(client):
    blank = cv2.imencode(".png", np.zeros((300, 400), np.uint8))[1].tobytes()
    body = post(client, "blank.png", blank, pixel_size_mm="0.1").json()
    assert body["status"] == "no_head" and "no fetal head" in body["message"]


@pytest.mark.parametrize(
    "name,data,form,code",
    [
        ("notes.txt", b"this is not an image", {}, 415),
        ("empty.png", b"", {}, 422),
        ("trunc.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, {}, 422),
        ("a.png", None, {"pixel_size_mm": "abc"}, 422),
        ("a.png", None, {"pixel_size_mm": "inf"}, 422),
        ("a.png", None, {"pixel_size_mm": "5"}, 422),
        ("a.png", None, {"ga": "20+9"}, 422),
    ],
)
def test_bad_uploads_get_a_clear_4xx_json(client, sample, name, data, form, code):
    data = data if data is not None else (sample / "test_set" / "180_HC.png").read_bytes()
    r = post(client, name, data, **form)
    assert r.status_code == code, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and detail and "Traceback" not in detail


def test_missing_file_field_is_422(client):
    r = client.post("/api/v1/measure", data={"pixel_size_mm": "0.1"})
    assert r.status_code == 422 and "file" in r.json()["detail"]


def test_oversized_upload_and_image_are_413(client, tmp_path):
    big = np.random.default_rng(0).integers(0, 255, (1500, 1500), dtype=np.uint8)
    data = cv2.imencode(".png", big)[1].tobytes()  # incompressible: > 2 MB
    assert len(data) > 2 * 1024 * 1024
    r = post(client, "big.png", data)
    assert r.status_code == 413 and "limit" in r.json()["detail"]
    from fetalhc.inference.measurer import HeadMeasurer

    app = create_app(HeadMeasurer(backend="torch"), ServiceConfig(max_pixels=100_000))
    with TestClient(app, base_url="http://127.0.0.1") as small:
        wide = cv2.imencode(".png", np.zeros((400, 400), np.uint8))[1].tobytes()
        r = post(small, "wide.png", wide)
        assert r.status_code == 413 and "too large" in r.json()["detail"]


def test_full_queue_is_503_with_retry_after(sample):
    slow = SlowMeasurer()
    app = create_app(slow, ServiceConfig(workers=1, queue=0))
    png = (sample / "test_set" / "180_HC.png").read_bytes()
    with TestClient(app, base_url="http://127.0.0.1") as c:
        first: dict = {}
        thread = threading.Thread(target=lambda: first.update(r=post(c, "a.png", png)))
        thread.start()
        time.sleep(0.5)  # the first request now holds the only worker
        r = post(c, "b.png", png)
        slow.release.set()
        thread.join(10)
    assert r.status_code == 503 and r.headers["Retry-After"]
    assert "busy" in r.json()["detail"]
    assert first["r"].status_code == 200


def test_save_dir_keeps_image_and_result(sample, tmp_path):
    slow = SlowMeasurer()
    slow.release.set()
    app = create_app(slow, ServiceConfig(save_dir=tmp_path / "saved"))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        assert (
            post(c, "a.png", (sample / "test_set" / "180_HC.png").read_bytes()).status_code == 200
        )
    saved = sorted(p.suffix for p in (tmp_path / "saved").iterdir())
    assert saved == [".json", ".png"]


def test_a_cine_upload_gives_every_frame_and_the_chosen_one_first(client, tmp_path, gray):
    blank = np.full_like(gray, 40)
    loop = make_dicom(tmp_path / "loop.dcm", [blank, gray, blank], region_cm=PIXEL / 10)
    r = post(client, "loop.dcm", loop.read_bytes(), image="true")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["chosen_frame"] == 2 and body["frame"] == 2 and body["status"] == "ok"
    assert [f["frame"] for f in body["frames"]] == [1, 2, 3]
    assert [f["status"] for f in body["frames"]] == ["no_head", "ok", "no_head"]
    assert body["frames"][1]["hc_mm"] == body["hc_mm"] and body["image_png_base64"]


def test_the_sr_of_an_uploaded_dicom(client, tmp_path, gray):
    import io as _io

    source = make_dicom(tmp_path / "scan.dcm", gray, region_cm=PIXEL / 10)
    measured = post(client, "scan.dcm", source.read_bytes()).json()
    r = client.post("/api/v1/measure/sr", files={"file": ("scan.dcm", source.read_bytes())})
    assert r.status_code == 200 and r.headers["content-type"] == "application/dicom"
    sr = pydicom.dcmread(_io.BytesIO(r.content))
    assert sr.Modality == "SR" and sr.StudyInstanceUID == pydicom.dcmread(source).StudyInstanceUID
    assert sr_numbers(sr)["11984-2"] == pytest.approx(measured["hc_mm"], abs=0.01)
    png = cv2.imencode(".png", gray)[1].tobytes()
    not_dicom = client.post("/api/v1/measure/sr", files={"file": ("a.png", png)})
    assert not_dicom.status_code == 415


def test_a_given_ga_is_measured_with_the_image_not_patched_after(client, sample):
    png = (sample / "test_set" / "180_HC.png").read_bytes()
    body = post(client, "180_HC.png", png, pixel_size_mm=str(PIXEL), ga="20+3").json()
    b = body["biometry"]
    assert b["ga_given_weeks"] == pytest.approx(20 + 3 / 7)
    low, high = b["hc_centile_range"]  # the interval's ends on the chart: measured together
    assert low < b["hc_centile"] < high
    zl, zh = b["hc_zscore_range"]
    assert zl < b["hc_zscore"] < zh
