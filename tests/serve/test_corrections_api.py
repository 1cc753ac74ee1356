"""POST /api/v1/corrections: the token and Origin rules of measuring, a clear 4xx and
nothing stored for a bad correction."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from tests.doubles import NeverMeasures

STRONG = "k3P9-wq7ZrT2xV1m"
FINAL = {"cx": 200.0, "cy": 150.0, "a": 90.0, "b": 70.0, "angle_rad": 0.2}


def service(folder, **config):
    from fastapi.testclient import TestClient

    from fetalhc.serve.app import ServiceConfig, create_app

    return TestClient(
        create_app(NeverMeasures(), ServiceConfig(corrections_dir=folder, **config)),
        base_url="http://127.0.0.1:8000",
    )


def png() -> bytes:
    gray = np.random.default_rng(0).integers(0, 255, (300, 400), dtype=np.uint8)
    return cv2.imencode(".png", gray)[1].tobytes()


def post(client, files=True, **fields):
    data = {"final": json.dumps(FINAL), "pixel_size_mm": "0.2", **fields}
    files = {"file": ("a.png", png())} if files else None
    return client.post("/api/v1/corrections", data=data, files=files)


def test_a_correction_is_stored_once(tmp_path):
    with service(tmp_path) as c:
        assert c.get("/api/v1/health").json()["corrections"] is True
        r = post(c, original=json.dumps({**FINAL, "a": 95.0}), model="m", key="P1")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["part"] in ("adapt", "held-back") and body["final_hc_mm"] > 0
    assert len(list(tmp_path.glob("*.json"))) == 1 and len(list(tmp_path.glob("*.png"))) == 1


@pytest.mark.parametrize(
    ("change", "status", "words"),
    [
        ({"files": False}, 422, "file"),
        ({"final": json.dumps({**FINAL, "cx": 900.0})}, 422, "outside"),
        ({"final": "not json"}, 422, "JSON"),
        ({"final": json.dumps({**FINAL, "a": -1})}, 422, "ellipse"),
        ({"pixel_size_mm": "7"}, 422, "pixel"),
        ({"pixel_size_mm": ""}, 422, "pixel_size_mm"),
    ],
)
def test_a_bad_correction_gets_a_clear_4xx_and_nothing_is_stored(tmp_path, change, status, words):
    with service(tmp_path) as c:
        if change.get("files") is False:
            r = c.post(
                "/api/v1/corrections", data={"final": json.dumps(FINAL), "pixel_size_mm": "0.2"}
            )
        else:
            r = post(c, **change)
    assert r.status_code == status and words.lower() in r.text.lower(), r.text
    assert list(tmp_path.iterdir()) == []


def test_corrections_need_the_token_and_the_services_origin(tmp_path):
    with service(tmp_path, token=STRONG) as c:
        assert post(c).status_code == 401
        auth = {"Authorization": f"Bearer {STRONG}"}
        other = {**auth, "Origin": "http://127.0.0.1:9999"}
        r = c.post(
            "/api/v1/corrections",
            data={"final": json.dumps(FINAL), "pixel_size_mm": "0.2"},
            files={"file": ("a.png", png())},
            headers=other,
        )
        assert r.status_code == 403
        r = c.post(
            "/api/v1/corrections",
            data={"final": json.dumps(FINAL), "pixel_size_mm": "0.2"},
            files={"file": ("a.png", png())},
            headers={**auth, "Origin": "http://127.0.0.1:8000"},
        )
        assert r.status_code == 200, r.text
    assert len(list(tmp_path.glob("*.json"))) == 1


def test_without_a_corrections_folder_nothing_is_kept(tmp_path):
    from fastapi.testclient import TestClient

    from fetalhc.serve.app import ServiceConfig, create_app

    with TestClient(create_app(NeverMeasures(), ServiceConfig()), base_url="http://127.0.0.1") as c:
        assert post(c).status_code == 404
