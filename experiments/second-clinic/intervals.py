"""Do the 95 % intervals hold on the second clinic, before and after `fetalhc adapt`?

    python experiments/second-clinic/intervals.py [--clinic experiments/second-clinic/data/clinic]
        [--model experiments/second-clinic/runs/clinic-n40] [--n 40] [--seed 0]
        [--out experiments/second-clinic/results/intervals.md]

Before: the bundled model's intervals (calibrated on HC18's out-of-fold rows) against the
clinic's reference HC, on every clinic image. After: the adapted model's intervals,
recalibrated by `adapt` on the held-back corrections, scored on the adapt-part images the
run did not use (neither fitted nor calibrated on: the same seeded draw as `adapt --n`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.io.files import write_text
from fetalhc.study.adapt import load_samples


def coverage(measurer: HeadMeasurer, samples) -> dict:
    covered, halves, errors = [], [], []
    results = measurer.measure_many(
        [s.gray for s in samples], [s.pixel_size_mm for s in samples], [s.name for s in samples]
    )
    for s, r in zip(samples, results, strict=True):
        ref = s.final_hc_mm
        interval = r.hc_interval_mm
        if interval is None:
            covered.append(False)
            halves.append(np.nan)
        else:
            covered.append(interval[0] <= ref <= interval[1])
            halves.append((interval[1] - interval[0]) / 2)
        errors.append(r.hc_mm - ref if r.ok else np.nan)
    return {
        "n": len(samples),
        "coverage": float(np.mean(covered)),
        "median_half_width_mm": float(np.nanmedian(halves)),
        "adf_mm": float(np.nanmean(np.abs(errors))),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--clinic", type=Path, default=Path("experiments/second-clinic/data/clinic")
    )
    parser.add_argument(
        "--model", type=Path, default=Path("experiments/second-clinic/runs/clinic-n40")
    )
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", type=Path, default=Path("experiments/second-clinic/results/intervals.md")
    )
    args = parser.parse_args()
    samples = load_samples(args.clinic)
    adapt_part = [s for s in samples if s.part == "adapt"]
    used = set(np.random.default_rng(args.seed).permutation(len(adapt_part))[: args.n])
    unused = [s for i, s in enumerate(adapt_part) if i not in used]
    base = HeadMeasurer(backend="onnx", threads=2)
    adapted = HeadMeasurer(args.model, backend="torch", threads=2)
    rows = [
        ("bundled model (HC18 calibration), every clinic image", coverage(base, samples)),
        ("bundled model, the unused adapt-part images", coverage(base, unused)),
        (
            "adapted model (recalibrated on held-back), unused adapt-part images",
            coverage(adapted, unused),
        ),
    ]
    lines = [
        "# 95 % intervals on the second clinic, before and after adapting",
        "",
        f"`experiments/second-clinic/intervals.py`, clinic `{args.clinic}`, adapted model "
        f"`{args.model}` ({args.n} corrections, seed {args.seed}); 2 threads.",
        "",
        "| model, images | n | coverage | median half-width mm | ADF mm |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r['n']} | {100 * r['coverage']:.1f} % | "
            f"{r['median_half_width_mm']:.2f} | {r['adf_mm']:.2f} |"
        )
    write_text(args.out, "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
