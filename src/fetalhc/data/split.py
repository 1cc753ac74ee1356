"""Deterministic, group-aware splits (no subject in two parts), per-image splits (as the
paper's notebooks split: a subject's images may fall on both sides) and nested low-data
subsets."""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from fetalhc.data.hc18 import subject_of
from fetalhc.errors import FetalHCError
from fetalhc.io.files import atomic_path

SPLIT_PARTS = ("train", "val", "test")


def _subject_groups(filenames: Sequence[str], per_image: bool = False) -> dict[str, list[str]]:
    """The images of each subject (`per_image`: each image its own group)."""
    groups: dict[str, list[str]] = defaultdict(list)
    for name in sorted(filenames):
        groups[name if per_image else subject_of(name)].append(name)
    return dict(sorted(groups.items()))


def group_split(
    filenames: Sequence[str],
    val: float = 0.1,
    test: float = 0.2,
    seed: int = 0,
    per_image: bool = False,
) -> dict[str, str]:
    """Map each file name to 'train', 'val' or 'test'.

    Subjects (`per_image`: images) are shuffled with `seed` and dealt to test, then val,
    until each part holds its fraction of the *images*; the rest is train. Same inputs,
    same split.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise FetalHCError("--val and --test must be in [0, 1) and sum to less than 1")
    groups = _subject_groups(filenames, per_image)
    subjects = list(groups)
    order = np.random.default_rng(seed).permutation(len(subjects))
    n_total = len(filenames)
    targets = {"test": test * n_total, "val": val * n_total}
    counts = {"test": 0, "val": 0}
    assignment: dict[str, str] = {}
    for idx in order:
        subject = subjects[idx]
        part = "train"
        for candidate in ("test", "val"):
            if counts[candidate] < targets[candidate] - 0.5:
                part = candidate
                break
        counts[part] = counts.get(part, 0) + len(groups[subject])
        for name in groups[subject]:
            assignment[name] = part
    return assignment


def group_folds(
    filenames: Sequence[str], k: int, seed: int = 0, per_image: bool = False
) -> dict[str, int]:
    """Map each file name to one of `k` cross-validation folds (0..k-1), whole subjects per
    fold (`per_image`: images): in a seeded order, each to the fold holding the fewest
    images so far."""
    if k < 2:
        raise FetalHCError(f"--folds must be >= 2, got {k}")
    groups = _subject_groups(filenames, per_image)
    subjects = list(groups)
    if len(subjects) < k:
        raise FetalHCError(f"{len(subjects)} subjects cannot fill {k} folds")
    order = np.random.default_rng(seed + 104729).permutation(len(subjects))
    sizes = [0] * k
    folds: dict[str, int] = {}
    for idx in order:
        fold = int(np.argmin(sizes))
        for name in groups[subjects[idx]]:
            folds[name] = fold
        sizes[fold] += len(groups[subjects[idx]])
    return folds


def fold_split(split: dict[str, str], folds: dict[str, int], fold: int) -> dict[str, str]:
    """A split for one cross-validation fold: its images are 'val', the other folds'
    'train', and the split's test part stays 'test' (never in any fold)."""
    out = {}
    for name, part in split.items():
        if part == "test":
            out[name] = "test"
        else:
            out[name] = "val" if folds[name] == fold else "train"
    return out


def nested_subset(filenames: Sequence[str], fraction: float, seed: int = 0) -> list[str]:
    """The first `fraction` of the images, taken by whole subjects in a seeded order.

    Every fraction is a prefix of one fixed subject order, so a smaller subset is always
    contained in a larger one (the paper's 10/30/50/100 % tables).
    """
    if not 0 < fraction <= 1:
        raise FetalHCError(f"--fraction must be in (0, 1], got {fraction}")
    groups = _subject_groups(filenames)
    subjects = list(groups)
    order = np.random.default_rng(seed + 7919).permutation(len(subjects))
    target = fraction * len(filenames)
    chosen: list[str] = []
    for idx in order:
        if len(chosen) >= target - 1e-9:
            break
        chosen.extend(groups[subjects[idx]])
    return sorted(chosen)


def nested_order(filenames: Sequence[str], seed: int = 0) -> list[str]:
    """All images in the seeded subject order of `nested_subset`: its first N images are a
    nested subset of N images (whole subjects except perhaps the last one)."""
    groups = _subject_groups(filenames)
    subjects = list(groups)
    order = np.random.default_rng(seed + 7919).permutation(len(subjects))
    return [name for idx in order for name in sorted(groups[subjects[idx]])]


def write_split(path: str | Path, assignment: dict[str, str]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["filename", "subject", "part"])
        for name in sorted(assignment):
            writer.writerow([name, subject_of(name), assignment[name]])


def read_split(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise FetalHCError(f"{path}: split file not found (make one with `fetalhc data split`)")
    try:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise FetalHCError(f"{path}: cannot read split ({exc})") from None
    if not rows or not {"filename", "part"} <= set(rows[0]):
        raise FetalHCError(f"{path}: not a split CSV (needs columns filename, part)")
    out = {}
    for row in rows:
        if row["part"] not in SPLIT_PARTS:
            raise FetalHCError(f"{path}: unknown part {row['part']!r} for {row['filename']}")
        out[row["filename"]] = row["part"]
    return out


def part_files(split: dict[str, str], part: str) -> list[str]:
    return sorted(name for name, p in split.items() if p == part)


def split_like(like: dict[str, str], seed: int) -> dict[str, str]:
    """The files of the split `like`, dealt at random to its parts, each part keeping its
    size: a per-image split comparable with a group split, part for part."""
    names = sorted(like)
    parts = sorted(like.values())  # the same multiset of part labels
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i]: part for i, part in zip(order, parts, strict=True)}


def split_files(
    filenames: Sequence[str],
    out: Path,
    val: float,
    test: float,
    seed: int,
    folds: int = 0,
    per_image: bool = False,
    like: dict[str, str] | None = None,
) -> dict[Path, dict[str, str]]:
    """`fetalhc data split`'s outputs: OUT (train/val/test) and, with `folds`, OUT.foldK for
    K-fold cross-validation over everything but the test part, which stays held out.
    `per_image`: images dealt one by one (a subject may fall in two parts); `like`: an
    existing split whose files and part sizes are kept, its files dealt again per image."""
    if like is not None:
        if not per_image:
            raise FetalHCError("--like goes with --per-image (it deals another split's images)")
        missing = sorted(set(like) - set(filenames))
        if missing:
            raise FetalHCError(f"--like names {len(missing)} images not in the data: {missing[0]}")
        assignment = split_like(like, seed)
    else:
        assignment = group_split(filenames, val, test, seed, per_image)
    outputs = {out: assignment}
    if folds:
        pool = [name for name, part in assignment.items() if part != "test"]
        groups = group_folds(pool, folds, seed, per_image)
        for k in range(folds):
            outputs[out.with_name(f"{out.stem}.fold{k}{out.suffix}")] = fold_split(
                assignment, groups, k
            )
    return outputs
