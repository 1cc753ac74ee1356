"""A source header made fit to derive results from, as hospitals send them.

Anonymisers and old scanners drop attributes; careless writers put `1990-01-01` in a DA,
`X` in PatientSex, letters in a UID, 30 characters in an SH. A derived object (SR, SEG,
SC) copies the patient and study from its source, so every such value would make it
invalid. `fit_for_results` returns a copy in which what is valid is kept, what can be read
is rewritten in its DICOM form (dates, times), Type 2 attributes that are absent or
invalid are empty, missing or invalid UIDs are replaced (a replaced instance UID derived
from the old one, so the same source always maps to the same UID), and every text is
decoded from the source's character set and will be written as UTF-8 (ISO_IR 192) — a
UTF-8, GB18030 or Latin-1 name reads the same in every output. `problems` lists what was
changed, for the log (no patient data in it).
"""

from __future__ import annotations

import copy
import datetime as dt
import re

from pydicom.dataset import Dataset

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")
UID_MAX = 64
# Value lengths of the VRs derived objects copy (PS3.5 6.2): longer values are dropped.
MAX_LENGTH = {"SH": 16, "LO": 64, "PN": 64 * 5, "CS": 16, "DA": 8, "TM": 14}
SEXES = {"M", "F", "O"}
# Type 2 attributes (present, may be empty) of the patient and study modules.
TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)
UTF8 = "ISO_IR 192"


def valid_uid(value) -> bool:
    text = str(value or "")
    return 0 < len(text) <= UID_MAX and UID_PATTERN.match(text) is not None


def replacement_uid(old: str) -> str:
    """A valid UID standing for an invalid one: the same old value, the same new UID."""
    from pydicom.uid import generate_uid

    return str(generate_uid(entropy_srcs=[str(old)])) if old else str(generate_uid())


def dicom_date(value) -> str | None:
    """'19900101' from a DA or from what people write ('1990-01-01', '1990/01/01');
    None if it is not a date."""
    text = re.sub(r"[-/.]", "", str(value or "").strip())
    try:
        dt.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        return None
    return text


def dicom_time(value) -> str | None:
    text = str(value or "").strip().replace(":", "")
    head = text.split(".")[0]
    if not re.fullmatch(r"\d{2}(\d{2}(\d{2})?)?", head):
        return None
    if int(head[:2]) > 23 or (len(head) >= 4 and int(head[2:4]) > 59):
        return None
    if len(head) == 6 and int(head[4:6]) > 60:
        return None
    fraction = text.split(".")[1] if "." in text else ""
    return head + (f".{fraction[:6]}" if fraction.isdigit() else "")


def _decoded(source: Dataset) -> tuple[Dataset, list[str]]:
    """A copy with every text decoded (an unknown character set: its bytes read as
    Latin-1, pydicom's fallback, said in `problems`)."""
    import warnings

    problems = []
    ds = copy.deepcopy(source)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds.decode()
        except (LookupError, UnicodeError, ValueError):
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.decode()
    words = ("charset", "encoding", "character set")
    if any(any(w in str(c.message).lower() for w in words) for c in caught):
        problems.append("unknown character set: texts read as Latin-1")
    return ds, problems


def fit_for_results(source: Dataset) -> tuple[Dataset, list[str]]:
    """A copy of `source` whose patient, study and instance attributes a derived object may
    copy as they are; and what was changed, in words (attribute names only)."""
    ds, problems = _decoded(source)
    # identifiers: UIDs the outputs reference or copy
    for key in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = ds.get(key)
        if not valid_uid(value):
            setattr(ds, key, replacement_uid(str(value or "")))
            problems.append(f"{key} {'missing' if value is None else 'invalid'}: replaced")
    if not valid_uid(ds.get("SOPClassUID")):
        problems.append("SOPClassUID invalid")
    # dates and times in their DICOM form, or empty
    for key, parse in (
        ("PatientBirthDate", dicom_date),
        ("StudyDate", dicom_date),
        ("StudyTime", dicom_time),
    ):
        if key in ds and str(ds[key].value or ""):
            fixed = parse(ds[key].value)
            if fixed != str(ds[key].value):
                what = "rewritten" if fixed else "not a valid value: left empty"
                problems.append(f"{key} {what}")
            ds[key].value = fixed or ""
    if "PatientSex" in ds and str(ds.PatientSex or "").upper() not in SEXES | {""}:
        ds.PatientSex = ""
        problems.append("PatientSex not M, F or O: left empty")
    elif "PatientSex" in ds:
        ds.PatientSex = str(ds.PatientSex or "").upper()
    # one name, of a valid length
    if "PatientName" in ds and ds["PatientName"].VM > 1:
        ds.PatientName = ds["PatientName"].value[0]
        problems.append("PatientName had several values: the first kept")
    for key in (
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "StudyID",
        "AccessionNumber",
        "ReferringPhysicianName",
        "StudyDescription",
    ):
        if key not in ds:
            continue
        element = ds[key]
        limit = MAX_LENGTH.get(element.VR)
        text = str(element.value or "")
        if (limit and len(text) > limit) or ("\\" in text and element.VR != "PN"):
            ds[key].value = ""
            problems.append(f"{key} longer than its VR allows: left empty")
    for key in TYPE2:
        if key not in ds:
            setattr(ds, key, "")
    ds.SpecificCharacterSet = UTF8
    return ds, problems
