"""Applying a fine-tuning strategy to a network: freezing, BatchNorm modes, the table."""

from __future__ import annotations

from torch import nn

from fetalhc.errors import FetalHCError
from fetalhc.model.config import ModelConfig
from fetalhc.model.strategies import BN_MODES, PRESETS, SCRATCH_UNET_PARAMS, Strategy, parse_spec
from fetalhc.model.unet import ScratchUNet, build_model, count_parameters


def layer_groups(model: nn.Module) -> dict[str, list[nn.Module]]:
    """Modules of each layer group of an smp U-Net (or 'all' for the scratch U-Net)."""
    if isinstance(model, ScratchUNet):
        return {"all": [model]}
    groups: dict[str, list[nn.Module]] = {}
    ends = encoder_stage_ends(model.encoder)
    if ends is not None:
        start = 0
        for i, end in enumerate(ends):
            groups[f"encoder.{i}"] = [model.encoder.features[j] for j in range(start, end + 1)]
            start = end + 1
    else:  # no stage map: the encoder is one group, trained whole or not at all
        groups["encoder"] = [model.encoder]
    for i, block in enumerate(model.decoder.blocks):
        groups[f"decoder.{i}"] = [block]
    groups["head"] = [model.segmentation_head]
    return groups


def encoder_stage_ends(encoder: nn.Module) -> tuple[int, ...] | None:
    """Where each of the five encoder stages ends in `encoder.features`, read from the
    encoder itself (smp's `_out_indexes` of its skip outputs); None if it has no such map."""
    features = getattr(encoder, "features", None)
    ends = getattr(encoder, "_out_indexes", None)
    if features is None or ends is None or len(ends) != 5:
        return None
    ends = tuple(int(i) for i in ends)
    if list(ends) != sorted(ends) or ends[-1] >= len(features):
        return None
    return ends


def apply_strategy(model: nn.Module, strategy: Strategy) -> int:
    """Freeze everything, then unfreeze the strategy's groups; return trainable parameters."""
    for p in model.parameters():
        p.requires_grad = False
    if isinstance(model, ScratchUNet):
        for p in model.parameters():
            p.requires_grad = True
        return count_parameters(model, trainable_only=True)
    groups = layer_groups(model)
    wanted = parse_spec(strategy.spec)
    if "encoder" in groups:  # an encoder without a stage map
        stages = [g for g in wanted if g.startswith("encoder.")]
        if stages and len(stages) != 5:
            raise FetalHCError(
                f"strategy {strategy.name!r}: encoder {type(model.encoder).__name__} has no "
                "stage map, so only the whole encoder can be trained (use 'encoder')"
            )
        wanted = [g for g in wanted if not g.startswith("encoder.")] + (
            ["encoder"] if stages else []
        )
    for name in wanted:
        for module in groups.get(name, []):
            for p in module.parameters():
                p.requires_grad = True
    trainable = count_parameters(model, trainable_only=True)
    if trainable == 0:
        raise FetalHCError(f"strategy {strategy.name!r} trains no parameter")
    return trainable


def set_train_mode(model: nn.Module, bn_mode: str = "paper") -> None:
    """Put the model in training mode, with BatchNorm handled as `bn_mode` says.

    ``paper``: ``model.train()`` on the whole model, as the paper's notebooks do: every
    BatchNorm layer, frozen ones included, normalises with batch statistics and updates its
    running statistics (its weight and bias stay frozen).
    ``frozen-eval``: BatchNorm layers whose parameters are frozen stay in eval mode, so their
    running statistics do not drift during fine-tuning.
    """
    if bn_mode not in BN_MODES:
        raise FetalHCError(f"BatchNorm mode must be one of {', '.join(BN_MODES)}, got {bn_mode!r}")
    model.train()
    if bn_mode == "paper":
        return
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def encoder_frozen(model: nn.Module) -> bool:
    encoder = getattr(model, "encoder", None)
    return encoder is not None and not any(p.requires_grad for p in encoder.parameters())


def strategy_table(encoder: str = "mobilenet_v2") -> list[dict]:
    """Rows of `fetalhc strategies`: trainable and total parameters of each preset."""
    rows = []
    for s in PRESETS.values():
        config = ModelConfig(arch=s.arch, encoder=encoder)
        model = build_model(config, encoder_weights="none")
        trainable = apply_strategy(model, s)
        total = count_parameters(model)
        rows.append(
            {
                "strategy": s.name,
                "trainable_layers": s.label,
                "trainable_params": trainable,
                "total_params": total,
                "pct_of_scratch_unet": 100.0 * trainable / SCRATCH_UNET_PARAMS,
            }
        )
    return rows
