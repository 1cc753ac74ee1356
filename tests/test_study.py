import csv

import pytest
import yaml

from fetalhc.study import load_study, run_study

from .conftest import run_cli


def write_config(tmp_path, sample, grids, workers=1):
    config = {
        "data": str(sample),
        "split": {"val": 0.2, "test": 0.2, "seed": 0},
        "encoder_weights": "none",
        "train": {"epochs": 1, "image_size": "64x64", "batch_size": 4, "lr": 0.001},
        "workers": workers,
        "grids": grids,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_grid_runs_resumes_and_reports(tmp_path, sample):
    grids = [
        {"strategies": ["decoder", "d4"], "seeds": [0]},
        {"strategies": ["decoder"], "seeds": [0], "fractions": [0.5]},
    ]
    config = write_config(tmp_path, sample, grids)
    assert [c.name for c in load_study(config).cells()] == [
        "decoder_f100_s0_64x64",
        "d4_f100_s0_64x64",
        "decoder_f050_s0_64x64",
    ]
    out = tmp_path / "study"
    results = run_study(config, out)
    assert len(results) == 3 and not any("error" in r for r in results)
    for name in (
        "report.md",
        "main_table.csv",
        "low_data_table.csv",
        "cells.csv",
        "figures/dice_vs_params.png",
        "figures/hc_diff_by_strategy.png",
        "figures/learning_curves.png",
        "figures/dice_vs_fraction.png",
    ):
        assert (out / name).is_file(), name
    rows = {r["strategy"]: r for r in csv.DictReader(open(out / "main_table.csv"))}
    assert float(rows["decoder"]["trainable_params_M"]) == pytest.approx(4.405073)
    assert float(rows["d4"]["trainable_params_M"]) == pytest.approx(0.006976)
    report = (out / "report.md").read_text()
    assert "96.28" in report  # the paper's decoder Dice is shown next to ours

    stamp = (out / "runs" / "decoder_f100_s0_64x64" / "cell.json").stat().st_mtime_ns
    assert run_study(config, out) == []  # everything done: nothing re-run
    assert (out / "runs" / "decoder_f100_s0_64x64" / "cell.json").stat().st_mtime_ns == stamp


def test_parallel_processes(tmp_path, sample):
    config = write_config(tmp_path, sample, [{"strategies": ["d4"], "seeds": [0, 1]}], workers=2)
    results = run_study(config, tmp_path / "study")
    assert sorted(r["name"] for r in results) == ["d4_f100_s0_64x64", "d4_f100_s1_64x64"]


def test_ray_local_cluster(tmp_path, sample):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        config = write_config(tmp_path, sample, [{"strategies": ["d4"], "seeds": [0, 1]}])
        results = run_study(config, tmp_path / "study", ray_address="local")
    finally:
        ray.shutdown()
    assert sorted(r["name"] for r in results) == ["d4_f100_s0_64x64", "d4_f100_s1_64x64"]
    assert all("error" not in r for r in results)


def test_bad_study_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: x\ngrids: [{strategies: [nope]}]\n")
    r = run_cli("compare", "--config", bad, "--out", tmp_path / "o")
    assert r.returncode == 2 and "unknown strategy" in r.stderr
