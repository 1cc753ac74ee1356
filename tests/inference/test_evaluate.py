import csv
import json
from pathlib import Path

import numpy as np
import pytest

from fetalhc.data.hc18 import load_labelled, load_mask
from fetalhc.inference.evaluate import EvalOptions, evaluate_records
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.segmenter import Prediction, upsample_probability
from tests.conftest import run_cli


class ReferenceSegmenter:
    """Stands in for a network that outputs exactly the reference masks."""

    batch_size = 1
    backend = "reference"
    checkpoint = Path("reference")
    config: dict = {}  # a model's config.json: none, so the flag's default thresholds

    def __init__(self, records):
        self.masks = iter([load_mask(r) for r in records])

    def predict(self, images):
        logits = np.where(next(self.masks) > 0, 30.0, -30.0)
        return [Prediction(upsample_probability(logits, images[0].shape), logits)]


def test_reference_masks_score_perfectly(tmp_path, sample):
    records = load_labelled(sample)
    measurer = HeadMeasurer.from_segmenter(ReferenceSegmenter(records))
    summary = evaluate_records(measurer, records, tmp_path, EvalOptions())
    m = summary["metrics"]
    assert m["dice"]["mean"] == 1.0 and m["paper_dice"]["mean"] == 1.0
    assert m["hd_mm"]["mean"] == 0.0 and m["assd_mm"]["mean"] == 0.0
    # the HC18 challenge's ellipse-vs-ellipse metrics: the fit of a perfect mask is the
    # reference ellipse to within a fraction of a pixel
    assert m["ellipse_dice"]["mean"] > 0.995
    assert m["ellipse_hd_mm"]["mean"] < 0.3
    assert m["hc_abs_diff_mm"]["mean"] < 0.1
    assert m["hc_abs_diff_mm"]["n"] == len(records)
    assert summary["quality_flag"]["flagged"] == 0
    rows = list(csv.DictReader(open(tmp_path / "per_image.csv")))
    for r in rows:  # the clinical outputs are in the evaluation too
        assert float(r["ofd_mm"]) >= float(r["bpd_mm"]) > 0
        assert float(r["cephalic_index"]) == pytest.approx(
            100 * float(r["bpd_mm"]) / float(r["ofd_mm"]), rel=1e-6
        )


def test_flag_report_counts_caught_errors_per_threshold():
    from fetalhc.inference.evaluate import flag_report

    def r(err, quality):
        return {"hc_abs_diff_mm": err, "quality": quality}

    rows = [r(1.0, "ok")] * 6 + [r(12.0, "check"), r(11.0, "ok"), r(6.0, "check")]
    rows += [r(float("nan"), "no_head")]  # no head: off by more than any threshold
    q = flag_report(rows)
    assert q["flagged"] == 3 and q["flagged_pct"] == pytest.approx(30.0)
    assert q["catches"] == [
        {"error_over_mm": 5.0, "images": 4, "caught": 3},
        {"error_over_mm": 10.0, "images": 3, "caught": 2},
    ]
    assert q["hc_abs_diff_mm_unflagged"]["mean"] == pytest.approx((6 * 1.0 + 11.0) / 7)


def test_evaluate_cli_outputs(tiny_run, sample, sample_split, tmp_path):
    out = tmp_path / "ev"
    r = run_cli(
        "evaluate",
        tiny_run,
        "--data",
        sample,
        "--split",
        sample_split,
        "--part",
        "test",
        "--out",
        out,
    )
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    for col in (
        "dice",
        "iou",
        "pixel_accuracy",
        "hd_mm",
        "assd_mm",
        "hc_mm",
        "ref_hc_mm",
        "hc_diff_mm",
        "hc_abs_diff_mm",
        "ga_weeks",
        "ref_ga_weeks",
        "quality",
        "paper_dice",
        "paper_iou",
        "paper_pixel_accuracy",
    ):
        assert col in rows[0], col
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["metrics"]["dice"]) >= {"mean", "sd", "median", "p95"}
    assert summary["images"] == len(rows)
    assert "paper's metrics" in (out / "summary.md").read_text()
    assert any((out / "worst").glob("*_overlay.png"))
    for row in rows:
        if row["status"] == "ok":
            assert float(row["ref_hc_mm"]) > 0
            assert float(row["hc_abs_diff_mm"]) == pytest.approx(
                abs(float(row["hc_mm"]) - float(row["ref_hc_mm"]))
            )


def test_bad_annotation_is_reported_and_skipped(tiny_run, sample_copy, tmp_path):
    (sample_copy / "training_set" / "078_HC_Annotation.png").write_bytes(b"broken")
    out = tmp_path / "ev"
    r = run_cli("evaluate", tiny_run, "--data", sample_copy, "--out", out, "--backend", "torch")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    rows = list(csv.DictReader(open(out / "per_image.csv")))
    assert len(rows) == 14 and "078_HC.png" not in {row["filename"] for row in rows}
    assert "078_HC.png" in json.loads((out / "summary.json").read_text())["skipped"][0]
