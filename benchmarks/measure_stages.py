"""Where `HeadMeasurer.measure` spends its time, stage by stage.

    python benchmarks/measure_stages.py [--images DIR] [--n 40] [--backend onnx]

Runs the measurer (the path `predict`, the API and `serve` use) over `--n` images, one at
a time after two warm-up images, under cProfile, and sums the time of the functions that
make each stage. Stages are disjoint: a function is counted in one stage only and none of
them calls another stage's function. The profiler's own overhead is in `other`, so compare
stages within one run, and the total with `benchmarks/inference.py`'s latency.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from pathlib import Path

from machine import cpu_name  # benchmarks/machine.py, beside this script

# stage -> (file suffix, function name) of the functions whose cumulative time is the stage
STAGES = {
    "decode the image file": [("fetalhc/io/images.py", "decode_gray")],
    "network (ONNX Runtime / PyTorch)": [
        ("onnxruntime_inference_collection.py", "run"),
        ("torch/nn/modules/module.py", "_wrapped_call_impl"),
    ],
    "crops in, logits back to full size": [
        ("fetalhc/model/crops.py", "cut"),
        ("fetalhc/model/crops.py", "uncrop_logits"),
        ("fetalhc/model/crops.py", "crop_window"),
        ("fetalhc/model/preprocess.py", "preprocess"),
    ],
    "sigmoid": [("fetalhc/inference/segmenter.py", "sigmoid")],
    "largest component / box": [
        ("fetalhc/measure/postprocess.py", "largest_component"),
        ("fetalhc/model/crops.py", "box_of"),
    ],
    "ellipse fit": [("fetalhc/measure/ellipse.py", "fit_mask")],
    "ellipse rasters (IoU, edge ring)": [
        ("fetalhc/measure/ellipse.py", "draw_filled"),
        ("fetalhc/measure/ellipse.py", "radius_squared"),
    ],
    "outline distance of the passes": [("fetalhc/measure/postprocess.py", "outline_distance")],
    "image features (grey levels, inside vs outside)": [
        ("fetalhc/inference/derive.py", "image_features"),
    ],
    "HC, GA, biometry, checks": [("fetalhc/inference/derive.py", "result_from_measurement")],
}


def stage_times(stats: pstats.Stats) -> dict[str, float]:
    out = dict.fromkeys(STAGES, 0.0)
    for (file, _, name), (_, _, _, cumulative, _) in stats.stats.items():
        for stage, functions in STAGES.items():
            if any(file.endswith(f) and name == n for f, n in functions):
                out[stage] += cumulative
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--images", type=Path, default=None, help="folder of images (default: the bundled sample's)"
    )
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--backend", default="onnx")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--checkpoint", default=None)
    args = parser.parse_args()

    import onnxruntime
    import torch

    from fetalhc.inference.inputs import collect_images
    from fetalhc.inference.measurer import HeadMeasurer
    from fetalhc.sample import sample_dir

    folder = args.images or sample_dir()
    found = collect_images([folder])[0]
    files = [i.path for i in found if "_Annotation" not in i.name][: args.n + 2]
    torch.set_num_threads(args.threads)
    measurer = HeadMeasurer(
        args.checkpoint, backend=args.backend, threads=args.threads, batch_size=1
    )
    for f in files[:2]:
        measurer.measure(f, 0.1)
    files = files[2:]
    t0 = time.perf_counter()
    for f in files:
        measurer.measure(f, 0.1)
    plain = (time.perf_counter() - t0) / len(files)
    profile = cProfile.Profile()
    profile.enable()
    for f in files:
        measurer.measure(f, 0.1)
    profile.disable()
    stats = pstats.Stats(profile)
    total = stats.total_tt / len(files)
    times = {k: v / len(files) for k, v in stage_times(stats).items()}
    cpu = cpu_name()
    print(
        f"machine: {cpu}, {args.threads} threads; torch {torch.__version__}, "
        f"onnxruntime {onnxruntime.__version__}; backend {args.backend}; "
        f"{len(files)} images from {folder.name}/, one at a time"
    )
    print(f"end to end without the profiler: {1000 * plain:.1f} ms/image")
    print(f"{'stage':<50} {'ms/image':>9} {'share':>6}")
    for stage, t in times.items():
        print(f"{stage:<50} {1000 * t:9.2f} {100 * t / total:5.1f}%")
    rest = total - sum(times.values())
    other = "other (Python, NumPy glue, profiler)"
    print(f"{other:<50} {1000 * rest:9.2f} {100 * rest / total:5.1f}%")
    print(f"{'total under the profiler':<50} {1000 * total:9.2f}")


if __name__ == "__main__":
    main()
