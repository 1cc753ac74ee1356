import csv
import json
from pathlib import Path

import pytest
import yaml

from fetalhc.errors import FetalHCError
from fetalhc.study.grid import load_study
from fetalhc.study.run import run_study
from tests.conftest import run_cli


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
        {"strategies": ["decoder"], "seeds": [0], "train_images": [4]},
    ]
    config = write_config(tmp_path, sample, grids)
    assert [c.name for c in load_study(config).cells()] == [
        "decoder_f100_s0_64x64",
        "d4_f100_s0_64x64",
        "decoder_n004_s0_64x64",
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
        "figures/learning_curves.png",
        "figures/dice_vs_train_images.png",
    ):
        assert (out / name).is_file(), name
    rows = {r["strategy"]: r for r in csv.DictReader(open(out / "main_table.csv"))}
    assert int(rows["decoder"]["trainable_params"]) == 4_405_073
    assert int(rows["d4"]["trainable_params"]) == 6_976
    assert rows["decoder"]["paper_Dice"] == "96.28 (0.38)"  # the paper's row beside ours
    low = list(csv.DictReader(open(out / "low_data_table.csv")))
    assert [(r["model"], r["train_images"]) for r in low] == [("decoder", "4")]
    small = out / "runs" / "decoder_n004_s0_64x64" / "config.json"
    assert json.loads(small.read_text())["images"]["train"] == 4
    report = (out / "report.md").read_text()
    assert "epochs 1, image_size [64, 64]" in report  # the recipe comes from the cells
    assert "precision auto" not in report  # ... with what 'auto' resolved to

    stamp = (out / "runs" / "decoder_f100_s0_64x64" / "cell.json").stat().st_mtime_ns
    assert run_study(config, out) == []  # everything done: nothing re-run
    assert (out / "runs" / "decoder_f100_s0_64x64" / "cell.json").stat().st_mtime_ns == stamp

    # hand-written notes beside the study are part of its report
    from fetalhc.study.report import write_report

    (out / "notes.md").write_text("Row d4 differs because of X, measured in Y.\n")
    assert "Row d4 differs because of X" in write_report(out).read_text()

    # no absolute path of this machine in a run folder
    for path in out.rglob("*.json"):
        assert str(tmp_path) not in path.read_text(), path


def test_changed_yaml_never_reuses_a_stale_cell(tmp_path, sample):
    config = write_config(tmp_path, sample, [{"strategies": ["d4"], "seeds": [0]}])
    out = tmp_path / "study"
    run_study(config, out)
    first = json.loads((out / "runs" / "d4_f100_s0_64x64" / "cell.json").read_text())
    text = config.read_text().replace("lr: 0.001", "lr: 0.01")
    config.write_text(text)
    with pytest.raises(FetalHCError, match=r"d4_f100_s0_64x64 \(lr\)"):
        run_study(config, out)
    results = run_study(config, out, rerun_stale=True)
    assert [r["name"] for r in results] == ["d4_f100_s0_64x64"]
    again = json.loads((out / "runs" / "d4_f100_s0_64x64" / "cell.json").read_text())
    assert again["config"]["lr"] == 0.01 and again["config_hash"] != first["config_hash"]


def test_half_trained_cell_with_other_settings_is_refused(tmp_path, sample):
    config = write_config(tmp_path, sample, [{"strategies": ["d4"], "seeds": [0]}])
    out = tmp_path / "study"
    run_study(config, out)
    cell = out / "runs" / "d4_f100_s0_64x64"
    (cell / "cell.json").unlink()  # as if killed before evaluation
    config.write_text(config.read_text().replace("batch_size: 4", "batch_size: 2"))
    with pytest.raises(FetalHCError, match="batch_size"):
        run_study(config, out)
    config.write_text(
        config.read_text()
        .replace("epochs: 1", "epochs: 2")
        .replace("batch_size: 2", "batch_size: 4")
    )
    results = run_study(config, out)  # more epochs for the same recipe: it may go on
    assert results[0]["train"]["epochs"] == 2


def test_degenerate_cells_are_named():
    from fetalhc.study.grid import degenerate_reason

    good = {"paper_pixel_accuracy": 0.98}
    everywhere = {"paper_pixel_accuracy": 0.31}
    assert degenerate_reason(good, 0, 10, Path("/nonexistent")) == ""
    assert "everywhere" in degenerate_reason(everywhere, 0, 10, Path("/nonexistent"))
    assert "no head" in degenerate_reason(good, 8, 10, Path("/nonexistent"))


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


def test_verdicts_say_what_they_rest_on():
    from fetalhc.study.report import verdicts

    def row(strategy, dice, seeds=3, params=4_405_073):
        return {"strategy": strategy, "_dice": dice, "seeds": seeds, "trainable_params": params}

    def low(model, n, dice, seeds=3):
        return {"model": model, "train_images": n, "_dice": dice, "seeds": seeds}

    main = [
        row("decoder", 96.0),
        row("full", 96.5, params=6_628_945),
        row("scratch-unet", 98.5, seeds=1, params=31_037_633),
        row("d4", 50.0, params=6_976),
    ]
    # decoder 2.5 points below the scratch U-Net: 'partly', and the one-seed row is named
    first, second = verdicts(main, [])
    assert "partly reproduced (provisional: seeds scratch-unet 1 of 3)" in first
    assert "reproduced: decoder 96.00 beats 1 of 1" in second

    # pretraining helps most with little data: the gain shrinks with more images
    shrinking = [low("decoder", 79, 92.0), low("scratch-unet", 79, 88.0)]
    shrinking += [low("decoder", 239, 94.0), low("scratch-unet", 239, 93.0)]
    claim = verdicts([], shrinking)[-1]
    assert "— reproduced:" in claim and "79 images: +4.00, 239 images: +1.00" in claim
    # scratch ahead at the smallest size: not reproduced, whatever follows
    ahead = [dict(r) for r in shrinking]
    ahead[1]["_dice"] = 93.0
    assert "— not reproduced:" in verdicts([], ahead)[-1]
    # a partial study says what the claim waits for instead of dropping it
    partial = verdicts([], shrinking[:3])[-1]
    assert "not judged yet" in partial and "not yet run: scratch-unet 239" in partial


def test_recipe_names_the_weights_each_cell_loaded():
    from fetalhc.study.report import recipe_lines

    recipe = {"epochs": 20, "encoder_weights": "../../w/mobilenet_v2_imagenet.pth"}
    cells = [
        {"name": "a", "cell": {"strategy": "decoder"}, "recipe": recipe},
        {"name": "b", "cell": {"strategy": "encoder-random"}, "recipe": recipe},
        {"name": "c", "cell": {"strategy": "scratch-unet"}, "recipe": recipe},
    ]
    lines = recipe_lines(cells)
    assert len(lines) == 2
    assert lines[0].endswith("encoder_weights mobilenet_v2_imagenet.pth (1 cell)")
    assert lines[1].endswith("encoder_weights none (random init) (2 cells)")


def _cell(folder: Path, strategy: str, dice: float, seed: int = 0, **cell) -> None:
    """A finished cell record as `compare` writes it (metrics only: what the report reads)."""
    spec = {"strategy": strategy, "seed": seed, "image_size": "160x128", **cell}
    name = "_".join([strategy, f"s{seed}", *(f"{k}{v}" for k, v in cell.items())])
    (folder / "runs" / name).mkdir(parents=True)
    record = {
        "cell": {"fraction": 1.0, "train_images": 0, "bn_mode": "paper", **spec},
        "name": name,
        "metrics": {
            "paper_dice": dice,
            "paper_pixel_accuracy": 0.97,
            "paper_iou": 0.9,
            "dice": dice,
            "hd_mm": 1.0,
            "hc_abs_diff_mm": 2.0,
        },
        "train": {"trainable_params": 1, "train_seconds": 60},
        "degenerate": "",
    }
    (folder / "runs" / name / "cell.json").write_text(json.dumps(record))


def test_the_report_keeps_the_skip_ablation_and_other_sizes_out_of_the_main_table(tmp_path):
    from fetalhc.study.report import load_cells, main_table, skip_ablation_table, write_report

    _cell(tmp_path, "d0", 0.40)
    _cell(tmp_path, "d0", 0.80, skip_rescale=True)
    _cell(tmp_path, "d234", 0.92)
    _cell(tmp_path, "d234", 0.85, skip_rescale=True)
    _cell(tmp_path, "decoder", 0.96)
    _cell(tmp_path, "decoder", 0.93, train_images=79, image_size="320x256")
    cells = load_cells(tmp_path)
    main = {r["strategy"]: r for r in main_table(cells)}
    assert main["d0"]["Dice"] == "40.00" and main["d234"]["Dice"] == "92.00"
    assert main["decoder"]["seeds"] == 1  # the 320x256 low-data cell is not in it
    skips = {r["strategy"]: r for r in skip_ablation_table(cells)}
    assert skips["d0"]["rescaling moves it"] == "+40.00"  # 82.46 in the paper: towards it
    assert skips["d0"]["towards the paper"] == "yes" and skips["d234"]["towards the paper"] == "yes"
    text = write_report(tmp_path).read_text()
    assert "Skip scale: **explains both directions**" in text
    assert "## Low-data table at 320x256" in text


def test_size_verdicts_pair_the_two_models_seed_by_seed():
    from fetalhc.study.report import size_verdicts

    def low(model, n, by_seed):
        return {"model": model, "train_images": n, "_by_seed": by_seed}

    here = [low("decoder", 79, {0: 94.0, 1: 94.5}), low("scratch-unet", 79, {0: 95.0, 1: 94.0})]
    there = [
        low("decoder", 79, {0: 93.7, 1: 94.0, 2: 93.0}),
        low("scratch-unet", 79, {0: 92.3, 1: 93.5, 2: 92.0}),
    ]
    (line,) = size_verdicts(here, {"320x256": there}, "160x128")
    assert "at 320x256** (79 training images) — reproduced:" in line
    assert "+0.97 (s0 +1.40, s1 +0.50, s2 +1.00)" in line
    assert "at 160x128: -0.25 (s0 -1.00, s1 +0.50)" in line
    # scratch ahead in one seed: mixed; one seed only: provisional
    there[1]["_by_seed"][1] = 94.5
    assert "— mixed:" in size_verdicts(here, {"320x256": there}, "160x128")[0]
    one = [low("decoder", 79, {0: 93.7}), low("scratch-unet", 79, {0: 92.3})]
    assert "(provisional: 1 of 3 seeds)" in size_verdicts([], {"320x256": one}, "160x128")[0]


def test_a_run_with_the_same_recipe_is_adopted_as_a_cell_and_another_refused(tmp_path, sample):
    import shutil

    config = write_config(tmp_path, sample, [{"strategies": ["d4"], "seeds": [0]}])
    probe = tmp_path / "probe"
    run_study(config, probe)  # trained outside the study below: a probe's run
    run = probe / "runs" / "d4_f100_s0_64x64"
    out = tmp_path / "study"
    out.mkdir()
    shutil.copy(probe / "split.csv", out / "split.csv")
    r = run_cli("compare", "--config", config, "--out", out, "--adopt", run, "d4_f100_s0_64x64")
    assert r.returncode == 0, r.stderr
    cell = json.loads((out / "runs" / "d4_f100_s0_64x64" / "cell.json").read_text())
    assert cell["adopted_from"] == "runs/d4_f100_s0_64x64"
    probe_cell = json.loads((run / "cell.json").read_text())
    assert cell["metrics"] == probe_cell["metrics"]
    assert run_study(config, out) == []  # the adopted cell is not trained again
    assert "adopted by `fetalhc compare --adopt`" in (out / "report.md").read_text()
    # another recipe: refused, naming what differs; nothing written
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(probe / "split.csv", other / "split.csv")
    config.write_text(config.read_text().replace("lr: 0.001", "lr: 0.01"))
    r = run_cli("compare", "--config", config, "--out", other, "--adopt", run, "d4_f100_s0_64x64")
    assert r.returncode == 2 and "differs from cell d4_f100_s0_64x64 in: lr" in r.stderr
    assert not (other / "runs").exists()
