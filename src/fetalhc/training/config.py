"""The training recipe: every default defined once (no torch import, so the CLI stays fast).

`TrainConfig` is the single source of truth: the CLI reads its defaults from it, a study
YAML's `train:` block is validated against it, and `config.json` records it.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from fetalhc.data.split import SPLIT_PARTS
from fetalhc.errors import FetalHCError
from fetalhc.io.files import read_yaml
from fetalhc.model.config import DEFAULT_IMAGE_SIZE, PAPER_DECODER_CHANNELS
from fetalhc.model.preprocess import NORMALIZATIONS
from fetalhc.model.strategies import BN_MODES

LOSSES = ("bce", "dice", "bce+dice")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
LR_SCHEDULES = ("constant", "cosine")
AUGMENTATIONS = ("paper", "strong")
# Fields added after the first studies ran: a study cell's identity names them only when
# they differ from their default, so cells run before they existed stay valid.
LATER_FIELDS = (
    "lr_schedule",
    "augment",
    "head_crop",
    "skip_rescale",
    "decoder_channels",
    "teachers",
    "teacher_weight",
)


def _option(default, help: str, choices: tuple[str, ...] | None = None, **extra):
    """A TrainConfig field with what its command-line flag says (`fetalhc train --help` is
    generated from these: flag name = key, with _ as -)."""
    meta = {"help": help, "choices": choices, **extra}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """One training run. Defaults are the paper's recipe at fetalhc's CPU-friendly size."""

    data: str = _option("", "HC18 folder (official layout)")
    split: str = _option("", "split CSV (fetalhc data split)")
    strategy: str = _option("decoder", "preset or layer-group spec (decoder.3-4,head)")
    encoder: str = _option("mobilenet_v2", "smp encoder name")
    encoder_weights: str = _option("imagenet", "imagenet | none | PATH (torchvision format)")
    epochs: int = _option(20, "epochs")
    batch_size: int = _option(10, "images per batch", aliases=("--batch",))
    lr: float = _option(1e-4, "Adam learning rate")
    loss: str = _option("bce", "training loss", LOSSES)
    fraction: float = _option(1.0, "nested subset of the training part (whole subjects)")
    seed: int = _option(0, "seed of initialisation, augmentation and subsets")
    image_size: list[int] = _option(list(DEFAULT_IMAGE_SIZE), "WxH, multiples of 32")
    train_parts: list[str] = _option(["train"], "split parts to train on (comma-separated)")
    val_part: str = _option("val", "split part to validate on ('' for none)")
    precision: str = _option(
        "auto", "auto: bf16 on CPUs that have it, fp16 AMP on CUDA", PRECISIONS
    )
    device: str = _option("auto", "where to train", DEVICES)
    bn_mode: str = _option(
        "paper",
        "BatchNorm in training: paper = every layer in train mode (the paper's notebooks); "
        "frozen-eval = frozen blocks' BatchNorm in eval mode, running statistics kept",
        BN_MODES,
    )
    normalization: str = _option(
        "imagenet", "input: ImageNet mean/std, or unit = [0, 1] as the paper", NORMALIZATIONS
    )
    train_images: int = _option(
        0,
        "training images: 0 = all of the training parts, else the first N of the nested "
        "subset order (the paper's 79 / 239 / 399); overrides fraction",
    )
    lr_schedule: str = _option(
        "constant", "constant (the paper) or cosine (decays to 0)", LR_SCHEDULES
    )
    augment: str = _option(
        "paper",
        "paper: rotate ±25°, flips; strong: also brightness, contrast, gamma",
        AUGMENTATIONS,
    )
    head_crop: float = _option(
        0.0,
        "0: whole image (the paper); > 0: a two-pass model on square crops, the head's with "
        "this margin on each side (needs a square image_size)",
    )
    skip_rescale: bool = _option(
        False,
        "divide each encoder skip (strides 2-32) by its RMS on the first training batch, "
        "measured once and stored with the run (the pretrained skips are 3-6x louder than a "
        "decoder block's output)",
    )

    decoder_channels: list[int] = _option(
        list(PAPER_DECODER_CHANNELS),
        "widths of the U-Net's five decoder blocks, deepest first (comma-separated; "
        "narrower ones cost fewer FLOPs, most of them the decoder's)",
    )

    teachers: list[str] = _option(
        [],
        "distillation: checkpoints (comma-separated; e.g. the k fold models) whose mean "
        "probability on each training crop is a soft target beside the reference mask",
    )
    teacher_weight: float = _option(
        0.5, "distillation: the teachers' share of the target (0-1; the mask keeps the rest)"
    )

    def validate(self) -> None:
        w, h = self.image_size
        if w % 32 or h % 32 or w <= 0 or h <= 0:
            raise FetalHCError(f"image_size {w}x{h}: both sides must be positive multiples of 32")
        for f in fields(self):
            allowed = f.metadata.get("choices")
            if allowed and getattr(self, f.name) not in allowed:
                raise FetalHCError(
                    f"{f.name} must be one of {', '.join(allowed)}, got {getattr(self, f.name)!r}"
                )
        if self.epochs < 1 or self.batch_size < 1:
            raise FetalHCError("epochs and batch_size must be >= 1")
        if not (math.isfinite(self.lr) and 0 < self.lr <= 1):
            raise FetalHCError(f"lr must be a finite number in (0, 1], got {self.lr}")
        if not (math.isfinite(self.fraction) and 0 < self.fraction <= 1):
            raise FetalHCError(f"fraction must be in (0, 1], got {self.fraction}")
        if not (math.isfinite(self.head_crop) and 0 <= self.head_crop < 1):
            raise FetalHCError(f"head_crop must be in [0, 1), got {self.head_crop}")
        if self.head_crop and w != h:
            raise FetalHCError(f"head_crop needs a square image size, got {w}x{h}")
        channels = self.decoder_channels
        if len(channels) != 5 or any(c < 1 for c in channels):
            raise FetalHCError(f"decoder_channels must be 5 positive integers, got {channels}")
        if self.strategy == "scratch-unet" and list(channels) != list(PAPER_DECODER_CHANNELS):
            raise FetalHCError("decoder_channels applies to the smp U-Net, not scratch-unet")
        if not (math.isfinite(self.teacher_weight) and 0 <= self.teacher_weight <= 1):
            raise FetalHCError(f"teacher_weight must be in [0, 1], got {self.teacher_weight}")
        if self.train_images < 0:
            raise FetalHCError(f"train_images must be >= 0, got {self.train_images}")
        bad = [p for p in self.train_parts if p not in SPLIT_PARTS]
        if bad or not self.train_parts:
            raise FetalHCError(
                f"train_parts must be among {', '.join(SPLIT_PARTS)}, got {','.join(bad) or '-'}"
            )
        if self.val_part and self.val_part not in SPLIT_PARTS:
            raise FetalHCError(f"val_part must be one of {', '.join(SPLIT_PARTS)} or ''")

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
        elif isinstance(value, str) and item is int:
            try:
                value = [int(v) for v in value.split(",")]
            except ValueError:
                raise FetalHCError(
                    f"train key {name!r}: expected comma-separated integers, got {value!r}"
                ) from None
        if not isinstance(value, list) or (
            item is not typing.Any
            and not all(isinstance(v, item) and not isinstance(v, bool) for v in value)
        ):
            raise FetalHCError(f"train key {name!r}: expected a list of {item.__name__}")
        return value
    if origin in (typing.Union, types.UnionType):
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    if hint is bool and isinstance(value, bool):
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) or not isinstance(value, hint):
        raise FetalHCError(
            f"train key {name!r}: expected {hint.__name__}, got {type(value).__name__} {value!r}"
        )
    return value


def read_config_file(path: str | Path) -> dict:
    """A run's recipe from a YAML (or JSON) file: a mapping of TrainConfig keys (checked
    by `config_from_mapping`, which the study YAML's `train:` block goes through too)."""
    mapping = read_yaml(path, "config file")
    if mapping is None:
        return {}
    if not isinstance(mapping, dict):
        raise FetalHCError(f"{path}: expected a mapping of key: value")
    return mapping


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
