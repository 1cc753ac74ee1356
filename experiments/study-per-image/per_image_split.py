"""A per-image split of the study's images, as the paper's notebooks split (a subject's
images may fall on both sides), with the study split's part sizes: for measuring what
subject overlap between training and test is worth (results/study-per-image).

    python experiments/study-per-image/per_image_split.py [--like results/study-paper/split.csv]
        [--out results/study-per-image/split.csv] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fetalhc.data.split import read_split, write_split


def per_image_split(like: dict[str, str], seed: int) -> dict[str, str]:
    """The files of `like`, dealt at random to its parts, keeping each part's size."""
    names = sorted(like)
    parts = sorted(like.values())  # the same multiset of part labels
    order = np.random.default_rng(seed).permutation(len(names))
    return {names[i]: part for i, part in zip(order, parts, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", type=Path, default=Path("results/study-paper/split.csv"))
    parser.add_argument("--out", type=Path, default=Path("results/study-per-image/split.csv"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    split = per_image_split(read_split(args.like), args.seed)
    write_split(args.out, split)
    print(args.out, {p: sum(v == p for v in split.values()) for p in ("train", "val", "test")})


if __name__ == "__main__":
    main()
