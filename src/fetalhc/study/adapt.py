"""`fetalhc adapt`: make a model a clinic's own from its corrections, and a gate that
decides whether the new model may be used.

Candidates, each judged on the corrections' held-back part (never trained or fitted on):
the base as is; a convention offset (the base's ellipse moved by a fitted radial distance:
"this clinic measures 1.4 mm inside HC18's outline"); the head, the decoder (the paper's
best) and the whole network fine-tuned from the base; and the decoder plus the offset that
remains after it. The one with the lowest held-back ADF is chosen. It is promoted only when
its ADF improvement's paired bootstrap 95 % interval lies below 0 and, on a sample of
HC18 images (its convention offset taken out), its ADF is not worse than the base's by
more than HC18_TOLERANCE_MM. The model folder is written either way; a folder that was not
promoted says so to whoever loads it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fetalhc.data.corrections import Correction, part_of, read_corrections, sha256_hex
from fetalhc.data.hc18 import load_labelled, reference_ellipse
from fetalhc.errors import FetalHCError
from fetalhc.inference.backends import file_sha256
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.segmenter import default_checkpoint
from fetalhc.io.files import read_json, write_csv, write_json, write_text
from fetalhc.io.images import read_gray
from fetalhc.measure.agreement import agreement, paired_bootstrap_ci
from fetalhc.measure.ellipse import Ellipse, draw_filled, hc_mm
from fetalhc.measure.flag_search import FLAG_SHARE, choose_thresholds, plain_thresholds
from fetalhc.measure.uncertainty import calibrate
from fetalhc.model.checkpoint import resolve_checkpoint
from fetalhc.training.adapt import FineTune, fine_tune

HC18_TOLERANCE_MM = 0.1
# The flag is tuned again on the held-back corrections only from this many on (its search
# needs several errors over 10 mm to choose between rules); below, the base's flag stays.
MIN_CORRECTIONS_FOR_FLAG = 300
CANDIDATES = ("base", "offset", "head", "decoder", "full", "offset+decoder")
FINE_TUNED = {"head": "head", "decoder": "decoder", "full": "full", "offset+decoder": "decoder"}


@dataclass
class Sample:
    """One labelled image: a correction or an HC18-layout image."""

    name: str
    gray: np.ndarray
    final: Ellipse  # pixels: the clinic's outline
    pixel_size_mm: float
    part: str
    image_sha256: str

    @property
    def final_hc_mm(self) -> float:
        return hc_mm(self.final, self.pixel_size_mm)


@dataclass
class AdaptOptions:
    base: Path | None = None  # model folder or checkpoint; None: the bundled model
    candidates: tuple[str, ...] = CANDIDATES
    steps: int = 100
    seed: int = 0
    replay: Path | None = None  # HC18 layout: replay images and the HC18 check
    replay_images: int = 40
    hc18_check_images: int = 60
    n_adapt: int | None = None  # adapt on N of the adapt corrections (drawn with the seed)
    threads: int = 0
    work: Path | None = None  # where candidates are trained (default: a temporary folder)
    log: object = field(default=print, repr=False)


# ---------------------------------------------------------------- data
def load_samples(data: Path) -> list[Sample]:
    """A corrections folder (records + images) or an HC18-layout folder (its labelled
    images, split by the image's hash exactly as stored corrections are)."""
    if any(data.glob("*.json")):
        return [_from_correction(c) for c in read_corrections(data)]
    samples = [s for rec in load_labelled(data) if (s := _labelled_sample(rec)) is not None]
    if not samples:
        raise FetalHCError(f"{data}: no corrections and no labelled HC18-layout images")
    return samples


def _labelled_sample(rec, part: str | None = None) -> Sample | None:
    """An HC18-layout labelled image as a sample (its outline's ellipse); its part, unless
    given, by the image's hash as a stored correction's; None without an ellipse."""
    gray = read_gray(rec.image_path)
    e = reference_ellipse(read_gray(rec.annotation_path))
    if e is None or not rec.pixel_size_mm:
        return None
    digest = sha256_hex(gray.tobytes() + repr(gray.shape).encode())
    return Sample(rec.filename, gray, e, rec.pixel_size_mm, part or part_of(digest), digest)


def _from_correction(c: Correction) -> Sample:
    gray = read_gray(c.image_path)
    return Sample(
        c.record.get("name") or c.image_path.name,
        gray,
        c.final,
        c.pixel_size_mm,
        c.part,
        c.record["image_sha256"],
    )


# ---------------------------------------------------------------- the convention offset
def fit_offset_mm(ellipses: list[Ellipse | None], samples: list[Sample]) -> float:
    """The radial shift (mm) that makes the measured ellipses' HC the clinic's: each
    image's own shift (Newton on the perimeter), their median (robust to a failed head)."""
    shifts = []
    for e, s in zip(ellipses, samples, strict=True):
        if e is None:
            continue
        target, d = s.final_hc_mm, 0.0
        for _ in range(20):
            now = hc_mm(e.grown(d / s.pixel_size_mm), s.pixel_size_mm)
            step = 0.01
            slope = (hc_mm(e.grown((d + step) / s.pixel_size_mm), s.pixel_size_mm) - now) / step
            d -= (now - target) / slope
            if abs(now - target) < 1e-4:
                break
        shifts.append(d)
    if not shifts:
        raise FetalHCError("no corrected image has a head the model found: no offset to fit")
    return float(np.median(shifts))


# ---------------------------------------------------------------- measuring
@dataclass
class Measured:
    """A candidate's figures on some samples, in the clinic's convention."""

    hc: np.ndarray
    ok: np.ndarray
    ellipses: list[Ellipse | None]
    features: list[dict]  # the flag's features and the difficulty's, per image


def measure(measurer: HeadMeasurer, samples: list[Sample], offset_mm: float = 0.0) -> Measured:
    hc, ok, ellipses, features = [], [], [], []
    for s, r in zip(
        samples,
        measurer.measure_many(
            [s.gray for s in samples], [s.pixel_size_mm for s in samples], [s.name for s in samples]
        ),
        strict=True,
    ):
        e = r.ellipse_px
        if e is not None and offset_mm:
            e = e.grown(offset_mm / s.pixel_size_mm)
        value = hc_mm(e, s.pixel_size_mm) if (e is not None and r.ok) else math.nan
        hc.append(value)
        ok.append(r.ok and r.quality == "ok")
        ellipses.append(e if r.ok else None)
        features.append(
            {
                **r.quality_features(),
                "hc_mm": value,
                "pixel_size_mm": s.pixel_size_mm,
                "cephalic_index": r.biometry.cephalic_index if r.biometry else math.nan,
            }
        )
    return Measured(np.array(hc, float), np.array(ok, bool), ellipses, features)


def hc18_check(
    measurer: HeadMeasurer, samples: list[Sample], shift_mm: float, base: Measured | None
) -> dict:
    """ADF on HC18 images with the candidate's convention taken out (the network's ellipse
    moved by `shift_mm`: its inference offset less its convention against HC18), against the
    reference; and against the base's ADF there."""
    m = measure(measurer, samples, shift_mm)
    ref = np.array([s.final_hc_mm for s in samples])
    out = agreement(m.hc, ref, m.ok)
    if base is not None:
        before = agreement(base.hc, ref)
        out["adf_change_mm"] = out["adf_mm"] - before["adf_mm"]
        out["over_10mm_change"] = out["over_10mm"] - before["over_10mm"]
    return out


# ---------------------------------------------------------------- the command
def adapt(data: Path, out: Path, options: AdaptOptions) -> dict:
    """Run every candidate, gate the best and write the model folder `out` (never over
    an existing model: previous models stay, rollback is pointing --model at them)."""
    if out.exists() and any(out.glob("*.safetensors")):
        raise FetalHCError(f"{out}: holds a model already; choose another --out")
    unknown = set(options.candidates) - set(CANDIDATES)
    if unknown or "base" not in options.candidates:
        raise FetalHCError(f"--candidates: choose from {', '.join(CANDIDATES)} (base included)")
    base_checkpoint = (
        resolve_checkpoint(options.base, None)
        if options.base is not None and Path(options.base).is_dir()
        else Path(options.base or default_checkpoint())
    )
    samples = load_samples(data)
    adapt_part = [s for s in samples if s.part == "adapt"]
    if options.n_adapt is not None and options.n_adapt < len(adapt_part):  # a seeded subset
        pick = np.random.default_rng(options.seed).permutation(len(adapt_part))[: options.n_adapt]
        adapt_part = [adapt_part[i] for i in sorted(pick)]
    held = [s for s in samples if s.part == "held-back"]
    if len(adapt_part) < 3 or len(held) < 5:
        raise FetalHCError(
            f"{data}: {len(adapt_part)} corrections to adapt on and {len(held)} held back; "
            "at least 3 and 5 are needed"
        )
    say = options.log
    say(f"adapt: {len(adapt_part)} corrections to adapt on, {len(held)} held back")
    base = HeadMeasurer(base_checkpoint, backend="torch", threads=options.threads)
    ref = np.array([s.final_hc_mm for s in held])
    on_adapt = measure(base, adapt_part)
    offset = fit_offset_mm(on_adapt.ellipses, adapt_part)
    say(f"adapt: convention offset {offset:+.2f} mm (the base's ellipse moved by it)")
    hc18 = _hc18_samples(options) if options.replay is not None else ([], [])
    replay, check = hc18
    results: dict[str, dict] = {}
    measured: dict[str, Measured] = {}
    conventions: dict[str, float] = {}  # each candidate's outline against HC18's (mm)
    at_inference: dict[str, float] = {}  # the offset its config applies when measuring
    checkpoints: dict[str, Path] = {}
    measured["base"] = measure(base, held)
    conventions["base"], at_inference["base"], checkpoints["base"] = 0.0, 0.0, base_checkpoint
    base_check = measure(base, check) if check else None
    if "offset" in options.candidates:
        measured["offset"] = measure(base, held, offset)
        conventions["offset"], checkpoints["offset"] = offset, base_checkpoint
        at_inference["offset"] = offset
    work = Path(options.work or tempfile.mkdtemp(prefix="fetalhc-adapt-"))
    try:
        for name in options.candidates:
            if name not in FINE_TUNED:
                continue
            say(f"adapt: fine-tuning {name} ({options.steps} steps)")
            images = [s.gray for s in adapt_part] + [s.gray for s in replay]
            masks = [draw_filled(s.final, s.gray.shape) for s in adapt_part] + [
                draw_filled(s.final.grown(offset / s.pixel_size_mm), s.gray.shape) for s in replay
            ]
            checkpoint = fine_tune(
                base_checkpoint,
                images,
                masks,
                work / name.replace("+", "_"),
                FineTune(
                    FINE_TUNED[name], options.steps, seed=options.seed, threads=options.threads
                ),
            )
            model = HeadMeasurer(checkpoint, backend="torch", threads=options.threads)
            residual = 0.0
            if name == "offset+decoder":
                residual = fit_offset_mm(measure(model, adapt_part).ellipses, adapt_part)
            measured[name] = measure(model, held, residual)
            # trained with replay moved by `offset`: its convention is that offset (plus
            # what remains after it)
            conventions[name], at_inference[name] = offset + residual, residual
            checkpoints[name] = checkpoint
            if check:
                shift = at_inference[name] - conventions[name]
                results[name] = {"hc18": hc18_check(model, check, shift, base_check)}
        for name, m in measured.items():
            row = results.setdefault(name, {})
            row["held_back"] = agreement(m.hc, ref, m.ok)
            change, low, high = paired_bootstrap_ci(m.hc - ref, measured["base"].hc - ref)
            row["adf_change_mm"], row["adf_change_ci"] = change, (low, high)
            row["convention_mm"] = conventions[name]
            if name in ("base", "offset") and check:
                shift = at_inference[name] - conventions[name]
                row["hc18"] = hc18_check(base, check, shift, base_check)
        chosen = min(measured, key=lambda n: results[n]["held_back"]["adf_mm"])
        promoted, reason = gate(results, chosen)
        say(f"adapt: chosen {chosen}; {'promoted' if promoted else 'not promoted'}: {reason}")
        written = write_model(
            out,
            checkpoints[chosen],
            base_checkpoint,
            chosen,
            at_inference[chosen],
            conventions[chosen],
            promoted,
            reason,
            samples,
            measured[chosen],
            held,
        )
    finally:
        if options.work is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        "corrections": {"adapt": len(adapt_part), "held_back": len(held)},
        "offset_mm": offset,
        "candidates": results,
        "chosen": chosen,
        "promoted": promoted,
        "reason": reason,
        "model": str(written),
    }
    write_report(out, summary)
    return summary


def gate(results: dict, chosen: str) -> tuple[bool, str]:
    """Whether the chosen candidate may replace the base, and why (not)."""
    if chosen == "base":
        return False, "no candidate measures the held-back corrections better than the base"
    low, high = results[chosen]["adf_change_ci"]
    if high >= 0:
        return False, (
            f"held-back ADF change {results[chosen]['adf_change_mm']:+.2f} mm, 95 % CI "
            f"{low:+.2f} to {high:+.2f}: not surely better than the base"
        )
    hc18 = results[chosen].get("hc18")
    if hc18 is None:
        return False, "no HC18 check (give --replay HC18_DIR): forgetting not ruled out"
    if hc18["adf_change_mm"] > HC18_TOLERANCE_MM:
        return False, (
            f"on HC18 (convention taken out) ADF worse by {hc18['adf_change_mm']:.2f} mm "
            f"(> {HC18_TOLERANCE_MM} mm): it forgot"
        )
    return True, (
        f"held-back ADF {results[chosen]['adf_change_mm']:+.2f} mm (95 % CI {low:+.2f} to "
        f"{high:+.2f}), HC18 ADF change {hc18['adf_change_mm']:+.2f} mm"
    )


def _hc18_samples(options: AdaptOptions) -> tuple[list[Sample], list[Sample]]:
    """Replay images and the HC18 check's images, disjoint, drawn with the seed."""
    records = load_labelled(options.replay)
    rng = np.random.default_rng(options.seed)
    order = rng.permutation(len(records))
    need = options.replay_images + options.hc18_check_images
    picked = [records[i] for i in order[:need]]
    samples = [s for rec in picked if (s := _labelled_sample(rec, "hc18")) is not None]
    return samples[: options.replay_images], samples[options.replay_images :]


def write_model(
    out: Path,
    checkpoint: Path,
    base: Path,
    chosen: str,
    offset_mm: float,
    convention_mm: float,
    promoted: bool,
    reason: str,
    samples: list[Sample],
    held_measured: Measured,
    held: list[Sample],
) -> Path:
    """The model folder: weights, config.json (the parent's hash, the offset, the gate's
    verdict, intervals recalibrated on the held-back corrections), the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    weights = out / "model.safetensors"
    shutil.copyfile(checkpoint, weights)
    config = read_json(checkpoint.parent / "config.json")
    config["adaptation"] = {
        "parent": base.name,
        "parent_sha256": file_sha256(base),
        "candidate": chosen,
        "offset_mm": offset_mm,
        "convention_mm": convention_mm,  # its outline against HC18's
        "promoted": promoted,
        "reason": reason,
        "corrections": len(samples),
    }
    ref = np.array([s.final_hc_mm for s in held])
    if len(held) >= MIN_CORRECTIONS_FOR_FLAG:
        rows = [
            {**f, "hc_abs_diff_mm": abs(hc - r)}
            for f, hc, r in zip(held_measured.features, held_measured.hc, ref, strict=True)
        ]
        config["quality"] = plain_thresholds(choose_thresholds(rows, FLAG_SHARE))
        config["adaptation"]["flag"] = f"tuned on {len(held)} held-back corrections"
    else:
        config["adaptation"]["flag"] = (
            f"the parent's ({len(held)} held-back corrections; tuned again from "
            f"{MIN_CORRECTIONS_FOR_FLAG})"
        )
    old = config.get("intervals")
    features = tuple(old["features"]) if old else ("hc_mm", "pass_distance_mm", "pixel_size_mm")
    x = np.array([[f.get(k, math.nan) for k in features] for f in held_measured.features])
    error = held_measured.hc - ref
    if np.isfinite(error).sum() >= 19:  # a 95 % quantile needs 19 rows
        calib = calibrate(
            x,
            held_measured.hc,
            {"hc_mm": error},
            features=features,
            n_bins=1 if len(held) < 90 else 3,
            data=f"{len(held)} held-back corrections (fetalhc adapt)",
        )
        config["intervals"] = calib.to_dict()
    write_json(out / "config.json", config)
    write_csv(
        out / "corrections_manifest.csv",
        [{"name": s.name, "image_sha256": s.image_sha256, "part": s.part} for s in samples],
    )
    return weights


def write_report(out: Path, summary: dict) -> None:
    write_json(out / "adapt_report.json", summary)
    lines = [
        f"# Adapted model: {summary['chosen']} — "
        f"{'promoted' if summary['promoted'] else 'NOT promoted'}",
        "",
        f"{summary['reason']}.",
        "",
        f"Corrections: {summary['corrections']['adapt']} to adapt on, "
        f"{summary['corrections']['held_back']} held back. Convention offset fitted on the adapt "
        f"part: {summary['offset_mm']:+.2f} mm (negative: the clinic measures inside the "
        "base's outline).",
        "",
        "| candidate | held-back ADF mm | bias mm | limits of agreement mm | > 10 mm (ok) | "
        "ADF change mm (95 % CI) | HC18 ADF change mm | HC18 > 10 mm change |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in summary["candidates"].items():
        h = r["held_back"]
        low, high = r["adf_change_ci"]
        c = r.get("hc18", {})
        lines.append(
            f"| {name} | {h['adf_mm']:.2f} | {h['bias_mm']:+.2f} | {h['loa_low_mm']:+.1f} to "
            f"{h['loa_high_mm']:+.1f} | {h['over_10mm']} ({h.get('over_10mm_ok', 0)}) | "
            f"{r['adf_change_mm']:+.2f} ({low:+.2f} to {high:+.2f}) | "
            f"{c.get('adf_change_mm', math.nan):+.2f} | {c.get('over_10mm_change', '—')} |"
        )
    lines += [
        "",
        "Not a medical device: a clinic still validates the model on its own before use.",
        "",
    ]
    write_text(out / "MODEL_CARD.md", "\n".join(lines))
