"""`fetalhc listen`: a DICOM node (C-STORE SCP, pynetdicom) in a clinic's network.

An ultrasound system (or a PACS) sends images by C-STORE; each object is checked (an image
fetalhc can decode, within the pixel limit), written to OUT/received/ before it is
acknowledged, then measured by one worker: rows appended to OUT/predictions.csv (as
`predict` writes them), the SR, SEG and overlay SC into OUT/dicom/, and with a forward
address the SR and SEG sent on to a PACS by C-STORE. Objects it cannot use are answered
with a DIMSE failure status and a log line; the node goes on. On SIGTERM or SIGINT it stops
accepting associations, measures what it has received, and exits; an object received but
not yet measured when the process died is measured at the next start.

Promises (hostile round 4): an association must call this node's AE title; idle or
stalled connections are dropped after ACSE_TIMEOUT_S / NETWORK_TIMEOUT_S, and at most
MAX_PENDING connections may wait without an association: each new one drops the oldest
waiting, so connections held open cannot shut senders out (a sender asks at once); only the first
frame is decoded to check an object (a small file claiming 900 large frames costs one);
objects are kept by SOP Instance UID — a sender's retry of an identical object is
recognised and answered Success without a second measurement, a different object under a
known UID is kept beside it (`<uid>__<hash>.dcm`) and said in the log; each object is
measured once across crashes (an object whose rows are already in predictions.csv is not
measured again); one node per OUT folder (a lock); forwarding never holds up measuring —
a durable outbox (OUT/outbox/) retries with back-off and records sent or given up; log
lines name objects by UID, escaped, never by patient data.

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

from fetalhc.errors import FetalHCError, escaped, one_line
from fetalhc.inference.inputs import FromHeader, InputImage
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.predict import (
    COLUMNS,
    PredictOptions,
    measure_dicom_file,
    safe_row,
)
from fetalhc.io.dicom import MAX_CINE_FACTOR, quiet_pydicom
from fetalhc.io.files import (
    TEMP_MARK,
    ensure_folder,
    exclusive_folder,
    remove_stale_temporaries,
)
from fetalhc.io.pixels import max_image_pixels
from fetalhc.serve.outbox import NETWORK_TIMEOUT_S, Outbox

log = logging.getLogger(__name__)

# C-STORE failure statuses (PS3.4 Annex B.2.3 and GG.4)
OUT_OF_RESOURCES = 0xA700  # too large to take on
NOT_AN_IMAGE = 0xA900  # the data set does not match an image SOP class (no pixel data)
CANNOT_UNDERSTAND = 0xC000  # pixel data that cannot be decoded (e.g. its transfer syntax)
PROCESSING_FAILURE = 0x0110  # the object could not be kept
SUCCESS = 0x0000
RECEIVED, DONE, OUTBOX = "received", "received/measured", "outbox"
ACSE_TIMEOUT_S = 5.0  # an association request must come this soon after connecting
DIMSE_TIMEOUT_S = 30.0
MAX_ASSOCIATIONS = 32
# Connections that have not (yet) become an association; beyond this many the oldest is
# dropped for each new one. Far below MAX_ASSOCIATIONS, so they never fill it.
MAX_PENDING = 8
UNCOUNTED = 100_000


@dataclass(frozen=True)
class Forward:
    host: str
    port: int
    aet: str

    @classmethod
    def parse(cls, text: str) -> Forward:
        host, _, rest = text.rpartition(":")
        host, _, port = host.rpartition(":")
        host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]
        if not (host and port.isdigit() and 0 < int(port) < 65536):
            raise FetalHCError(f"--forward {text!r}: expected HOST:PORT:AET ([::1]:PORT:AET)")
        why = ae_title_problem(rest)
        if why:
            raise FetalHCError(f"--forward {text!r}: expected HOST:PORT:AET ({why})")
        return cls(host, int(port), rest)


def ae_title_problem(title: str) -> str:
    """'' for a valid AE title (PS3.5: 1-16 characters of the default repertoire, no
    backslash or control character, not only spaces), else why not."""
    if not 0 < len(title) <= 16:
        return "an AE title has 1-16 characters"
    if not title.strip():
        return "an AE title may not be only spaces"
    if any(not (32 <= ord(c) <= 126) or c == "\\" for c in title):
        return "an AE title holds ASCII letters, digits and punctuation (no backslash)"
    return ""


def check_dataset(ds) -> tuple[int, str]:
    """(SUCCESS, "") for an image fetalhc can measure, else a failure status and why."""
    if "PixelData" not in ds:
        return NOT_AN_IMAGE, "not an image (no pixel data)"
    try:
        rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
    except (TypeError, ValueError):
        return CANNOT_UNDERSTAND, "Rows, Columns or NumberOfFrames is not a number"
    limit = max_image_pixels()
    if rows * cols > limit or rows * cols * frames > MAX_CINE_FACTOR * limit:
        return OUT_OF_RESOURCES, f"too large ({frames} x {cols}x{rows} pixels)"
    quiet = logging.getLogger("pydicom")  # its decoders log a traceback; one line is ours
    level, quiet.level = quiet.level, logging.CRITICAL
    try:  # the first frame only: a loop is decoded frame by frame when measured
        from pydicom.pixels import pixel_array

        pixels = pixel_array(ds, index=0 if frames > 1 else None)
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
        why = ae_title_problem(aet)
        if why:
            raise FetalHCError(f"--aet {aet!r}: {why}")
        self.jobs: queue.Queue[Path | None] = queue.Queue()
        self.csv_lock = threading.Lock()
        self.store_lock = threading.Lock()
        self.server = None
        self.lock = None
        self.waiting: list = []  # connections not yet associations, oldest first
        self.waiting_lock = threading.Lock()
        self.worker = threading.Thread(target=self._work, name="fetalhc-measure", daemon=True)
        self.outbox = Outbox(self.out / OUTBOX, forward, aet) if forward is not None else None

    # ------------------------------------------------------------ the SCP
    def start(self, port: int, host: str = "127.0.0.1") -> None:
        from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, StoragePresentationContexts, evt
        from pynetdicom.sop_class import (
            SecondaryCaptureImageStorage,
            UltrasoundImageStorage,
            UltrasoundMultiFrameImageStorage,
            Verification,
        )

        quiet_pydicom()  # no patient data in the node's log
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
        # pynetdicom counts every connection's thread, also those still waiting for their
        # request (and those dropped, until their ACSE timeout): its limit is lifted, and
        # the node counts associations itself (`_on_established`) and bounds the waiting
        # ones (`_on_connection`)
        ae.maximum_associations = UNCOUNTED
        ae.require_called_aet = True  # an association for another node is refused
        ae.acse_timeout, ae.network_timeout = ACSE_TIMEOUT_S, NETWORK_TIMEOUT_S
        ae.dimse_timeout = DIMSE_TIMEOUT_S
        self.lock = exclusive_folder(self.out, "DICOM node's --out folder")
        self.lock.__enter__()  # held until stop: a second node on this folder is refused
        for path in self._recover():
            self.jobs.put(path)
        self.worker.start()
        if self.outbox is not None:
            self.outbox.start()
        try:
            self.server = ae.start_server(
                (host, port),
                block=False,
                evt_handlers=[
                    (evt.EVT_C_STORE, self._on_store),
                    (evt.EVT_CONN_OPEN, self._on_connection),
                    (evt.EVT_ESTABLISHED, self._on_established),
                ],
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
        uid = escaped(str(ds.get("SOPInstanceUID", "")) or "unknown")
        status, why = check_dataset(ds)
        if status != SUCCESS:
            sender = escaped(str(event.assoc.requestor.ae_title))
            log.warning("refused %s from %s: %s", uid, sender, why)
            return status
        try:  # on disk before the sender hears "success": nothing received is lost
            target, retry = self._keep(ds)
        except (OSError, ValueError) as exc:
            log.error("could not keep %s: %s", uid, one_line(exc))
            return PROCESSING_FAILURE
        if retry:
            log.info("%s: the same object again (a retry): already kept", uid)
            return SUCCESS
        if "__" in target.stem:
            log.warning("%s: a different object under a known UID: kept as %s", uid, target.name)
        self.jobs.put(target)
        return SUCCESS

    def _keep(self, ds) -> tuple[Path, bool]:
        """Write a received object under its name, durably; (where, whether a retry). A
        temporary file appears under its final name only once complete (a hard link,
        which also never replaces another object); a killed write leaves a temporary
        that the next start removes."""
        import tempfile

        fd, name = tempfile.mkstemp(
            dir=self.out / RECEIVED, prefix=f".in{TEMP_MARK}", suffix=".dcm"
        )
        os.close(fd)
        tmp = Path(name)
        try:
            ds.save_as(str(tmp), enforce_file_format=True)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            with self.store_lock:
                target, retry = self._place(tmp, str(ds.get("SOPInstanceUID", "")))
                if not retry:
                    os.link(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target, retry

    def _place(self, tmp: Path, uid: str) -> tuple[Path, bool]:
        """Where a received object goes: `<uid>.dcm`; the same bytes already kept under
        that name (pending or measured) is a retry; other bytes go to `<uid>__<hash>.dcm`."""
        import hashlib

        digest = hashlib.sha256(tmp.read_bytes()).hexdigest()
        name = _safe(uid)
        for candidate in (f"{name}.dcm", f"{name}__{digest[:12]}.dcm"):
            for folder in (RECEIVED, DONE):
                kept = self.out / folder / candidate
                if kept.is_file():
                    if hashlib.sha256(kept.read_bytes()).hexdigest() == digest:
                        return kept, True
                    break
            else:
                return self.out / RECEIVED / candidate, False
        raise OSError(f"no free name for {name}")

    def _pending(self) -> list[Path]:
        return sorted(
            p
            for p in (self.out / RECEIVED).glob("*.dcm")
            if TEMP_MARK not in p.name and p.is_file()
        )

    def _recover(self) -> list[Path]:
        """What a killed node left: half-written objects removed, objects measured but not
        yet moved moved (never measured twice), the rest returned to be measured."""
        remove_stale_temporaries(self.out / RECEIVED)
        measured = self._measured_names()
        todo = []
        for path in self._pending():
            if path.name in measured:
                os.replace(path, self.out / DONE / path.name)
            else:
                todo.append(path)
        return todo

    def _measured_names(self) -> set[str]:
        """Objects whose rows are in predictions.csv (a row's filename is the object's
        file name, `#<frame>` for a cine loop's frames)."""
        target = self.out / "predictions.csv"
        if not target.is_file():
            return set()
        with self.csv_lock, open(target, newline="") as f:
            return {row["filename"].split("#")[0] for row in csv.DictReader(f)}

    def _on_connection(self, event) -> None:
        """A new connection: the oldest of those still waiting to become an association
        is dropped while MAX_PENDING wait (a sender asks for its association at once;
        connections held open without one are an attack or a fault)."""
        with self.waiting_lock:
            self.waiting = [
                a
                for a in self.waiting
                if a.is_alive() and not (a.is_established or a.is_aborted or a.is_released)
            ]
            while len(self.waiting) >= MAX_PENDING:
                oldest = self.waiting.pop(0)
                log.warning("fetalhc: dropped a connection that sent no association request")
                connection = oldest.dul.socket
                if connection is not None:  # no A-ABORT before an A-ASSOCIATE-RQ (PS3.8)
                    connection.close()
            self.waiting.append(event.assoc)

    def _on_established(self, event) -> None:
        """An association beyond MAX_ASSOCIATIONS is aborted (the sender retries later)."""
        if self.server is None:
            return
        established = [a for a in self.server.active_associations if a.is_established]
        if len(established) > MAX_ASSOCIATIONS:
            log.warning("fetalhc: more than %d associations: one aborted", MAX_ASSOCIATIONS)
            threading.Thread(target=event.assoc.abort, daemon=True).start()

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
                log.error("failed to measure %s: %s", escaped(path.name), one_line(exc))

    def _measure(self, path: Path) -> None:
        rows, written = measure_dicom_file(  # the file read once; its header sizes it
            InputImage(path, path.name), FromHeader(), self.measurer, self.out, self.options
        )
        self._append(rows)
        chosen = next((r for r in rows if r["chosen"] == "yes"), rows[0])
        log.info(
            "measured %s: %s, HC %s mm",
            escaped(path.name),
            escaped(chosen["status"]),
            chosen["hc_mm"],
        )
        if self.outbox is not None:  # sent by the outbox's thread: measuring never waits
            self.outbox.add([p for p in written if p.name.endswith(("_sr.dcm", "_seg.dcm"))])
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

    # ------------------------------------------------------------ stopping
    def stop(self) -> None:
        """Stop accepting, measure what was received, end the worker."""
        if self.server is not None:
            self.server.shutdown()
        self.jobs.put(None)
        if self.worker.is_alive():
            self.worker.join()
        if self.outbox is not None:
            self.outbox.stop()
        if self.lock is not None:
            self.lock.__exit__(None, None, None)
            self.lock = None

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
