"""`fetalhc adapt` and its parts: the convention offset, the gate, agreement statistics,
corrections imported from files, and a model folder that predict takes."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from fetalhc.measure.agreement import agreement, paired_bootstrap_ci
from fetalhc.measure.ellipse import Ellipse, hc_mm
from fetalhc.study.adapt import Sample, fit_offset_mm, gate
from tests.conftest import run_cli


def test_the_fitted_offset_is_the_shift_between_the_outlines():
    rng = np.random.default_rng(0)
    samples, measured = [], []
    for i in range(9):
        e = Ellipse(200, 150, rng.uniform(40, 120), rng.uniform(30, 90), rng.uniform(0, 3))
        size = rng.uniform(0.08, 0.3)
        final = e.grown(-1.2 / size)  # the clinic draws 1.2 mm inside
        samples.append(Sample(f"{i}", np.zeros((2, 2), np.uint8), final, size, "adapt", ""))
        measured.append(e)
    measured[0] = None  # a head the model missed does not count
    assert fit_offset_mm(measured, samples) == pytest.approx(-1.2, abs=1e-3)


def test_agreement_and_the_paired_bootstrap():
    ref = np.array([100.0, 150.0, 200.0, 250.0])
    a = agreement(ref + np.array([1.0, -1.0, 3.0, 12.0]), ref, ok=np.array([1, 1, 1, 1], bool))
    assert a["adf_mm"] == pytest.approx(4.25) and a["bias_mm"] == pytest.approx(3.75)
    assert a["over_10mm"] == 1 and a["over_10mm_ok"] == 1
    sd = np.std([1.0, -1.0, 3.0, 12.0], ddof=1)
    assert a["loa_high_mm"] == pytest.approx(3.75 + 1.96 * sd)
    better = paired_bootstrap_ci(np.full(50, 1.0), np.full(50, 3.0))
    assert better == pytest.approx((-2.0, -2.0, -2.0))
    mean, low, high = paired_bootstrap_ci(np.array([1.0, np.nan]), np.array([1.0, 1.0]))
    assert mean == pytest.approx(14.5) and low <= mean <= high  # no head: a 30 mm error


def _results(change, ci, hc18=None):
    r = {"base": {"adf_change_mm": 0.0, "adf_change_ci": (0.0, 0.0)}}
    r["decoder"] = {"adf_change_mm": change, "adf_change_ci": ci}
    if hc18 is not None:
        r["decoder"]["hc18"] = {"adf_change_mm": hc18}
    return r


def test_the_gate_promotes_only_a_sure_improvement_that_did_not_forget():
    assert gate(_results(0, (0, 0)), "base")[0] is False
    ok, why = gate(_results(-1.0, (-1.5, 0.2), 0.0), "decoder")
    assert not ok and "not surely better" in why
    ok, why = gate(_results(-1.0, (-1.5, -0.5), 0.3), "decoder")
    assert not ok and "forgot" in why
    ok, why = gate(_results(-1.0, (-1.5, -0.5)), "decoder")
    assert not ok and "HC18" in why
    assert gate(_results(-1.0, (-1.5, -0.5), 0.05), "decoder")[0] is True


def test_a_result_moves_by_the_models_convention():
    from fetalhc.inference.measurer import result_from_measurement
    from fetalhc.measure.ellipse import draw_filled
    from fetalhc.measure.postprocess import measure

    head = Ellipse(250.0, 200.0, 170.0, 130.0, 0.3)
    m = measure(draw_filled(head, (400, 520)).astype(np.float32))
    plain = result_from_measurement("a.png", m, 0.2)
    inside = result_from_measurement("a.png", m, 0.2, offset_mm=-1.5)
    assert plain.hc_mm - inside.hc_mm == pytest.approx(2 * math.pi * 1.5, rel=0.01)
    assert inside.ellipse_px.a == pytest.approx(plain.ellipse_px.a - 1.5 / 0.2)


def test_corrections_import_from_hc18_layout_and_from_a_fixed_predict_csv(tmp_path, sample):
    r = run_cli("corrections", "import", sample, "--out", tmp_path / "a")
    assert r.returncode == 0, r.stderr
    assert "15 corrections stored" in r.stdout and len(list((tmp_path / "a").glob("*.json"))) == 15
    # predict's rows, one fixed by hand and one broken: the broken one is its own line
    rows = [
        {"filename": "000_HC.png", "center_x_mm": 27.0, "center_y_mm": 18.0,
         "semi_axes_a_mm": 8.0, "semi_axes_b_mm": 6.5, "angle_rad": 0.1},
        {"filename": "014_HC.png", "center_x_mm": "x", "center_y_mm": 1, "semi_axes_a_mm": 1,
         "semi_axes_b_mm": 1, "angle_rad": 0},
    ]  # fmt: skip
    with open(tmp_path / "fixed.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    r = run_cli(
        "corrections", "import", sample / "training_set", "--out", tmp_path / "b",
        "--ellipses", tmp_path / "fixed.csv",
        "--pixel-csv", sample / "training_set_pixel_size_and_HC.csv",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "1 corrections stored, 1 skipped" in r.stdout and "014_HC.png" in r.stdout
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "b").glob("*.json")]
    size = record["pixel_size_mm"]
    assert record["final"]["a"] * size == pytest.approx(8.0)
    assert record["final_hc_mm"] == pytest.approx(hc_mm(Ellipse(0, 0, 8.0, 6.5, 0.1), 1.0))


def test_adapt_on_the_sample_writes_a_model_predict_takes_and_says_it_was_not_promoted(
    tmp_path, sample
):
    out = tmp_path / "clinic"
    r = run_cli(
        "adapt", sample, "--out", out, "--steps", "2", "--candidates", "base,offset,decoder",
        "--threads", "2",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    config = json.loads((out / "config.json").read_text())
    adaptation = config["adaptation"]
    assert adaptation["promoted"] is False and adaptation["reason"]
    assert len(adaptation["parent_sha256"]) == 64
    report = json.loads((out / "adapt_report.json").read_text())
    assert set(report["candidates"]) == {"base", "offset", "decoder"}
    assert report["corrections"] == {"adapt": 8, "held_back": 7}
    manifest = list(csv.DictReader(open(out / "corrections_manifest.csv")))
    assert len(manifest) == 15 and {m["part"] for m in manifest} == {"adapt", "held-back"}
    assert "NOT promoted" in (out / "MODEL_CARD.md").read_text()
    again = run_cli("adapt", sample, "--out", out, "--steps", "1")
    assert again.returncode == 2 and "holds a model already" in again.stderr
    image = sample / "test_set" / "090_HC.png"
    p = run_cli("predict", image, "--pixel-size", "0.1047", "--model", out, "--out", tmp_path / "p")
    assert p.returncode == 0, p.stderr
    assert "not promoted" in p.stderr


def test_the_flag_is_tuned_again_only_with_enough_held_back_corrections(tmp_path, monkeypatch):
    from fetalhc.study import adapt as adapt_module
    from fetalhc.study.adapt import Measured, write_model

    ckpt = tmp_path / "cand" / "model.safetensors"
    ckpt.parent.mkdir()
    ckpt.write_bytes(b"weights")
    (ckpt.parent / "config.json").write_text(
        json.dumps({"model": {}, "quality": {"max_hc_mm": 300}})
    )
    rng = np.random.default_rng(0)
    n = 40
    held = [
        Sample(f"{i}", np.zeros((2, 2), np.uint8), Ellipse(0, 0, 80, 60, 0), 0.2, "held-back", "x")
        for i in range(n)
    ]
    ref = np.array([s.final_hc_mm for s in held])
    err = rng.normal(0, 1.5, n)
    err[:3] = 15.0  # three large errors, seen by the passes' distance alone
    features = [
        {"pass_distance_mm": 2.0 if i < 3 else 0.3, "ellipse_iou": 0.98, "hc_mm": r + e,
         "pixel_size_mm": 0.2}
        for i, (r, e) in enumerate(zip(ref, err, strict=True))
    ]  # fmt: skip
    measured = Measured(ref + err, np.ones(n, bool), [None] * n, features)
    args = ("decoder", 0.0, 0.0, True, "ok", held, measured, held)
    kept = write_model(tmp_path / "a", ckpt, ckpt, *args)
    config = json.loads((kept.parent / "config.json").read_text())
    assert (
        config["quality"] == {"max_hc_mm": 300} and "the parent's" in config["adaptation"]["flag"]
    )
    monkeypatch.setattr(adapt_module, "MIN_CORRECTIONS_FOR_FLAG", 30)
    tuned = write_model(tmp_path / "b", ckpt, ckpt, *args)
    config = json.loads((tuned.parent / "config.json").read_text())
    assert config["quality"]["max_pass_distance_mm"] < 2.0
    assert config["adaptation"]["flag"].startswith("tuned on 40")
    assert config["intervals"]["data"].startswith("40 held-back")
