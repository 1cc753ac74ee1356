"""DICOM test objects as an ultrasound system writes them: patient and study identity,
one region of physical spacing, single-frame or a cine loop (made here, no data shipped)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ExplicitVRLittleEndian,
    UltrasoundImageStorage,
    UltrasoundMultiFrameImageStorage,
    generate_uid,
)


def make_dicom(
    path: Path,
    image: np.ndarray | list[np.ndarray],
    region_cm: float | None = None,
    spacing_mm: float | None = None,
    frames: int = 1,
    syntax=ExplicitVRLittleEndian,
) -> Path:
    """`image` (or a list of frames: a cine loop) as an ultrasound DICOM file."""
    stack = list(image) if isinstance(image, list) else [image] * frames
    cine = len(stack) > 1
    first = stack[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = (
        UltrasoundMultiFrameImageStorage if cine else UltrasoundImageStorage
    )
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = (
        meta.MediaStorageSOPClassUID,
        meta.MediaStorageSOPInstanceUID,
    )
    ds.Modality = "US"
    ds.PatientName, ds.PatientID = "Test^Mother", "FHC-0001"
    ds.PatientBirthDate, ds.PatientSex = "19900101", "F"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1", "ACC1", ""
    ds.StudyDate, ds.StudyTime = "20260601", "101500"
    ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = 1, 1, "test"
    ds.PatientOrientation = ""
    ds.Rows, ds.Columns = first.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    if cine:
        ds.NumberOfFrames = len(stack)
        ds.FrameTime, ds.FrameIncrementPointer = 40.0, 0x00181063
    raw = np.stack(stack).astype(np.uint8).tobytes() if cine else first.astype(np.uint8).tobytes()
    if syntax.is_compressed:  # a stream no codec can decode, stored as the syntax requires
        from pydicom.encaps import encapsulate

        raw = encapsulate([raw[: len(raw) // 2]])
    ds.PixelData = raw
    if region_cm is not None:
        region = Dataset()
        region.RegionLocationMinX0, region.RegionLocationMinY0 = 0, 0
        region.RegionLocationMaxX1, region.RegionLocationMaxY1 = (
            first.shape[1] - 1,
            first.shape[0] - 1,
        )
        region.PhysicalUnitsXDirection = region.PhysicalUnitsYDirection = 3  # cm
        region.PhysicalDeltaX = region.PhysicalDeltaY = region_cm
        region.RegionSpatialFormat, region.RegionDataType, region.RegionFlags = 1, 1, 0
        ds.SequenceOfUltrasoundRegions = [region]
    if spacing_mm is not None:
        ds.PixelSpacing = [spacing_mm, spacing_mm]
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def sr_numbers(sr) -> dict[str, float]:
    """An SR's numeric measurements by concept code value, however deep in the tree."""
    found = {}

    def walk(items):
        for item in items:
            if item.ValueType == "NUM":
                code = item.ConceptNameCodeSequence[0].CodeValue
                found[code] = float(item.MeasuredValueSequence[0].NumericValue)
            if "ContentSequence" in item:
                walk(item.ContentSequence)

    walk(sr.ContentSequence)
    return found
