"""The DICOM node's durable outbox: results waiting to be forwarded to a PACS."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fetalhc.errors import escaped, one_line
from fetalhc.io.files import TEMP_MARK, atomic_path, ensure_folder

log = logging.getLogger(__name__)

# Forwarding: retried after 5 s, doubling to at most 10 min, given up after 12 tries; a
# PACS that does not answer is given up on after NETWORK_TIMEOUT_S per step.
RETRY_FIRST_S, RETRY_MAX_S, RETRY_TRIES = 5.0, 600.0, 12
NETWORK_TIMEOUT_S = 15.0
SUCCESS = 0x0000


class Outbox:
    """Results waiting to be forwarded, one JSON file each in OUT/outbox/ (written before
    the object is marked measured, so a crash loses none): a thread sends them, retries
    with back-off, and records each as `sent` or `given up` in its file."""

    def __init__(self, folder: Path, forward, aet: str) -> None:  # forward: dicom_node.Forward
        self.folder, self.forward, self.aet = ensure_folder(folder), forward, aet
        self.wake = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="fetalhc-forward", daemon=True)

    def add(self, paths: list[Path]) -> None:
        import json
        import time

        if not paths:
            return
        entry = {"files": [str(p) for p in paths], "state": "pending", "tries": 0,
                 "next_try": time.time(), "last_error": ""}  # fmt: skip
        with atomic_path(self.folder / f"{paths[0].stem}.json") as tmp:
            tmp.write_text(json.dumps(entry))
        self.wake.set()

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()
        self.thread.join(timeout=2 * NETWORK_TIMEOUT_S)

    def _run(self) -> None:
        import json
        import time

        while not self.stopping.is_set():
            due = None
            for path in sorted(self.folder.glob("*.json")):
                if TEMP_MARK in path.name:
                    continue
                try:
                    entry = json.loads(path.read_text())
                except (OSError, ValueError):
                    continue
                if entry.get("state") != "pending":
                    continue
                if entry["next_try"] > time.time():
                    due = min(due or entry["next_try"], entry["next_try"])
                    continue
                error = self._send([Path(f) for f in entry["files"]])
                entry["tries"] += 1
                if not error:
                    entry["state"] = "sent"
                    log.info("forwarded %s to %s", path.stem, escaped(self.forward.aet))
                else:
                    entry["last_error"] = error
                    delay = min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** (entry["tries"] - 1))
                    entry["next_try"] = time.time() + delay
                    if entry["tries"] >= RETRY_TRIES:
                        entry["state"] = "given up"
                    log.warning("forward %s: %s (try %d)", path.stem, error, entry["tries"])
                with atomic_path(path) as tmp:
                    tmp.write_text(json.dumps(entry))
                if self.stopping.is_set():
                    return
            wait = 30.0 if due is None else max(0.1, due - time.time())
            self.wake.wait(timeout=wait)
            self.wake.clear()

    def _send(self, paths: list[Path]) -> str:
        """'' when the PACS took every file, else why not (one line)."""
        import pydicom
        from pynetdicom import AE

        try:
            datasets = [pydicom.dcmread(str(p)) for p in paths]
            ae = AE(ae_title=self.aet)
            ae.acse_timeout = ae.network_timeout = ae.dimse_timeout = NETWORK_TIMEOUT_S
            for ds in datasets:
                ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
            f = self.forward
            assoc = ae.associate(f.host, f.port, ae_title=f.aet)
        except Exception as exc:  # noqa: BLE001 - a name that does not resolve, a bad file
            return f"cannot send ({type(exc).__name__}: {one_line(exc)})"
        if not assoc.is_established:
            return f"cannot associate with {f.aet} at {f.host}:{f.port}"
        try:
            for path, ds in zip(paths, datasets, strict=True):
                status = assoc.send_c_store(ds)
                code = getattr(status, "Status", None)
                if code != SUCCESS:
                    return f"{f.aet} refused {path.name} (status {code})"
        except Exception as exc:  # noqa: BLE001 - the association broke
            return f"sending failed ({type(exc).__name__})"
        finally:
            assoc.release()
        return ""
