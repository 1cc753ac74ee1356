"""Hostile round 3: the classes of failure found by the reviewers, each with a test that
fails without its fix (DICOM geometry, the batch contract, the service's security)."""

from __future__ import annotations

import csv
import math
from decimal import Decimal
from pathlib import Path

import cv2
import numpy as np
import pytest

from fetalhc.errors import FetalHCError
from fetalhc.inference.segmenter import DEFAULT_MODEL
from tests.conftest import run_cli
from tests.dicom_helpers import make_dicom

needs_model = pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="no bundled model")
PIXEL_MM = 0.133961232503  # 180_HC.png's pixel size in HC18's CSV


@pytest.fixture(scope="module")
def head(sample) -> np.ndarray:
    return cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)


@pytest.fixture(scope="module")
def measurer():
    from fetalhc.inference.measurer import HeadMeasurer

    if not DEFAULT_MODEL.is_file():
        pytest.skip("no bundled model")
    return HeadMeasurer(backend="torch")


def two_regions(path: Path, image: np.ndarray, left_mm: float, right_mm: float) -> Path:
    """A dual-view frame: `image` on the left half, an empty view on the right, one
    ultrasound region per half with its own spacing."""
    import pydicom
    from pydicom.dataset import Dataset

    wide = np.concatenate([image, np.zeros_like(image)], axis=1)
    make_dicom(path, wide)
    ds = pydicom.dcmread(path)
    w, h = image.shape[1], image.shape[0]
    regions = []
    for x0, mm in ((0, left_mm), (w, right_mm)):
        r = Dataset()
        r.RegionLocationMinX0, r.RegionLocationMinY0 = x0, 0
        r.RegionLocationMaxX1, r.RegionLocationMaxY1 = x0 + w - 1, h - 1
        r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3
        r.PhysicalDeltaX = r.PhysicalDeltaY = mm / 10
        r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = 1, 1, 0
        regions.append(r)
    ds.SequenceOfUltrasoundRegions = regions
    ds.save_as(path)
    return path


# ---------------------------------------------------------------- DICOM geometry
@needs_model
def test_the_spacing_of_the_region_that_holds_the_head_is_used(tmp_path, head, measurer):
    plain = measurer.measure(head, PIXEL_MM)
    # the centre of the wide frame lies in the right region (the wrong spacing)
    dual = measurer.measure_dicom(two_regions(tmp_path / "dual.dcm", head, PIXEL_MM, 0.2))
    (r,) = dual.frames
    assert r.ellipse_px.cx < head.shape[1]  # the head, in the left view
    assert r.ok and r.pixel_size_mm == pytest.approx(PIXEL_MM)
    assert r.hc_mm == pytest.approx(plain.hc_mm, rel=0.02)


@needs_model
def test_a_head_across_two_regions_gets_no_hc(tmp_path, head, measurer):
    from fetalhc.inference.measurer import in_its_region
    from fetalhc.io.dicom import Region

    result = measurer.measure(head, PIXEL_MM)
    w = head.shape[1]
    split = [Region(0, 0, w / 2, 539, PIXEL_MM), Region(w / 2 + 1, 0, w - 1, 539, PIXEL_MM)]
    out = in_its_region(result, split)
    assert out.status == "no_pixel_size" and "not inside one ultrasound region" in out.detail
    assert out.as_row()["hc_mm"] == ""
    whole = in_its_region(result, [Region(0, 0, w - 1, 539, 0.2)])
    assert whole.ok and whole.hc_mm == pytest.approx(result.hc_mm * 0.2 / PIXEL_MM, rel=1e-6)


def test_an_infinite_pixel_spacing_is_no_pixel_size(tmp_path, head):
    import pydicom

    from fetalhc.io.dicom import read_dicom

    path = make_dicom(tmp_path / "inf.dcm", head, spacing_mm=1.0)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = ["inf", "inf"]
    ds.save_as(path)
    assert read_dicom(path).pixel_size_mm is None


# ---------------------------------------------------------------- the batch contract
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


@needs_model
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


@needs_model
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


@needs_model
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


# ---------------------------------------------------------------- the service
class Instant:
    """A measurer double: answers at once (the service's own behaviour is under test)."""

    batch_size = 8
    model_name = "double"

    def measure_many(self, images, pixel_sizes_mm=None, names=None, ga_weeks=None):
        from fetalhc.inference.measurer import HeadMeasurement

        for image, name in zip(images, names, strict=True):
            yield HeadMeasurement(name or "x", "no_head", image=image)


def service(**config):
    from fastapi.testclient import TestClient

    from fetalhc.serve.app import ServiceConfig, create_app

    return TestClient(create_app(Instant(), ServiceConfig(**config)), base_url="http://127.0.0.1")


def png(head) -> bytes:
    return cv2.imencode(".png", head)[1].tobytes()


def test_unknown_hosts_and_cross_site_posts_are_refused(head):
    with service() as c:
        assert c.get("/api/v1/health", headers={"Host": "evil.example:8000"}).status_code == 421
        assert c.get("/api/v1/health", headers={"Host": "localhost:8000"}).status_code == 200
        files = {"file": ("a.png", png(head))}
        cross = c.post("/api/v1/measure", files=files, headers={"Origin": "https://evil.example"})
        assert cross.status_code == 403
        same = c.post("/api/v1/measure", files=files, headers={"Origin": "http://127.0.0.1"})
        assert same.status_code == 200
        blind = c.post("/api/v1/measure", files=files, headers={"Sec-Fetch-Site": "cross-site"})
        assert blind.status_code == 403
    with service(allowed_hosts=("scanner.local",), allowed_origins=("https://ris.local",)) as c:
        assert c.get("/api/v1/health", headers={"Host": "scanner.local"}).status_code == 200
        ok = c.post("/api/v1/measure", files=files, headers={"Origin": "https://ris.local"})
        assert ok.status_code == 200


def test_a_token_guards_the_api_not_the_page(head):
    with service(token="s3cret") as c:
        assert c.get("/api/v1/health").status_code == 401
        assert c.get("/api/v1/health", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert (
            c.get("/api/v1/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        )
        assert c.get("/").status_code == 200 and c.get("/app.js").status_code == 200


def test_security_headers_and_no_cdn_docs():
    with service() as c:
        r = c.get("/")
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "cdn" not in r.text.lower()
        assert c.get("/docs").status_code == 404 and c.get("/redoc").status_code == 404
        assert c.get("/api/v1/health").headers["cache-control"] == "no-store"


def test_a_chunked_upload_stops_being_read_at_the_limit(tmp_path):
    """A real server (uvicorn) and a raw chunked upload of 200 MB with a 1 MB limit: the
    answer is 413 long before the client could send it all."""
    import socket
    import threading
    import time

    import uvicorn

    from fetalhc.serve.app import ServiceConfig, create_app

    app = create_app(Instant(), ServiceConfig(max_upload_mb=1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    sent = 0
    try:
        conn = socket.create_connection(("127.0.0.1", port), timeout=30)
        head = (
            "POST /api/v1/measure HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        conn.sendall(head.encode())
        part = b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n\r\n'
        chunk = b"\0" * (1 << 20)
        conn.sendall(b"%x\r\n%s\r\n" % (len(part), part))
        conn.settimeout(0.2)
        answer = b""
        for _ in range(200):
            try:
                conn.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += 1
                answer += conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # the server closed the connection
                break
            if answer:
                break
        conn.settimeout(10)
        try:
            answer += conn.recv(4096)
        except OSError:
            pass
        conn.close()
    finally:
        server.should_exit = True
        thread.join(10)
    assert b" 413 " in answer.split(b"\r\n")[0]
    assert sent < 50  # MB: it stopped reading near the limit, it did not spool 200 MB


def test_decoding_does_not_stall_the_event_loop(head, monkeypatch):
    import threading
    import time

    from fetalhc.serve import app as app_module

    real = app_module.decode_upload

    def slow(data, max_pixels):
        time.sleep(1.5)
        return real(data, max_pixels)

    monkeypatch.setattr(app_module, "decode_upload", slow)
    with service() as c:
        worker = threading.Thread(
            target=lambda: c.post("/api/v1/measure", files={"file": ("a.png", png(head))})
        )
        worker.start()
        time.sleep(0.3)
        t0 = time.perf_counter()
        assert c.get("/api/v1/health").status_code == 200
        waited = time.perf_counter() - t0
        worker.join()
    assert waited < 0.8


def test_saved_uploads_never_overwrite_and_odd_names_are_saved(tmp_path, head):
    with service(save_dir=tmp_path / "saved") as c:
        for name in ("same.png", "same.png", "a\x00b.png", "x" * 400 + ".png", "../../up.png"):
            assert c.post("/api/v1/measure", files={"file": (name, png(head))}).status_code == 200
    saved = sorted((tmp_path / "saved").glob("*.json"))
    assert len(saved) == 5 and all(len(p.name) < 120 for p in saved)
    assert all(p.parent == tmp_path / "saved" for p in (tmp_path / "saved").rglob("*"))


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--port", "99999"], "--port"),
        (["--max-upload-mb", "-5"], "--max-upload-mb"),
        (["--host", "0.0.0.0", "--allowed-host", "me"], "token"),
        (["--host", "0.0.0.0", "--token", "t"], "--allowed-host"),
        (["--save", "/proc/fetalhc-cannot"], "--save"),
    ],
)
def test_serve_refuses_bad_settings_in_one_line_before_serving(flags, message):
    r = run_cli("serve", *flags)
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_serve_refuses_a_port_in_use():
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        r = run_cli("serve", "--port", str(busy.getsockname()[1]))
    assert r.returncode == 2 and "cannot serve" in r.stderr


# ---------------------------------------------------------------- the flag
@needs_model
def test_a_low_contrast_head_is_flagged_not_ok(head, measurer):
    from fetalhc.measure.quality import QualityThresholds, is_flagged

    flat = (head.astype(np.float32) * 24 / 255 + 100).astype(np.uint8)  # 24 grey levels
    normal, low = measurer.measure_many([head, flat], [PIXEL_MM, PIXEL_MM])
    assert normal.grey_levels > 80 and not any("grey levels" in r for r in normal.quality_reasons)
    assert low.grey_levels < 30
    assert low.quality == "check" and any("grey levels" in r for r in low.quality_reasons)
    assert is_flagged(low.as_row(), QualityThresholds())  # the rows' flag sees it too


@needs_model
def test_an_elliptical_ring_on_speckle_is_flagged_not_ok(head, measurer):
    """A ring with the same speckle inside and outside: the network sees a confident,
    perfectly elliptical 'head'; only the image around the outline shows it is none."""
    import cv2

    from fetalhc.measure.quality import QualityThresholds, is_flagged

    rng = np.random.default_rng(3)
    rings = []
    for strength, width, grain in ((120, 8, 1.5), (70, 4, 1.0), (180, 12, 2.5)):
        frame = cv2.GaussianBlur(rng.rayleigh(60, (540, 800)), (0, 0), grain)
        ring = np.zeros_like(frame)
        cv2.ellipse(ring, (400, 270), (170, 130), 15, 0, 360, 1.0, width)
        rings.append(np.clip(frame + strength * cv2.GaussianBlur(ring, (0, 0), 2), 0, 255))
    real, *fakes = measurer.measure_many(
        [head, *[r.astype(np.uint8) for r in rings]], [PIXEL_MM] * 4
    )
    assert real.quality == "ok" and real.inside_outside > 0.1
    for fake in fakes:
        assert fake.ellipse_px is not None  # the network did find a "head" ...
        assert fake.inside_outside < 0.05 and fake.quality == "check"  # ... the flag sees
        assert any("looks like its surroundings" in r for r in fake.quality_reasons)
        assert is_flagged(fake.as_row(), QualityThresholds())


@needs_model
def test_two_heads_in_one_image_are_named_not_silently_dropped(head, measurer):
    from fetalhc.measure.quality import QualityThresholds, is_flagged

    twins = np.concatenate([head, head], axis=1)  # two heads side by side
    one, two = measurer.measure_many([head, twins], [PIXEL_MM, PIXEL_MM])
    assert one.second_head_ratio < 0.1
    assert two.second_head_ratio > 0.5 and two.quality == "check"
    assert any("second head-like region" in r for r in two.quality_reasons)
    assert is_flagged(two.as_row(), QualityThresholds())
