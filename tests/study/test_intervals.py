"""`fetalhc calibrate`: out-of-fold rows in, a model's config.json and a report out."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fetalhc.measure.uncertainty import IntervalCalibration
from tests.conftest import run_cli

pytest.importorskip("crepes")


def _rows(path, scale: float, seed: int = 0) -> None:
    """Out-of-fold rows like evaluate's: errors that grow with HC, three folds."""
    rng = np.random.default_rng(seed)
    n = 240
    hc = rng.uniform(80, 330, n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            ["fold", "filename", "hc_mm", "ref_hc_mm", "pass_distance_mm", "pixel_size_mm",
             "edge_probability", "bpd_mm", "ref_bpd_mm", "ofd_mm", "ref_ofd_mm", "quality",
             "status"]
        )  # fmt: skip
        for i in range(n):
            err = scale * rng.standard_normal() * hc[i] / 100
            w.writerow(
                [i % 3, f"{i:03d}_HC.png", hc[i], hc[i] - err, rng.uniform(0.1, 1), 0.1,
                 rng.uniform(0, 0.3), hc[i] / 3.3, hc[i] / 3.3 - err / 3, hc[i] / 2.9,
                 hc[i] / 2.9 - err / 3, "ok", "ok"]
            )  # fmt: skip


def test_calibrate_writes_the_model_config_and_a_report_and_recalibrates(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model": {}, "quality": {}}))
    _rows(tmp_path / "oof.csv", scale=1.0)
    r = run_cli("calibrate", tmp_path / "oof.csv", "--model", model, "--report", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    assert "covered at 95 %" in r.stdout
    config = json.loads((model / "config.json").read_text())
    first = config["intervals"]
    assert config["model"] == {} and set(first["measures"]) == {"hc_mm", "bpd_mm", "ofd_mm"}
    assert (tmp_path / "rep" / "reliability.png").stat().st_size > 1000
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "(chosen)" in report and "| hc_mm | HC tercile | large |" in report
    # errors three times as large: the recalibrated quantiles grow about threefold
    _rows(tmp_path / "oof.csv", scale=3.0)
    r = run_cli("calibrate", tmp_path / "oof.csv", "--model", model, "--report", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    second = json.loads((model / "config.json").read_text())["intervals"]
    # the same head's interval: about three times as wide
    features = {"hc_mm": 200.0, "pass_distance_mm": 0.5, "pixel_size_mm": 0.1,
                "edge_probability": 0.1}  # fmt: skip
    halves = [
        np.diff(IntervalCalibration.from_dict(c).interval("hc_mm", 200.0, features))[0] / 2
        for c in (first, second)
    ]
    assert halves[1] / halves[0] == pytest.approx(3.0, rel=0.25)


def test_calibrate_refuses_rows_that_are_not_out_of_fold_rows(tmp_path):
    (tmp_path / "rows.csv").write_text("filename,hc_mm\na.png,170\n")
    r = run_cli("calibrate", tmp_path / "rows.csv", "--report", tmp_path / "rep")
    assert r.returncode == 2 and "out-of-fold rows" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
