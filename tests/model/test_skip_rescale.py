"""TrainConfig.skip_rescale: constants measured once, stored with the run, used everywhere."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fetalhc.errors import FetalHCError
from fetalhc.model.checkpoint import load_model
from fetalhc.model.config import ModelConfig
from fetalhc.model.unet import build_model, measure_skip_rms
from fetalhc.training.config import TrainConfig
from fetalhc.training.trainer import Trainer


def _config(sample, split, **kw) -> TrainConfig:
    base = dict(
        data=str(sample),
        split=str(split),
        strategy="decoder",
        encoder_weights="none",
        epochs=1,
        batch_size=4,
        image_size=[96, 64],
        skip_rescale=True,
    )
    return TrainConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def skip_run(tmp_path_factory, sample, sample_split):
    out = tmp_path_factory.mktemp("skip") / "run"
    Trainer(_config(sample, sample_split), out).run()
    return out


def test_constants_are_stored_in_config_and_weights(skip_run):
    rms = json.loads((skip_run / "config.json").read_text())["model"]["skip_rms"]
    assert len(rms) == 5 and all(v > 0 for v in rms)
    assert rms != [1.0] * 5  # measured, not the placeholders
    model, _ = load_model(skip_run / "best.safetensors")
    np.testing.assert_allclose(model.skip_scale.rms.numpy(), rms, rtol=1e-6)


def test_scaled_outputs_have_unit_rms_on_the_measured_batch():
    torch.manual_seed(0)
    model = build_model(ModelConfig(image_size=[96, 64], skip_rms=[1.0] * 5), "none")
    model.train()
    x = torch.rand(4, 3, 64, 96) * 3
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    raw = measure_skip_rms(model, x)
    # measuring leaves the BatchNorm running statistics as they were
    assert all(torch.equal(before[k], v) for k, v in model.encoder.state_dict().items())
    assert min(raw) > 0 and max(raw) / min(raw) > 1.01  # one constant per stage
    model.skip_scale.rms.copy_(torch.tensor(raw))
    with torch.no_grad():
        scaled = model.encoder(x)[1:]
    for f in scaled:
        assert float(f.pow(2).mean().sqrt()) == pytest.approx(1.0, rel=1e-4)
    # with the scale in place, measure_skip_rms still reports the unscaled RMS
    assert measure_skip_rms(model, x) == pytest.approx(raw, rel=1e-4)


def test_resume_keeps_the_constants(tmp_path, sample, sample_split, skip_run):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(skip_run, out)
    first = json.loads((out / "config.json").read_text())["model"]["skip_rms"]
    Trainer(_config(sample, sample_split, epochs=2), out, resume=True).run()
    again = json.loads((out / "config.json").read_text())
    assert again["model"]["skip_rms"] == first
    assert len(again["result"]) and (out / "history.csv").read_text().count("\n") == 3


def test_onnx_export_uses_the_scaled_skips(tmp_path, skip_run):
    from fetalhc.model.export import export_onnx

    diff = export_onnx(skip_run / "best.safetensors", tmp_path / "m.onnx")
    assert diff is not None and diff < 1e-3
    # without the scale the network computes something else: the export really holds it
    model, _ = load_model(skip_run / "best.safetensors")
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        scaled = model(x)
        model.skip_scale.rms.fill_(1.0)
        plain = model(x)
    assert float((scaled - plain).abs().max()) > 1e-3


def test_scratch_unet_is_refused(tmp_path, sample, sample_split):
    with pytest.raises(FetalHCError, match="skip_rescale"):
        Trainer(_config(sample, sample_split, strategy="scratch-unet"), tmp_path / "x")


def test_bad_recorded_constants_are_refused():
    with pytest.raises(FetalHCError, match="skip_rms"):
        ModelConfig.from_dict({"skip_rms": [1.0, -2.0, 1.0, 1.0, 1.0]})
