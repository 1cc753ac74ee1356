"""Copy what a study or run folder needs for results/ — no checkpoints, no images.

python scripts/collect_results.py STUDY_DIR results/study-cpu
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

KEEP = {".json", ".csv", ".md", ".png", ".yaml"}
SKIP_DIRS = {"worst", "masks", "overlays"}  # pictures of HC18 images stay out of the repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", type=Path)
    parser.add_argument("dest", type=Path)
    args = parser.parse_args()
    copied = 0
    for path in sorted(args.source.rglob("*")):
        rel = path.relative_to(args.source)
        if not path.is_file() or path.suffix not in KEEP or SKIP_DIRS & set(rel.parts):
            continue
        target = args.dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
        copied += 1
    print(f"{copied} files -> {args.dest}")


if __name__ == "__main__":
    main()
