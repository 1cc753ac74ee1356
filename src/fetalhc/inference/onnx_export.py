"""`fetalhc export`: the ONNX file checked against PyTorch on real images, and its int8
copy calibrated on images from folders (the bundled sample by default)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fetalhc.inference.inputs import collect_images
from fetalhc.io.images import read_gray
from fetalhc.model.export import export_onnx, quantize_int8
from fetalhc.sample import sample_dir

CHECK_IMAGES = 4  # real images the export is compared with PyTorch on


@dataclass
class ExportReport:
    max_difference: float
    checked_images: int
    int8: Path | None = None
    calibrated_images: int = 0
    skipped: list[str] = field(default_factory=list)  # calibration files that could not be read


def export_checked(
    checkpoint: Path,
    onnx_path: Path,
    int8: bool = False,
    calibration: Path | None = None,
    calibration_images: int = 64,
) -> ExportReport:
    folder = sample_dir() / "training_set"
    images = [read_gray(p) for p in sorted(folder.glob("*HC.png"))[:CHECK_IMAGES]]
    diff = export_onnx(checkpoint, onnx_path, verify=True, check_images=images)
    report = ExportReport(diff, len(images))
    if not int8:
        return report
    folders = [calibration] if calibration else [folder, sample_dir() / "test_set"]
    found, _ = collect_images(folders)
    chosen = []
    for item in found[:calibration_images]:
        try:
            chosen.append(read_gray(item.path))
        except ValueError as exc:
            report.skipped.append(f"{item.name}: {exc}")
    report.int8 = onnx_path.with_name(onnx_path.stem + "_int8.onnx")
    quantize_int8(onnx_path, report.int8, chosen)
    report.calibrated_images = len(chosen)
    return report
