"""Per-epoch validation Dice of the 79-image cells: the study's (160x128, 3 seeds) beside
the probe's larger size (experiments/lowdata-probe/lowdata_resolution_probe.sh), written to
results/lowdata-probe/summary.md."""

from __future__ import annotations

import json
from pathlib import Path

from fetalhc.study.report import read_history

STUDY = Path("results/study-paper/runs")
PROBE = Path("results/lowdata-probe")


def val_dice(run: Path) -> list[float]:
    """Validation Dice (%) after each finished epoch of one run folder."""
    return [100 * epoch["val_dice"] for epoch in read_history(run / "history.csv")]


def test_dice(run: Path) -> str:
    """Test Dice (%) at the best checkpoint, the study's statistic (`fetalhc evaluate`)."""
    path = run / "eval-test" / "summary.json"
    if not path.exists():
        return ""
    return f"{100 * json.loads(path.read_text())['metrics']['paper_dice']['mean']:.2f}"


def main() -> None:
    runs: dict[str, Path] = {}
    for row in ("decoder", "scratch-unet"):
        for seed in range(3):
            runs[f"{row} 160x128 s{seed}"] = STUDY / f"{row}_n079_s{seed}_160x128"
        for run in sorted(PROBE.glob(f"{row}_n079_s0_*")):
            runs[f"{row} {run.name.rsplit('_', 1)[1]} s0"] = run
    columns = {name: val_dice(run) for name, run in runs.items()}
    epochs = max((len(v) for v in columns.values()), default=0)
    lines = [
        "# The 79-image cells' validation Dice (%) after each epoch",
        "",
        "Made by `experiments/lowdata-probe/lowdata_resolution_probe.sh` (then `experiments/lowdata-probe/lowdata_probe_report.py`):",
        "the study's recipe (paper BatchNorm, [0, 1] input, BCE, Adam 1e-4, batch 10, the",
        "study's split); an empty cell is an epoch not run (yet).",
        "",
        "| epoch | " + " | ".join(columns) + " |",
        "|---" * (len(columns) + 1) + "|",
    ]
    for e in range(epochs):
        cells = [f"{v[e]:.1f}" if e < len(v) else "" for v in columns.values()]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    tests = [test_dice(run) for run in runs.values()]
    lines.append("| **test** | " + " | ".join(tests) + " |")
    lines += ["", "**test**: Dice on the study's 160 test images at the best checkpoint."]
    (PROBE / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
