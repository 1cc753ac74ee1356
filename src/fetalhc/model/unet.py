"""Networks: smp's U-Net with a configurable encoder (one call builds it), the paper's 31 M
from-scratch U-Net, the encoder-skip scaling, and loading encoder weights without pickle.
Input: see `preprocess`; output: one channel of logits."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fetalhc.errors import FetalHCError
from fetalhc.model.config import SCRATCH_ARCH, SKIP_STAGES, SMP_ARCH, ModelConfig


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


def set_threads(threads: int) -> None:
    """PyTorch's intra-op threads for this process (0: leave the library default). A
    process-wide setting, so the CLI (or a worker process) applies it, never a constructor."""
    if threads:
        torch.set_num_threads(threads)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
