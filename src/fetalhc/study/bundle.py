"""`fetalhc bundle`: a trained checkpoint made a model folder that `predict --model`,
`serve --model`, `listen --model` and `HeadMeasurer(folder)` take — fp16 weights,
config.json (inference settings, the quality flag, the intervals) and a model-card
fragment with the figures they were chosen on.

fp16 halves the file; weights are cast back to fp32 when loaded, so inference runs in fp32.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fetalhc.errors import FetalHCError
from fetalhc.inference.backends import file_sha256
from fetalhc.io.files import read_json, write_text
from fetalhc.measure.flag_search import FLAG_SHARE, described
from fetalhc.model.checkpoint import load_model, save_weights, write_config
from fetalhc.model.config import check_locate_side
from fetalhc.study.flag import tune_flag
from fetalhc.study.intervals import calibrate_model

WEIGHTS_NAMES = ("model.safetensors", "default.safetensors")  # new folders: the first


@dataclass
class BundleOptions:
    notes: str = ""
    head_crop: float | None = None
    locate_side: int | None = None
    crop_side: int | None = None
    oof_rows: Path | None = None  # out-of-fold rows: tune the flag and calibrate on them
    flag_share: float = FLAG_SHARE
    data: Path | None = None  # HC18 layout: reference BPD/OFD for the intervals
    replace: bool = False  # write into a folder that already holds a model


def bundle(checkpoint: Path, out: Path, options: BundleOptions) -> Path:
    """Write the model folder `out`; returns its weights file. Everything is checked before
    anything is written; a folder holding a model is refused unless `options.replace`."""
    existing = [out / n for n in WEIGHTS_NAMES if (out / n).is_file()]
    if existing and not options.replace:
        raise FetalHCError(f"{out}: holds a model already; choose another --out (or --replace)")
    model, config = load_model(checkpoint)
    bundled = {
        "model": config["model"],
        "strategy": config.get("strategy", {}),
        "train": config.get("train", {}),
        "source_run": f"{checkpoint.parent.name}/{checkpoint.name}",
        "source_sha256": file_sha256(checkpoint),
        "notes": options.notes,
    }
    if options.head_crop is not None:
        if not 0 <= options.head_crop <= 1:
            raise FetalHCError(f"--head-crop {options.head_crop:g}: a margin from 0 to 1")
        bundled["model"]["head_crop"] = options.head_crop
    if options.locate_side is not None:
        bundled["model"]["locate_side"] = check_locate_side(options.locate_side, "--locate-side")
    if options.crop_side is not None:
        bundled["model"]["crop_side"] = check_locate_side(options.crop_side, "--crop-side")
    out.mkdir(parents=True, exist_ok=True)
    weights = existing[0] if existing else out / WEIGHTS_NAMES[0]
    save_weights(model, weights, {"source": checkpoint.name}, half=True)
    write_config(out / "config.json", bundled)
    card = [
        f"# Model {out.name}",
        "",
        f"- source checkpoint: `{bundled['source_run']}` (sha256 {bundled['source_sha256'][:16]}…)",
        f"- weights: `{weights.name}` (fp16, {weights.stat().st_size / 1e6:.1f} MB)",
        f"- notes: {options.notes or '—'}",
    ]
    if options.oof_rows is not None:
        flag = tune_flag(options.oof_rows, out, options.flag_share)
        t = {k: (float("inf") if v is None else v) for k, v in flag["thresholds"].items()}
        f, h = flag["in_sample"], flag["held_out"]
        card += [
            "",
            f"## Quality flag (tuned on {flag['rows']} out-of-fold rows, at most "
            f"{100 * options.flag_share:.0f} % flagged)",
            "",
            described(t),
            "",
            f"- in sample: {f['flagged_pct']:.1f} % flagged, errors over 10 mm "
            f"{f['caught_10mm']} of {f['over_10mm']} caught",
            f"- held out (two folds choose, the third is scored): {h['flagged_pct']:.1f} % "
            f"flagged, {h['caught_10mm']} of {h['over_10mm']} caught",
        ]
        intervals = calibrate_model(options.oof_rows, out, out / "intervals", options.data)
        c = intervals["chosen"]
        card += [
            "",
            "## Intervals (95 %)",
            "",
            f"Cross-fitted on the same rows: {100 * c['coverage']:.1f} % covered, median "
            f"half-width {c['median_half_width_mm']:.2f} mm (`intervals/report.md`).",
        ]
    write_text(out / "MODEL_CARD.md", "\n".join(card) + "\n")
    read_json(out / "config.json")  # what was written reads back
    return weights
