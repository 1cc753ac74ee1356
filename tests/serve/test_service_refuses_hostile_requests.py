"""The service refuses what it must (unknown hosts, cross-site posts, oversized or slow
uploads, bad settings) with a clear answer, and never stalls or overwrites."""

from __future__ import annotations

import cv2
import pytest

from tests.conftest import run_cli
from tests.doubles import instant_measurer

PIXEL_MM = 0.133961232503  # 180_HC.png's pixel size in HC18's CSV


def service(**config):
    from fastapi.testclient import TestClient

    from fetalhc.serve.app import ServiceConfig, create_app

    return TestClient(
        create_app(instant_measurer(), ServiceConfig(**config)), base_url="http://127.0.0.1"
    )


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

    app = create_app(instant_measurer(), ServiceConfig(max_upload_mb=1))
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
