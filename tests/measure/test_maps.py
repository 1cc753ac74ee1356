"""Maps held in a window of the image (the two-pass model's close-up and locating pass):
the same masks, ellipses and flag features as maps made everywhere."""

import numpy as np
import pytest

from fetalhc.measure.ellipse import Ellipse, draw_filled
from fetalhc.measure.maps import WindowedMap, as_windowed
from fetalhc.measure.postprocess import measure
from fetalhc.model.crops import Square, crop_matrix, crop_window, cut, uncrop_logits


def test_full_paste_and_read_fill_the_outside():
    values = np.arange(6, dtype=np.float32).reshape(2, 3)
    m = WindowedMap(values, (slice(1, 3), slice(2, 5)), (4, 6), outside=-1.0)
    full = m.full()
    assert full.shape == (4, 6) and full[1:3, 2:5].tolist() == values.tolist()
    assert (full[0] == -1).all() and (full[:, :2] == -1).all() and m.offset == (1, 2)
    # a box straddling the window's edge reads the window where they overlap
    assert m.read((slice(0, 2), slice(4, 6))).tolist() == [[-1, -1], [2, -1]]
    assert m.read((slice(3, 4), slice(0, 2))).tolist() == [[-1, -1]]  # wholly outside
    mask = m.paste(np.ones((2, 3), np.uint8))
    assert mask.sum() == 6 and mask[1:3, 2:5].all()
    whole = as_windowed(full)
    assert whole.full() is full
    assert whole.read((slice(1, 3), slice(2, 5))).tolist() == values.tolist()


@pytest.mark.parametrize("square", [Square(400.0, 270.0, 300.0), Square(30.0, 500.0, 260.0)])
def test_windowed_uncrop_is_the_full_uncrop_there_and_covers_the_crop(square):
    rng = np.random.default_rng(0)
    m = crop_matrix(square, 64)
    logits = rng.normal(size=(64, 64)).astype(np.float32)
    shape = (540, 800)
    window = crop_window(m, shape, (0, 0, 64, 64))
    full = uncrop_logits(logits, m, shape)
    part = uncrop_logits(logits, m, shape, window)
    # OpenCV interpolates on a 1/32-pixel grid from fixed-point coordinates: the window's
    # offset moves values by ~1e-4 at most (here, next to the -30 outside)
    assert np.abs(part - full[window]).max() < 1e-3
    outside = np.ones(shape, bool)
    outside[window] = False
    assert (full[outside] == -30.0).all()  # nothing of the crop lands outside the window
    # the window is the square, clipped, two pixels beyond
    x0 = max(int(np.floor(square.cx - square.side / 2)) - 2, 0)
    assert window[1].start == x0
    # the crop's centre cell (side / 64 image pixels) and the margin on each side
    one = crop_window(m, shape, (32, 32, 1, 1))
    cell = square.side / 64
    sides = [s.stop - s.start for s in one]
    assert all(cell + 2 * 2 <= side <= cell + 2 * 2 + 3 for side in sides), sides


def _logit(p):
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def test_measure_on_windows_equals_measure_on_full_maps():
    shape = (540, 800)
    head = Ellipse(430, 250, 150, 115, 0.4)
    truth = draw_filled(head, shape).astype(np.float32)
    # the close-up: the image cut into a square around the head, mapped back
    square = Square(430.0, 250.0, 380.0)
    m = crop_matrix(square, 128)
    soft = cut(truth, m, 128)
    fine_logits = _logit(0.9 * soft + 0.05)
    window = crop_window(m, shape, (0, 0, 128, 128))
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    fine_full = sig(uncrop_logits(fine_logits, m, shape))
    fine_part = WindowedMap(
        sig(uncrop_logits(fine_logits, m, shape, window)), window, shape, float(sig(-30.0))
    )
    # the locating pass: a shifted, smaller head in a window around it
    coarse_full = draw_filled(Ellipse(436, 246, 146, 118, 0.35), shape).astype(np.float32)
    cw = (slice(100, 420), slice(260, 620))
    coarse_part = WindowedMap(coarse_full[cw], cw, shape)
    a = measure(fine_full, coarse=coarse_full)
    b = measure(fine_part, coarse=coarse_part)
    assert b.ellipse is not None and (a.mask == b.mask).all()
    assert (a.ellipse.cx, a.ellipse.cy, a.ellipse.a) == pytest.approx(
        (b.ellipse.cx, b.ellipse.cy, b.ellipse.a), abs=1e-9
    )
    for name in ("ellipse_iou", "confidence", "edge_probability", "pass_disagreement"):
        assert getattr(a, name) == pytest.approx(getattr(b, name), abs=1e-5), name
    assert a.pass_distance_px == pytest.approx(b.pass_distance_px, abs=1e-9)
    assert a.pass_distance_px > 0.5  # the two passes differ: the comparison is not vacuous
