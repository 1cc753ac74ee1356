import csv

from fetalhc.data.hc18 import subject_of
from fetalhc.data.split import group_split, nested_subset, read_split
from tests.conftest import run_cli


def names(n_subjects=60):
    out = []
    for s in range(n_subjects):
        out.append(f"{s:03d}_HC.png")
        if s % 4 == 0:
            out += [f"{s:03d}_2HC.png", f"{s:03d}_3HC.png"]
    return out


def test_group_aware_and_deterministic():
    files = names()
    a = group_split(files, val=0.1, test=0.2, seed=3)
    assert a == group_split(files, val=0.1, test=0.2, seed=3)
    assert a != group_split(files, val=0.1, test=0.2, seed=4)
    parts_of = {}
    for f, p in a.items():
        parts_of.setdefault(subject_of(f), set()).add(p)
    assert all(len(p) == 1 for p in parts_of.values())
    n = len(files)
    counts = {p: sum(v == p for v in a.values()) for p in ("train", "val", "test")}
    assert abs(counts["test"] - 0.2 * n) <= 3 and abs(counts["val"] - 0.1 * n) <= 3


def test_nested_subsets():
    files = names(100)
    subsets = [set(nested_subset(files, f, seed=1)) for f in (0.1, 0.3, 0.5, 1.0)]
    assert subsets[0] < subsets[1] < subsets[2] < subsets[3] == set(files)
    assert abs(len(subsets[0]) - 0.1 * len(files)) <= 3
    # whole subjects only
    for s in subsets[:3]:
        subjects = {subject_of(f) for f in s}
        assert s == {f for f in files if subject_of(f) in subjects}


def test_cli_split(tmp_path, sample):
    out = tmp_path / "split.csv"
    r = run_cli("data", "split", sample, "--out", out, "--val", "0.2", "--test", "0.2")
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader(open(out)))
    assert {"filename", "subject", "part"} <= set(rows[0])
    assert len(rows) == 15
    assert read_split(out) == {row["filename"]: row["part"] for row in rows}


def test_a_per_image_split_deals_images_and_may_part_a_subject():
    # 30 subjects of 4 images each (HC18 names: 012_HC.png, 012_2HC.png, ...)
    files = [f"{s:03d}_{k}HC.png" if k else f"{s:03d}_HC.png" for s in range(30) for k in range(4)]
    by_subject = group_split(files, 0.1, 0.2, seed=0)
    per_image = group_split(files, 0.1, 0.2, seed=0, per_image=True)
    parts = {p: sum(v == p for v in per_image.values()) for p in ("train", "val", "test")}
    assert parts == {"train": 84, "val": 12, "test": 24}  # exact shares: one image a group
    assert len({(subject_of(n), p) for n, p in per_image.items()}) > 30  # subjects in 2 parts
    assert len({(subject_of(n), p) for n, p in by_subject.items()}) == 30  # never here
    assert group_split(files, 0.1, 0.2, 0, True) == per_image  # the same seed, the same split


def test_a_split_dealt_again_per_image_keeps_its_files_and_part_sizes(tmp_path, sample):
    like = tmp_path / "like.csv"
    assert run_cli("data", "split", sample, "--out", like).returncode == 0
    out = tmp_path / "per_image.csv"
    r = run_cli("data", "split", sample, "--out", out, "--per-image", "--like", like)
    assert r.returncode == 0, r.stderr
    old, new = read_split(like), read_split(out)
    assert sorted(old) == sorted(new) and sorted(old.values()) == sorted(new.values())
    assert old != new  # dealt again
    refused = run_cli("data", "split", sample, "--out", out, "--like", like)
    assert refused.returncode == 2 and "--like goes with --per-image" in refused.stderr
