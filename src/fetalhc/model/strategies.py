"""Fine-tuning strategies: which layer groups of the U-Net are trained, which are frozen
(what a strategy is; `freeze` applies one to a network).

Layer groups of the smp U-Net: ``encoder.0`` … ``encoder.4`` (the five down-sampling stages
of the encoder, the paper's E-0 … E-4), ``decoder.0`` … ``decoder.4`` (decoder blocks from the
deepest, the paper's D-0 … D-4) and ``head`` (the 3×3 segmentation convolution). A user spec
lists groups and ranges: ``encoder.0-2,decoder.3-4,head``; ``encoder``, ``decoder`` and ``all``
are shorthands.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fetalhc.errors import FetalHCError
from fetalhc.model.config import SCRATCH_ARCH, SMP_ARCH

SCRATCH_UNET_PARAMS = 31_037_633
# BatchNorm in training (see freeze.set_train_mode): "paper" (every layer in train mode, as
# the paper's notebooks) or "frozen-eval" (BatchNorm of frozen blocks in eval mode).
BN_MODES = ("paper", "frozen-eval")


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
