"""Fine-tuning strategies: which layer groups of the U-Net are trained, which are frozen.

Layer groups of the smp U-Net: ``encoder.0`` … ``encoder.4`` (the five down-sampling stages
of the encoder, the paper's E-0 … E-4), ``decoder.0`` … ``decoder.4`` (decoder blocks from the
deepest, the paper's D-0 … D-4) and ``head`` (the 3×3 segmentation convolution). A user spec
lists groups and ranges: ``encoder.0-2,decoder.3-4,head``; ``encoder``, ``decoder`` and ``all``
are shorthands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from .config import BN_MODES
from .errors import FetalHCError
from .model import SCRATCH_ARCH, SMP_ARCH, ScratchUNet, count_parameters

SCRATCH_UNET_PARAMS = 31_037_633


@dataclass(frozen=True)
class Strategy:
    name: str
    spec: str  # groups trained
    label: str  # the paper's name for the trained layers
    arch: str = SMP_ARCH
    random_encoder: bool = False  # the paper's starred rows: encoder not pretrained

    @property
    def loads_encoder_weights(self) -> bool:
        """Whether training starts from the given encoder weights: not in the starred rows,
        nor for the scratch U-Net, which has no such encoder."""
        return not self.random_encoder and self.arch == SMP_ARCH


PRESETS: dict[str, Strategy] = {
    s.name: s
    for s in [
        Strategy("scratch-unet", "all", "U-Net from scratch (31 M)", arch=SCRATCH_ARCH),
        Strategy("full", "all", "E-0..4 + D-0..4 + head"),
        Strategy("encoder", "encoder", "E-0..4"),
        Strategy("decoder", "decoder,head", "D-0..4 + head"),
        Strategy("d0", "decoder.0", "D-0"),
        Strategy("d01", "decoder.0-1", "D-0,1"),
        Strategy("d012", "decoder.0-2", "D-0,1,2"),
        Strategy("d234", "decoder.2-4", "D-2,3,4"),
        Strategy("d4", "decoder.4", "D-4"),
        Strategy("encoder-random", "encoder", "E-0..4 (random-init encoder)", random_encoder=True),
        Strategy(
            "decoder-random",
            "decoder,head",
            "D-0..4 + head (random-init encoder)",
            random_encoder=True,
        ),
    ]
}

_ITEM = re.compile(r"^(encoder|decoder)(?:\.(\d)(?:-(\d))?)?$")


def parse_spec(spec: str) -> list[str]:
    """'encoder.0-2,decoder.3-4,head' -> ['encoder.0', 'encoder.1', ..., 'head']."""
    groups: list[str] = []
    for raw in spec.split(","):
        item = raw.strip()
        if item == "all":
            groups += [f"encoder.{i}" for i in range(5)] + [f"decoder.{i}" for i in range(5)]
            groups.append("head")
            continue
        if item == "head":
            groups.append("head")
            continue
        m = _ITEM.match(item)
        if not m:
            raise FetalHCError(
                f"bad layer group {item!r} in --train (use e.g. encoder.0-2,decoder.3-4,head)"
            )
        kind, lo, hi = m.group(1), m.group(2), m.group(3)
        first = int(lo) if lo is not None else 0
        last = int(hi) if hi is not None else (first if lo is not None else 4)
        if not 0 <= first <= last <= 4:
            raise FetalHCError(f"bad range in {item!r}: blocks are numbered 0-4")
        groups += [f"{kind}.{i}" for i in range(first, last + 1)]
    return sorted(set(groups), key=groups.index)


def resolve(name_or_spec: str) -> Strategy:
    """A preset by name, or a custom strategy from a layer-group spec."""
    if name_or_spec in PRESETS:
        return PRESETS[name_or_spec]
    if re.match(r"^(encoder|decoder|head|all)", name_or_spec):
        parse_spec(name_or_spec)  # validate now, with a clear message
        return Strategy(name_or_spec, name_or_spec, name_or_spec)
    raise FetalHCError(
        f"unknown strategy {name_or_spec!r}; presets: {', '.join(PRESETS)} "
        "(or a spec such as decoder.3-4,head)"
    )


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
    from .model import ModelConfig, build_model

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
