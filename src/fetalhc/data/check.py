"""`fetalhc data check`: summary of an HC18 folder and every problem, with its file name."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fetalhc.data.hc18 import (
    CONFLICT,
    PARTS,
    annotation_path_for,
    find_csv,
    is_annotation,
    list_images,
    parse_positive,
    read_pixel_csv,
    reference_ellipse,
    subject_of,
)
from fetalhc.errors import FetalHCError
from fetalhc.io.images import read_gray
from fetalhc.measure.quality import plausible_hc, plausible_pixel_size


@dataclass
class PartReport:
    part: str
    images: int = 0
    annotations: int = 0
    subjects: set[str] = field(default_factory=set)
    pixel_sizes: list[float] = field(default_factory=list)
    hcs: list[float] = field(default_factory=list)


@dataclass
class CheckReport:
    parts: dict[str, PartReport] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_part(root: Path, part: str, report: CheckReport) -> None:
    folder = root / part
    summary = PartReport(part)
    report.parts[part] = summary
    labelled = part == "training_set"
    csv_path = find_csv(root, part)
    rows: dict[str, dict[str, str]] = {}
    if csv_path is None:
        report.problems.append(f"{PARTS[part]}: missing")
    else:
        duplicates: list[str] = []
        try:
            rows = read_pixel_csv(csv_path, need_hc=labelled, duplicates=duplicates)
        except FetalHCError as exc:
            report.problems.append(str(exc))
        for name in sorted(set(duplicates)):
            kind = "conflicting" if rows[name]["pixel_size"] == CONFLICT else "duplicated"
            report.problems.append(f"{csv_path.name}: {kind} rows for {name}")
    images = list_images(folder)
    names = {p.name for p in images}
    for name in sorted(set(rows) - names):
        report.problems.append(f"{part}/{name}: CSV row without image")
    for orphan in sorted(p for p in folder.glob("*.png") if is_annotation(p)):
        image_name = orphan.name.replace("_Annotation.png", ".png")
        if image_name not in names:
            report.problems.append(f"{part}/{orphan.name}: annotation without image")
    for image in images:
        where = f"{part}/{image.name}"
        summary.images += 1
        summary.subjects.add(subject_of(image.name))
        try:
            read_gray(image)
        except ValueError as exc:
            report.problems.append(f"{where}: unreadable image ({exc})")
        row = rows.get(image.name)
        if row is None:
            if csv_path is not None:
                report.problems.append(f"{where}: image without CSV row")
        else:
            pixel = parse_positive(row["pixel_size"])
            why = plausible_pixel_size(pixel)
            if why:
                report.problems.append(f"{where}: pixel size {row['pixel_size']!r}: {why}")
            else:
                summary.pixel_sizes.append(pixel)
            if labelled:
                hc = parse_positive(row["hc"])
                why = plausible_hc(hc) if hc is not None else "not a positive number"
                if why:
                    report.problems.append(f"{where}: reference HC {row['hc']!r}: {why}")
                else:
                    summary.hcs.append(hc)
        if not labelled:
            continue
        ann = annotation_path_for(image)
        if not ann.is_file():
            report.problems.append(f"{where}: missing annotation {ann.name}")
            continue
        try:
            outline = read_gray(ann)
        except ValueError as exc:
            report.problems.append(f"{part}/{ann.name}: unreadable annotation ({exc})")
            continue
        if reference_ellipse(outline) is None:
            report.problems.append(f"{part}/{ann.name}: annotation holds no ellipse")
            continue
        summary.annotations += 1


def check_dataset(root: str | Path) -> CheckReport:
    root = Path(root)
    if not root.is_dir():
        raise FetalHCError(f"{root}: not a folder")
    report = CheckReport()
    found = [part for part in PARTS if (root / part).is_dir()]
    if not found:
        raise FetalHCError(f"{root}: neither training_set/ nor test_set/ found (HC18 layout)")
    for part in found:
        _check_part(root, part, report)
    return report


def _range(values: list[float], fmt: str) -> str:
    return f"{fmt.format(min(values))} – {fmt.format(max(values))}" if values else "n/a"


def format_report(report: CheckReport) -> str:
    lines = []
    for part, s in report.parts.items():
        line = f"{part}: {s.images} images, {len(s.subjects)} subjects"
        if part == "training_set":
            line += f", {s.annotations} valid annotations"
        line += f"; pixel size {_range(s.pixel_sizes, '{:.4f}')} mm"
        if s.hcs:
            line += f"; HC {_range(s.hcs, '{:.1f}')} mm"
        lines.append(line)
    if report.problems:
        lines.append(f"{len(report.problems)} problem(s):")
        lines.extend(f"  {p}" for p in report.problems)
    else:
        lines.append("no problems found")
    return "\n".join(lines)
