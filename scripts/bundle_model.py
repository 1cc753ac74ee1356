"""Store a trained checkpoint as the bundled default model (fp16 safetensors + config).

    python scripts/bundle_model.py RUN/best.safetensors [--quality quality.json] [--notes "..."]

`--quality`: the quality flag's thresholds chosen for this model, `--head-crop`: the margin
of a two-pass model's second crop, `--locate-side` / `--crop-side`: the sides of its first
and second pass (chosen out of fold: scripts/model_selection_report.py,
scripts/model_v3_report.py), stored in its config.json.

fp16 halves the file (8.4 MB for the 4.1 M-parameter half-width U-Net, 13 MB at full
width); weights are cast back to fp32 when loaded, so inference runs in fp32.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fetalhc.errors import FetalHCError
from fetalhc.inference.segmenter import DEFAULT_MODEL
from fetalhc.io.files import read_json
from fetalhc.model.checkpoint import load_model, save_weights, write_config
from fetalhc.model.config import check_locate_side


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--notes", default="")
    parser.add_argument("--quality", type=Path, help="thresholds of the quality flag (JSON)")
    parser.add_argument(
        "--head-crop", type=float, help="two-pass models: the margin inference uses (chosen OOF)"
    )
    parser.add_argument(
        "--locate-side", type=int, help="two-pass models: the first pass's side (chosen OOF)"
    )
    parser.add_argument(
        "--crop-side", type=int, help="two-pass models: the close-up's side (chosen OOF)"
    )
    args = parser.parse_args()
    try:  # everything is checked before the bundled model is replaced
        model, config = load_model(args.checkpoint)
        bundled = {
            "model": config["model"],
            "strategy": config["strategy"],
            "train": config["train"],
            "source_run": f"{args.checkpoint.parent.name}/{args.checkpoint.name}",
            "notes": args.notes,
        }
        if args.head_crop is not None:
            bundled["model"]["head_crop"] = args.head_crop
        if args.locate_side is not None:
            bundled["model"]["locate_side"] = check_locate_side(args.locate_side, "--locate-side")
        if args.crop_side is not None:
            bundled["model"]["crop_side"] = check_locate_side(args.crop_side, "--crop-side")
        if args.quality:
            bundled["quality"] = read_json(args.quality)
    except FetalHCError as exc:
        raise SystemExit(f"bundle_model: {exc}") from None
    save_weights(model, DEFAULT_MODEL, {"source": args.checkpoint.name}, half=True)
    write_config(DEFAULT_MODEL.parent / "config.json", bundled)
    print(f"{DEFAULT_MODEL}: {DEFAULT_MODEL.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
