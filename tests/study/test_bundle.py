"""`fetalhc bundle`: a model folder that predict, the API and the service take."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from fetalhc.inference.segmenter import DEFAULT_MODEL
from tests.conftest import run_cli


def test_bundle_makes_a_folder_predict_uses_and_never_overwrites_one(tmp_path, sample):
    run = tmp_path / "run"
    run.mkdir()  # a run as training leaves it: weights and config.json side by side
    shutil.copy(DEFAULT_MODEL, run / "last.safetensors")
    config = json.loads((DEFAULT_MODEL.parent / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({k: config[k] for k in ("model", "train")}))
    model = tmp_path / "clinic-a"
    r = run_cli(
        "bundle", run / "last.safetensors", "--out", model, "--notes", "a test",
        "--head-crop", "0.1", "--locate-side", "192", "--crop-side", "192",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    written = json.loads((model / "config.json").read_text())
    assert written["model"] == config["model"] and len(written["source_sha256"]) == 64
    assert "a test" in (model / "MODEL_CARD.md").read_text()
    again = run_cli("bundle", run / "last.safetensors", "--out", model)
    assert again.returncode == 2 and "holds a model already" in again.stderr
    # the folder measures as the bundled model does (same weights, same settings), through
    # the command line and the Python API
    test_set = sample / "test_set"
    pixels = sample / "test_set_pixel_size.csv"
    for name, extra in (("bundled", []), ("folder", ["--model", str(model)])):
        r = run_cli("predict", test_set, "--pixel-csv", pixels, "--out", tmp_path / name, *extra)
        assert r.returncode == 0, r.stderr
    rows = {
        name: list(csv.DictReader(open(tmp_path / name / "predictions.csv")))
        for name in ("bundled", "folder")
    }
    assert [r["hc_mm"] for r in rows["folder"]] == [r["hc_mm"] for r in rows["bundled"]]
    import fetalhc

    size = next(
        float(r["pixel size(mm)"])
        for r in csv.DictReader(open(pixels))
        if r["filename"] == "090_HC.png"
    )
    result = fetalhc.HeadMeasurer(model).measure(test_set / "090_HC.png", size)
    assert result.ok and result.hc_mm == pytest.approx(
        next(float(r["hc_mm"]) for r in rows["folder"] if r["filename"] == "090_HC.png"),
        abs=1e-3,
    )
