"""TrainConfig.decoder_channels: a narrower decoder is trained, stored and rebuilt."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fetalhc.errors import FetalHCError
from fetalhc.inference.segmenter import Segmenter
from fetalhc.training.config import config_from_mapping
from fetalhc.training.trainer import Trainer
from tests.conftest import tiny_config

NARROW = [64, 32, 16, 16, 8]


def test_a_narrow_decoder_is_trained_stored_and_rebuilt(tmp_path, sample, sample_split):
    import segmentation_models_pytorch as smp

    config = tiny_config(sample, sample_split, decoder_channels=NARROW)
    result = Trainer(config, tmp_path / "run").run()
    # an independent count: smp's own U-Net with these widths, every parameter
    reference = smp.Unet("mobilenet_v2", encoder_weights=None, decoder_channels=tuple(NARROW))
    assert result["total_params"] == sum(p.numel() for p in reference.parameters())
    encoder = sum(p.numel() for p in reference.encoder.parameters())
    assert result["trainable_params"] == result["total_params"] - encoder  # decoder + head
    assert result["trainable_params"] < 4_405_073 / 4  # the paper's widths: 4.41 M
    recorded = json.loads((tmp_path / "run" / "config.json").read_text())
    assert recorded["model"]["decoder_channels"] == NARROW
    seg = Segmenter(tmp_path / "run" / "best.safetensors", backend="torch")
    (p,) = seg.probabilities([np.zeros((60, 90), np.uint8)])
    assert p.shape == (60, 90)


def test_decoder_channels_from_flags_and_yaml_and_refused_when_wrong():
    assert config_from_mapping({"decoder_channels": "128,64,32,16,8"}).decoder_channels == [
        128,
        64,
        32,
        16,
        8,
    ]
    assert config_from_mapping({"decoder_channels": NARROW}).decoder_channels == NARROW
    for bad in ("128,64", "a,b,c,d,e", [0, 1, 2, 3, 4]):
        with pytest.raises(FetalHCError, match="decoder_channels"):
            config_from_mapping({"decoder_channels": bad}).validate()
    with pytest.raises(FetalHCError, match="scratch-unet"):
        config_from_mapping({"decoder_channels": NARROW, "strategy": "scratch-unet"}).validate()
