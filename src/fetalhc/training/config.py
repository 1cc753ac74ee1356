"""The training recipe: every default defined once (no torch import, so the CLI stays fast).

`TrainConfig` is the single source of truth: the CLI reads its defaults from it, a study
YAML's `train:` block is validated against it, and `config.json` records it.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields

from fetalhc.data.split import SPLIT_PARTS
from fetalhc.errors import FetalHCError
from fetalhc.model.config import DEFAULT_IMAGE_SIZE
from fetalhc.model.preprocess import NORMALIZATIONS
from fetalhc.model.strategies import BN_MODES

LOSSES = ("bce", "dice", "bce+dice")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("paper", "strong")
# Fields added after the first studies ran: a study cell's identity names them only when
# they differ from their default, so cells run before they existed stay valid.
LATER_FIELDS = ("lr_schedule", "augment", "head_crop", "skip_rescale")


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe at fetalhc's CPU-friendly size."""

    data: str = ""
    split: str = ""
    strategy: str = "decoder"
    encoder: str = "mobilenet_v2"
    encoder_weights: str = "imagenet"
    epochs: int = 20
    batch_size: int = 10
    lr: float = 1e-4
    loss: str = "bce"
    fraction: float = 1.0
    seed: int = 0
    image_size: list[int] = field(default_factory=lambda: list(DEFAULT_IMAGE_SIZE))
    train_parts: list[str] = field(default_factory=lambda: ["train"])
    val_part: str = "val"
    precision: str = "auto"
    device: str = "auto"
    # BatchNorm in training: "paper" (every layer in train mode, as the paper's notebooks)
    # or "frozen-eval" (BatchNorm of frozen blocks in eval mode, running statistics kept).
    bn_mode: str = "paper"
    # Network input: "imagenet" mean/std, or "unit" ([0, 1], as the paper's notebooks).
    normalization: str = "imagenet"
    # Training images (0: all of the training parts; otherwise the first N of the nested
    # subset order, as the paper's 79 / 239 / 399-image table). Overrides `fraction`.
    train_images: int = 0
    # Learning rate over epochs: "constant" (the paper) or "cosine" (decays to 0).
    lr_schedule: str = "constant"
    # "paper": rotate ±25°, flips; "strong": also brightness, contrast and gamma.
    augment: str = "paper"
    # 0: the whole image resized to image_size (the paper). > 0: a two-pass model trained
    # on square crops — the whole image letterboxed (to find the head), then a square
    # around the head with this margin on each side (to outline it). Needs a square size.
    head_crop: float = 0.0
    # Divide each encoder output (the skips at strides 2-32) by a constant: its RMS on the
    # first training batch, measured once and stored with the run. The pretrained encoder's
    # skips are 3-6x louder than a decoder block's output (Wang et al.'s frozen rows).
    skip_rescale: bool = False

    def validate(self) -> None:
        w, h = self.image_size
        if w % 32 or h % 32 or w <= 0 or h <= 0:
            raise FetalHCError(f"--image-size {w}x{h}: both sides must be positive multiples of 32")
        for name, allowed in (
            ("loss", LOSSES),
            ("precision", PRECISIONS),
            ("device", DEVICES),
            ("bn_mode", BN_MODES),
            ("normalization", NORMALIZATIONS),
            ("lr_schedule", LR_SCHEDULES),
            ("augment", AUGMENTATIONS),
        ):
            if getattr(self, name) not in allowed:
                raise FetalHCError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        if self.epochs < 1 or self.batch_size < 1:
            raise FetalHCError("epochs and batch size must be >= 1")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise FetalHCError(f"lr must be a finite number in (0, 1], got {self.lr}")
        if not (math.isfinite(self.fraction) and 0 < self.fraction <= 1):
            raise FetalHCError(f"fraction must be in (0, 1], got {self.fraction}")
        if not (math.isfinite(self.head_crop) and 0 <= self.head_crop < 1):
            raise FetalHCError(f"head_crop must be in [0, 1), got {self.head_crop}")
        if self.head_crop and w != h:
            raise FetalHCError(f"head_crop needs a square image size, got {w}x{h}")
        if self.train_images < 0:
            raise FetalHCError(f"train_images must be >= 0, got {self.train_images}")
        bad = [p for p in self.train_parts if p not in SPLIT_PARTS]
        if bad or not self.train_parts:
            raise FetalHCError(
                f"train parts must be among {', '.join(SPLIT_PARTS)}, got {','.join(bad) or '-'}"
            )
        if self.val_part and self.val_part not in SPLIT_PARTS:
            raise FetalHCError(f"val part must be one of {', '.join(SPLIT_PARTS)} or ''")

    def to_dict(self) -> dict:
        return asdict(self)


def defaults() -> dict[str, typing.Any]:
    """Every field's default value (what the CLI shows and a YAML overrides)."""
    out = {}
    for f in fields(TrainConfig):
        out[f.name] = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
    return out


def without_later_defaults(recorded: dict) -> dict:
    """A recorded recipe without the LATER_FIELDS at their default: a recipe written before
    those fields existed compares (and hashes) equal to the same recipe written after."""
    default = defaults()
    return {k: v for k, v in recorded.items() if not (k in LATER_FIELDS and v == default[k])}


def format_size(size: typing.Sequence[int]) -> str:
    return f"{size[0]}x{size[1]}"


def parse_size(text: str) -> list[int]:
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise FetalHCError(f"image size {text!r}: expected WxH, e.g. 320x224") from None
    return [w, h]


def _coerce(name: str, value: typing.Any, hint: typing.Any) -> typing.Any:
    """Check one YAML value against the field's type; ints are accepted for floats."""
    origin = typing.get_origin(hint)
    if name == "image_size" and isinstance(value, str):
        return parse_size(value)
    if origin in (list,) or hint is list:
        (item,) = typing.get_args(hint) or (typing.Any,)
        if isinstance(value, str) and item is str:
            value = value.split(",")
        if not isinstance(value, list) or (
            item is not typing.Any
            and not all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        ):
            raise FetalHCError(f"train key {name!r}: expected a list of {item.__name__}")
        return value
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, hint):
        raise FetalHCError(
            f"train key {name!r}: expected {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def config_from_mapping(mapping: dict, **fixed: typing.Any) -> TrainConfig:
    """A TrainConfig from a YAML/JSON mapping: unknown keys and wrong types are refused
    with the key's name; `fixed` values (set by the caller, e.g. a study cell) win."""
    if not isinstance(mapping, dict):
        raise FetalHCError("train settings must be a mapping of key: value")
    hints = typing.get_type_hints(TrainConfig)
    unknown = sorted(set(mapping) - set(hints))
    if unknown:
        raise FetalHCError(
            f"unknown train key(s) {', '.join(map(repr, unknown))}; known: {', '.join(hints)}"
        )
    values = {k: _coerce(k, v, hints[k]) for k, v in mapping.items()}
    values.update(fixed)
    config = TrainConfig(**values)
    config.validate()
    return config
