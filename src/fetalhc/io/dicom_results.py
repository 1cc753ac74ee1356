"""Results as DICOM, built with highdicom: a Structured Report of the biometry, a
Segmentation of the head and the overlay as a Secondary Capture, each in the source's
study, referencing the source instance (and frame, for a cine loop).

The SR follows TID 1500 (Measurement Report), the template highdicom implements, with one
planar-ROI measurement group (TID 1410) whose region is the fitted ellipse on the source
image. Its measurements carry the codes of TID 5000's fetal biometry (CID 12005): HC
LN 11984-2, BPD LN 11820-8, OFD LN 11851-3; gestational age LN 18185-9 with its method,
"HC, Hadlock 1984" LN 11932-1 (CID 12013). The quality flag is a qualitative evaluation
in a private coding scheme (99FETALHC), its reasons TEXT items. A calibrated interval
on a measurement is written as TID 310's measurement-uncertainty properties of its NUM
item (SCT 371886008 "+, range of upper measurement uncertainty" and 371885007 "-, range of
lower measurement uncertainty", in mm, as distances from the value), with a TEXT item
naming the method, level and calibration data. A full TID 5000 OB-GYN
report (fetus summary, biometry ratios, growth percentiles) is the ultrasound system's.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fetalhc.io.dicom_header import fit_for_results
from fetalhc.io.files import atomic_path

FETALHC_SCHEME = "99FETALHC"  # private coding scheme designator (PS3.16 8.2: "99" prefix)
SR_SERIES_NUMBER, SEG_SERIES_NUMBER, SC_SERIES_NUMBER = 9101, 9102, 9103


@dataclass
class ReportContent:
    """What a Structured Report says about one measured head (primitives only)."""

    hc_mm: float
    bpd_mm: float
    ofd_mm: float
    ga_weeks: float | None  # Hadlock 1984 from HC; None outside its range
    ellipse_px: tuple[float, float, float, float, float]  # cx, cy, a, b, angle (radians)
    quality: str  # ok | check
    reasons: list[str] = field(default_factory=list)
    frame: int | None = None  # 1-based frame of a cine loop
    algorithm: str = "fetalhc"
    version: str = "0"
    model: str = ""
    # calibrated intervals (low, high) in mm by measure ("hc_mm", "bpd_mm", "ofd_mm") and
    # how they were made (method, level, calibration data), in words
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    interval_method: str = ""


def _codes():
    from pydicom.sr.codedict import codes
    from pydicom.sr.coding import Code

    return codes, Code


def ellipse_points(cx: float, cy: float, a: float, b: float, angle: float) -> np.ndarray:
    """An ELLIPSE's graphic data (PS3.3 C.18.6.1.2): the major axis' end points, then the
    minor axis' end points, in image (column, row) coordinates."""
    if b > a:  # the first pair must be the major axis
        a, b, angle = b, a, angle + math.pi / 2
    ca, sa = math.cos(angle), math.sin(angle)
    return np.array(
        [
            [cx - a * ca, cy - a * sa],
            [cx + a * ca, cy + a * sa],
            [cx + b * sa, cy - b * ca],
            [cx - b * sa, cy + b * ca],
        ],
        dtype=np.float64,
    )


def _algorithm_sr(content: ReportContent):
    import highdicom as hd

    return hd.sr.AlgorithmIdentification(name=content.algorithm, version=content.version)


def structured_report(source, content: ReportContent):
    """A Comprehensive SR in the source's study: HC, BPD, OFD (mm), GA (weeks, Hadlock 1984
    from HC), the quality flag and its reasons, the algorithm's name and version."""
    import highdicom as hd
    from highdicom.sr import RelationshipTypeValues
    from pydicom.uid import generate_uid

    source, _ = fit_for_results(source)
    codes, Code = _codes()
    mm, weeks = Code("mm", "UCUM", "millimeter"), Code("wk", "UCUM", "week")
    algorithm = _algorithm_sr(content)
    frames = [content.frame] if content.frame else None
    region = hd.sr.ImageRegion(
        graphic_type=hd.sr.GraphicTypeValues.ELLIPSE,
        graphic_data=ellipse_points(*content.ellipse_px),
        source_image=hd.sr.SourceImageForRegion(
            referenced_sop_class_uid=source.SOPClassUID,
            referenced_sop_instance_uid=source.SOPInstanceUID,
            referenced_frame_numbers=frames,
        ),
    )
    measurements = [
        hd.sr.Measurement(codes.LN.HeadCircumference, content.hc_mm, mm, algorithm_id=algorithm),
        hd.sr.Measurement(codes.LN.BiparietalDiameter, content.bpd_mm, mm, algorithm_id=algorithm),
        hd.sr.Measurement(
            codes.LN.OccipitalFrontalDiameter, content.ofd_mm, mm, algorithm_id=algorithm
        ),
    ]
    values = (content.hc_mm, content.bpd_mm, content.ofd_mm)
    for measurement, key, value in zip(
        measurements, ("hc_mm", "bpd_mm", "ofd_mm"), values, strict=True
    ):
        if key in content.intervals:
            _add_uncertainty(measurement[0], value, content.intervals[key])
    if content.ga_weeks is not None and math.isfinite(content.ga_weeks):
        measurements.append(
            hd.sr.Measurement(
                codes.LN.GestationalAge,
                content.ga_weeks,
                weeks,
                method=codes.LN.HCHadlock1984,
                algorithm_id=algorithm,
            )
        )
    flag = Code("quality", FETALHC_SCHEME, "Measurement quality flag")
    value = (
        Code("ok", FETALHC_SCHEME, "No check needed")
        if content.quality == "ok"
        else Code("check", FETALHC_SCHEME, "Check the measurement")
    )
    group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=generate_uid(), identifier="fetal head"),
        referenced_region=region,
        finding_type=codes.SCT.Head,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(flag, value)],
        algorithm_id=algorithm,
    )
    if content.intervals and content.interval_method:
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=Code("uncertainty", FETALHC_SCHEME, "Measurement uncertainty method"),
                value=content.interval_method[:1024],
                relationship_type=RelationshipTypeValues.CONTAINS,
            )
        )
    reason_code = Code("reason", FETALHC_SCHEME, "Reason for check")
    for reason in content.reasons:
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=reason_code,
                value=reason[:1024],  # UT holds more, but keep a viewer's line readable
                relationship_type=RelationshipTypeValues.CONTAINS,
            )
        )
    device = hd.sr.ObserverContext(
        observer_type=codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(),
            name=content.algorithm,
            manufacturer_name=content.algorithm,
            model_name=f"{content.algorithm} {content.version} {content.model}".strip(),
        ),
    )
    subject = hd.sr.SubjectContext(
        subject_class=codes.DCM.Fetus,
        subject_class_specific_context=hd.sr.SubjectContextFetus(subject_id="1"),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(
            observer_device_context=device, subject_context=subject
        ),
        procedure_reported=codes.SCT.ObstetricUSScan,
        imaging_measurements=[group],
    )
    return hd.sr.ComprehensiveSR(
        evidence=[source],
        content=report[0],
        series_instance_uid=generate_uid(),
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=content.algorithm,
        series_description=f"{content.algorithm} fetal head biometry",
        is_complete=True,
        is_final=False,  # an algorithm's result, not verified by a person
        is_verified=False,
    )


UPPER_UNCERTAINTY = ("371886008", "SCT", "+, range of upper measurement uncertainty")
LOWER_UNCERTAINTY = ("371885007", "SCT", "-, range of lower measurement uncertainty")


def _add_uncertainty(num_item, value: float, interval: tuple[float, float]) -> None:
    """TID 310's uncertainty rows on a NUM measurement, in its unit (mm). highdicom's
    MeasurementProperties writes them without a unit, hence built here."""
    import highdicom as hd
    from highdicom.sr import RelationshipTypeValues
    from pydicom.sequence import Sequence
    from pydicom.sr.coding import Code

    mm = Code("mm", "UCUM", "millimeter")
    low, high = interval
    if "ContentSequence" not in num_item:
        num_item.ContentSequence = Sequence()
    for code, distance in ((UPPER_UNCERTAINTY, high - value), (LOWER_UNCERTAINTY, value - low)):
        num_item.ContentSequence.append(
            hd.sr.NumContentItem(
                name=Code(*code),
                value=round(max(0.0, distance), 6),
                unit=mm,
                relationship_type=RelationshipTypeValues.HAS_PROPERTIES,
            )
        )


def segmentation(source, mask: np.ndarray, frame: int | None, content: ReportContent):
    """A binary SEG of the head on the source's geometry (a cine loop: on `frame`)."""
    import highdicom as hd
    from pydicom.uid import UltrasoundImageStorage, generate_uid

    source, _ = fit_for_results(source)
    codes, _ = _codes()
    pixels = (mask > 0)[None]
    view = source
    cine = int(getattr(source, "NumberOfFrames", 1) or 1) > 1
    if cine:
        # highdicom segments one frame of an image without a frame of reference (all
        # ultrasound): give it the header as one frame, then name the frame it came from
        view = copy.deepcopy(source)
        view.SOPClassUID = UltrasoundImageStorage  # the frame, as a single-frame image
        for key in ("NumberOfFrames", "FrameIncrementPointer", "FrameTime"):
            if key in view:
                delattr(view, key)
    algorithm = hd.AlgorithmIdentificationSequence(
        name=content.algorithm,
        version=content.version,
        family=codes.DCM.ArtificialIntelligence,
    )
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="fetal head",
        segmented_property_category=codes.SCT.AnatomicalStructure,
        segmented_property_type=codes.SCT.Head,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
    )
    seg = hd.seg.Segmentation(
        source_images=[view],
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer=content.algorithm,
        manufacturer_model_name=f"{content.algorithm} {content.model}".strip(),
        software_versions=content.version,
        device_serial_number="0",
        series_description=f"{content.algorithm} fetal head",
    )
    if cine:  # point the references back at the cine loop and its frame
        for item in seg.PerFrameFunctionalGroupsSequence:
            for derivation in item.DerivationImageSequence:
                for ref in derivation.SourceImageSequence:
                    ref.ReferencedSOPClassUID = source.SOPClassUID
                    ref.ReferencedFrameNumber = frame or 1
        for series in seg.ReferencedSeriesSequence:
            for ref in series.ReferencedInstanceSequence:
                ref.ReferencedSOPClassUID = source.SOPClassUID
    if "PatientOrientation" not in seg:  # General Image, Type 2C without a frame of reference
        seg.PatientOrientation = source.get("PatientOrientation", "")
    return seg


def secondary_capture(source, picture_bgr: np.ndarray, content: ReportContent):
    """The overlay (image, fitted ellipse, HC and GA) as an RGB Secondary Capture in the
    source's study. Written with pydicom: highdicom's SCImage requires a patient
    orientation (row and column directions) that ultrasound images do not define."""
    import datetime

    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    source, _ = fit_for_results(source)
    rgb = np.ascontiguousarray(picture_bgr[..., ::-1] if picture_bgr.ndim == 3 else picture_bgr)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = source.SpecificCharacterSet  # UTF-8: names survive
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    for key in PATIENT_AND_STUDY:  # the same patient and study as the source
        if key in source:
            setattr(ds, key, source.data_element(key).value)
    now = datetime.datetime.now()
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber, ds.InstanceNumber = SC_SERIES_NUMBER, 1
    ds.Modality = "OT"
    ds.SeriesDescription = f"{content.algorithm} overlay"
    ds.ConversionType = "WSD"  # workstation: a picture made by software
    ds.Manufacturer = content.algorithm
    ds.SoftwareVersions = content.version
    ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    ds.PatientOrientation = ""
    ds.Laterality = ""  # General Series, Type 2C: unknown for a fetal head
    ds.BurnedInAnnotation = "YES"  # the HC and GA are drawn into the picture
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.Rows, ds.Columns = rgb.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit, ds.PixelRepresentation = 7, 0
    ds.PixelData = rgb.astype(np.uint8).tobytes()
    source_ref = Dataset()
    source_ref.ReferencedSOPClassUID = source.SOPClassUID
    source_ref.ReferencedSOPInstanceUID = source.SOPInstanceUID
    if content.frame:
        source_ref.ReferencedFrameNumber = content.frame
    ds.SourceImageSequence = [source_ref]
    return ds


# Patient and study attributes a derived object copies from its source.
PATIENT_AND_STUDY = (
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyInstanceUID",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "StudyDescription",
)


def write_dicom(path: Path, dataset) -> None:
    """A dataset as a DICOM Part 10 file, atomically (file meta filled in)."""
    with atomic_path(path, suffix=".dcm") as tmp:
        dataset.save_as(str(tmp), enforce_file_format=True)
