"""End-to-end latency of models and of whole earlier versions of fetalhc, in one run.

    python benchmarks/end_to_end.py [--model LABEL=CHECKPOINT[@LOCATE] ...]
        [--git LABEL=REV ...] [--images DIR] [--n 40] [--rounds 5] [--threads 2]
        [--out FILE.md]

Each entry is one process that loads its model once (`HeadMeasurer`, ONNX Runtime) and
measures `--n` PNG files one at a time (read -> both passes -> ellipse -> HC and the flag's
features), when told to; the processes take turns, round after round, so that a busy
shared machine slows them alike, and each entry's figure is the median of its rounds.

- `--model LABEL=CHECKPOINT[@LOCATE]`: this checkout's code with a checkpoint (`bundled`
  for the bundled model), optionally its first pass at side LOCATE.
- `--git LABEL=REV`: the code *and* bundled model of git revision REV (its `src/` exported
  to a temporary folder), e.g. the version a new model replaces: what users had then.

The first entry is the reference of the ratios. Every process gets its own ONNX cache.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import onnxruntime
from machine import cpu_name  # benchmarks/machine.py, beside this script

from fetalhc.io.files import write_text
from fetalhc.sample import sample_dir

# Runs in each entry's process, with that entry's fetalhc on the path; uses only the API
# that earlier versions have too (HeadMeasurer(checkpoint, backend, threads, batch_size),
# measure_many(paths, pixel size)).
WORKER = r"""
import json, sys, time
from pathlib import Path
from fetalhc.inference.measurer import HeadMeasurer
cfg = json.loads(sys.argv[1])
extra = {"locate_side": cfg["locate"]} if cfg["locate"] else {}
m = HeadMeasurer(cfg["checkpoint"], backend="onnx", threads=cfg["threads"], batch_size=1,
                 **extra)
paths = [Path(p) for p in cfg["paths"]]
for _ in m.measure_many(paths[:2], 0.15):
    pass
print(json.dumps({"ready": m.segmenter.backend}), flush=True)
for _ in sys.stdin:
    t0 = time.perf_counter()
    bad = [r.filename for r in m.measure_many(paths, 0.15) if not r.ok]
    ms = 1000 * (time.perf_counter() - t0) / len(paths)
    print(json.dumps({"ms": ms, "not_ok": bad}), flush=True)
"""


def export_git_src(rev: str, folder: Path) -> Path:
    """REV's `src/` (code and bundled model) in `folder`; refuses an unknown revision."""
    archive = subprocess.run(["git", "archive", rev, "src"], capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"--git {rev}: {archive.stderr.decode().strip()}")
    folder.mkdir(parents=True)
    subprocess.run(["tar", "-x", "-C", str(folder)], input=archive.stdout, check=True)
    return folder / "src"


class Entry:
    """One process with one model loaded, answering 'measure the images' requests."""

    def __init__(
        self,
        label: str,
        src: Path,
        checkpoint: str | None,
        locate: int | None,
        paths: list[Path],
        threads: int,
        cache: Path,
    ) -> None:
        self.label, self.rounds = label, []
        config = {
            "checkpoint": checkpoint,
            "locate": locate,
            "threads": threads,
            "paths": [str(p) for p in paths],
        }
        env = {**os.environ, "PYTHONPATH": str(src), "FETALHC_CACHE": str(cache)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._answer()  # loaded, exported, warmed up

    def _answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"{self.label}: its process stopped (see its error above)")
        return json.loads(line)

    def measure(self) -> None:
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        answer = self._answer()
        if answer["not_ok"]:
            raise SystemExit(f"{self.label}: not measured: {', '.join(answer['not_ok'][:5])}")
        self.rounds.append(answer["ms"])

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def parse_entry(text: str, flag: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label or not value:
        raise SystemExit(f"{flag} {text!r}: expected LABEL=VALUE")
    return label, value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--git", action="append", default=[], metavar="LABEL=REV")
    parser.add_argument("--model", action="append", default=[], metavar="LABEL=CKPT[@LOCATE]")
    default = Path("../shared/hc18/test_set")
    here = Path(__file__).resolve().parents[1]
    sample = sample_dir() / "test_set"
    parser.add_argument("--images", type=Path, default=default if default.is_dir() else sample)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="also write the table here (Markdown)")
    args = parser.parse_args()
    if not args.git and not args.model:
        args.model = ["bundled=bundled"]
    paths = sorted(p for p in args.images.glob("*.png") if not p.stem.endswith("_Annotation"))
    if not paths:
        raise SystemExit(f"{args.images}: no PNG images")
    paths = (paths * (args.n // len(paths) + 1))[: args.n]
    entries: list[Entry] = []
    with tempfile.TemporaryDirectory(prefix="fetalhc-e2e-") as tmp:
        tmp = Path(tmp)
        plan = []
        for i, text in enumerate(args.git):
            label, rev = parse_entry(text, "--git")
            plan.append((label, export_git_src(rev, tmp / f"git{i}"), None, None, f"git {rev}"))
        for text in args.model:
            label, value = parse_entry(text, "--model")
            checkpoint, _, locate = value.partition("@")
            what = f"{checkpoint}" + (f", first pass {locate}" if locate else "")
            plan.append(
                (
                    label,
                    here / "src",
                    None if checkpoint == "bundled" else str(Path(checkpoint).resolve()),
                    int(locate) if locate else None,
                    what,
                )
            )
        try:
            for k, (label, src, checkpoint, locate, _) in enumerate(plan):
                cache = tmp / f"cache{k}"
                entries.append(Entry(label, src, checkpoint, locate, paths, args.threads, cache))
            for _ in range(args.rounds):
                for entry in entries:
                    entry.measure()
        finally:
            for entry in entries:
                entry.close()
    cpu = cpu_name()
    reference = statistics.median(entries[0].rounds)
    lines = [
        f"`benchmarks/end_to_end.py`: {cpu}, {args.threads} threads, onnxruntime "
        f"{onnxruntime.__version__}; {len(paths)} images from {args.images.name}/, one at a "
        f"time, ONNX Runtime fp32; median of {args.rounds} rounds taken in turn.",
        "",
        f"| entry | what | ms/image (median) | rounds | vs {entries[0].label} |",
        "|---|---|---|---|---|",
    ]
    for entry, (_, _, _, _, what) in zip(entries, plan, strict=True):
        med = statistics.median(entry.rounds)
        spread = f"{min(entry.rounds):.1f}-{max(entry.rounds):.1f}"
        lines.append(
            f"| {entry.label} | {what} | {med:.1f} | {spread} | {reference / med:.2f}x faster |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_text(args.out, text)


if __name__ == "__main__":
    main()
