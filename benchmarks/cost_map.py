"""The cost half of model v3's accuracy-cost map: FLOPs and network time of each variant.

    python benchmarks/cost_map.py [--out results/cost-map] [--repeats 20]

For each decoder width (full 256-128-64-32-16, half 128-64-32-16-8, quarter 64-32-16-16-8)
and square input side (128 ... 320) one pass of `Unet('mobilenet_v2')` is counted with
PyTorch's `torch.utils.flop_counter.FlopCounterMode` (multiply-adds count 2) and timed with
ONNX Runtime (fp32, and int8 statically quantised by ONNX Runtime, calibrated on the bundled
sample's images), batch 1: the median of `--rounds` round-robin rounds over all graphs, each
the median of `--repeats` runs after warm-up. The weights are
random: a network's cost does not depend on them. Two-pass configurations (a first pass
that locates the head, a second that outlines it) are then the sum of their two passes
plus the post-processing measured by `benchmarks/measure_stages.py` (decode, crops, masks,
ellipse, flag features: `--post-ms`), so every row's end-to-end figure is composed of
measured parts; the accuracy columns come from the trained fold models (issue 24).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from machine import cpu_name  # benchmarks/machine.py, beside this script

WIDTHS = {
    "full": [256, 128, 64, 32, 16],
    "half": [128, 64, 32, 16, 8],
    "quarter": [64, 32, 16, 16, 8],
}
SIDES = (128, 160, 192, 256, 320)
FIRST_PASS = (128, 160, 192, 256)
SECOND_PASS = (192, 256, 320)


def count_flops(model: torch.nn.Module, side: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model(torch.zeros(1, 3, side, side))
    return int(counter.get_total_flops())


def onnx_session(path: Path, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def time_session(session, side: int, repeats: int) -> float:
    """Median ms of one batch-1 run, after warm-up."""
    x = np.random.default_rng(0).random((1, 3, side, side), dtype=np.float32)
    for _ in range(3):
        session.run(None, {"image": x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        session.run(None, {"image": x})
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def time_all(rows: list[dict], repeats: int, rounds: int) -> None:
    """Every graph timed in `rounds` round-robin rounds, the median of the rounds kept: a
    burst of other load on a shared machine then spoils one round, not one variant."""
    times: dict[tuple[int, str], list[float]] = {}
    for _ in range(rounds):
        for i, row in enumerate(rows):
            for precision, session in row["_sessions"].items():
                times.setdefault((i, precision), []).append(
                    time_session(session, row["side"], repeats)
                )
    for i, row in enumerate(rows):
        for precision in row.pop("_sessions"):
            row[f"{precision}_ms"] = statistics.median(times[(i, precision)])


def one_pass_costs(
    width: str,
    side: int,
    folder: Path,
    threads: int,
    repeats: int,
    calibration: list[np.ndarray],
    build_only: bool = False,
) -> dict:
    from fetalhc.model.checkpoint import save_weights, write_config
    from fetalhc.model.config import ModelConfig
    from fetalhc.model.export import export_onnx, quantize_int8
    from fetalhc.model.unet import build_model

    config = ModelConfig(
        decoder_channels=WIDTHS[width],
        image_size=[side, side],
        normalization="imagenet",
        head_crop=0.2,
    )
    torch.manual_seed(0)
    model = build_model(config, "none").eval()
    checkpoint = folder / f"{width}_{side}" / "best.safetensors"
    fp32 = checkpoint.with_suffix(".onnx")
    int8 = checkpoint.with_name("int8.onnx")
    if not int8.is_file():  # a kept --work folder is reused: build once, time again
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        save_weights(model, checkpoint)
        write_config(checkpoint.parent / "config.json", {"model": config.to_dict()})
        export_onnx(checkpoint, fp32, verify=False)
        quantize_int8(fp32, int8, calibration)
    if build_only:
        return {}
    return {
        "width": width,
        "decoder_channels": "-".join(map(str, WIDTHS[width])),
        "side": side,
        "params": sum(p.numel() for p in model.parameters()),
        "gflop": count_flops(model, side) / 1e9,
        "_sessions": {"fp32": onnx_session(fp32, threads), "int8": onnx_session(int8, threads)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/cost-map"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--work",
        type=Path,
        default=None,
        help="keep the exported models here (default: a temporary folder)",
    )
    parser.add_argument(
        "--build-only", action="store_true", help="export and quantise into --work, time nothing"
    )
    parser.add_argument(
        "--post-ms",
        type=float,
        default=30.6,
        help="post-processing per image, from benchmarks/measure_stages.py",
    )
    args = parser.parse_args()
    import onnxruntime

    from fetalhc.io.images import read_gray
    from fetalhc.sample import sample_dir

    torch.set_num_threads(args.threads)
    calibration = [read_gray(p) for p in sorted(sample_dir().rglob("*_HC.png"))[:8]]
    passes = []
    with tempfile.TemporaryDirectory(prefix="fetalhc-cost-") as tmp:
        work = args.work or Path(tmp)
        for width in WIDTHS:
            for side in SIDES:
                row = one_pass_costs(
                    width, side, work, args.threads, args.repeats, calibration, args.build_only
                )
                if not args.build_only:
                    passes.append(row)
        if args.build_only:
            return
        time_all(passes, args.repeats, args.rounds)
    for row in passes:
        print(
            f"{row['width']:>8} {row['side']:4d}: {row['gflop']:6.2f} GFLOP  "
            f"fp32 {row['fp32_ms']:6.1f} ms  int8 {row['int8_ms']:6.1f} ms"
        )
    by = {(r["width"], r["side"]): r for r in passes}
    configs = []
    for width in WIDTHS:
        # one pass on the whole image (first_pass 0); its post-processing is counted as
        # the two-pass model's, slightly more than it needs (no first pass to compare)
        for side in (256, 320):
            for precision in ("fp32", "int8"):
                network = by[(width, side)][f"{precision}_ms"]
                configs.append(
                    {
                        "width": width,
                        "first_pass": 0,
                        "second_pass": side,
                        "precision": precision,
                        "gflop": by[(width, side)]["gflop"],
                        "network_ms": network,
                        "end_to_end_ms": network + args.post_ms,
                    }
                )
        for second in SECOND_PASS:
            for first in (f for f in FIRST_PASS if f <= second):
                a, b = by[(width, first)], by[(width, second)]
                for precision in ("fp32", "int8"):
                    network = a[f"{precision}_ms"] + b[f"{precision}_ms"]
                    configs.append(
                        {
                            "width": width,
                            "first_pass": first,
                            "second_pass": second,
                            "precision": precision,
                            "gflop": a["gflop"] + b["gflop"],
                            "network_ms": network,
                            "end_to_end_ms": network + args.post_ms,
                        }
                    )
    args.out.mkdir(parents=True, exist_ok=True)
    for name, rows in (("passes.csv", passes), ("two_pass.csv", configs)):
        with open(args.out / name, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(
                {k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows
            )
    cpu = cpu_name()
    today = by[("full", 256)]
    lines = [
        "# Model v3: the cost of each variant (measured; accuracy follows from the fold models)",
        "",
        f"`benchmarks/cost_map.py`: {cpu}, {args.threads} threads, torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; one pass, batch 1, median of "
        f"{args.rounds} round-robin rounds of the median of {args.repeats} runs.",
        "",
        "| decoder | side | params | GFLOP | fp32 ms | int8 ms |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['width']} ({r['decoder_channels']}) | {r['side']} | {r['params'] / 1e6:.2f} M | "
            f"{r['gflop']:.2f} | {r['fp32_ms']:.1f} | {r['int8_ms']:.1f} |"
            for r in passes
        ],
        "",
        f"Two passes = first + second pass + {args.post_ms:.1f} ms of post-processing "
        "(`benchmarks/measure_stages.py`); today's bundled model is full width, 256 + 256, "
        f"fp32: {2 * today['fp32_ms'] + args.post_ms:.0f} ms composed this way. All "
        "two-pass configurations: [two_pass.csv](two_pass.csv).",
        "",
        "First pass 0: a one-pass model on the whole image at that side.",
        "",
        "| decoder | first pass | second pass | precision | GFLOP | end to end ms | vs today |",
        "|---|---|---|---|---|---|---|",
    ]
    base = 2 * today["fp32_ms"] + args.post_ms
    for c in configs:
        if c["first_pass"] in (0, 128, 160, c["second_pass"]):
            lines.append(
                f"| {c['width']} | {c['first_pass']} | {c['second_pass']} | {c['precision']} | "
                f"{c['gflop']:.2f} | {c['end_to_end_ms']:.0f} | "
                f"{base / c['end_to_end_ms']:.2f}x |"
            )
    notes = args.out / "notes.md"  # what the table cannot say, written by hand
    if notes.is_file():
        lines += ["", notes.read_text(encoding="utf-8").strip()]
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
