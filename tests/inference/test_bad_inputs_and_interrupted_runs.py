"""Hostile and careless inputs: every command keeps its contract.

Contract (README, "What fetalhc guarantees"): exit 0 (all done), 1 (a batch finished but
some inputs failed, each named), 2 (a user error, one line on stderr); never a traceback;
every input accounted for; nothing written outside --out or the target folder; no wrong HC
marked `ok`.
"""

from __future__ import annotations

import csv
import http.server
import json
import math
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetalhc.cli.main import main


def cli(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in this process (fast: torch is imported once); return code, out, err."""
    try:
        code = main([str(a) for a in args])
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err and "Traceback" not in out, err
    return code, out, err


def one_line_error(code: int, err: str) -> None:
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines and "error" in lines[-1]


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def images(tmp_path, sample) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("090_HC.png", "180_HC.png"):
        shutil.copy(sample / "test_set" / name, folder / name)
    return folder


# ---------------------------------------------------------------- wrong HC marked ok
def test_pixel_csv_columns_found_by_header_name(capsys, tmp_path, images):
    reference = tmp_path / "ref"
    code, _, _ = cli(
        capsys,
        "predict",
        images / "090_HC.png",
        "--pixel-size",
        "0.104674311976",
        "--out",
        reference,
    )
    assert code == 0
    reordered = tmp_path / "reordered.csv"
    reordered.write_text(
        "filename,head circumference (mm),pixel size(mm)\n090_HC.png,170.0,0.104674311976\n"
    )
    out = tmp_path / "out"
    code, _, _ = cli(
        capsys, "predict", images / "090_HC.png", "--pixel-csv", reordered, "--out", out
    )
    assert code == 0
    want, got = rows(reference / "predictions.csv")[0], rows(out / "predictions.csv")[0]
    assert got["status"] == "ok" and float(got["hc_mm"]) == pytest.approx(float(want["hc_mm"]))


@pytest.mark.parametrize(
    "header", ["name,pixel size(mm)", "filename,spacing", "filename", "", "\ufeff"]
)
def test_pixel_csv_without_needed_column_is_one_line_error(capsys, tmp_path, images, header):
    bad = tmp_path / "bad.csv"
    bad.write_text(f"{header}\n090_HC.png,0.1\n")
    code, _, err = cli(capsys, "predict", images, "--pixel-csv", bad, "--out", tmp_path / "o")
    one_line_error(code, err)
    assert not (tmp_path / "o" / "predictions.csv").exists()


@given(
    value=st.one_of(
        st.floats(allow_nan=True, allow_infinity=True).filter(lambda v: not (0.01 <= v <= 2.0)),
        st.sampled_from(["inf", "-inf", "nan", "1e-300", "0", "-0.1", "1e300", "abc", ""]),
    )
)
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_implausible_pixel_size_flag_refused_before_any_work(capsys, tmp_path, images, value):
    out = tmp_path / "never"
    code, _, err = cli(
        capsys,
        "predict",
        images,
        "--pixel-size",
        repr(value) if isinstance(value, float) else value,
        "--out",
        out,
    )
    one_line_error(code, err)
    assert not out.exists()


def test_implausible_pixel_sizes_in_csv_are_never_ok(capsys, tmp_path, images):
    table = tmp_path / "sizes.csv"
    table.write_text("filename,pixel size(mm)\n090_HC.png,1e-300\n180_HC.png,inf\n")
    out = tmp_path / "out"
    code, _, _ = cli(capsys, "predict", images, "--pixel-csv", table, "--out", out)
    assert code == 1
    got = rows(out / "predictions.csv")
    assert len(got) == 2
    assert all(r["status"] != "ok" and r["hc_mm"] == "" for r in got)


def test_conflicting_pixel_csv_rows_are_not_measured(capsys, tmp_path, images):
    table = tmp_path / "sizes.csv"
    table.write_text("filename,pixel size(mm)\n090_HC.png,0.1\n090_HC.png,0.2\n180_HC.png,0.13\n")
    out = tmp_path / "out"
    code, _, _ = cli(capsys, "predict", images, "--pixel-csv", table, "--out", out)
    assert code == 1
    by_name = {r["filename"]: r for r in rows(out / "predictions.csv")}
    assert by_name["090_HC.png"]["status"] == "no_pixel_size"
    assert by_name["180_HC.png"]["status"] == "ok"


@pytest.mark.parametrize("depth", ["16bit-full", "16bit-12bit", "rgba", "rgb"])
def test_unusual_bit_depths_measure_like_the_8bit_image(capsys, tmp_path, sample, depth):
    gray = cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)
    variants = {
        "16bit-full": gray.astype(np.uint16) * 257,
        "16bit-12bit": gray.astype(np.uint16) * 16,
        "rgba": cv2.cvtColor(gray, cv2.COLOR_GRAY2BGRA),
        "rgb": cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR),
    }
    folder = tmp_path / "in"
    folder.mkdir()
    cv2.imwrite(str(folder / "a_8bit.png"), gray)
    cv2.imwrite(str(folder / "b_variant.png"), variants[depth])
    out = tmp_path / "out"
    code, _, _ = cli(capsys, "predict", folder, "--pixel-size", "0.134", "--out", out)
    assert code == 0
    a, b = rows(out / "predictions.csv")
    assert float(b["hc_mm"]) == pytest.approx(float(a["hc_mm"]), abs=0.5)


# ---------------------------------------------------------------- lost batches
def test_output_folder_problems_reported_before_any_work(capsys, tmp_path, images):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    for out in (a_file, a_file / "sub"):
        code, _, err = cli(capsys, "predict", images, "--pixel-size", "0.1", "--out", out)
        one_line_error(code, err)
    assert a_file.read_text() == "x"


def test_one_bad_image_is_a_row_and_the_rest_finish(capsys, tmp_path, images, monkeypatch):
    (images / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (images / "empty.png").write_bytes(b"")
    big = np.zeros((1000, 1000), np.uint8)
    cv2.imwrite(str(images / "huge.png"), big)
    monkeypatch.setenv("FETALHC_MAX_PIXELS", "500000")  # 800x540 fits, 1000x1000 not
    out = tmp_path / "out"
    code, _, _ = cli(capsys, "predict", images, "--pixel-size", "0.12", "--out", out)
    assert code == 1
    by_name = {r["filename"]: r for r in rows(out / "predictions.csv")}
    assert set(by_name) == {"090_HC.png", "180_HC.png", "broken.png", "empty.png", "huge.png"}
    assert by_name["090_HC.png"]["status"] == "ok"
    assert "too large" in by_name["huge.png"]["status"]
    assert by_name["empty.png"]["status"].startswith("unreadable")


def test_interrupted_predict_keeps_rows_and_rerun_continues(capsys, tmp_path, sample, monkeypatch):
    from fetalhc.inference import measurer as measurer_module

    out = tmp_path / "out"
    calls: list[int] = []
    original = measurer_module.HeadMeasurer._measure_batch

    def dying(self, images, sizes, names, *rest):
        if len(calls) == 2:
            raise KeyboardInterrupt  # stands in for SIGKILL half-way through
        calls.append(len(images))
        return original(self, images, sizes, names, *rest)

    monkeypatch.setattr(measurer_module.HeadMeasurer, "_measure_batch", dying)
    args = (
        "predict",
        sample / "test_set",
        "--pixel-csv",
        sample / "test_set_pixel_size.csv",
        "--out",
        out,
        "--batch",
        "1",
    )
    code, _, _ = cli(capsys, *args)
    assert code == 130
    kept = rows(out / "predictions.partial.csv")
    assert len(kept) == 2 and not (out / "predictions.csv").exists()

    calls.clear()
    monkeypatch.setattr(
        measurer_module.HeadMeasurer,
        "_measure_batch",
        lambda self, *a: (calls.append(len(a[0])), original(self, *a))[1],
    )
    code, _, _ = cli(capsys, *args)
    assert code == 0
    assert sum(calls) == 2  # only the two images not measured before
    final = rows(out / "predictions.csv")
    assert sorted(r["filename"] for r in final) == [
        "000_HC.png",
        "090_HC.png",
        "180_HC.png",
        "270_HC.png",
    ]
    assert not (out / "predictions.partial.csv").exists()


def test_a_partial_run_with_other_columns_or_thresholds_is_not_resumed(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from fetalhc.inference import predict as predict_module
    from fetalhc.inference.measurer import HeadMeasurer
    from fetalhc.io.pixel_size import PixelSize

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"x")
    seg = SimpleNamespace(
        checkpoint=weights, checkpoints=[weights], flip_tta=False, config={}, batch_size=1
    )
    options = predict_module.PredictOptions(masks=True, ga_weeks=None, overlays=False)

    def key(quality=None):
        measurer = HeadMeasurer.from_segmenter(seg, quality=quality)
        return predict_module._run_key(measurer, {"a.png": PixelSize.of(0.1)}, options)

    first = key()
    assert key() == first
    assert key({"max_hc_mm": 300.0}) != first  # the same weights, another flag
    # a partial CSV written by a version with other columns would be misread if resumed
    monkeypatch.setattr(predict_module, "COLUMNS", predict_module.COLUMNS[:-1])
    assert key() != first


def test_unwritable_cache_still_predicts(capsys, tmp_path, images, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv("FETALHC_CACHE", str(blocker / "cache"))  # cannot be created, even by root
    out = tmp_path / "out"
    code, _, _ = cli(capsys, "predict", images, "--pixel-size", "0.12", "--out", out)
    assert code == 0
    assert all(r["status"] == "ok" for r in rows(out / "predictions.csv"))


# ---------------------------------------------------------------- inputs accounted for
def test_subfolders_and_duplicate_names_are_all_accounted_for(capsys, tmp_path, sample):
    a, b = tmp_path / "a", tmp_path / "b"
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    shutil.copy(sample / "test_set" / "090_HC.png", a / "sub" / "090_HC.png")
    shutil.copy(sample / "test_set" / "090_HC.png", a / "x.png")
    shutil.copy(sample / "test_set" / "180_HC.png", b / "x.png")
    (a / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code, _, err = cli(capsys, "predict", a, b, "--pixel-size", "0.12", "--out", out)
    assert code == 0
    names = sorted(r["filename"] for r in rows(out / "predictions.csv"))
    assert names == ["a/x.png", "b/x.png", "sub/090_HC.png"]
    assert (out / "masks" / "a" / "x_mask.png").is_file()
    assert (out / "masks" / "b" / "x_mask.png").is_file()
    assert "not images were ignored" in err


def test_data_check_reports_duplicated_and_conflicting_rows(capsys, sample_copy):
    table = sample_copy / "training_set_pixel_size_and_HC.csv"
    lines = table.read_text().splitlines()
    first = lines[1]
    name = first.split(",")[0]
    second = lines[2]
    conflict = second.split(",")[0] + ",0.5," + second.split(",")[2]
    table.write_text("\n".join([*lines, first, conflict]) + "\n")
    code, out, _ = cli(capsys, "data", "check", sample_copy)
    assert code == 1
    assert f"duplicated rows for {name}" in out
    assert f"conflicting rows for {second.split(',')[0]}" in out


def test_data_check_refuses_implausible_reference_values(capsys, sample_copy):
    table = sample_copy / "training_set_pixel_size_and_HC.csv"
    lines = table.read_text().splitlines()
    name = lines[1].split(",")[0]
    lines[1] = f"{name},25.0,44.3"  # 25 mm per pixel: a wrong unit
    table.write_text("\n".join(lines) + "\n")
    code, out, _ = cli(capsys, "data", "check", sample_copy)
    assert code == 1 and f"{name}: pixel size '25.0': pixel size 25 mm is outside" in out


def test_evaluate_names_split_entries_it_cannot_find(
    capsys, tmp_path, tiny_run, sample, sample_split
):
    split = tmp_path / "split.csv"
    split.write_text(sample_split.read_text() + "999_HC.png,999,test\n")
    code, out, err = cli(
        capsys,
        "evaluate",
        tiny_run,
        "--data",
        sample,
        "--split",
        split,
        "--out",
        tmp_path / "ev",
        "--backend",
        "torch",
    )
    assert code == 1
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert any(s.startswith("999_HC.png") for s in summary["skipped"])


# ---------------------------------------------------------------- download stays inside
class _Record(http.server.BaseHTTPRequestHandler):
    key = "../escaped.zip"

    def do_GET(self):  # noqa: N802 - http.server's name
        body = (
            json.dumps(
                {
                    "files": [
                        {
                            "key": self.key,
                            "size": 3,
                            "checksum": "md5:900150983cd24fb0d6963f7d28e17f72",
                            "links": {"self": f"http://127.0.0.1:{self.server.server_port}/f"},
                        }
                    ]
                }
            ).encode()
            if self.path.startswith("/api")
            else b"abc"
        )
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(
    "key",
    [
        "../escaped.zip",
        "/tmp/fetalhc-escaped.zip",
        "a/../../x.zip",
        "..",
        "sub/inner.zip",
        "C:\\evil.zip",
    ],
)
def test_download_refuses_names_leaving_the_folder(capsys, tmp_path, key):
    handler = type("Handler", (_Record,), {"key": key})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        target = tmp_path / "inside" / "hc18"
        before = set(tmp_path.rglob("*"))
        code, _, err = cli(
            capsys, "data", "download", target, "--url", f"http://127.0.0.1:{server.server_port}"
        )
    finally:
        server.shutdown()
    one_line_error(code, err)
    assert "refusing file name" in err
    created = set(tmp_path.rglob("*")) - before
    assert all(p.is_relative_to(tmp_path / "inside") for p in created)
    assert not Path("/tmp/fetalhc-escaped.zip").exists()


# ---------------------------------------------------------------- one line, exit 2
TRAIN_FLAGS = [
    ["--device", "tpu"],
    ["--fraction", "2"],
    ["--fraction", "nan"],
    ["--lr", "inf"],
    ["--lr", "-1"],
    ["--threads", "-1"],
    ["--train-parts", "train,bogus"],
    ["--epochs", "0"],
    ["--batch", "-3"],
    ["--image-size", "banana"],
    ["--bn-mode", "sometimes"],
    ["--loss", "mse"],
    ["--precision", "fp8"],
    ["--strategy", "encoder.9"],
]


def train_args(sample, split, out) -> tuple:
    return ("train", "--data", sample, "--split", split, "--out", out, "--encoder-weights", "none")


@pytest.mark.parametrize("flags", TRAIN_FLAGS, ids=lambda f: " ".join(f))
def test_train_refuses_nonsense_values(capsys, tmp_path, sample, sample_split, flags):
    code, _, err = cli(
        capsys,
        *train_args(sample, sample_split, tmp_path / "run"),
        "--epochs",
        "1",
        *flags,
    )
    assert code == 2 and "error" in err
    assert not (tmp_path / "run" / "resume.pt").exists()


STUDY_CASES = {
    "misspelt epochs": "train: {epoch: 3}",
    "misspelt lr": "train: {learning_rate: 0.1}",
    "seed in grid": "grids: [{strategies: [decoder], seed: [1]}]",
    "epochs as text": "train: {epochs: ten}",
    "image size number": "train: {image_size: 5}",
    "lr as list": "train: {lr: [1, 2]}",
    "grid not a list": "grids: {strategies: [decoder]}",
    "seeds as text": "grids: [{strategies: [decoder], seeds: [a]}]",
    "unknown strategy": "grids: [{strategies: [nonsense]}]",
    "bad bn mode": "train: {bn_mode: sometimes}",
    "workers text": "workers: many",
    "not yaml": "grids: [unclosed",
}


@pytest.mark.parametrize("case", list(STUDY_CASES))
def test_bad_study_yaml_is_refused_with_the_key(capsys, tmp_path, sample, case):
    base = {
        "data": str(sample),
        "train": "train: {epochs: 1}",
        "grids": "grids: [{strategies: [decoder]}]",
    }
    text = STUDY_CASES[case]
    key = text.split(":")[0]
    parts = [f"data: {base['data']}", base["train"], base["grids"]]
    if key in ("train", "grids"):
        parts = [p for p in parts if not p.startswith(key)]
    parts.append(text)
    yaml_file = tmp_path / "study.yaml"
    yaml_file.write_text("\n".join(parts) + "\n")
    code, _, err = cli(capsys, "compare", "--config", yaml_file, "--out", tmp_path / "s")
    one_line_error(code, err)
    if case.startswith("misspelt") or case == "seed in grid":
        assert text.split("{")[1].split(":")[0].strip() in err
    assert not (tmp_path / "s" / "runs").exists()


@pytest.mark.parametrize(
    "model",
    [
        {"image_size": "big"},
        {"image_size": [96]},
        {"decoder_channels": [1, 2]},
        {"arch": 5},
        {"normalization": "zscore"},
        "not a mapping",
    ],
)
def test_run_config_of_wrong_types_is_one_line_error(capsys, tmp_path, tiny_run, model):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    if isinstance(model, dict):
        config["model"].update(model)
    else:
        config["model"] = model
    (run / "config.json").write_text(json.dumps(config))
    code, _, err = cli(
        capsys,
        "predict",
        tiny_run.parent,
        "--run",
        run,
        "--pixel-size",
        "0.1",
        "--backend",
        "torch",
        "--out",
        tmp_path / "out",
    )
    one_line_error(code, err)


def test_resume_state_with_the_wrong_contents_is_one_line_error(
    capsys, tmp_path, tiny_run, sample, sample_split
):
    import torch

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    torch.save({"model": {"nothing": torch.zeros(1)}, "epoch": "x"}, run / "resume.pt")
    config = json.loads((run / "config.json").read_text())["train"]
    code, _, err = cli(
        capsys,
        *train_args(sample, sample_split, run),
        "--epochs",
        "3",
        "--batch",
        config["batch_size"],
        "--lr",
        config["lr"],
        "--image-size",
        "96x64",
        "--bn-mode",
        config["bn_mode"],
        "--resume",
    )
    one_line_error(code, err)
    assert "resume.pt" in err


@pytest.mark.parametrize("content", ["{not json", "[]", '{"metrics": 3}', ""])
def test_report_on_a_corrupt_cell_record_is_one_line_error(capsys, tmp_path, content):
    cell = tmp_path / "study" / "runs" / "decoder_f100_s0_96x64"
    cell.mkdir(parents=True)
    (cell / "cell.json").write_text(content)
    code, _, err = cli(capsys, "report", tmp_path / "study")
    one_line_error(code, err)
    assert "cell.json" in err


def test_pixel_size_values_round_trip_in_rows():
    """A row never carries a non-finite number: empty instead."""
    from fetalhc.inference.measurer import HeadMeasurement

    row = HeadMeasurement("x.png", "no_head", hc_mm=math.inf).as_row()
    assert row["hc_mm"] == "" and row["status"] == "no_head"


@pytest.mark.parametrize("target", ["file", "under-file"])
@pytest.mark.parametrize(
    "command",
    [
        "train --data {sample} --split {split} --encoder-weights none --epochs 1 --out {out}",
        "evaluate {run} --data {sample} --split {split} --out {out}",
        "predict {sample}/test_set --pixel-size 0.1 --out {out}",
        "export --run {run} --onnx {out}/model.onnx",
        "data split {sample} --out {out}/split.csv",
        "compare --config {yaml} --out {out}",
    ],
    ids=lambda c: c.split()[0],
)
def test_an_output_path_that_cannot_be_a_folder_is_one_line(
    capsys, tmp_path, sample, sample_split, tiny_run, command, target
):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out = blocker if target == "file" else blocker / "sub"
    yaml_file = tmp_path / "s.yaml"
    yaml_file.write_text(f"data: {sample}\ntrain: {{epochs: 1}}\ngrids: [{{strategies: [d4]}}]\n")
    args = command.format(
        sample=sample, split=sample_split, run=tiny_run, out=out, yaml=yaml_file
    ).split()
    if args[0] in ("export", "data") and target == "file":
        args = [a.replace(f"{blocker}/", f"{blocker}/x/") for a in args]
    code, _, err = cli(capsys, *args)
    one_line_error(code, err)
    assert blocker.read_text() == "keep me"
