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
