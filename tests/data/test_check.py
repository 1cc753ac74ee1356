import shutil

import numpy as np

from fetalhc.io.files import write_png
from tests.conftest import run_cli


def test_clean_sample_passes(sample):
    r = run_cli("data", "check", sample)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "15 images" in r.stdout and "15 valid annotations" in r.stdout
    assert "no problems found" in r.stdout


def corrupt(root):
    ts = root / "training_set"
    (ts / "000_HC_Annotation.png").unlink()  # missing annotation
    data = (ts / "078_HC.png").read_bytes()
    (ts / "078_HC.png").write_bytes(data[: len(data) // 2])  # truncated image
    (ts / "177_HC.png").write_bytes(b"not a png at all")  # unreadable image
    write_png(ts / "317_HC_Annotation.png", np.zeros((540, 800), np.uint8))  # no ellipse
    shutil.copy(ts / "521_HC.png", ts / "900_HC.png")  # image without CSV row
    csv_path = root / "training_set_pixel_size_and_HC.csv"
    lines = csv_path.read_text().splitlines()
    out = []
    for line in lines:
        if line.startswith("527_HC.png"):
            line = "527_HC.png,-0.1,184.36"  # non-positive pixel size
        elif line.startswith("577_HC.png"):
            line = "577_HC.png,abc,174.32"  # non-numeric pixel size
        out.append(line)
    out.append("999_HC.png,0.1,180.0")  # CSV row without image
    csv_path.write_text("\n".join(out) + "\n")


def test_every_problem_is_reported_with_its_file(sample_copy):
    corrupt(sample_copy)
    r = run_cli("data", "check", sample_copy)
    assert r.returncode == 1
    assert "Traceback" not in r.stdout + r.stderr
    expected = {
        "000_HC.png: missing annotation",
        "078_HC.png: unreadable image",
        "177_HC.png: unreadable image",
        "317_HC_Annotation.png: annotation holds no ellipse",
        "900_HC.png: image without CSV row",
        "527_HC.png: pixel size '-0.1'",
        "577_HC.png: pixel size 'abc'",
        "999_HC.png: CSV row without image",
    }
    for problem in expected:
        assert problem in r.stdout, problem


def test_missing_folder_is_a_clear_error(tmp_path):
    r = run_cli("data", "check", tmp_path / "nope")
    assert r.returncode == 2
    assert r.stderr.startswith("fetalhc: error:") and "Traceback" not in r.stderr
