import pytest
import torch
import torchvision

from fetalhc.errors import FetalHCError
from fetalhc.model.config import ModelConfig
from fetalhc.model.freeze import apply_strategy, set_train_mode
from fetalhc.model.strategies import PRESETS, parse_spec, resolve
from fetalhc.model.unet import build_model, count_parameters

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


def _one_training_step(bn_mode: str, strategy: str) -> tuple[dict, dict, dict, dict]:
    """Frozen-block running statistics and weights before and after one real step."""
    from fetalhc.model.freeze import encoder_frozen
    from fetalhc.training.loop import train_steps

    torch.manual_seed(0)
    model = build_model(ModelConfig(), encoder_weights="none")
    apply_strategy(model, PRESETS[strategy])
    frozen = model.encoder if strategy == "decoder" else model.decoder

    def snapshot(kind: str) -> dict:
        return {
            k: v.clone()
            for k, v in frozen.state_dict().items()
            if ("running" in k) == (kind == "stats") and "num_batches" not in k
        }

    stats, weights = snapshot("stats"), snapshot("weights")
    set_train_mode(model, bn_mode)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], 1e-3)
    x = torch.randn(2, 3, 64, 96) * 3 + 1
    y = (torch.rand(2, 1, 64, 96) > 0.5).float()
    batches = [(x, y)]
    steps = train_steps(
        model,
        opt,
        torch.amp.GradScaler("cuda", enabled=False),
        batches,
        "bce",
        torch.device("cpu"),
        None,
        encoder_frozen(model),
    )
    assert len(list(steps)) == 1
    return stats, snapshot("stats"), weights, snapshot("weights")


@pytest.mark.parametrize("strategy", ["decoder", "encoder"])
def test_paper_batchnorm_mode_updates_frozen_statistics_not_weights(strategy):
    stats, stats_after, weights, weights_after = _one_training_step("paper", strategy)
    assert stats and weights
    assert all(not torch.equal(stats[k], stats_after[k]) for k in stats)
    assert all(torch.equal(weights[k], weights_after[k]) for k in weights)


@pytest.mark.parametrize("strategy", ["decoder", "encoder"])
def test_frozen_eval_batchnorm_mode_keeps_frozen_statistics_and_weights(strategy):
    stats, stats_after, weights, weights_after = _one_training_step("frozen-eval", strategy)
    assert all(torch.equal(stats[k], stats_after[k]) for k in stats)
    assert all(torch.equal(weights[k], weights_after[k]) for k in weights)


def test_trained_batchnorm_updates_in_both_modes():
    for mode in ("paper", "frozen-eval"):
        model = build_model(ModelConfig(), encoder_weights="none")
        apply_strategy(model, PRESETS["decoder"])
        set_train_mode(model, mode)
        assert model.decoder.blocks[0].conv1[1].training
        assert model.encoder.features[0][1].training == (mode == "paper")
    with pytest.raises(FetalHCError):
        set_train_mode(model, "sometimes")
