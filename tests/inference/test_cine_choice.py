"""A cine loop's chosen frame: every loop has one row marked chosen, and a loop whose
frames measure different heads says so."""

from __future__ import annotations

import cv2
import numpy as np


def test_an_all_blank_loop_still_has_its_chosen_row(measurer, head):
    blank = np.full_like(head, 40)
    loop = measurer.measure_frames([blank, blank, blank], 0.134, "blank.dcm")
    assert loop.chosen_index == 0 and not loop.chosen.ok


def test_a_loop_whose_frames_measure_different_heads_is_flagged(measurer, head):
    h, w = head.shape
    small = cv2.resize(head, (int(w * 0.7), int(h * 0.7)), interpolation=cv2.INTER_AREA)
    canvas = np.zeros_like(head)
    y, x = (h - small.shape[0]) // 2, (w - small.shape[1]) // 2
    canvas[y : y + small.shape[0], x : x + small.shape[1]] = small
    loop = measurer.measure_frames([head, canvas, head], 0.134, "loop.dcm")
    chosen = loop.chosen
    assert chosen.ok and chosen.quality == "check"
    assert any("apart" in r and "standard plane" in r for r in chosen.quality_reasons)
    steady = measurer.measure_frames([head, head], 0.134, "steady.dcm")
    assert not any("apart" in r for r in steady.chosen.quality_reasons)
