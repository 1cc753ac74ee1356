"""Images that fool a segmenter (low contrast, a ring on speckle, two heads) are flagged
`check`, never `ok` without a word."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

PIXEL_MM = 0.133961232503  # 180_HC.png's pixel size in HC18's CSV


def test_a_low_contrast_head_is_flagged_not_ok(head, measurer):
    from fetalhc.measure.quality import QualityThresholds, is_flagged

    flat = (head.astype(np.float32) * 24 / 255 + 100).astype(np.uint8)  # 24 grey levels
    normal, low = measurer.measure_many([head, flat], [PIXEL_MM, PIXEL_MM])
    assert normal.grey_levels > 80 and not any("grey levels" in r for r in normal.quality_reasons)
    assert low.grey_levels < 30
    assert low.quality == "check" and any("grey levels" in r for r in low.quality_reasons)
    assert is_flagged(low.as_row(), QualityThresholds())  # the rows' flag sees it too


def test_an_elliptical_ring_on_speckle_is_flagged_not_ok(head, measurer):
    """A ring with the same speckle inside and outside: the network sees a confident,
    perfectly elliptical 'head'; only the image around the outline shows it is none."""

    from fetalhc.measure.quality import QualityThresholds, is_flagged

    rng = np.random.default_rng(3)
    rings = []
    for strength, width, grain in ((120, 8, 1.5), (70, 4, 1.0), (180, 12, 2.5)):
        frame = cv2.GaussianBlur(rng.rayleigh(60, (540, 800)), (0, 0), grain)
        ring = np.zeros_like(frame)
        cv2.ellipse(ring, (400, 270), (170, 130), 15, 0, 360, 1.0, width)
        rings.append(np.clip(frame + strength * cv2.GaussianBlur(ring, (0, 0), 2), 0, 255))
    real, *fakes = measurer.measure_many(
        [head, *[r.astype(np.uint8) for r in rings]], [PIXEL_MM] * 4
    )
    assert real.quality == "ok" and real.inside_outside > 0.1
    for fake in fakes:
        assert fake.ellipse_px is not None  # the network did find a "head" ...
        assert fake.inside_outside < 0.05 and fake.quality == "check"  # ... the flag sees
        assert any("looks like its surroundings" in r for r in fake.quality_reasons)
        assert is_flagged(fake.as_row(), QualityThresholds())


def test_two_heads_in_one_image_are_named_not_silently_dropped(head, measurer):
    from fetalhc.measure.quality import QualityThresholds, is_flagged

    twins = np.concatenate([head, head], axis=1)  # two heads side by side
    one, two = measurer.measure_many([head, twins], [PIXEL_MM, PIXEL_MM])
    assert one.second_head_ratio < 0.1
    assert two.second_head_ratio > 0.5 and two.quality == "check"
    assert any("second head-like region" in r for r in two.quality_reasons)
    assert is_flagged(two.as_row(), QualityThresholds())


@pytest.mark.parametrize(("left", "right"), [("000", "014"), ("014", "078"), ("216", "317")])
def test_a_head_in_the_other_view_of_a_side_by_side_image_counts(sample, measurer, left, right):
    """Two frames side by side whose second head the whole-image pass missed (its
    probability stayed under 0.65 there): the other view is located on its own."""
    from fetalhc.inference.segmenter import other_view

    def frame(name: str) -> np.ndarray:
        image = cv2.imread(str(sample / "training_set" / f"{name}_HC.png"), cv2.IMREAD_GRAYSCALE)
        return cv2.resize(image, (800, 540))

    views = np.concatenate([frame(left), frame(right)], axis=1)
    result = measurer.measure(views, 0.15)
    assert result.ok and result.quality == "check"
    assert result.second_head_ratio > 0.3  # 0 when only the whole image was searched
    if result.second_head_ratio >= 0.5:
        assert any("second head-like region" in r for r in result.quality_reasons)
    # which columns are the other view: only for two views, a head in one of them
    assert other_view((10, 10, 300, 300), (540, 1600)) == (800, 1600)
    assert other_view((900, 10, 1500, 300), (540, 1600)) == (0, 800)
    assert other_view((700, 10, 900, 300), (540, 1600)) is None  # across both
    assert other_view((10, 10, 300, 300), (540, 800)) is None  # one view
