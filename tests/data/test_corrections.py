"""The corrections store: atomic, never overwriting, a split that never changes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fetalhc.data.corrections import (
    HELD_BACK_PERCENT,
    part_of,
    read_corrections,
    sha256_hex,
    store_correction,
)
from fetalhc.errors import FetalHCError
from fetalhc.measure.ellipse import Ellipse, hc_mm

HEAD = Ellipse(200.0, 150.0, 90.0, 70.0, 0.2)


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (300, 400), dtype=np.uint8)


def test_a_correction_is_stored_with_both_ellipses_and_read_back(tmp_path):
    model = Ellipse(201.0, 151.0, 95.0, 72.0, 0.2)
    record = store_correction(tmp_path, image(0), HEAD, 0.2, model, "m.safetensors", "P1")
    assert record["final_hc_mm"] == pytest.approx(hc_mm(HEAD, 0.2))
    assert record["original_hc_mm"] == pytest.approx(hc_mm(model, 0.2))
    (c,) = read_corrections(tmp_path)
    assert c.final == HEAD and c.original == model and c.part == record["part"]
    assert c.final_hc_mm == pytest.approx(record["final_hc_mm"])
    assert "P1" not in json.dumps(record) and record["key_sha256"] == sha256_hex(b"P1")


def test_the_same_image_twice_is_two_corrections_never_one_overwritten(tmp_path):
    a = store_correction(tmp_path, image(0), HEAD, 0.2)
    b = store_correction(tmp_path, image(0), HEAD, 0.2)
    assert a["image"] != b["image"] and len(read_corrections(tmp_path)) == 2


def test_the_split_is_fixed_by_the_key_and_never_changes_as_corrections_accumulate(tmp_path):
    parts = {}
    for n in range(60):
        store_correction(tmp_path, image(n), HEAD, 0.2, key=f"patient-{n % 20}")
        now = {c.record["image"]: c.part for c in read_corrections(tmp_path)}
        assert all(now[k] == v for k, v in parts.items())  # earlier ones kept their part
        parts = now
    by_key = {}
    for c in read_corrections(tmp_path):
        by_key.setdefault(c.record["key_sha256"], set()).add(c.part)
    assert all(len(p) == 1 for p in by_key.values())  # one patient: one side
    held = sum(part_of(sha256_hex(str(n).encode())) == "held-back" for n in range(2000))
    assert abs(held / 2000 - HELD_BACK_PERCENT / 100) < 0.04
    assert {c.part for c in read_corrections(tmp_path, "adapt")} == {"adapt"}


@pytest.mark.parametrize(
    ("final", "size", "words"),
    [
        (Ellipse(390.0, 150.0, 90.0, 70.0, 0.0), 0.2, "outside"),
        (HEAD, 5.0, "pixel size"),
        (Ellipse(200.0, 150.0, 5.0, 4.0, 0.0), 0.2, "HC"),
    ],
)
def test_a_bad_correction_is_refused_and_nothing_is_stored(tmp_path, final, size, words):
    with pytest.raises(FetalHCError, match=words):
        store_correction(tmp_path, image(0), final, size)
    assert list(tmp_path.iterdir()) == []
