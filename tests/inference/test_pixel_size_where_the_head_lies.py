"""The pixel size a head is measured in: a DICOM's ultrasound regions decide it where the
head lies (located first, then the region chosen, then measured: once)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.dicom_helpers import make_dicom

PIXEL_MM = 0.133961232503  # 180_HC.png's pixel size in HC18's CSV


def with_regions(path: Path, image: np.ndarray, columns_mm: list[tuple[int, int, float]]) -> Path:
    """`image` as a DICOM with one full-height ultrasound region per (first column, last
    column, mm per pixel)."""
    import pydicom
    from pydicom.dataset import Dataset

    make_dicom(path, image)
    ds = pydicom.dcmread(path)
    regions = []
    for x0, x1, mm in columns_mm:
        r = Dataset()
        r.RegionLocationMinX0, r.RegionLocationMinY0 = x0, 0
        r.RegionLocationMaxX1, r.RegionLocationMaxY1 = x1, image.shape[0] - 1
        r.PhysicalUnitsXDirection = r.PhysicalUnitsYDirection = 3
        r.PhysicalDeltaX = r.PhysicalDeltaY = mm / 10
        r.RegionSpatialFormat, r.RegionDataType, r.RegionFlags = 1, 1, 0
        regions.append(r)
    ds.SequenceOfUltrasoundRegions = regions
    ds.save_as(path)
    return path


def two_regions(path: Path, image: np.ndarray, left_mm: float, right_mm: float) -> Path:
    """A dual-view frame: `image` on the left half, an empty view on the right, one
    ultrasound region per half with its own spacing."""
    w = image.shape[1]
    wide = np.concatenate([image, np.zeros_like(image)], axis=1)
    return with_regions(path, wide, [(0, w - 1, left_mm), (w, 2 * w - 1, right_mm)])


# ---------------------------------------------------------------- DICOM geometry
def test_the_spacing_of_the_region_that_holds_the_head_is_used(tmp_path, head, measurer):
    plain = measurer.measure(head, PIXEL_MM)
    # the centre of the wide frame lies in the right region (the wrong spacing)
    dual = measurer.measure_dicom(two_regions(tmp_path / "dual.dcm", head, PIXEL_MM, 0.2))
    (r,) = dual.frames
    assert r.ellipse_px.cx < head.shape[1]  # the head, in the left view
    assert r.ok and r.pixel_size_mm == pytest.approx(PIXEL_MM)
    assert r.hc_mm == pytest.approx(plain.hc_mm, rel=0.02)


def split_view(path: Path, image: np.ndarray) -> Path:
    """`image` with two ultrasound regions of the same spacing meeting at its middle: a
    head there lies in neither."""
    w = image.shape[1]
    return with_regions(path, image, [(0, w // 2, PIXEL_MM), (w // 2 + 1, w - 1, PIXEL_MM)])


def test_a_head_across_two_regions_gets_no_hc(tmp_path, head, measurer):
    (out,) = measurer.measure_dicom(split_view(tmp_path / "split.dcm", head)).frames
    assert out.ellipse_px is not None and out.pixel_size_source == "ultrasound region"
    assert out.status == "no_pixel_size" and "not inside one ultrasound region" in out.detail
    assert out.as_row()["hc_mm"] == ""


def test_a_dicom_with_regions_is_segmented_and_measured_once(tmp_path, head, monkeypatch):
    """Locate, choose the region, measure: one network call, one post-processing, one
    result (the skull-arc profiles included) for a DICOM whose regions decide the mm."""
    from fetalhc.inference import derive
    from fetalhc.inference import measurer as measurer_module
    from fetalhc.inference.measurer import HeadMeasurer

    counted = {"network": 0, "postprocess": 0, "result": 0, "arc": 0}

    def counting(name, function):
        def wrapper(*args, **kwargs):
            counted[name] += 1
            return function(*args, **kwargs)

        return wrapper

    fresh = HeadMeasurer(backend="torch")
    monkeypatch.setattr(fresh.segmenter, "predict", counting("network", fresh.segmenter.predict))
    monkeypatch.setattr(
        measurer_module, "measure", counting("postprocess", measurer_module.measure)
    )
    monkeypatch.setattr(
        measurer_module,
        "result_from_measurement",
        counting("result", measurer_module.result_from_measurement),
    )
    monkeypatch.setattr(derive, "unsupported_arc_deg", counting("arc", derive.unsupported_arc_deg))
    # the centre of the wide frame lies in the right region (the wrong spacing)
    dual = fresh.measure_dicom(two_regions(tmp_path / "dual.dcm", head, PIXEL_MM, 0.2))
    assert counted == {"network": 1, "postprocess": 1, "result": 1, "arc": 1}
    (r,) = dual.frames
    assert r.ok and r.pixel_size_mm == PIXEL_MM and r.pixel_size_source == "ultrasound region"


def test_an_infinite_pixel_spacing_is_no_pixel_size(tmp_path, head):
    import pydicom

    from fetalhc.io.dicom import read_dicom

    path = make_dicom(tmp_path / "inf.dcm", head, spacing_mm=1.0)
    ds = pydicom.dcmread(path)
    ds.PixelSpacing = ["inf", "inf"]
    ds.save_as(path)
    assert read_dicom(path).pixel_size.mm is None


def test_a_region_with_unequal_spacing_gives_no_pixel_size_and_says_why(tmp_path, head):
    import pydicom

    from fetalhc.inference.inputs import FromHeader, status_for_size
    from fetalhc.io.dicom import read_dicom

    path = make_dicom(tmp_path / "aniso.dcm", head, region_cm=PIXEL_MM / 10)
    ds = pydicom.dcmread(path)
    ds.SequenceOfUltrasoundRegions[0].PhysicalDeltaY = PIXEL_MM / 10 * 1.5
    ds.save_as(path)
    size = FromHeader(fallback_mm=0.2).choose(read_dicom(path).pixel_size)
    assert size.mm == 0.2 and size.source == "given"  # --pixel-size stands in
    header = read_dicom(path).pixel_size
    assert header.mm is None and not header.regions
    status, detail = status_for_size(FromHeader().choose(header))
    assert status == "no_pixel_size" and "unequal spacing" in detail
