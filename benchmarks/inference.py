"""End-to-end inference: read PNG -> mask -> ellipse -> HC in mm, PyTorch eager vs ONNX Runtime.

    python benchmarks/inference.py [--checkpoint FILE ...] [--images DIR] [--n 40]

Each `--checkpoint` (default: the bundled model), and with `--from-git REV` the bundled
model of an earlier commit (the one a new model replaces), is measured in the same run, side
by side, through `HeadMeasurer` (the path `predict`, the API and `serve` use: both passes
and the quality flag's features for a two-pass model).

Latency: one image at a time (batch 1), mean over `--n` images after two warm-up images.
Throughput: batches of 8. `onnx` is the checkpoint run through ONNX Runtime as `predict`
runs it (a graph per pass side, each pass at the side its config asks for); `int8` is the
model exported at its own side and statically quantised by ONNX Runtime (calibrated on the
bundled sample's test images), so both its passes run at that side.

With `--labelled HC18_DIR --split CSV --part PART`, each backend is also scored on those
labelled images, the HC18 challenge's metrics (fitted ellipse against reference ellipse:
Dice, Hausdorff; DF/ADF of HC) beside the mask's Dice, so a faster backend's cost in
accuracy is measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch
from machine import cpu_name  # benchmarks/machine.py, beside this script

from fetalhc.inference.evaluate import evaluation_rows, select_records
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.segmenter import Segmenter, default_checkpoint
from fetalhc.io.images import read_gray
from fetalhc.model.export import export_onnx, quantize_int8
from fetalhc.sample import sample_dir


def end_to_end(segmenter: Segmenter, paths: list[Path], batch: int) -> float:
    """Seconds per image for read -> HC over `paths`, in batches of `batch`."""
    segmenter.batch_size = batch
    measurer = HeadMeasurer.from_segmenter(segmenter)
    t0 = time.perf_counter()
    for result in measurer.measure_many(paths, 0.15):
        assert result.ok, result.status
    return (time.perf_counter() - t0) / len(paths)


BUNDLED = "src/fetalhc/model/bundled"


def bundled_from_git(rev: str, folder: Path) -> Path:
    """The bundled model (weights and config.json) as it was at git revision `rev`, copied
    into `folder`: the model a change replaces, measured in the same run as its successor."""
    import subprocess

    out = folder / rev.replace("/", "_")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("default.safetensors", "config.json"):
        blob = subprocess.run(
            ["git", "show", f"{rev}:{BUNDLED}/{name}"], capture_output=True, check=False
        )
        if blob.returncode:
            raise SystemExit(f"--from-git {rev}: {blob.stderr.decode().strip()}")
        (out / name).write_bytes(blob.stdout)
    return out / "default.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, action="append")
    parser.add_argument(
        "--from-git",
        action="append",
        default=[],
        metavar="REV",
        help="also measure the bundled model of git revision REV (e.g. the one replaced)",
    )
    default = Path("../shared/hc18/test_set")
    parser.add_argument(
        "--images", type=Path, default=default if default.is_dir() else sample_dir() / "test_set"
    )
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--labelled", type=Path, help="HC18 folder: also score each backend")
    parser.add_argument("--split", type=Path, help="split CSV for --labelled")
    parser.add_argument("--part", default="test", help="split part for --labelled")
    args = parser.parse_args()
    records = select_records(args.labelled, args.split, args.part)[0] if args.labelled else []
    paths = sorted(args.images.glob("*.png"))
    paths = [p for p in paths if not p.name.endswith("_Annotation.png")]
    paths = (paths * (args.n // max(len(paths), 1) + 1))[: args.n]
    print(
        f"machine: {cpu_name()}, torch {torch.__version__} "
        f"({args.threads or torch.get_num_threads()} threads), onnxruntime "
        f"{onnxruntime.__version__}; {len(paths)} images"
    )
    with tempfile.TemporaryDirectory(prefix="fetalhc-bench-") as tmp:
        older = [bundled_from_git(rev, Path(tmp)) for rev in args.from_git]
        for checkpoint in [*(args.checkpoint or [default_checkpoint()]), *older]:
            run_checkpoint(checkpoint, paths, args.threads, records)


def accuracy(segmenter: Segmenter, records: list) -> str:
    """The HC18 challenge's metrics and the mask Dice of one backend on labelled images."""
    segmenter.batch_size = 8
    rows = evaluation_rows(HeadMeasurer.from_segmenter(segmenter), records).rows

    def mean(key: str) -> float:
        return float(np.nanmean([r[key] for r in rows]))

    return (
        f"ellipse Dice {100 * mean('ellipse_dice'):.2f} %, ellipse HD {mean('ellipse_hd_mm'):.2f}"
        f" mm, ADF {mean('hc_abs_diff_mm'):.2f} mm, DF {mean('hc_diff_mm'):+.2f} mm, mask Dice "
        f"{100 * mean('dice'):.2f} % ({len(rows)} images)"
    )


def run_checkpoint(checkpoint: Path, paths: list[Path], threads: int, records: list) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        export_onnx(checkpoint, onnx_path, verify=False)
        calibration = sorted((sample_dir() / "test_set").glob("*.png"))
        quantize_int8(onnx_path, Path(tmp) / "int8.onnx", [read_gray(p) for p in calibration])
        backends = {
            "torch": Segmenter(checkpoint, backend="torch", threads=threads),
            # as deployed: the checkpoint through ONNX Runtime, a graph per pass side (an
            # exported .onnx has one size: int8 runs both passes at the model's side)
            "onnx": Segmenter(checkpoint, backend="onnx", threads=threads),
            "int8": Segmenter(Path(tmp) / "int8.onnx", backend="onnx", threads=threads),
        }
        seg = backends["torch"]
        kind = (
            f"two-pass, first pass {seg.locate_side}, close-up {seg.crop_side}; int8 both "
            f"{seg.size[0]}"
            if seg.head_crop
            else (f"input {seg.size[0]}x{seg.size[1]}")
        )
        print(f"\n{checkpoint.parent.name}/{checkpoint.name} ({kind})")
        results = {}
        for name, seg in backends.items():
            end_to_end(seg, paths[:2], 1)  # warm-up
            latency = end_to_end(seg, paths, 1)
            throughput = 1 / end_to_end(seg, paths, 8)
            results[name] = (latency, throughput)
            print(
                f"{name:<6} latency {1000 * latency:7.1f} ms/image   throughput "
                f"{throughput:6.2f} images/s (batch 8)"
            )
        lt, tt = results["torch"]
        for name in ("onnx", "int8"):
            lo, to = results[name]
            print(
                f"ONNX Runtime {name} vs PyTorch eager: latency {lt / lo:.2f}x faster, "
                f"throughput {to / tt:.2f}x"
            )
        for name, seg in backends.items() if records else ():
            print(f"{name:<6} {accuracy(seg, records)}")


if __name__ == "__main__":
    main()
