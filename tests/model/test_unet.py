import torch
import torchvision

from fetalhc.model.config import ModelConfig
from fetalhc.model.preprocess import preprocess
from fetalhc.model.unet import build_model, load_encoder_weights
from tests.conftest import run_cli


def test_loads_torchvision_state_dict(tmp_path):
    tv = torchvision.models.mobilenet_v2()
    path = tmp_path / "mnv2.pth"
    torch.save(tv.state_dict(), path)
    model = build_model(ModelConfig(), encoder_weights=str(path))
    assert torch.equal(
        model.encoder.features[3].conv[0][0].weight, tv.features[3].conv[0][0].weight
    )


def test_wrong_shape_and_missing_file_are_clear_errors(tmp_path, sample, sample_split):
    bad = torchvision.models.mobilenet_v2(width_mult=0.5).state_dict()
    torch.save(bad, tmp_path / "bad.pth")
    model = build_model(ModelConfig(), encoder_weights="none")
    try:
        load_encoder_weights(model.encoder, tmp_path / "bad.pth")
        raise AssertionError("expected an error")
    except Exception as exc:  # noqa: BLE001
        assert "does not match" in str(exc) or "wrong shape" in str(exc)
    for weights in (tmp_path / "bad.pth", tmp_path / "missing.pth"):
        r = run_cli(
            "train",
            "--data",
            sample,
            "--split",
            sample_split,
            "--out",
            tmp_path / "run",
            "--encoder-weights",
            weights,
            "--epochs",
            "1",
        )
        assert r.returncode == 2
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_preprocess_grey_to_normalised_rgb():
    import numpy as np

    x = preprocess(np.full((2, 4, 6), 255, np.uint8))
    assert x.shape == (2, 3, 4, 6)
    expected = (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    assert np.allclose(x[0, :, 0, 0], expected, atol=1e-6)


def test_preprocess_unit_normalisation_is_the_papers_zero_to_one():
    import numpy as np

    grey = np.array([[[0, 51, 255]]], np.uint8)
    x = preprocess(grey, "unit")
    assert x.shape == (1, 3, 1, 3)
    assert np.allclose(x[0, :, 0], [[0, 0.2, 1.0]] * 3)
