"""The DICOM node as a careless PACS and a careful attacker meet it (hostile round 4):
AE titles, retries and clashing UIDs, restarts after a kill, one node per folder, the
called AE title, and an outbox that loses nothing while the PACS is down."""

from __future__ import annotations

import csv
import json
import socket
import types

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("pynetdicom")

from fetalhc.errors import FetalHCError  # noqa: E402
from fetalhc.inference.predict import COLUMNS  # noqa: E402
from fetalhc.serve.dicom_node import (  # noqa: E402
    DONE,
    RECEIVED,
    SUCCESS,
    DicomNode,
    Forward,
    Outbox,
    ae_title_problem,
)
from tests.conftest import run_cli  # noqa: E402
from tests.dicom_helpers import make_dicom  # noqa: E402
from tests.doubles import NeverMeasures  # noqa: E402


def event_for(ds):
    requestor = types.SimpleNamespace(ae_title="SCANNER")
    return types.SimpleNamespace(
        dataset=ds, file_meta=ds.file_meta, assoc=types.SimpleNamespace(requestor=requestor)
    )


def dataset(tmp_path, name: str, uid: str, value: int = 100):
    path = make_dicom(tmp_path / f"{name}.dcm", np.full((32, 32), value, np.uint8))
    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    return ds


@pytest.mark.parametrize("title", ["A\\B", "    ", "NÖDE", "", "X" * 17])
def test_a_bad_ae_title_is_one_line_and_exit_2(title):
    assert ae_title_problem(title)
    r = run_cli("listen", "--port", "11112", "--out", "/tmp/unused", "--aet", title)
    assert r.returncode == 2 and "--aet" in r.stderr and "Traceback" not in r.stderr


def test_forward_takes_an_ipv6_address():
    assert Forward.parse("[::1]:4242:PACS") == Forward("::1", 4242, "PACS")


def test_a_retry_is_recognised_and_a_different_object_under_a_known_uid_kept_apart(tmp_path):
    node = DicomNode(NeverMeasures(), tmp_path / "out")
    first = dataset(tmp_path, "a", "1.2.840.99.5")
    assert node._on_store(event_for(first)) == SUCCESS
    assert node._on_store(event_for(first)) == SUCCESS  # the sender's retry
    other = dataset(tmp_path, "b", "1.2.840.99.5", value=200)  # same UID, other object
    assert node._on_store(event_for(other)) == SUCCESS
    letters = dataset(tmp_path, "c", "1.2.840.99.5a", value=50)  # maps to the same name
    assert node._on_store(event_for(letters)) == SUCCESS
    kept = sorted(p.name for p in (tmp_path / "out" / RECEIVED).glob("*.dcm"))
    assert len(kept) == 3 and kept[0] == "1.2.840.99.5.dcm"
    assert node.jobs.qsize() == 3  # three objects to measure, the retry not again
    values = {int(pydicom.dcmread(tmp_path / "out" / RECEIVED / k).pixel_array[0, 0]) for k in kept}
    assert values == {100, 200, 50}


def test_after_a_kill_nothing_is_measured_twice_and_half_writes_are_dropped(tmp_path):
    out = tmp_path / "out"
    node = DicomNode(NeverMeasures(), out)
    received = out / RECEIVED
    for name in ("done.dcm", "todo.dcm"):
        (received / name).write_bytes(b"x")
    (received / ".in.fetalhc-tmp-abcd.dcm").write_bytes(b"half")
    with open(out / "predictions.csv", "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        w.writerow({"filename": "done.dcm#3", "status": "ok", "chosen": "yes"})
    assert [p.name for p in node._recover()] == ["todo.dcm"]
    assert (out / DONE / "done.dcm").is_file()
    assert not any(received.glob(".*"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_one_node_per_folder_and_only_its_own_ae_title(tmp_path):
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    node = DicomNode(NeverMeasures(), tmp_path / "out", aet="FETALHC")
    port = _free_port()
    node.start(port)
    try:
        with pytest.raises(FetalHCError, match="in use by another"):
            DicomNode(NeverMeasures(), tmp_path / "out").start(_free_port())
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        wrong = ae.associate("127.0.0.1", port, ae_title="SOMEONE_ELSE")
        assert not wrong.is_established
        right = ae.associate("127.0.0.1", port, ae_title="FETALHC")
        assert right.is_established
        right.release()
    finally:
        node.stop()


def test_the_outbox_keeps_a_result_until_the_pacs_takes_it(tmp_path, monkeypatch):
    box = Outbox(tmp_path / "outbox", Forward("pacs", 4242, "PACS"), "FETALHC")
    answers = ["cannot associate with PACS at pacs:4242", ""]
    monkeypatch.setattr(box, "_send", lambda paths: answers.pop(0))
    monkeypatch.setattr("fetalhc.serve.outbox.RETRY_FIRST_S", 0.0)
    box.add([tmp_path / "x_sr.dcm"])
    box.start()
    entry_path = tmp_path / "outbox" / "x_sr.json"
    for _ in range(100):
        entry = json.loads(entry_path.read_text())
        if entry["state"] == "sent":
            break
        box.wake.set()
        import time

        time.sleep(0.05)
    box.stop()
    assert entry["state"] == "sent" and entry["tries"] == 2
    assert entry["last_error"].startswith("cannot associate")


def test_idle_connections_cannot_shut_senders_out_and_stop_does_not_wait_for_them(
    tmp_path, monkeypatch
):
    """Connections that never ask for an association (or stall mid-request) beyond the
    pending limit: the oldest is dropped for each new one, so a sender is served at once
    however many are held open; and the node stops promptly with them still connected."""
    import time

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from fetalhc.serve import dicom_node

    monkeypatch.setattr(dicom_node, "MAX_ASSOCIATIONS", 8)  # small, to fill it fast
    monkeypatch.setattr(dicom_node, "MAX_PENDING", 4, raising=False)
    node = DicomNode(NeverMeasures(), tmp_path / "out", aet="FETALHC")
    port = _free_port()
    node.start(port)
    idle = []
    try:
        for k in range(12):  # more than the association limit; half stall mid-PDU
            s = socket.create_connection(("127.0.0.1", port))
            if k % 2:
                s.sendall(b"\x01\x00\x00\x00\x10\x00")  # an A-ASSOCIATE-RQ header, no body
            idle.append(s)
        time.sleep(0.5)
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        started = time.perf_counter()
        assoc = ae.associate("127.0.0.1", port, ae_title="FETALHC")
        assert assoc.is_established
        assert assoc.send_c_echo().Status == 0x0000
        assoc.release()
        assert time.perf_counter() - started < 3  # not after the 5 s ACSE timeout
        started = time.perf_counter()
    finally:
        node.stop()
        for s in idle:
            s.close()
    assert time.perf_counter() - started < 5  # stopped with the idle ones still connected


def test_associations_beyond_the_limit_are_aborted(tmp_path, monkeypatch):
    import time

    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    from fetalhc.serve import dicom_node

    monkeypatch.setattr(dicom_node, "MAX_ASSOCIATIONS", 1)
    node = DicomNode(NeverMeasures(), tmp_path / "out", aet="FETALHC")
    port = _free_port()
    node.start(port)
    try:
        ae = AE(ae_title="SCANNER")
        ae.add_requested_context(Verification)
        first = ae.associate("127.0.0.1", port, ae_title="FETALHC")
        assert first.is_established
        second = ae.associate("127.0.0.1", port, ae_title="FETALHC")
        for _ in range(40):  # the node aborts it just after accepting it
            if second.is_aborted:
                break
            time.sleep(0.05)
        assert second.is_aborted and not second.is_established
        assert first.send_c_echo().Status == 0x0000  # the first is served on
        first.release()
    finally:
        node.stop()
