"""What rebuilds a model: its architecture, size and input (no torch import)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from fetalhc.errors import FetalHCError
from fetalhc.model.preprocess import NORMALIZATIONS

DEFAULT_IMAGE_SIZE = (320, 224)  # W, H: keeps 800x540's aspect, divisible by 32
PAPER_DECODER_CHANNELS = (256, 128, 64, 32, 16)
SCRATCH_ARCH = "scratch-unet"
SMP_ARCH = "smp-unet"
SKIP_STAGES = 5  # encoder outputs at strides 2, 4, 8, 16, 32


def check_locate_side(side: object, what: str = "locate_side") -> int:
    """A locating pass's side: 0 (the model's own) or a positive multiple of 32."""
    if isinstance(side, bool) or not isinstance(side, int) or side < 0 or side % 32:
        raise FetalHCError(f"{what} must be 0 or a multiple of 32, got {side!r}")
    return side


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (stored as JSON next to its weights)."""

    arch: str = SMP_ARCH
    encoder: str = "mobilenet_v2"
    decoder_channels: list[int] = field(default_factory=lambda: list(PAPER_DECODER_CHANNELS))
    image_size: list[int] = field(default_factory=lambda: list(DEFAULT_IMAGE_SIZE))  # W, H
    normalization: str = "imagenet"
    # > 0: a two-pass model (see crops.py): square crops, the head's with this margin.
    head_crop: float = 0.0
    # Non-empty: the encoder's five skip outputs are divided by these constants (their RMS
    # on the first training batch, TrainConfig.skip_rescale); stored as the buffer
    # `skip_scale.rms` in the weights too.
    skip_rms: list[float] = field(default_factory=list)
    # Two-pass models: the side of the first (locating) pass's square, which only has to
    # find the head; 0: the same as the second pass's (image_size).
    locate_side: int = 0
    # Two-pass models: the side of the second pass's square (the close-up) at inference;
    # 0: image_size, the side it was trained at (a smaller one was chosen out of fold for
    # the bundled quarter-width model, MODEL_CARD.md).
    crop_side: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        if not isinstance(d, dict):
            raise FetalHCError("config.json: 'model' must be a mapping")
        names = (
            "arch",
            "encoder",
            "decoder_channels",
            "image_size",
            "normalization",
            "head_crop",
            "skip_rms",
            "locate_side",
            "crop_side",
        )
        known = {k: d[k] for k in names if k in d}
        for key in ("arch", "encoder", "normalization"):
            if key in known and not isinstance(known[key], str):
                raise FetalHCError(f"config.json: model {key!r} must be a string")
        for key, length in (("decoder_channels", 5), ("image_size", 2)):
            value = known.get(key)
            if value is not None and not (
                isinstance(value, list)
                and len(value) == length
                and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value)
            ):
                raise FetalHCError(
                    f"config.json: model {key!r} must be {length} positive integers, got {value!r}"
                )
        crop = known.get("head_crop", 0.0)
        if isinstance(crop, bool) or not isinstance(crop, int | float) or not 0 <= crop < 1:
            raise FetalHCError(f"config.json: model 'head_crop' must be in [0, 1), got {crop!r}")
        rms = known.get("skip_rms", [])
        if not (
            isinstance(rms, list)
            and len(rms) in (0, SKIP_STAGES)
            and all(
                isinstance(v, int | float)
                and not isinstance(v, bool)
                and math.isfinite(v)
                and v > 0
                for v in rms
            )
        ):
            raise FetalHCError(
                f"config.json: model 'skip_rms' must be [] or {SKIP_STAGES} positive numbers"
            )
        check_locate_side(known.get("locate_side", 0), "config.json: model 'locate_side'")
        check_locate_side(known.get("crop_side", 0), "config.json: model 'crop_side'")
        config = cls(**known)
        if config.normalization not in NORMALIZATIONS:
            raise FetalHCError(f"unknown input normalization {config.normalization!r}")
        return config
