import csv
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
from safetensors.torch import load_file

from tests.conftest import run_cli

TINY = ["--image-size", "96x64", "--batch", "4", "--encoder-weights", "none", "--lr", "1e-3"]


def train_args(sample, split, out, epochs=3):
    return [
        "train",
        "--data",
        sample,
        "--split",
        split,
        "--out",
        out,
        "--epochs",
        str(epochs),
        *TINY,
    ]


def same_weights(a, b):
    wa, wb = load_file(str(a)), load_file(str(b))
    return wa.keys() == wb.keys() and all((wa[k] == wb[k]).all() for k in wa)


def test_run_folder_has_everything(tiny_run):
    for name in (
        "config.json",
        "split.csv",
        "best.safetensors",
        "last.safetensors",
        "history.csv",
        "learning_curve.png",
        "resume.pt",
    ):
        assert (tiny_run / name).is_file(), name
    rows = list(csv.DictReader(open(tiny_run / "history.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert all(0 <= float(r["val_dice"]) <= 1 for r in rows)


def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, sample, sample_split):
    straight = tmp_path / "straight"
    r = run_cli(*train_args(sample, sample_split, straight, epochs=4))
    assert r.returncode == 0, r.stderr

    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "fetalhc", *map(str, train_args(sample, sample_split, killed, 4))]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = killed / "history.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if history.exists() and len(history.read_text().splitlines()) >= 2:  # epoch 1 done
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done = len(history.read_text().splitlines()) - 1
    assert 1 <= done < 4
    # what a write cut off by SIGKILL leaves (no cleanup runs): removed by the next run
    stale = killed / ".resume.pt.fetalhc-tmp-k1ll3d00.pt"
    stale.write_bytes(b"half a checkpoint")

    r = run_cli(*train_args(sample, sample_split, killed, epochs=4), "--resume")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(history)))
    assert [int(x["epoch"]) for x in rows] == [1, 2, 3, 4]
    assert same_weights(straight / "last.safetensors", killed / "last.safetensors")
    assert not stale.exists()


def test_second_trainer_on_a_run_folder_is_refused(tmp_path, sample, sample_split, tiny_run):
    from fetalhc.io.files import exclusive_folder

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    before = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    with exclusive_folder(run):  # as if another `train --resume` were running there
        r = run_cli(*train_args(sample, sample_split, run, epochs=3), "--resume")
    assert r.returncode == 2 and "in use by another fetalhc process" in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    after = {f.name: f.read_bytes() for f in run.iterdir() if f.is_file()}
    assert after == before  # nothing of the run touched
    # once the other process is gone, the same command goes on
    r = run_cli(*train_args(sample, sample_split, run, epochs=3), "--resume")
    assert r.returncode == 0, r.stderr
    assert len(list(csv.DictReader(open(run / "history.csv")))) == 3


def test_existing_run_needs_resume(tmp_path, sample, sample_split, tiny_run):
    r = run_cli(*train_args(sample, sample_split, tiny_run, epochs=2))
    assert r.returncode == 2 and "--resume" in r.stderr


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--strategy", "bogus"], "unknown strategy"),
        (["--encoder", "no_such_encoder"], "unknown encoder"),
        (["--image-size", "100x64"], "multiples of 32"),
        (["--train-parts", "nothing"], "train_parts must be among"),
    ],
)
def test_bad_flags_give_one_clear_line(tmp_path, sample, sample_split, extra, message):
    r = run_cli(*train_args(sample, sample_split, tmp_path / "r", epochs=1), *extra)
    assert r.returncode == 2
    assert message in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr


def test_corrupted_checkpoint(tmp_path, sample, sample_split, tiny_run):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    data = (broken / "best.safetensors").read_bytes()
    (broken / "best.safetensors").write_bytes(data[: len(data) // 3])
    r = run_cli("evaluate", broken, "--data", sample, "--split", sample_split, "--backend", "torch")
    assert r.returncode == 2
    assert "corrupted" in r.stderr and "Traceback" not in r.stderr


def test_failed_start_leaves_no_run_folder(tmp_path, sample_split):
    empty = tmp_path / "no-images"
    empty.mkdir()
    out = tmp_path / "run"
    r = run_cli(*train_args(empty, sample_split, out, epochs=1))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert not any(out.iterdir())  # nothing half-made (the CLI checks --out first)
