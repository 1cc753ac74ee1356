import numpy as np
import pytest
from scipy.spatial.distance import cdist

from fetalhc.measure import metrics
from fetalhc.measure.ellipse import Ellipse, draw_filled


def brute_force_surface(pred, ref, spacing):
    """Independent implementation: all pairwise distances between boundary pixels."""

    def boundary_points(m):
        m = m > 0
        pad = np.pad(m, 1, mode="edge")
        inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
        return np.argwhere(m & ~inner) * np.asarray(spacing)

    a, b = boundary_points(pred), boundary_points(ref)
    d = cdist(a, b)
    ab, ba = d.min(axis=1), d.min(axis=0)
    return max(ab.max(), ba.max()), (ab.sum() + ba.sum()) / (len(ab) + len(ba))


def random_blob(rng, shape=(60, 80)):
    e = Ellipse(
        rng.uniform(25, 55),
        rng.uniform(20, 40),
        rng.uniform(8, 20),
        rng.uniform(6, 15),
        rng.uniform(-1.5, 1.5),
    )
    m = draw_filled(e, shape)
    noise = rng.random(shape) < 0.03
    return np.where(noise, 1 - m, m).astype(np.uint8)


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (0.2, 0.2), (0.3, 0.12)])
def test_surface_distances_against_brute_force(spacing):
    rng = np.random.default_rng(42)
    for _ in range(10):
        pred, ref = random_blob(rng), random_blob(rng)
        hd, asd = brute_force_surface(pred, ref, spacing)
        assert metrics.hausdorff(pred, ref, spacing) == pytest.approx(hd, rel=1e-9)
        assert metrics.assd(pred, ref, spacing) == pytest.approx(asd, rel=1e-9)


def test_overlap_metrics_by_counting():
    rng = np.random.default_rng(1)
    pred, ref = random_blob(rng), random_blob(rng)
    p, r = pred.astype(bool), ref.astype(bool)
    tp, fp, fn = (p & r).sum(), (p & ~r).sum(), (~p & r).sum()
    tn = p.size - tp - fp - fn
    assert metrics.dice(pred, ref) == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert metrics.iou(pred, ref) == pytest.approx(tp / (tp + fp + fn))
    assert metrics.pixel_accuracy(pred, ref) == pytest.approx((tp + tn) / p.size)


def test_identical_and_empty_masks():
    m = draw_filled(Ellipse(40, 30, 15, 10, 0.2), (60, 80))
    assert metrics.dice(m, m) == 1 and metrics.hausdorff(m, m) == 0 and metrics.assd(m, m) == 0
    empty = np.zeros_like(m)
    assert metrics.dice(empty, m) == 0
    assert np.isnan(metrics.hausdorff(empty, m))
    assert metrics.dice(empty, empty) == 1


def test_shifted_disk_has_known_hausdorff():
    a = draw_filled(Ellipse(40, 40, 15, 15, 0), (80, 100))
    b = draw_filled(Ellipse(45, 40, 15, 15, 0), (80, 100))  # shifted 5 px in x
    assert metrics.hausdorff(a, b, (0.5, 0.5)) == pytest.approx(2.5, abs=0.01)


def test_summary():
    s = metrics.summarise([1.0, 2.0, 3.0, float("nan")])
    assert s["n"] == 3 and s["n_missing"] == 1
    assert s["mean"] == 2 and s["median"] == 2 and s["sd"] == pytest.approx(1.0)


def test_clean_mask_keeps_largest_component_and_fills_holes():
    from fetalhc.measure.postprocess import clean_mask

    m = draw_filled(Ellipse(40, 30, 20, 15, 0), (60, 100))
    m[28:32, 38:42] = 0  # a hole
    m[5:8, 90:95] = 1  # a small separate blob
    cleaned = clean_mask(m)
    assert cleaned[30, 40] == 1 and cleaned[6, 92] == 0
    assert cleaned.sum() == draw_filled(Ellipse(40, 30, 20, 15, 0), (60, 100)).sum()


def test_surface_distances_of_masks_on_the_image_edge_and_far_apart():
    """The window around both masks must not invent boundary on its own edges, and keeps
    the image's rule: a mask running off the image has no boundary there."""
    big = np.zeros((300, 400), np.uint8)
    a, b = big.copy(), big.copy()
    a[100:140, 50:90] = 1
    b[150:200, 300:360] = 1
    hd, asd = brute_force_surface(a, b, (0.5, 0.25))
    assert metrics.hausdorff(a, b, (0.5, 0.25)) == pytest.approx(hd, rel=1e-9)
    assert metrics.assd(a, b, (0.5, 0.25)) == pytest.approx(asd, rel=1e-9)
    edge = big.copy()
    edge[0:30, 0:30] = 1  # touches the top and left image edges
    inner = big.copy()
    inner[0:30, 0:29] = 1
    hd, asd = brute_force_surface(edge, inner, (1.0, 1.0))
    assert metrics.hausdorff(edge, inner) == pytest.approx(hd, rel=1e-9)
    assert metrics.assd(edge, inner) == pytest.approx(asd, rel=1e-9)


def test_measure_features_match_full_size_rasters():
    """measure() computes the IoU with its ellipse and the edge ring on one radius map of
    the ellipse's box; full-size rasters of the two ellipses must give the same numbers."""
    import cv2

    from fetalhc.measure.postprocess import EDGE_RING, measure

    rng = np.random.default_rng(7)
    for _ in range(5):
        blob = random_blob(rng, (240, 320)).astype(np.float32)
        prob = np.clip(cv2.GaussianBlur(blob, (0, 0), 3) + rng.normal(0, 0.05, blob.shape), 0, 1)
        m = measure(prob)
        e = m.ellipse
        inside = draw_filled(e, prob.shape).astype(bool)
        grown = Ellipse(e.cx, e.cy, e.a * (1 + EDGE_RING), e.b * (1 + EDGE_RING), e.angle)
        ring = draw_filled(grown, prob.shape).astype(bool) & ~inside
        assert m.ellipse_iou == pytest.approx(metrics.iou(m.mask, inside), abs=1e-12)
        assert m.edge_probability == pytest.approx(float(prob[ring].mean()), rel=1e-6)
