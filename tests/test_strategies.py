import pytest
import torch
import torchvision

from fetalhc.errors import FetalHCError
from fetalhc.model import ModelConfig, build_model, count_parameters
from fetalhc.strategies import (
    PRESETS,
    apply_strategy,
    parse_spec,
    resolve,
    set_train_mode,
)

# The paper's trainable-parameter counts (partial decoder rows exclude the 145-parameter head).
PAPER_COUNTS = {
    "scratch-unet": 31_037_633,
    "full": 6_628_945,
    "decoder": 4_405_073,
    "encoder": 2_223_872,
    "d0": 3_761_152,
    "d01": 4_240_896,
    "d012": 4_365_568,
    "d234": 164_032,
    "d4": 6_976,
    "encoder-random": 2_223_872,
    "decoder-random": 4_405_073,
}


@pytest.fixture(scope="module")
def unet():
    return build_model(ModelConfig(), encoder_weights="none")


@pytest.mark.parametrize("name", sorted(PAPER_COUNTS))
def test_trainable_parameters_match_the_paper(name):
    strategy = PRESETS[name]
    model = build_model(ModelConfig(arch=strategy.arch), encoder_weights="none")
    assert apply_strategy(model, strategy) == PAPER_COUNTS[name]


def test_model_totals(unet):
    assert count_parameters(unet) == 6_628_945
    assert count_parameters(unet.encoder) == 2_223_872
    assert count_parameters(unet.decoder) + count_parameters(unet.segmentation_head) == 4_405_073
    # 85.8 % fewer trainable parameters than the scratch U-Net
    assert 1 - 4_405_073 / 31_037_633 == pytest.approx(0.858, abs=5e-4)


def test_encoder_matches_torchvision_features(unet):
    tv = torchvision.models.mobilenet_v2()
    assert count_parameters(tv.features) == count_parameters(unet.encoder)


def test_user_spec():
    assert parse_spec("encoder.0-2,decoder.3-4,head") == [
        "encoder.0",
        "encoder.1",
        "encoder.2",
        "decoder.3",
        "decoder.4",
        "head",
    ]
    model = build_model(ModelConfig(), encoder_weights="none")
    assert apply_strategy(model, resolve("decoder.2-4")) == 164_032
    assert apply_strategy(model, resolve("decoder.4,head")) == 6_976 + 145
    with pytest.raises(FetalHCError):
        resolve("decoder.7")
    with pytest.raises(FetalHCError):
        resolve("nonsense")


def test_frozen_batchnorm_statistics_do_not_change():
    torch.manual_seed(0)
    model = build_model(ModelConfig(), encoder_weights="none")
    apply_strategy(model, PRESETS["decoder"])
    before = {k: v.clone() for k, v in model.encoder.state_dict().items() if "running" in k}
    dec_before = model.decoder.blocks[0].conv1[1].running_mean.clone()
    set_train_mode(model)
    assert not model.encoder.features[0][1].training
    assert model.decoder.blocks[0].conv1[1].training
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    x = torch.randn(2, 3, 64, 96) * 3 + 1
    loss = model(x).mean()
    loss.backward()
    opt.step()
    after = {k: v for k, v in model.encoder.state_dict().items() if "running" in k}
    assert all(torch.equal(before[k], after[k]) for k in before)
    # the trained decoder's BatchNorm does update
    assert not torch.equal(dec_before, model.decoder.blocks[0].conv1[1].running_mean)
