"""Two-pass (head-crop) models: crop geometry, training on crops, inference in two passes,
folds for cross-validation, per-model quality thresholds, the cosine schedule."""

import json
import math

import cv2
import numpy as np
import pytest

from fetalhc.data.hc18 import load_labelled, subject_of
from fetalhc.data.split import fold_split, group_folds, group_split
from fetalhc.errors import FetalHCError
from fetalhc.inference.measurer import HeadMeasurer
from fetalhc.inference.segmenter import Segmenter, needs_relocating
from fetalhc.measure.ellipse import Ellipse, draw_filled, fit_mask
from fetalhc.measure.metrics import iou
from fetalhc.model.crops import (
    Square,
    around_box,
    box_of,
    crop_matrix,
    cut,
    uncrop_logits,
    whole_image,
)
from fetalhc.study.grid import config_identity
from fetalhc.training.config import TrainConfig
from fetalhc.training.loop import learning_rate
from tests.doubles import BrightnessNetwork, double_segmenter


def disc_image(shape=(540, 800), centre=(600, 140), axes=(22, 18), angle=30.0):
    e = Ellipse(centre[0], centre[1], axes[0], axes[1], angle)
    return (draw_filled(e, shape) * 255).astype(np.uint8), e


# ---------------------------------------------------------------- geometry
def test_crop_matrix_maps_the_square_onto_the_crop():
    sq = Square(300.0, 200.0, 128.0)
    m = crop_matrix(sq, 64)
    # centre -> crop centre, and a point half a side to the right -> the right edge
    assert np.allclose(m @ [300, 200, 1], [31.5, 31.5])
    assert np.allclose(m @ [364, 200, 1], [63.5, 31.5])
    rotated = crop_matrix(sq, 64, angle_deg=90)
    assert np.allclose(rotated @ [300, 200, 1], [31.5, 31.5])
    assert np.allclose(crop_matrix(sq, 64, hflip=True) @ [364, 200, 1], [-0.5, 31.5])


@pytest.mark.parametrize("whole", [True, False])
def test_crop_then_uncrop_gives_back_the_head(whole):
    mask, _ = disc_image(axes=(120, 90))
    square = whole_image(mask.shape) if whole else around_box(box_of(mask), 0.2)
    m = crop_matrix(square, 256)
    soft = cut(mask, m, 256).astype(np.float32) / 255
    p = np.clip(soft, 1e-4, 1 - 1e-4)
    back = uncrop_logits(np.log(p / (1 - p)), m, mask.shape) > 0
    assert iou(back, mask > 0) > (0.99 if whole else 0.998)


def test_head_square_holds_the_head_with_its_margin():
    mask, _ = disc_image()
    box = box_of(mask)
    sq = around_box(box, 0.25)
    assert sq.side == pytest.approx(max(box[2] - box[0], box[3] - box[1]) * 1.5)
    assert (sq.cx, sq.cy) == pytest.approx(((box[0] + box[2]) / 2, (box[1] + box[3]) / 2))
    assert box_of(np.zeros((5, 5))) is None


# ---------------------------------------------------------------- two-pass inference
def brightness_segmenter(
    head_crop=0.2, size=64, quality=None, **options
) -> tuple[Segmenter, BrightnessNetwork]:
    """A two-pass Segmenter around a BrightnessNetwork, and the network."""
    network = BrightnessNetwork()
    seg = double_segmenter(network, "brightness", size, head_crop, quality, 4, **options)
    return seg, network


def test_two_passes_outline_a_small_head_that_one_pass_cannot():
    image, truth = disc_image()  # a first-trimester-sized head: ~40 px across in 800 px
    seg, net = brightness_segmenter()
    [pred] = seg.predict([image])
    assert len(net.calls) == 2  # the whole image, then the crop around the head
    assert pred.probability.shape == image.shape and pred.coarse_probability is not None
    fine = fit_mask(pred.probability >= 0.5)
    coarse = fit_mask(pred.coarse_probability >= 0.5)
    perimeter = 2 * math.pi * math.sqrt((truth.a**2 + truth.b**2) / 2)
    fine_p = 2 * math.pi * math.sqrt((fine.a**2 + fine.b**2) / 2)
    coarse_p = 2 * math.pi * math.sqrt((coarse.a**2 + coarse.b**2) / 2)
    # at 64x64 the whole 800x540 image is 12.5 px per model pixel: the first pass is
    # coarse; the close-up (about 3 px per model pixel) recovers the outline
    assert abs(fine_p - perimeter) / perimeter < 0.02
    assert abs(fine_p - perimeter) < abs(coarse_p - perimeter)
    assert (fine.cx, fine.cy) == pytest.approx((truth.cx, truth.cy), abs=1.0)


def test_two_pass_measurement_reports_pass_disagreement_and_uses_model_thresholds():
    image, _ = disc_image(axes=(150, 120), centre=(400, 270))
    seg, _ = brightness_segmenter(size=128)
    result = HeadMeasurer.from_segmenter(seg).measure(image, 0.2)
    assert result.ok and 0 <= result.pass_disagreement < 0.05
    assert result.quality == "ok"
    # a threshold below the measured disagreement (from the model's config) flags it
    own = {"max_pass_disagreement": result.pass_disagreement / 2}
    seg, _ = brightness_segmenter(size=128, quality=own)
    flagged = HeadMeasurer.from_segmenter(seg).measure(image, 0.2)
    assert flagged.quality == "check"
    assert any("passes disagree" in r for r in flagged.quality_reasons)
    # the caller's thresholds win over the model's
    assert HeadMeasurer.from_segmenter(seg, quality={}).measure(image, 0.2).quality == "ok"
    seg, _ = brightness_segmenter(size=128, quality={"max_pass_disagreement": "high"})
    with pytest.raises(FetalHCError, match="max_pass_disagreement"):
        HeadMeasurer.from_segmenter(seg)  # refused at load, before any image


def test_pass_distance_is_the_mean_gap_between_the_passes_outlines_in_mm():
    from fetalhc.inference.measurer import result_from_measurement
    from fetalhc.measure.postprocess import measure
    from fetalhc.measure.quality import QualityThresholds

    fine, _ = disc_image(axes=(100, 100), centre=(400, 270), angle=0.0)
    # the first pass saw a head 6 px wider all round: a ring 6 px thick around the same
    # circle; its HC differs, but the shifted one below has the same HC and still differs
    coarse, _ = disc_image(axes=(106, 106), centre=(400, 270), angle=0.0)
    m = measure(fine / 255.0, coarse=coarse / 255.0)
    assert m.pass_distance_px == pytest.approx(6.0, abs=0.6)
    shifted, _ = disc_image(axes=(100, 100), centre=(410, 270), angle=0.0)
    m_shift = measure(fine / 255.0, coarse=shifted / 255.0)
    assert m_shift.pass_disagreement < 0.005 and m_shift.pass_distance_px > 4.0
    result = result_from_measurement("a.png", m, 0.2)
    assert result.pass_distance_mm == pytest.approx(0.2 * m.pass_distance_px)
    assert result.as_row()["pass_distance_mm"] == pytest.approx(result.pass_distance_mm)
    assert result.quality == "ok"
    t = QualityThresholds(max_pass_distance_mm=1.0)
    flagged = result_from_measurement("a.png", m, 0.2, thresholds=t)
    assert flagged.quality == "check" and any("apart" in r for r in flagged.quality_reasons)
    # one-pass models have no such distance and are never flagged for it
    one_pass = result_from_measurement("a.png", measure(fine / 255.0), 0.2, thresholds=t)
    assert math.isnan(one_pass.pass_distance_mm) and one_pass.quality == "ok"


def test_outline_distance_of_a_very_large_image_is_computed_on_a_smaller_copy():
    from fetalhc.measure.postprocess import OUTLINE_DISTANCE_MAX_SIDE, outline_distance

    shape = (3000, 4500)  # 1.5 x 2.2 times the limit
    inner, _ = disc_image(shape, centre=(2250, 1500), axes=(1000, 1000), angle=0.0)
    outer, _ = disc_image(shape, centre=(2250, 1500), axes=(1012, 1012), angle=0.0)
    assert max(shape) > OUTLINE_DISTANCE_MAX_SIDE
    # a 12 px gap all round, measured in the original image's pixels
    assert outline_distance(inner > 0, outer > 0) == pytest.approx(12.0, abs=1.5)


def test_no_head_in_the_first_pass_means_no_second_pass():
    seg, net = brightness_segmenter()
    [pred] = seg.predict([np.zeros((100, 120), np.uint8)])
    assert len(net.calls) == 1 and pred.probability.max() < 0.5


# ---------------------------------------------------------------- training on crops
def test_head_crop_training_and_its_model_measure_in_two_passes(tmp_path, sample, sample_split):
    from fetalhc.training.trainer import Trainer

    config = TrainConfig(
        data=str(sample),
        split=str(sample_split),
        strategy="full",
        encoder_weights="none",
        epochs=1,
        batch_size=4,
        lr=1e-3,
        image_size=[64, 64],
        head_crop=0.2,
        augment="strong",
        lr_schedule="cosine",
        normalization="unit",
    )
    out = tmp_path / "crop-run"
    Trainer(config, out).run()
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["head_crop"] == 0.2 and saved["train"]["augment"] == "strong"
    # the recorded input pipeline is the one the run used, not the default's
    assert saved["model"]["normalization"] == "unit" and "ImageNet" not in saved["input"]
    seg = Segmenter(out / "last.safetensors", backend="torch")
    assert seg.head_crop == 0.2
    image = cv2.imread(str(sample / "training_set" / "000_HC.png"), cv2.IMREAD_GRAYSCALE)
    [pred] = seg.predict([image])
    assert pred.probability.shape == image.shape
    assert pred.logits_small.shape == (64, 64)


def test_head_crop_needs_a_square_size():
    with pytest.raises(FetalHCError, match="square"):
        TrainConfig(head_crop=0.2, image_size=[96, 64]).validate()
    with pytest.raises(FetalHCError, match="head_crop"):
        TrainConfig(head_crop=1.5, image_size=[64, 64]).validate()


# ---------------------------------------------------------------- folds, schedule, identity
def test_folds_keep_subjects_together_and_the_test_part_out(sample):
    names = [r.filename for r in load_labelled(sample)]
    split = group_split(names, val=0.1, test=0.2, seed=0)
    pool = [n for n, p in split.items() if p != "test"]
    folds = group_folds(pool, 3, seed=0)
    assert sorted(folds) == sorted(pool) and set(folds.values()) == {0, 1, 2}
    for name in pool:
        others = [n for n in pool if subject_of(n) == subject_of(name)]
        assert {folds[n] for n in others} == {folds[name]}
    sizes = [sum(v == k for v in folds.values()) for k in range(3)]
    assert max(sizes) - min(sizes) <= 2  # biggest subject in the sample holds 3 images
    seen_as_val = []
    for k in range(3):
        parts = fold_split(split, folds, k)
        assert {n for n, p in parts.items() if p == "test"} == {
            n for n, p in split.items() if p == "test"
        }
        seen_as_val += [n for n, p in parts.items() if p == "val"]
    assert sorted(seen_as_val) == sorted(pool)  # every pool image is out-of-fold once
    with pytest.raises(FetalHCError):
        group_folds(pool, 1)


def test_cosine_schedule_decays_from_lr_and_constant_stays():
    c = TrainConfig(lr=1e-3, epochs=10, lr_schedule="cosine")
    rates = [learning_rate(c, e) for e in range(1, 11)]
    assert rates[0] == pytest.approx(1e-3)
    assert all(a > b for a, b in zip(rates, rates[1:], strict=False)) and rates[-1] > 0
    assert learning_rate(TrainConfig(lr=1e-3, epochs=10), 7) == 1e-3


def test_new_recipe_fields_leave_earlier_study_cells_valid(tmp_path):
    split = tmp_path / "split.csv"
    split.write_text("filename,part\n")
    plain = config_identity(TrainConfig(), split, "test")
    assert not {"lr_schedule", "augment", "head_crop"} & set(plain)
    changed = config_identity(TrainConfig(lr_schedule="cosine"), split, "test")
    assert changed["lr_schedule"] == "cosine"


def test_two_pass_logits_at_model_size_score_like_the_full_size_mask():
    from fetalhc.inference.evaluate import paper_metrics

    image, truth = disc_image(axes=(150, 120), centre=(400, 270))
    [pred] = brightness_segmenter(size=128)[0].predict([image])
    assert pred.logits_small.shape == (128, 128)
    assert paper_metrics(pred.logits_small, image > 0)["paper_dice"] > 0.98


def test_data_split_writes_one_split_per_fold(tmp_path, sample):
    from tests.conftest import run_cli

    r = run_cli("data", "split", sample, "--out", tmp_path / "split.csv", "--folds", "3")
    assert r.returncode == 0, r.stderr
    base = (tmp_path / "split.csv").read_text().splitlines()
    test = {line.split(",")[0] for line in base if line.endswith(",test")}
    vals = []
    for k in range(3):
        lines = (tmp_path / f"split.fold{k}.csv").read_text().splitlines()
        assert {line.split(",")[0] for line in lines if line.endswith(",test")} == test
        vals += [line.split(",")[0] for line in lines if line.endswith(",val")]
    assert len(vals) == len(set(vals)) == len(base) - 1 - len(test)


def test_large_heads_are_flagged_above_the_models_hc_threshold():
    image, _ = disc_image(axes=(150, 120), centre=(400, 270))
    seg, _ = brightness_segmenter(size=128)
    hc = HeadMeasurer.from_segmenter(seg).measure(image, 0.3).hc_mm
    seg, _ = brightness_segmenter(size=128, quality={"max_hc_mm": hc + 1})
    assert HeadMeasurer.from_segmenter(seg).measure(image, 0.3).quality == "ok"
    seg, _ = brightness_segmenter(size=128, quality={"max_hc_mm": hc - 1})
    result = HeadMeasurer.from_segmenter(seg).measure(image, 0.3)
    assert result.ok and result.quality == "check"
    assert any("large head" in r for r in result.quality_reasons)


def test_a_run_from_before_the_new_settings_resumes_with_their_defaults(
    tmp_path, sample, sample_split, tiny_run
):
    import shutil

    from tests.conftest import run_cli
    from tests.training.test_trainer import train_args

    run = tmp_path / "old-run"
    shutil.copytree(tiny_run, run)
    config = json.loads((run / "config.json").read_text())
    for key in ("lr_schedule", "augment", "head_crop"):
        config["train"].pop(key)
    (run / "config.json").write_text(json.dumps(config))
    refused = run_cli(*train_args(sample, sample_split, run, 3), "--resume", "--augment", "strong")
    assert refused.returncode != 0 and "augment" in refused.stderr
    r = run_cli(*train_args(sample, sample_split, run, 3), "--resume")
    assert r.returncode == 0, r.stderr
    assert len((run / "history.csv").read_text().splitlines()) == 1 + 3


@pytest.mark.parametrize("value", [0, 128, 255])
def test_blank_frames_have_no_head_even_where_a_network_would_see_one(value):
    seg, net = brightness_segmenter()  # calls every bright pixel head: a white frame is "all head"
    result = HeadMeasurer.from_segmenter(seg).measure(np.full((300, 400), value, np.uint8), 0.1)
    assert result.status == "no_head" and "blank" in result.quality_reasons[0]
    assert net.calls == []  # not even run


@pytest.mark.parametrize(
    ("locate", "crop"),
    [(64, 128), (128, 64)],  # a smaller first pass; the close-up at another scale
)
def test_each_pass_runs_at_its_own_side(locate, crop):
    image, truth = disc_image(axes=(150, 120), centre=(400, 270))
    seg, net = brightness_segmenter(size=128, locate_side=locate, crop_side=crop)
    [pred] = seg.predict([image])
    assert net.calls == [(1, 3, locate, locate), (1, 3, crop, crop)]
    fine = fit_mask(pred.probability >= 0.5)
    assert (fine.cx, fine.cy) == pytest.approx((truth.cx, truth.cy), abs=1.0)
    assert max(fine.a, fine.b) == pytest.approx(max(truth.a, truth.b), rel=0.03)
    assert pred.logits_small.shape == (128, 128)  # the paper's metrics: the model's size


def test_a_head_the_smaller_locating_pass_misses_is_located_again_at_the_model_side():
    image, truth = disc_image(axes=(16, 13))  # ~1.3 px across at a 32-pixel first pass
    seg, net = brightness_segmenter(size=64, locate_side=32)
    [pred] = seg.predict([image])
    assert net.calls == [(1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 64, 64)]
    fine = fit_mask(pred.probability >= 0.5)
    assert (fine.cx, fine.cy) == pytest.approx((truth.cx, truth.cy), abs=1.0)
    assert pred.coarse_probability.max() >= 0.5  # the first pass kept is the second one
    # a head found at the smaller side is not located twice
    large, _ = disc_image(axes=(150, 120), centre=(400, 270))
    net.calls.clear()
    seg.predict([large])
    assert net.calls == [(1, 3, 32, 32), (1, 3, 64, 64)]


def test_a_small_head_the_smaller_locating_pass_finds_is_located_again():
    # 200 px of the image's 800: a quarter, under RELOCATE_BELOW; two heads side by side in
    # one frame are each this small, and the second fades at a small first pass
    image, truth = disc_image(axes=(100, 80), centre=(400, 270), angle=0.0)
    seg, net = brightness_segmenter(size=64, locate_side=32)
    [pred] = seg.predict([image])
    assert net.calls == [(1, 3, 32, 32), (1, 3, 64, 64), (1, 3, 64, 64)]
    assert seg.located_again == 1
    fine = fit_mask(pred.probability >= 0.5)
    assert max(fine.a, fine.b) == pytest.approx(100, rel=0.03)
    off, net = brightness_segmenter(size=64, locate_side=32, relocate_below=0.0)
    off.predict([image])  # off: only a head not found is located again
    assert net.calls == [(1, 3, 32, 32), (1, 3, 64, 64)]


def test_which_finds_are_located_again():
    shape = (540, 800)
    assert needs_relocating(None, shape, 0.0)  # nothing found: always
    assert needs_relocating((0, 0, 239, 100), shape, 0.3)  # 239 px < 0.3 of 800
    assert not needs_relocating((0, 0, 240, 100), shape, 0.3)
    assert not needs_relocating((0, 0, 100, 240), (800, 540), 0.3)
    assert needs_relocating((0, 0, 100, 239), (800, 540), 0.3)  # the longer side counts
    assert not needs_relocating((0, 0, 10, 10), shape, 0.0)


def test_without_the_close_up_the_first_pass_is_the_result():
    image, truth = disc_image(axes=(150, 120), centre=(400, 270))
    seg, net = brightness_segmenter(size=128)
    [both] = seg.predict([image])
    seg.close_up, net.calls = False, []
    [one] = seg.predict([image])
    assert net.calls == [(1, 3, 128, 128)]  # one network pass, the whole image
    assert one.coarse_map is None
    np.testing.assert_array_equal(one.probability, both.coarse_probability)
    coarse = fit_mask(one.probability >= 0.5)
    assert (coarse.cx, coarse.cy) == pytest.approx((truth.cx, truth.cy), abs=3.0)


def test_locate_side_is_checked():
    from fetalhc.model.config import ModelConfig

    with pytest.raises(FetalHCError, match="locate_side"):
        ModelConfig.from_dict({"locate_side": 100})
    assert ModelConfig.from_dict({"locate_side": 160}).locate_side == 160


def test_crop_side_is_checked_and_read_from_the_config(tmp_path):
    import shutil

    from fetalhc.inference.segmenter import DEFAULT_MODEL
    from fetalhc.model.config import ModelConfig

    with pytest.raises(FetalHCError, match="crop_side"):
        ModelConfig.from_dict({"crop_side": 200})
    assert ModelConfig.from_dict({"crop_side": 192}).crop_side == 192
    assert ModelConfig.from_dict({}).crop_side == 0  # the trained side
    shutil.copy(DEFAULT_MODEL, tmp_path / "m.safetensors")
    config = json.loads((DEFAULT_MODEL.parent / "config.json").read_text())
    config["model"].update(crop_side=160, locate_side=224)
    (tmp_path / "config.json").write_text(json.dumps(config))
    seg = Segmenter(tmp_path / "m.safetensors", backend="torch")
    assert (seg.locate_side, seg.crop_side, seg.size) == (224, 160, (256, 256))
    assert Segmenter(tmp_path / "m.safetensors", backend="torch", crop_side=256).crop_side == 256
