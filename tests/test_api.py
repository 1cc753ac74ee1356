"""The Python API: one segment-and-measure path, training from arrays, rows not files."""

from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

import fetalhc
from fetalhc.errors import FetalHCError
from fetalhc.inference.segmenter import Segmenter
from fetalhc.measure.ellipse import Ellipse, draw_filled
from fetalhc.measure.postprocess import measure
from fetalhc.model.preprocess import preprocess


def reference_hc(sample, name: str) -> tuple[float, float]:
    with open(sample / "training_set_pixel_size_and_HC.csv", newline="") as f:
        row = next(r for r in csv.DictReader(f) if r["filename"] == name)
    return float(row["pixel size(mm)"]), float(row["head circumference (mm)"])


def test_public_names_resolve():
    import inspect

    for name in fetalhc.__all__:  # every public name is fetalhc's own, or its data
        value = getattr(fetalhc, name)
        if inspect.isclass(value) or inspect.isfunction(value):
            assert value.__module__.startswith("fetalhc."), name
        else:
            assert isinstance(value, str | dict) and value, name
    with pytest.raises(AttributeError):
        fetalhc.nonexistent  # noqa: B018


def test_readme_example_measures_a_sample_image(sample):
    pixel, ref = reference_hc(sample, "216_HC.png")
    measurer = fetalhc.HeadMeasurer()
    result = measurer.measure(sample / "training_set" / "216_HC.png", pixel_size_mm=pixel)
    assert result.ok and (result.quality == "ok") == (not result.quality_reasons)
    assert abs(result.hc_mm - ref) < 5  # the reference HC of HC18
    assert result.ellipse_mm.a == pytest.approx(result.ellipse_px.a * pixel)
    assert (
        result.mask.shape
        == result.image.shape
        == cv2.imread(str(sample / "training_set" / "216_HC.png")).shape[:2]
    )
    assert 10 < result.ga_weeks < 42
    # an array gives the same measurement as its file; a colour copy too
    gray = cv2.imread(str(sample / "training_set" / "216_HC.png"), cv2.IMREAD_GRAYSCALE)
    same = measurer.measure(cv2.cvtColor(gray, cv2.COLOR_GRAY2BGR), pixel_size_mm=pixel)
    assert same.hc_mm == pytest.approx(result.hc_mm)


def test_measure_many_keeps_order_and_reports_bad_inputs(sample, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"garbage")
    images = [sample / "test_set" / "000_HC.png", bad, np.zeros((0, 3), np.uint8)]
    results = list(fetalhc.HeadMeasurer().measure_many(images, 0.2))
    assert [r.filename for r in results] == ["000_HC.png", "bad.png", "image_2"]
    assert results[0].ok
    assert results[1].status.startswith("unreadable") and results[2].status.startswith("unreadable")
    with pytest.raises(FetalHCError):
        list(fetalhc.HeadMeasurer().measure_many(images, [0.1]))


def test_missing_pixel_size_gives_no_number():
    m = measure(draw_filled(Ellipse(80, 60, 40, 30, 0.3), (128, 160)).astype(np.float32))
    from fetalhc.inference.measurer import result_from_measurement

    result = result_from_measurement("x", m, None)
    assert result.status == "no_pixel_size" and np.isnan(result.hc_mm)
    assert result.as_row()["hc_mm"] == ""


def synthetic_heads(n: int, rng) -> tuple[list[np.ndarray], list[np.ndarray]]:
    images, masks = [], []
    for _ in range(n):
        e = Ellipse(
            rng.uniform(40, 88),
            rng.uniform(30, 66),
            rng.uniform(15, 30),
            rng.uniform(10, 20),
            rng.uniform(0, np.pi),
        )
        mask = draw_filled(e, (96, 128))
        image = (rng.normal(40, 10, mask.shape) + 120 * mask).clip(0, 255).astype(np.uint8)
        images.append(image)
        masks.append(mask)
    return images, masks


@pytest.mark.parametrize("head_crop", [0.0, 0.2])
def test_train_on_arrays_then_measure(tmp_path, head_crop):
    rng = np.random.default_rng(0)
    images, masks = synthetic_heads(12, rng)
    config = fetalhc.TrainConfig(
        strategy="full",
        encoder_weights="none",
        epochs=2,
        batch_size=4,
        lr=1e-3,
        image_size=[64, 64],
        head_crop=head_crop,
    )
    summary = fetalhc.train_on_arrays(
        config, tmp_path / "run", images[:8], masks[:8], images[8:], masks[8:]
    )
    assert summary["epochs"] == 2 and 0 <= summary["best_val_dice"] <= 1
    measurer = fetalhc.HeadMeasurer(tmp_path / "run" / "best.safetensors", backend="torch")
    assert measurer.segmenter.head_crop == head_crop
    result = measurer.measure(images[0], pixel_size_mm=0.5)
    assert result.filename == "image_0" and result.mask.shape == images[0].shape
    with pytest.raises(FetalHCError):
        fetalhc.train_on_arrays(config, tmp_path / "run2", images[:2], masks[:1])


def test_evaluate_rows_writes_nothing(tmp_path, tiny_run, sample, sample_split, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*")) | set(tiny_run.rglob("*"))
    found = fetalhc.evaluate_rows(tiny_run / "best.safetensors", sample, sample_split, "test")
    assert found.rows and {"dice", "hd_mm", "hc_abs_diff_mm"} <= set(found.rows[0])
    assert set(tmp_path.rglob("*")) | set(tiny_run.rglob("*")) == before


# ---------------------------------------------------------------- quality flag
def test_quality_flag_says_check_for_a_lobed_or_leaking_mask():
    from fetalhc.inference.measurer import result_from_measurement

    def flagged(prob: np.ndarray) -> list[str]:
        result = result_from_measurement("x", measure(prob), 0.2)
        assert result.ok and (result.quality == "check") == bool(result.quality_reasons)
        return result.quality_reasons

    shape = (270, 400)
    head = draw_filled(Ellipse(200, 135, 90, 70, 0.2), shape).astype(np.float32)
    assert flagged(head) == []
    lobed = head.copy()
    lobed[cv2.circle(np.zeros(shape, np.uint8), (290, 135), 40, 1, -1) > 0] = 1.0  # a leak
    assert any("ellipse" in r for r in flagged(lobed))
    faint_edge = head.copy()
    ring = draw_filled(Ellipse(200, 135, 95, 74, 0.2), shape).astype(bool) & (head == 0)
    faint_edge[ring] = 0.45  # the model is unsure just outside the fitted edge
    assert any("edge" in r for r in flagged(faint_edge))


# ---------------------------------------------------------------- flip test-time augmentation
def test_flip_tta_averages_with_the_mirrored_prediction():
    def lopsided(x: np.ndarray) -> np.ndarray:
        # a fake network that sees head only in the left half of what it is given, scaled
        # by the input's brightness there
        out = np.full((x.shape[0], 1, 32, 64), -5.0, np.float32)
        out[..., :32] = x[:, :1, :, :32].mean(axis=(2, 3), keepdims=True)
        return out

    config = {"model": {"image_size": [64, 32], "normalization": "imagenet"}}
    image = np.tile(np.linspace(0, 255, 64, dtype=np.float32), (32, 1)).astype(np.uint8)
    plain, tta = (
        Segmenter("lopsided", runner=lopsided, config=config, flip_tta=flip).logits_model_size(
            [image]
        )[0]
        for flip in (False, True)
    )
    assert not np.allclose(plain, plain[:, ::-1])
    # the average of a prediction and the un-flipped prediction of the mirror image
    flipped = lopsided(np.ascontiguousarray(preprocess(image[None])[..., ::-1]))[0, 0, :, ::-1]
    np.testing.assert_allclose(tta, (plain + flipped) / 2, rtol=1e-6)
    assert tta[:, :32].mean() != plain[:, :32].mean()


# ---------------------------------------------------------------- strategies
def test_a_spec_an_encoder_cannot_honour_is_refused():
    from fetalhc.model.config import ModelConfig
    from fetalhc.model.freeze import apply_strategy
    from fetalhc.model.strategies import PRESETS, resolve
    from fetalhc.model.unet import build_model

    resnet = build_model(ModelConfig(encoder="resnet18"), encoder_weights="none")
    with pytest.raises(FetalHCError, match="no stage map"):
        apply_strategy(resnet, resolve("encoder.3-4"))
    whole = apply_strategy(resnet, PRESETS["encoder"])
    assert whole == sum(p.numel() for p in resnet.encoder.parameters())


def test_mobilenet_stage_ends_come_from_the_encoder():
    from fetalhc.model.config import ModelConfig
    from fetalhc.model.freeze import encoder_stage_ends
    from fetalhc.model.unet import build_model

    model = build_model(ModelConfig(), encoder_weights="none")
    assert encoder_stage_ends(model.encoder) == tuple(model.encoder._out_indexes)


def test_api_measures_a_dicom_cine_loop_and_writes_its_sr(tmp_path, sample):
    pytest.importorskip("highdicom")
    from tests.dicom_helpers import make_dicom

    head = cv2.imread(str(sample / "test_set" / "180_HC.png"), cv2.IMREAD_GRAYSCALE)
    blank = np.full_like(head, 40)
    loop = make_dicom(tmp_path / "loop.dcm", [blank, head, blank], region_cm=0.0133961232503)
    measured = fetalhc.HeadMeasurer(backend="torch").measure_dicom(loop)
    assert [r.frame for r in measured.frames] == [1, 2, 3]
    assert measured.chosen_index == 1 and measured.chosen.ok
    sr = measured.chosen.to_dicom_sr(measured.dataset)
    assert sr.Modality == "SR" and sr.StudyInstanceUID == measured.dataset.StudyInstanceUID
