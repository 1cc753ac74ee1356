"""`fetalhc listen`: a DICOM node (C-STORE SCP, pynetdicom) in a clinic's network.

An ultrasound system (or a PACS) sends images by C-STORE; each object is checked (an image
fetalhc can decode, within the pixel limit), written to OUT/received/ before it is
acknowledged, then measured by one worker: rows appended to OUT/predictions.csv (as
`predict` writes them), the SR, SEG and overlay SC into OUT/dicom/, and with a forward
address the SR and SEG sent on to a PACS by C-STORE. Objects it cannot use are answered
with a DIMSE failure status and a log line; the node goes on. On SIGTERM or SIGINT it stops
accepting associations, measures what it has received, and exits; an object received but
not yet measured when the process died is measured at the next start.

No authentication beyond AE titles: run it on a trusted network segment.
"""

from __future__ import annotations

import csv
import logging
import os
import queue
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fetalhc.errors import FetalHCError
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.predict import (
    COLUMNS,
    InputImage,
    PredictOptions,
    measure_dicom_file,
    one_line,
    safe_row,
)
from fetalhc.io.dicom import MAX_CINE_FACTOR, dicom_pixel_size
from fetalhc.io.files import atomic_path, ensure_folder
from fetalhc.io.pixels import max_image_pixels

log = logging.getLogger(__name__)

# C-STORE failure statuses (PS3.4 Annex B.2.3 and GG.4)
OUT_OF_RESOURCES = 0xA700  # too large to take on
NOT_AN_IMAGE = 0xA900  # the data set does not match an image SOP class (no pixel data)
CANNOT_UNDERSTAND = 0xC000  # pixel data that cannot be decoded (e.g. its transfer syntax)
PROCESSING_FAILURE = 0x0110  # the object could not be kept
SUCCESS = 0x0000
RECEIVED, DONE = "received", "received/measured"


@dataclass(frozen=True)
class Forward:
    host: str
    port: int
    aet: str

    @classmethod
    def parse(cls, text: str) -> Forward:
        host, _, rest = text.rpartition(":")
        host, _, port = host.rpartition(":")
        if not (host and port.isdigit() and rest and 0 < int(port) < 65536 and len(rest) <= 16):
            raise FetalHCError(f"--forward {text!r}: expected HOST:PORT:AET (AE title <= 16)")
        return cls(host, int(port), rest)


def check_dataset(ds) -> tuple[int, str]:
    """(SUCCESS, "") for an image fetalhc can measure, else a failure status and why."""
    if "PixelData" not in ds:
        return NOT_AN_IMAGE, "not an image (no pixel data)"
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    limit = max_image_pixels()
    if rows * cols > limit or rows * cols * frames > MAX_CINE_FACTOR * limit:
        return OUT_OF_RESOURCES, f"too large ({frames} x {cols}x{rows} pixels)"
    quiet = logging.getLogger("pydicom")  # its decoders log a traceback; one line is ours
    level, quiet.level = quiet.level, logging.CRITICAL
    try:
        pixels = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - pydicom raises many types for codecs
        syntax = ds.file_meta.get("TransferSyntaxUID", "?")
        name = getattr(syntax, "name", str(syntax))
        return CANNOT_UNDERSTAND, f"cannot decode the pixel data ({name}: {type(exc).__name__})"
    finally:
        quiet.level = level
    if not np.issubdtype(np.asarray(pixels).dtype, np.number):
        return CANNOT_UNDERSTAND, "pixel data of an unusable type"
    return SUCCESS, ""


class DicomNode:
    """The C-STORE SCP and its measuring worker. `start` binds; `stop` drains and ends."""

    def __init__(
        self,
        measurer: HeadMeasurer,
        out: Path,
        aet: str = "FETALHC",
        forward: Forward | None = None,
    ) -> None:
        self.measurer, self.out, self.aet, self.forward = measurer, Path(out), aet, forward
        ensure_folder(self.out)
        for sub in (RECEIVED, DONE, "dicom"):
            ensure_folder(self.out / sub)
        self.options = PredictOptions(dicom_out=self.out / "dicom")
        self.jobs: queue.Queue[Path | None] = queue.Queue()
        self.csv_lock = threading.Lock()
        self.server = None
        self.worker = threading.Thread(target=self._work, name="fetalhc-measure", daemon=True)

    # ------------------------------------------------------------ the SCP
    def start(self, port: int, host: str = "127.0.0.1") -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
        from pynetdicom.sop_class import (
            SecondaryCaptureImageStorage,
            UltrasoundImageStorage,
            UltrasoundMultiFrameImageStorage,
            Verification,
        )

        ae = AE(ae_title=self.aet)
        # every storage SOP class (a wrong one is answered per object, not refused at the
        # association) and every transfer syntax (an undecodable one likewise)
        for context in StoragePresentationContexts:
            ae.add_supported_context(context.abstract_syntax, ALL_TRANSFER_SYNTAXES)
        for image in (
            UltrasoundImageStorage,
            UltrasoundMultiFrameImageStorage,
            SecondaryCaptureImageStorage,
        ):
            ae.add_supported_context(image, ALL_TRANSFER_SYNTAXES)
        ae.add_supported_context(Verification)
        ae.maximum_associations = 16
        for name in self._pending():  # received before a crash, not measured yet
            self.jobs.put(name)
        self.worker.start()
        try:
            self.server = ae.start_server(
                (host, port), block=False, evt_handlers=[(evt.EVT_C_STORE, self._on_store)]
            )
        except OSError as exc:
            raise FetalHCError(f"cannot listen on {host}:{port} ({exc.strerror or exc})") from None
        log.info("fetalhc: DICOM node %s listening on %s:%d", self.aet, host, port)

    def _on_store(self, event) -> int:
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
        except Exception as exc:  # noqa: BLE001 - a data set pydicom cannot parse
            log.warning("refused an object: cannot parse it (%s)", type(exc).__name__)
            return CANNOT_UNDERSTAND
        uid = str(ds.get("SOPInstanceUID", "")) or "unknown"
        status, why = check_dataset(ds)
        if status != SUCCESS:
            log.warning("refused %s from %s: %s", uid, event.assoc.requestor.ae_title, why)
            return status
        target = self.out / RECEIVED / f"{_safe(uid)}.dcm"
        try:  # on disk before the sender hears "success": nothing received is lost
            with atomic_path(target, suffix=".dcm") as tmp:
                ds.save_as(str(tmp), enforce_file_format=True)
        except (OSError, ValueError) as exc:
            log.error("could not keep %s: %s", uid, exc)
            return PROCESSING_FAILURE
        self.jobs.put(target)
        return SUCCESS

    def _pending(self) -> list[Path]:
        return sorted((self.out / RECEIVED).glob("*.dcm"))

    # ------------------------------------------------------------ the worker
    def _work(self) -> None:
        while True:
            path = self.jobs.get()
            if path is None:
                return
            try:
                self._measure(path)
            except Exception as exc:  # noqa: BLE001 - one object must not stop the node
                # one line, no traceback: the log names objects, never patient data
                log.error("failed to measure %s: %s", log_safe(path.name), one_line(exc))

    def _measure(self, path: Path) -> None:
        import pydicom

        header = pydicom.dcmread(str(path), stop_before_pixels=True)
        try:
            shape = (int(header.get("Rows", 0) or 0), int(header.get("Columns", 0) or 0))
        except (TypeError, ValueError):
            shape = (0, 0)  # measure_dicom_file says why the object cannot be read
        size, _ = dicom_pixel_size(header, shape)
        rows, written = measure_dicom_file(
            InputImage(path, path.name), size, self.measurer, self.out, self.options
        )
        self._append(rows)
        chosen = next((r for r in rows if r["chosen"] == "yes"), rows[0])
        log.info(
            "measured %s: %s, HC %s mm",
            log_safe(path.name),
            log_safe(chosen["status"]),
            chosen["hc_mm"],
        )
        if self.forward is not None:
            self._send([p for p in written if p.name.endswith(("_sr.dcm", "_seg.dcm"))])
        os.replace(path, self.out / DONE / path.name)

    def _append(self, rows: list[dict]) -> None:
        """Rows appended to OUT/predictions.csv (header first), flushed and synced."""
        target = self.out / "predictions.csv"
        with self.csv_lock:
            new = not target.exists() or target.stat().st_size == 0
            with open(target, "a", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=COLUMNS)
                if new:
                    writer.writeheader()
                writer.writerows(safe_row(r) for r in rows)
                f.flush()
                os.fsync(f.fileno())

    def _send(self, paths: list[Path]) -> None:
        """C-STORE the SR and SEG to the PACS; a refusal or an unreachable PACS is logged
        and the files stay in OUT/dicom/."""
        import pydicom
        from pynetdicom import AE

        if not paths:
            return
        datasets = [pydicom.dcmread(str(p)) for p in paths]
        ae = AE(ae_title=self.aet)
        for ds in datasets:
            ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
        f = self.forward
        assoc = ae.associate(f.host, f.port, ae_title=f.aet)
        if not assoc.is_established:
            log.error("forward: cannot associate with %s at %s:%d", f.aet, f.host, f.port)
            return
        try:
            for path, ds in zip(paths, datasets, strict=True):
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code != SUCCESS:
                    log.error("forward: %s refused %s (status %s)", f.aet, path.name, code)
                else:
                    log.info("forwarded %s to %s", path.name, f.aet)
        finally:
            assoc.release()

    # ------------------------------------------------------------ stopping
    def stop(self) -> None:
        """Stop accepting, measure what was received, end the worker."""
        if self.server is not None:
            self.server.shutdown()
        self.jobs.put(None)
        if self.worker.is_alive():
            self.worker.join()

    def serve_until_signalled(self) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
        log.info("fetalhc: stopping; measuring what was received")
        self.stop()


def _safe(uid: str) -> str:
    """A SOP Instance UID as a file name (UIDs hold digits and dots; anything else goes)."""
    return "".join(c for c in uid if c.isdigit() or c == ".")[:64] or "unknown"


def log_safe(text: str) -> str:
    """A text for one log line: control characters (a newline in a UID would forge a
    line) escaped, length bounded."""
    return str(text).encode("unicode_escape").decode("ascii")[:200]
