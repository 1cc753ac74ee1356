"""Models: smp U-Net with a configurable encoder, and the paper's 31 M from-scratch U-Net.

Input normalisation: the 8-bit grey image is scaled to [0, 1] and repeated to 3 channels;
``imagenet`` (default) then normalises with the ImageNet mean (0.485, 0.456, 0.406) and std
(0.229, 0.224, 0.225), as the ImageNet encoder weights expect; ``unit`` keeps [0, 1], as the
paper's notebooks do (``A.Normalize(mean=0, std=1)``). Output: one channel of logits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .config import DEFAULT_IMAGE_SIZE, NORMALIZATIONS
from .errors import FetalHCError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
PAPER_DECODER_CHANNELS = (256, 128, 64, 32, 16)
SCRATCH_ARCH = "scratch-unet"
SMP_ARCH = "smp-unet"
SKIP_STAGES = 5  # encoder outputs at strides 2, 4, 8, 16, 32


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
        config = cls(**known)
        if config.normalization not in NORMALIZATIONS:
            raise FetalHCError(f"unknown input normalization {config.normalization!r}")
        return config


# what `preprocess` does, in words, for a run's config.json
INPUT_DESCRIPTIONS = {
    "imagenet": "grey uint8 -> [0,1] -> 3 channels -> ImageNet mean/std",
    "unit": "grey uint8 -> [0,1] -> 3 channels (the paper's Normalize(mean=0, std=1))",
}


def preprocess(gray: np.ndarray, normalization: str = "imagenet") -> np.ndarray:
    """(N, H, W) or (H, W) uint8 grey -> (N, 3, H, W) float32 normalised network input."""
    x = np.asarray(gray, dtype=np.float32)
    if x.ndim == 2:
        x = x[None]
    x = x[:, None] / 255.0
    if normalization == "unit":
        return np.repeat(x, 3, axis=1).astype(np.float32)
    return ((x - IMAGENET_MEAN[None, :, None, None]) / IMAGENET_STD[None, :, None, None]).astype(
        np.float32
    )


# ---------------------------------------------------------------- the paper's scratch U-Net
class DoubleConv(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )


class Up(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = DoubleConv(cin, cout)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([skip, self.up(x)], dim=1))


class ScratchUNet(nn.Module):
    """Ronneberger's U-Net as in the paper's baseline: 64-128-256-512 features, a 1024
    bottleneck, transposed-convolution up-sampling and BatchNorm (31,037,633 parameters)."""

    def __init__(self, in_channels: int = 3, classes: int = 1) -> None:
        super().__init__()
        widths = [64, 128, 256, 512, 1024]
        self.inc = DoubleConv(in_channels, widths[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), DoubleConv(widths[i], widths[i + 1])) for i in range(4)
        )
        self.ups = nn.ModuleList(Up(widths[i + 1], widths[i]) for i in reversed(range(4)))
        self.outc = nn.Conv2d(widths[0], classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.inc(x)]
        for down in self.downs:
            skips.append(down(skips[-1]))
        y = skips.pop()
        for up in self.ups:
            y = up(y, skips.pop())
        return self.outc(y)


# ---------------------------------------------------------------- skip scaling
class SkipScale(nn.Module):
    """Divides the encoder's skip outputs (strides 2-32) by constant per-stage RMS values;
    the first output (the input itself, which smp's decoder does not use) is passed on."""

    def __init__(self, rms: list[float]) -> None:
        super().__init__()
        self.register_buffer("rms", torch.tensor(rms, dtype=torch.float32))

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.rms) + 1:
            raise FetalHCError(
                f"skip scaling: the encoder gives {len(features) - 1} stages, not {len(self.rms)}"
            )
        scaled = [f / self.rms[i].to(f.dtype) for i, f in enumerate(features[1:])]
        return [features[0], *scaled]


def add_skip_scale(model: nn.Module, rms: list[float]) -> None:
    """Attach a SkipScale to an smp U-Net: a forward hook on its encoder, so the trainer's
    frozen-encoder path, `model(x)` and the ONNX export all see the scaled skips."""
    if not hasattr(model, "encoder") or isinstance(model, ScratchUNet):
        raise FetalHCError("skip_rescale needs a U-Net with a pretrained-style encoder")
    model.skip_scale = SkipScale(rms)
    model.encoder.register_forward_hook(lambda _m, _i, out: model.skip_scale(out))


@torch.no_grad()
def measure_skip_rms(model: nn.Module, x: torch.Tensor) -> list[float]:
    """RMS of each unscaled encoder output on the batch `x`, in the model's current mode.
    BatchNorm running statistics are put back, so measuring leaves the model as it was."""
    buffers = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    features = model.encoder(x.float())
    scale = model.skip_scale.rms if hasattr(model, "skip_scale") else torch.ones(SKIP_STAGES)
    model.encoder.load_state_dict(buffers)
    return [
        float(f.float().pow(2).mean().sqrt() * s) for f, s in zip(features[1:], scale, strict=True)
    ]


# ---------------------------------------------------------------- building and weights
def build_model(config: ModelConfig, encoder_weights: str | None = None) -> nn.Module:
    """Build the model; `encoder_weights` is 'imagenet', 'none'/None or a state-dict path."""
    if config.arch == SCRATCH_ARCH:
        if config.skip_rms:
            raise FetalHCError("skip_rescale needs an smp U-Net; the scratch U-Net has none")
        return ScratchUNet()
    if config.arch != SMP_ARCH:
        raise FetalHCError(f"unknown architecture {config.arch!r}")
    import segmentation_models_pytorch as smp

    use_hub = encoder_weights == "imagenet"
    try:
        model = smp.Unet(
            encoder_name=config.encoder,
            encoder_weights="imagenet" if use_hub else None,
            decoder_channels=tuple(config.decoder_channels),
            in_channels=3,
            classes=1,
        )
    except KeyError as exc:
        raise FetalHCError(f"unknown encoder {config.encoder!r} ({exc})") from None
    except (OSError, RuntimeError, ValueError) as exc:
        if use_hub:
            raise FetalHCError(
                f"cannot download ImageNet weights for {config.encoder} ({exc}); offline? "
                "pass --encoder-weights PATH to a torchvision-format state dict"
            ) from None
        raise FetalHCError(f"cannot build the U-Net: {exc}") from None
    if encoder_weights not in (None, "none", "imagenet"):
        load_encoder_weights(model.encoder, encoder_weights)
    if config.skip_rms:
        add_skip_scale(model, list(config.skip_rms))
    return model


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file or a torch file, never unpickling arbitrary objects."""
    path = Path(path)
    if not path.is_file():
        raise FetalHCError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure is the user's file
        raise FetalHCError(f"{path}: not a readable weights file ({type(exc).__name__})") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FetalHCError(f"{path}: not a state dict of tensors")
    return state


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> None:
    """Load a torchvision-format state dict (classifier dropped) into an smp encoder."""
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("classifier.")}
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise FetalHCError(
            f"{path}: does not match the encoder ({len(missing)} missing keys, e.g. "
            f"{missing[:1]}; {len(unexpected)} unexpected, e.g. {unexpected[:1]})"
        )
    wrong = [k for k in own if own[k].shape != state[k].shape]
    if wrong:
        raise FetalHCError(
            f"{path}: wrong shape for {wrong[0]}: {tuple(state[wrong[0]].shape)} "
            f"instead of {tuple(own[wrong[0]].shape)}"
        )
    nn.Module.load_state_dict(encoder, state, strict=True)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
