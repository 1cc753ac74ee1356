"""`data download` against a local HTTP server that plays Zenodo (127.0.0.1 only)."""

import hashlib
import http.server
import json
import shutil
import threading
import zipfile
from pathlib import Path

import pytest

from fetalhc.data.check import check_dataset
from fetalhc.data.download import download_hc18
from fetalhc.errors import FetalHCError


def build_archives(sample: Path, folder: Path) -> dict[str, bytes]:
    files = {}
    for part in ("training_set", "test_set"):
        archive = folder / f"{part}.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for p in sorted((sample / part).glob("*.png")):
                zf.write(p, f"{part}/{p.name}")
        files[archive.name] = archive.read_bytes()
    for name in ("training_set_pixel_size_and_HC.csv", "test_set_pixel_size.csv"):
        files[name] = (sample / name).read_bytes()
    return files


class Zenodo(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}
    checksums: dict[str, str] = {}
    break_once: set[str] = set()  # file names whose first transfer is cut half-way

    def log_message(self, *args):
        pass

    def do_GET(self):
        host = f"http://127.0.0.1:{self.server.server_port}"
        if self.path == "/api/records/1327317":
            body = json.dumps(
                {
                    "files": [
                        {
                            "key": k,
                            "size": len(v),
                            "checksum": "md5:" + self.checksums[k],
                            "links": {"self": f"{host}/files/{k}"},
                        }
                        for k, v in self.files.items()
                    ]
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        name = self.path.rsplit("/", 1)[-1]
        data = self.files[name]
        start = 0
        rng = self.headers.get("Range")
        self.requests.append((name, int(rng.split("=")[1].split("-")[0]) if rng else 0))
        if rng:
            start = int(rng.split("=")[1].split("-")[0])
            self.send_response(206)
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if name in self.break_once:
            self.break_once.discard(name)
            self.wfile.write(data[start : start + (len(data) - start) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the connection breaks mid-file
            return
        self.wfile.write(data[start:])


@pytest.fixture()
def server(tmp_path, sample):
    Zenodo.files = build_archives(sample, tmp_path)
    Zenodo.checksums = {k: hashlib.md5(v).hexdigest() for k, v in Zenodo.files.items()}
    Zenodo.break_once = set()
    Zenodo.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Zenodo)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


def test_download_extract_and_check(server, tmp_path):
    dest = tmp_path / "dl"
    download_hc18(dest, base_url=server, sleep=lambda s: None)
    report = check_dataset(dest)
    assert report.ok, report.problems
    assert report.parts["training_set"].annotations == 15
    assert report.parts["test_set"].images == 4


def test_broken_connection_resumes(server, tmp_path):
    Zenodo.break_once = {"training_set.zip"}
    dest = tmp_path / "dl"
    download_hc18(dest, base_url=server, sleep=lambda s: None)
    assert not Zenodo.break_once  # the break happened
    assert check_dataset(dest).ok
    size = len(Zenodo.files["training_set.zip"])
    starts = [start for name, start in Zenodo.requests if name == "training_set.zip"]
    assert starts == [0, size // 2]  # the second request goes on from the bytes received


def test_partial_file_from_earlier_run_is_resumed(server, tmp_path):
    dest = tmp_path / "dl"
    (dest / ".download").mkdir(parents=True)
    data = Zenodo.files["test_set.zip"]
    (dest / ".download" / "test_set.zip.part").write_bytes(data[:1000])
    download_hc18(dest, base_url=server, sleep=lambda s: None)
    assert (dest / "test_set" / "000_HC.png").is_file()
    assert [s for n, s in Zenodo.requests if n == "test_set.zip"] == [1000]


def test_wrong_checksum_is_refused(server, tmp_path):
    Zenodo.checksums["test_set.zip"] = "0" * 32
    dest = tmp_path / "dl"
    with pytest.raises(FetalHCError, match="checksum mismatch"):
        download_hc18(dest, base_url=server, sleep=lambda s: None)
    assert not (dest / ".download" / "test_set.zip.part").exists()
    assert not (dest / "test_set").exists()


def test_cli_reports_unreachable_server(tmp_path):
    from tests.conftest import run_cli

    r = run_cli("data", "download", tmp_path / "x", "--url", "http://127.0.0.1:9")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    shutil.rmtree(tmp_path / "x", ignore_errors=True)
