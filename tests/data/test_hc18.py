import cv2
import numpy as np
import pytest

from fetalhc.data.hc18 import (
    annotation_to_mask,
    load_labelled,
    load_part,
    reference_ellipse,
    subject_of,
)
from fetalhc.io.images import read_gray
from fetalhc.measure.ellipse import fit_mask, hc_mm


def test_subject_from_file_name():
    assert subject_of("010_HC.png") == subject_of("010_2HC.png") == subject_of("010_3HC.png")
    assert subject_of("010_HC.png") == "010"
    assert subject_of("011_HC.png") != "010"


def test_reader_finds_sample(sample):
    labelled = load_labelled(sample)
    assert len(labelled) == 15
    assert all(r.pixel_size_mm > 0 and r.hc_mm > 0 for r in labelled)
    assert len(load_part(sample, "test_set")) == 4
    sizes = {read_gray(r.image_path).shape for r in labelled}
    assert len(sizes) > 1  # 216_HC.png is 738x541: any size is handled


def test_reference_hc_agrees_with_csv(sample):
    for r in load_labelled(sample):
        e = reference_ellipse(read_gray(r.annotation_path))
        assert hc_mm(e, r.pixel_size_mm) == pytest.approx(r.hc_mm, abs=0.05)


def test_training_mask_boundary_is_the_reference_ellipse(sample):
    for r in load_labelled(sample):
        outline = read_gray(r.annotation_path)
        mask = annotation_to_mask(outline)
        # the mask's own fitted HC is the reference HC (well under the +1 mm of a hull fill)
        assert hc_mm(fit_mask(mask), r.pixel_size_mm) == pytest.approx(r.hc_mm, abs=0.2)
        # ... and it is smaller than filling out to the line's outer edge
        contours, _ = cv2.findContours(
            (outline > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        hull = np.zeros_like(outline)
        cv2.fillPoly(hull, [cv2.convexHull(np.concatenate(contours))], 1)
        assert mask.sum() < hull.sum()
        assert set(np.unique(mask)) <= {0, 1}


def test_outline_with_gap_still_gives_mask(sample):
    r = load_labelled(sample)[5]
    outline = read_gray(r.annotation_path)
    full = annotation_to_mask(outline)
    broken = outline.copy()
    ys, xs = np.nonzero(broken)
    cut = xs < np.percentile(xs, 15)  # erase the left part of the outline
    broken[ys[cut], xs[cut]] = 0
    partial = annotation_to_mask(broken)
    inter = np.logical_and(full, partial).sum()
    assert 2 * inter / (full.sum() + partial.sum()) > 0.99


def test_blank_annotation_is_an_error():
    with pytest.raises(ValueError):
        annotation_to_mask(np.zeros((540, 800), np.uint8))
